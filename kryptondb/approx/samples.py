"""Real photographs available offline, split in two disjoint sets: one to tune approximate
settings on, one to check the tuned settings on (held out). They come from installed packages:
scikit-image and matplotlib sample data, and Debian's ``opencv-doc`` examples when installed
(``apt-get install opencv-doc``)."""

from __future__ import annotations

import os

OPENCV = "/usr/share/doc/opencv-doc/examples/data"

TUNING = ("skimage:astronaut.png", "skimage:rocket.jpg", "skimage:motorcycle_left.png",
          "matplotlib:grace_hopper.jpg", "opencv:aero1.jpg", "opencv:home.jpg",
          "opencv:smarties.png", "opencv:apple.jpg", "opencv:building.jpg",
          "opencv:basketball1.png")
HELD_OUT = ("skimage:chelsea.png", "skimage:coffee.png", "opencv:squirrel_cls.jpg",
            "opencv:messi5.jpg", "opencv:fruits.jpg", "opencv:orange.jpg", "opencv:baboon.jpg",
            "opencv:butterfly.jpg", "opencv:HappyFish.jpg", "opencv:chicky_512.png", "opencv:aero3.jpg",
            "opencv:starry_night.jpg")


def _folder(source: str) -> str:
    if source == "skimage":
        from skimage import data  # optional and slow to import: only to find its sample images

        return os.path.dirname(data.__file__)
    if source == "matplotlib":
        import matplotlib  # heavy: only to find its sample images

        return os.path.join(matplotlib.get_data_path(), "sample_data")
    return OPENCV


def paths(names=TUNING) -> tuple[list[str], list[str]]:
    """(found paths, missing names) for entries like 'skimage:coffee.png'."""
    found, missing = [], []
    for entry in names:
        source, name = entry.split(":", 1)
        path = os.path.join(_folder(source), name)
        (found if os.path.isfile(path) else missing).append(path if os.path.isfile(path) else entry)
    return found, missing

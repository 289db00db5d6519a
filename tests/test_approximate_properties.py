"""Laws of approximate occlusion.

Projective field thresholding (tau) has a plain definition: every maintained layer's output equals
the stored view outside the region it recomputes, and the layer applied to its (approximated)
input inside it; layers past the incremental part run in full. The executor's gathers, fused
steps, saturation cut and batched calls must give exactly that, for random CNNs, patches,
strides and taus, on both CPU backends. tau = 1 is exact.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from test_ivm_properties import SETTINGS, cnns

from kryptondb.runtime.backends import get_backend
from kryptondb.runtime.numpy_ops import KERNELS
from kryptondb.ivm.cost import theoretical
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.ivm.regions import Interval, cap_axis
from kryptondb.graph.ir import Op
from kryptondb.obe.occlusion import Grid, occluded_batch


@st.composite
def tau_cases(draw):
    g = draw(cnns())
    _, h, w = g.input_shape
    return (g, draw(st.integers(1, min(h, w))), draw(st.integers(1, 4)),
            draw(st.sampled_from([0.2, 0.35, 0.5, 0.7, 0.9, 1.0])), draw(st.integers(0, 1000)))


def _definition(g, plan, x, corners, patch, fill):
    """Approximate outputs by the definition, one node at a time in NumPy, all positions."""
    values = {g.inputs[0]: occluded_batch(x, fill, corners, patch)}
    for n in g.nodes:
        if n.op is Op.INPUT:
            continue
        full = np.asarray(KERNELS[n.op](n, g, [values[i] for i in n.inputs]), np.float32)
        if n.name in plan.incremental:
            r = plan.regions[n.name]
            out = np.repeat(plan.views[n.name][None], len(corners), axis=0)
            for k in range(len(corners)):
                ys, xs = slice(r.y[k], r.y[k] + r.h), slice(r.x[k], r.x[k] + r.w)
                out[k, :, ys, xs] = full[k, :, ys, xs]
            full = out
        values[n.name] = full
    return values[g.output]


def _check(case, backend_name):
    g, patch, stride, tau, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g.input_shape).astype(np.float32)
    fill = np.zeros(g.input_shape, np.float32)
    corners = Grid(g.input_shape[1], g.input_shape[2], patch, stride).corners()
    be = get_backend(backend_name)
    plan = IncrementalPlan(g, corners, patch, base_views(g, x, be), tau)
    pv = np.stack([fill[:, y:y + patch, c:c + patch] for y, c in corners])
    out = plan.run(np.arange(len(corners)), pv, be, {})
    np.testing.assert_allclose(out, _definition(g, plan, x, corners, patch, fill),
                               atol=1e-4, rtol=1e-4)
    if tau == 1.0:  # no cap: exact
        ref = be.run(g, {g.inputs[0]: occluded_batch(x, fill, corners, patch)})[g.output]
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


@SETTINGS
@given(tau_cases())
def test_tau_follows_its_definition_numpy(case):
    _check(case, "numpy")


@SETTINGS
@given(tau_cases())
def test_tau_follows_its_definition_onnxruntime(case):
    _check(case, "onnxruntime")


@given(st.integers(-20, 40), st.integers(0, 60), st.integers(1, 64),
       st.floats(0.01, 1.0, allow_nan=False))
def test_cap_keeps_the_centre_and_never_widens(lo, width, size, tau):
    iv = Interval(np.array([lo]), np.array([lo + width]))
    out = cap_axis(iv, size, tau)
    limit = max(1, round(tau * size))
    assert out.lo[0] >= iv.lo[0] and out.hi[0] <= iv.hi[0]  # inside the changed interval
    assert out.width[0] == min(width, limit)
    assert abs((out.lo[0] - iv.lo[0]) - (iv.hi[0] - out.hi[0])) <= 1  # centred


def test_smaller_tau_means_fewer_flops():
    from kryptondb.model.architectures import resnet18

    g = resnet18()
    speedups = [theoretical(g, 16, tau).speedup for tau in (1.0, 0.9, 0.7, 0.5, 0.4)]
    assert speedups[0] == theoretical(g, 16).speedup  # tau 1: the exact cost model
    assert all(a <= b for a, b in zip(speedups, speedups[1:])), speedups
    assert speedups[-1] > 2 * speedups[0]


def test_tau_04_speedups_match_the_published_ones():
    """Krypton reports theoretical speedups at patch 16, tau 0.4: VGG16 11.4, ResNet18 7.7,
    Inception3 8.5 (KRYPTON.md section 3)."""
    from kryptondb.model import architectures as A

    for name, published in (("vgg16", 11.4), ("resnet18", 7.7), ("inception3", 8.5)):
        ours = theoretical(getattr(A, name)(), 16, 0.4).speedup
        assert abs(ours - published) / published < 0.05, (name, ours, published)

"""The CUDA kernels of kernels/*.cu, compiled on the host through kernels/host_shim.h, against
the NumPy reference (kryptondb/runtime/numpy_ops.py, kryptondb/ivm/gather.py) on
hypothesis-drawn shapes, strides, pads, dilations, batches and launch grids (often far smaller
than the work, so every grid-stride loop goes round); and the loader: its cache, its errors,
the scalars it hands CuPy."""

from __future__ import annotations

import re
import shutil
import subprocess
import types

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from kryptondb.errors import BackendError, KryptonError, ShapeError, UnknownNameError
from kryptondb.graph.ops import Op, make_node
from kryptondb.graph.shapes import window_out
from kryptondb.ivm.gather import NewValues, PaddedView, gather
from kryptondb.runtime import kernels as K
from kryptondb.runtime import numpy_ops

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason=K.HOST_COMPILER_MISSING)
SETTINGS = settings(max_examples=40, deadline=None)
F32, I32 = np.float32, np.int32


def launch(data, name: str, args: tuple) -> None:
    """Run kernel ``name`` on a drawn 1-D launch: a grid of 1-8 blocks of 1-128 threads."""
    grid = data.draw(st.integers(1, 8), label="grid")
    block = data.draw(st.sampled_from([1, 7, 32, 128]), label="block")
    K.kernel(name, np)((grid,), (block,), args)


def randn(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(F32)


@st.composite
def windows(draw, dilated=True, ceiled=True):
    """A batch and a window: (B, C, H, W), kernel, stride, pads (t, l, b, r), dilation,
    ceil mode (pools only), and the output size shape inference gives."""
    b, c, h, w = (draw(st.integers(1, n)) for n in (3, 4, 9, 9))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, kernel[i % 2] - 1)) for i in range(4))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilated else (1, 1)
    ceil = draw(st.booleans()) if ceiled else False
    spans = [(h, kernel[0], stride[0], pads[0], pads[2], dil[0]),
             (w, kernel[1], stride[1], pads[1], pads[3], dil[1])]
    assume(all(n + lo + hi >= d * (k - 1) + 1 for n, k, _, lo, hi, d in spans))
    out = tuple(window_out(*s, ceil=ceil) for s in spans)
    return (b, c, h, w), kernel, stride, pads, dil, ceil, out


def geometry(shape, kernel, stride, pads, dil, out) -> tuple:
    """The (B, C, H, W, KH, KW, SH, SW, PT, PL, DH, DW, OH, OW) run of kernel arguments."""
    return (*shape, *kernel, *stride, pads[0], pads[1], *dil, *out)


def node(op, kernel, stride, pads, dil, **attrs):
    return make_node("n", op, ("x",), kernel=kernel, stride=stride, pads=pads, dilation=dil,
                     **attrs)


@SETTINGS
@given(st.data(), st.integers(1, 4), st.integers(1, 8), st.integers(1, 8), st.integers(1, 5),
       st.integers(1, 10), st.integers(1, 10), st.sampled_from([0.0, -np.inf, 1.5]))
def test_gather_equals_the_numpy_gather(data, c, h, w, b, rh, rw, pad):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    view = randn(rng, c, h, w)
    ys = rng.integers(-rh - 1, h + 2, b).astype(I32)
    xs = rng.integers(-rw - 1, w + 2, b).astype(I32)
    nh, nw = data.draw(st.integers(0, rh)), data.draw(st.integers(0, rw))
    nv = randn(rng, b, c, nh, nw)
    nys = (ys + rng.integers(-nh - 1, rh + 2, b)).astype(I32)
    nxs = (xs + rng.integers(-nw - 1, rw + 2, b)).astype(I32)
    grouped = data.draw(st.booleans(), label="grouped")
    owners = rng.integers(0, 2, b).astype(I32) if grouped else np.arange(b, dtype=I32)
    new = NewValues(nv, nys, nxs, owners if grouped else None) if nh and nw else None
    want = gather(PaddedView(view, (0, 0, 0, 0), pad), ys, xs, rh, rw, new)
    out = np.full((b, c, rh, rw), np.nan, F32)
    launch(data, "gather", (view, c, h, w, ys, xs, b, rh, rw, nv, nys, nxs, nh, nw, owners,
                            int(grouped), pad, out))
    np.testing.assert_array_equal(out, want)


def test_gather_of_one_owner_takes_its_own_region_then_the_last_one_covering():
    view, owners = np.zeros((1, 4, 4), F32), np.zeros(3, I32)
    nv = np.stack([np.full((1, 4, 4), v, F32) for v in (1, 2, 3)])
    ys, xs = np.zeros(3, I32), np.zeros(3, I32)
    nys, nxs = np.array([2, 0, 0], I32), np.array([2, 0, 0], I32)  # region 0: bottom right
    want = gather(PaddedView(view, (0, 0, 0, 0), 0.0), ys, xs, 4, 4,
                  NewValues(nv[:, :, :2, :2], nys, nxs, owners))
    out = np.empty((3, 1, 4, 4), F32)
    K.kernel("gather", np)((1,), (5,), (view, 1, 4, 4, ys, xs, 3, 4, 4, nv[:, :, :2, :2].copy(),
                                        nys, nxs, 2, 2, owners, 1, 0.0, out))
    np.testing.assert_array_equal(out, want)
    assert (out[0, 0, 3, 3], out[0, 0, 0, 0], out[1, 0, 0, 0], out[0, 0, 0, 3]) == (1, 3, 2, 0)


@SETTINGS
@given(st.data(), windows(ceiled=False))
def test_im2col_equals_the_numpy_windows_and_its_matmul_the_convolution(data, geo):
    shape, kernel, stride, pads, dil, _, out_hw = geo
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x = randn(rng, *shape)
    b, c = shape[:2]
    win = numpy_ops.windows(numpy_ops.pad2d(x, pads), kernel, stride, dil, out_hw)
    cols = np.full((b, c * kernel[0] * kernel[1], out_hw[0] * out_hw[1]), np.nan, F32)
    launch(data, "im2col", (x, *geometry(shape, kernel, stride, pads, dil, out_hw), cols))
    np.testing.assert_array_equal(cols, win.reshape(cols.shape))
    o = data.draw(st.integers(1, 3), label="out channels")
    wt, bias = randn(rng, o, c, *kernel), randn(rng, o)
    conv = numpy_ops.conv(node(Op.CONV, kernel, stride, pads, dil, groups=1), x, wt, bias,
                          (o, *out_hw))
    got = np.matmul(wt.reshape(o, -1), cols) + bias[:, None]
    np.testing.assert_allclose(got.reshape(conv.shape), conv, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(st.data(), windows(ceiled=False))
def test_depthwise_conv_equals_the_numpy_convolution(data, geo):
    shape, kernel, stride, pads, dil, _, out_hw = geo
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    b, c = shape[:2]
    x, wt, bias = randn(rng, *shape), randn(rng, c, 1, *kernel), randn(rng, c)
    want = numpy_ops.conv(node(Op.CONV, kernel, stride, pads, dil, groups=c), x, wt, bias,
                          (c, *out_hw))
    out = np.full((b, c, *out_hw), np.nan, F32)
    launch(data, "depthwise_conv",
           (x, wt, bias, *geometry(shape, kernel, stride, pads, dil, out_hw), out))
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(st.data(), windows())
def test_max_pool_equals_the_numpy_max_pool(data, geo):
    shape, kernel, stride, pads, dil, ceil, out_hw = geo
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x = randn(rng, *shape)
    want = numpy_ops.maxpool(node(Op.MAXPOOL, kernel, stride, pads, dil, ceil_mode=int(ceil)),
                             x, (shape[1], *out_hw))
    out = np.full((*shape[:2], *out_hw), np.nan, F32)
    launch(data, "max_pool", (x, *geometry(shape, kernel, stride, pads, dil, out_hw), out))
    np.testing.assert_array_equal(out, want)


def test_max_pool_propagates_nan_as_numpy_does():
    x = np.arange(16, dtype=F32).reshape(1, 1, 4, 4)
    x[0, 0, 1, 2] = np.nan
    out = np.zeros((1, 1, 2, 2), F32)
    K.kernel("max_pool", np)((1,), (4,), (x, 1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1, 2, 2, out))
    want = numpy_ops.maxpool(node(Op.MAXPOOL, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)), x,
                             (1, 2, 2))
    np.testing.assert_array_equal(out, want)
    assert np.isnan(out[0, 0, 0, 1])


@SETTINGS
@given(st.data(), windows(dilated=False), st.booleans())
def test_avg_pool_equals_the_numpy_avg_pool_under_both_padding_rules(data, geo, include):
    shape, kernel, stride, pads, dil, ceil, out_hw = geo
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x = randn(rng, *shape)
    n = node(Op.AVGPOOL, kernel, stride, pads, dil, ceil_mode=int(ceil),
             count_include_pad=int(include))
    want = numpy_ops.avgpool(n, x, (shape[1], *out_hw))
    out = np.full((*shape[:2], *out_hw), np.nan, F32)
    launch(data, "avg_pool", (x, *shape, *kernel, *stride, *pads, *out_hw, int(include), out))
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def _reference(act: str, y: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    ref = numpy_ops.KERNELS
    ops = {"relu": (Op.RELU, {}), "clip": (Op.CLIP, {"min": alpha, "max": beta}),
           "sigmoid": (Op.SIGMOID, {}), "hardswish": (Op.HARD_SWISH, {}),
           "hard_sigmoid": (Op.HARD_SIGMOID, {"alpha": alpha, "beta": beta}),
           "leaky_relu": (Op.LEAKY_RELU, {"alpha": alpha})}
    if act in ops:
        op, attrs = ops[act]
        return ref[op](make_node("n", op, ("x",), **attrs), None, [y])
    if act == "silu":
        return y * ref[Op.SIGMOID](make_node("n", Op.SIGMOID, ("x",)), None, [y])
    if act.startswith("gelu"):
        return numpy_ops.gelu(y, "tanh" if act == "gelu_tanh" else "none")
    return y


@SETTINGS
@given(st.data(), st.sampled_from(sorted(K.ACTIVATIONS)), st.integers(1, 3), st.integers(1, 5),
       st.integers(1, 20), st.booleans())
def test_bias_act_equals_the_numpy_activations(data, act, n, c, hw, in_place):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x, bias = randn(rng, n, c, hw) * F32(4), randn(rng, c)
    alpha, beta = (0.0, 6.0) if act == "clip" else (0.2, 0.5)
    want = _reference(act, x + bias[None, :, None], alpha, beta)
    out = x if in_place else np.full_like(x, np.nan)
    launch(data, "bias_act", (x, bias, n, c, hw, K.ACTIVATIONS[act], alpha, beta, out))
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty kernel cache directory, and no kernel loaded in this process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    K._host_kernel.cache_clear()
    yield tmp_path / "kryptondb" / "kernels"
    K._host_kernel.cache_clear()


def test_a_kernel_is_built_once_and_then_loaded_from_the_cache(fresh_cache, monkeypatch):
    first = K.kernel("bias_act", np)
    assert K.kernel("bias_act", np) is first
    built = sorted(p.name for p in fresh_cache.iterdir())
    assert len(built) == 1 and re.fullmatch(r"bias_act-[0-9a-f]{16}\.so", built[0])

    def no_compiler(*args):
        raise AssertionError("compiled again")

    monkeypatch.setattr(K, "compile_host", no_compiler)
    K._host_kernel.cache_clear()  # a new process: only the disk cache is left
    x = np.ones((1, 2, 3), F32)
    K.kernel("bias_act", np)((1,), (1,), (x, np.zeros(2, F32), 1, 2, 3, 1, 0.0, 0.0, x))
    assert sorted(p.name for p in fresh_cache.iterdir()) == built


def test_no_gcc_is_a_backend_error_naming_it(fresh_cache, monkeypatch):
    monkeypatch.setattr(K.shutil, "which", lambda name: None)
    with pytest.raises(BackendError, match="gcc"):
        K.kernel("gather", np)


def _max_pool_args(**change):
    args = dict(x=np.zeros((1, 1, 4, 4), F32), dims=(1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1, 2, 2),
                out=np.zeros((1, 1, 2, 2), F32))
    args.update(change)
    return (args["x"], *args["dims"], args["out"])


@pytest.mark.parametrize("args, message", [
    (_max_pool_args(x=np.zeros((1, 1, 4, 8), F32)[..., ::2]),
     r"argument 0 \(x\) must be C-contiguous"),
    (_max_pool_args(x=np.zeros((1, 1, 4, 4))), r"argument 0 \(x\) must be float32, got float64"),
    (_max_pool_args(out=np.zeros((1, 1, 2, 2), np.int32)), r"argument 15 \(out\) must be float32"),
    (_max_pool_args(x=[0.0] * 16), r"argument 0 \(x\) must be a numpy array"),
    (_max_pool_args(dims=(1, 1, 4, 4, 2.5, 2, 2, 2, 0, 0, 1, 1, 2, 2)),
     r"argument 5 \(KH\) must be a 32-bit int"),
    (_max_pool_args(dims=(1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1, 2)), r"takes 16 arguments"),
])
def test_bad_arguments_are_shape_errors_naming_the_argument(args, message):
    with pytest.raises(ShapeError, match=message):
        K.kernel("max_pool", np)((1,), (1,), args)


def test_a_read_only_output_and_a_bad_grid_are_refused():
    out = np.zeros((1, 1, 2, 2), F32)
    out.flags.writeable = False
    with pytest.raises(ShapeError, match=r"argument 15 \(out\) is written"):
        K.kernel("max_pool", np)((1,), (1,), _max_pool_args(out=out))
    with pytest.raises(ShapeError, match="grid"):
        K.kernel("max_pool", np)((0,), (1,), _max_pool_args())


def test_only_the_package_kernels_can_be_named():
    with pytest.raises(UnknownNameError, match="known: avg_pool, bias_act"):
        K.kernel("../host_shim", np)
    assert issubclass(UnknownNameError, KryptonError)


def test_cupy_gets_its_raw_module_function_and_32_bit_scalars(monkeypatch):
    calls = []

    class RawModule:
        def __init__(self, code):
            self.code = code

        def get_function(self, name):
            assert "#include" not in self.code and f"void {name}(" in self.code
            return lambda grid, block, args: calls.append((grid, block, args))

    fake = types.ModuleType("cupy")
    fake.RawModule, fake.ndarray = RawModule, np.ndarray
    x, bias = np.ones((1, 2, 3), F32), np.zeros(2, F32)
    K.kernel("bias_act", fake)((2,), (64, 1), (x, bias, 1, 2, 3, 2, 0, 6.0, x))
    grid, block, args = calls[0]
    assert (grid, block) == ((2, 1, 1), (64, 1, 1)) and args[0] is x and args[8] is x
    assert [type(a) for a in args[2:8]] == [np.int32] * 4 + [np.float32] * 2
    assert K.kernel("bias_act", fake) is K.kernel("bias_act", fake)


def test_the_readme_lists_every_kernel_with_its_argument_order():
    readme = (K.kernel_dir() / "README.md").read_text()
    assert K.names() == ("avg_pool", "bias_act", "depthwise_conv", "gather", "im2col",
                         "max_pool")
    for name in K.names():
        params = ", ".join(K._declare(p) for p in K.signature(name).params)
        assert f"| `{name}` | `{params}` |" in readme, name
        assert "#include" not in K.source(name)  # NVRTC compiles the sources as they are


def test_an_unwritable_cache_is_a_backend_error_naming_it(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where a directory must go
    K._host_kernel.cache_clear()
    with pytest.raises(BackendError, match="cannot write the kernel cache .*XDG_CACHE_HOME"):
        K.kernel("im2col", np)
    K._host_kernel.cache_clear()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc: CUDA syntax unchecked here")
def test_every_kernel_compiles_as_cuda(tmp_path):
    for name in K.names():
        done = subprocess.run(["nvcc", "--ptx", "-o", str(tmp_path / f"{name}.ptx"),
                               str(K.kernel_dir() / f"{name}.cu")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

"""kryptondb.attr.Occlusion equals captum.attr.Occlusion (0.9): for small CNNs built in torch
(3-channel and 1-channel, square and non-square, BatchNorm, pooling with ceil_mode, a residual
block, a Softmax-ended model) and a ResNet-18-shaped model, over hypothesis-drawn windows,
strides (per axis, with and without a border remainder), baselines (scalar, broadcast, per
example), targets (int, list, tensor) and 1-3 examples, on both CPU backends and both plans,
within 1e-5 of the largest attribution. The 224-pixel cases are marked slow.

Where an attribution is tiny beside the outputs it is a difference of (a 1 x 1 window moves a
logit of 10 by 1e-4), float32 cannot hold it to 1e-5 on any engine: Captum's own attribution
then lies 1e-5 from the float64 one (measured: 1.1e-5 at logits 80x the largest attribution).
The tolerance adds that floor, FLOAT32_ULPS float32 steps of the largest output.

Refusals (what the engine does not run) and Captum's argument errors are tested in
tests/test_captum_api.py.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import numpy as np  # noqa: E402 - after the skips: the file needs torch and captum
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

from kryptondb.attr import Occlusion  # noqa: E402

TOLERANCE = 1e-5  # of the largest attribution
FLOAT32_ULPS = 4  # the float32 floor: steps (eps) of the largest output differenced
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BACKENDS, PLANS = ("numpy", "onnxruntime"), ("naive", "incremental")


def _randomize_batchnorm(net: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine weights away from the identity, so folding them matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


class Residual(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm, the input added back (through
    a strided 1x1 convolution when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


def small_cnn() -> nn.Module:
    """3 channels in: convolution, BatchNorm, max pooling with ceil_mode, a residual block."""
    torch.manual_seed(1)
    return _randomize_batchnorm(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True), Residual(8, 8),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)), 1)


def gray_softmax_cnn() -> nn.Module:
    """1 channel in, average pooling with ceil_mode, a Softmax at the end."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(), nn.LazyLinear(4), nn.Softmax(dim=1)).eval()


def resnet18_shaped(width: int = 8, classes: int = 10) -> nn.Module:
    """ResNet-18's layout (a 7x7 stem, max pooling, four stages of two basic blocks, global
    pooling, a linear classifier), ``width`` channels in the first stage."""
    torch.manual_seed(3)
    w = [width, 2 * width, 4 * width, 8 * width]
    blocks = [Residual(w[0], w[0]), Residual(w[0], w[0])]
    for cin, cout in zip(w, w[1:]):
        blocks += [Residual(cin, cout, 2), Residual(cout, cout)]
    return _randomize_batchnorm(nn.Sequential(
        nn.Conv2d(3, w[0], 7, 2, 3, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(),
        nn.MaxPool2d(3, 2, 1), *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(w[3], classes)), 3)


def _built(net: nn.Module, shape: tuple[int, int, int]) -> nn.Module:
    with torch.no_grad():  # materializes lazy layers
        net(torch.zeros(1, *shape))
    return net.eval()


# name -> (the module, its C x H x W input, classes)
MODELS = {
    "small_cnn 3x13x11": (small_cnn, (3, 13, 11), 5),
    "gray_softmax 1x10x14": (gray_softmax_cnn, (1, 10, 14), 4),
    "resnet18_shaped 3x32x32": (resnet18_shaped, (3, 32, 32), 10),
}
_NETS: dict = {}
_EXPLAINERS: dict = {}


def net(name: str) -> nn.Module:
    if name not in _NETS:
        make, shape, _ = MODELS[name]
        _NETS[name] = _built(make(), shape)
    return _NETS[name]


def explainer(name: str, backend: str, plan: str | None) -> Occlusion:
    """One Occlusion per model, backend and plan for the whole file (its export is reused)."""
    key = (name, backend, plan)
    if key not in _EXPLAINERS:
        _EXPLAINERS[key] = Occlusion(net(name), backend=backend, plan=plan)
    return _EXPLAINERS[key]


def captum(module: nn.Module, x, **kw):
    return captum_attr.Occlusion(module).attribute(x, perturbations_per_eval=128, **kw)


def assert_parity(ours, ref, module, x, label: str, log_error, floor: float = 0.0) -> None:
    """Same type, shape and dtype; values within TOLERANCE of the largest attribution, or
    within the float32 floor of the outputs ``module`` gives on ``x`` (or ``floor``, if more)."""
    assert type(ours) is type(ref) and ours.shape == ref.shape and ours.dtype == ref.dtype
    err = log_error(f"captum parity: {label}", ours.numpy(), ref.numpy())
    with torch.no_grad():
        out = float(module(x).abs().max())
    floor = max(floor, FLOAT32_ULPS * np.finfo(np.float32).eps * out)
    gap = float((ours - ref).abs().max())
    assert gap <= TOLERANCE * float(ref.abs().max()) + floor, \
        f"{label}: relative error {err:.2e} (float32 floor {floor:.1e}, gap {gap:.1e})"


def captum_float32_error(module: nn.Module, x, label: str, log_error, **kw) -> float:
    """How far Captum's own float32 attribution lies from the float64 one (the module copied
    to float64), in the attribution's units, on the grid with stride = window (fewer windows,
    the same depth of rounding); logged relative to the largest attribution."""
    window = kw["sliding_window_shapes"]
    kw = dict(kw, strides=window)
    wide = copy.deepcopy(module).double()
    narrow = captum_attr.Occlusion(module).attribute(x, perturbations_per_eval=64, **kw)
    exact = captum_attr.Occlusion(wide).attribute(x.double(), perturbations_per_eval=64, **kw)
    log_error(f"captum's own float32 error: {label}", narrow.numpy(), exact.numpy())
    return float((narrow.double() - exact).abs().max())


def _axis(draw, size: int, least: int) -> tuple[int, int]:
    """(window, stride) along one axis: a window of ``least`` pixels or more; a stride up to
    the window (Captum's rule) unless the window spans the axis, from 2 on the larger models
    (fewer positions, a shorter run)."""
    window = draw(st.integers(min(least, size), size))
    stride = draw(st.integers(min(least, 2), min(window if window < size else 4, 6)))
    return window, stride


@st.composite
def calls(draw, name: str):
    """(inputs, attribute's keyword arguments, backend, plan) for model ``name``."""
    _, (c, h, w), classes = MODELS[name]
    n = draw(st.integers(1, 3 if h * w < 400 else 2))
    x = torch.from_numpy(np.random.default_rng(draw(st.integers(0, 2**16))).normal(
        size=(n, c, h, w)).astype(np.float32))
    least = 1 if h * w < 400 else 3
    (wh, sy), (ww, sx) = _axis(draw, h, least), _axis(draw, w, least)
    strides = sy if sy == sx and draw(st.booleans()) else (draw(st.integers(1, 3)), sy, sx)
    kw = dict(sliding_window_shapes=(c, wh, ww), strides=strides,
              baselines=_baselines(draw, x), target=_target(draw, n, classes))
    return x, kw, draw(st.sampled_from(BACKENDS)), draw(st.sampled_from(PLANS))


def _baselines(draw, x):
    n, c, h, w = x.shape
    kind = draw(st.sampled_from(["none", "scalar", "channels", "one", "per example"]))
    rng = np.random.default_rng(7)
    shape = {"channels": (c, 1, 1), "one": (1, c, h, w), "per example": (n, c, h, w)}
    if kind == "none":
        return None
    if kind == "scalar":
        return draw(st.sampled_from([0.5, -1.25, 2]))
    return torch.from_numpy(rng.normal(size=shape[kind]).astype(np.float32))


def _target(draw, n: int, classes: int):
    kind = draw(st.sampled_from(["int", "list", "tensor"]))
    per = [draw(st.integers(0, classes - 1)) for _ in range(n)]
    return per[0] if kind == "int" else per if kind == "list" else torch.tensor(per)


def _parity_case(name: str):
    @SETTINGS
    @given(data=st.data())
    def test(data, log_error):
        x, kw, backend, plan = data.draw(calls(name))
        ours = explainer(name, backend, plan).attribute(x, **kw)
        assert_parity(ours, captum(net(name), x, **kw), net(name), x, f"{name} {backend} {plan}",
                      log_error)
    return test


test_small_cnn_equals_captum = _parity_case("small_cnn 3x13x11")
test_gray_softmax_cnn_equals_captum = _parity_case("gray_softmax 1x10x14")
test_resnet18_shaped_equals_captum = _parity_case("resnet18_shaped 3x32x32")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("plan", PLANS)
def test_every_backend_and_plan_on_a_border_remainder(backend, plan, log_error):
    """One fixed call per backend and plan: window 5 stride 3 over 13 x 11 leaves a border
    remainder on both axes, so the last windows are cut off."""
    name = "small_cnn 3x13x11"
    x = torch.randn(2, 3, 13, 11, generator=torch.Generator().manual_seed(0))
    kw = dict(sliding_window_shapes=(3, 5, 5), strides=3, target=[1, 3], baselines=0.25)
    ours = explainer(name, backend, plan).attribute(x, **kw)
    assert_parity(ours, captum(net(name), x, **kw), net(name), x,
                  f"border remainder {backend} {plan}", log_error)


def test_no_target_attributes_every_output_as_captum_does(log_error):
    """target=None on a model with several outputs: Captum attributes each output of each
    example (N x outputs rows); so does the engine, from the same scan."""
    name = "gray_softmax 1x10x14"
    x = torch.randn(2, 1, 10, 14, generator=torch.Generator().manual_seed(1))
    kw = dict(sliding_window_shapes=(1, 4, 3), strides=(1, 2, 3))
    ours = explainer(name, "onnxruntime", "incremental").attribute(x, **kw)
    assert ours.shape == (2 * 4, 1, 10, 14)
    assert_parity(ours, captum(net(name), x, **kw), net(name), x, "target None", log_error)


def test_the_cost_model_decides_the_plan(log_error):
    """Without a forced plan the cost model picks one and says which; the result is Captum's."""
    name = "resnet18_shaped 3x32x32"
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    kw = dict(sliding_window_shapes=(3, 6, 6), strides=(1, 3, 3), target=4)
    occ = explainer(name, "onnxruntime", None)
    assert_parity(occ.attribute(x, **kw), captum(net(name), x, **kw), net(name), x, "plan None",
                  log_error)
    assert occ.stats["plan"] in PLANS and occ.stats["theoretical_speedup"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("window, stride", [(16, 8), (15, 8), (16, 16)])
def test_resnet18_shaped_at_224_equals_captum(window, stride, log_error):
    """The full-width ResNet-18 layout at 224 pixels, Captum's tutorial settings. Random
    weights spread every window's effect thin (its attributions are 1e-3 of its outputs), so
    float32 rounding through 18 layers is larger than 1e-5 of them on any engine: the floor is
    twice Captum's own float32 error, measured against float64."""
    module = _built(resnet18_shaped(64, 1000), (3, 224, 224))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    kw = dict(sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
              target=7, baselines=0.0)
    ref = captum_attr.Occlusion(module).attribute(x, perturbations_per_eval=64, **kw)
    floor = 2 * captum_float32_error(module, x, f"resnet18 224 w{window}", log_error, **kw)
    for plan in PLANS:
        ours = Occlusion(module, plan=plan).attribute(x, **kw)
        assert_parity(ours, ref, module, x, f"resnet18 224 w{window} s{stride} {plan}",
                      log_error, floor)

"""kryptondb.attr.Occlusion's API besides the numbers (those: tests/test_captum_parity.py): what
it returns (type, dtype, shape, the windows record), what it refuses and how (Captum's argument
errors with Captum's messages; what the engine does not run, naming the argument), the
fallback to Captum, the forward_func kinds and the options."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kryptondb.attr import CaptumArgumentError, Occlusion, UnsupportedArgumentError
from kryptondb.errors import BackendError, KryptonError, ModelImportError, ShapeError
from kryptondb.model.model import load_model
from kryptondb.obe.grid import Grid
from kryptondb.obe.layout import pixels

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
nn = torch.nn

RNG = np.random.default_rng(0)


def tiny_net(c: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()


NET = tiny_net()
X = torch.from_numpy(RNG.normal(size=(2, 3, 8, 8)).astype(np.float32))
WINDOW = dict(sliding_window_shapes=(3, 3, 3), strides=(1, 2, 2), target=1)


def captum(module, x, **kw):
    return captum_attr.Occlusion(module).attribute(x, **kw)


# --- what comes back ----------------------------------------------------------------------------


def test_torch_in_torch_out_of_the_input_dtype():
    for dtype in (torch.float32, torch.float64):
        out = Occlusion(NET).attribute(X.to(dtype), **WINDOW)
        assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == X.shape
        assert out.device == X.device
    grad = X.clone().requires_grad_(True)  # Captum's tests pass such inputs
    assert torch.equal(Occlusion(NET).attribute(grad, **WINDOW),
                       Occlusion(NET).attribute(X, **WINDOW))


def test_numpy_in_numpy_out():
    x = X.numpy()
    out = Occlusion(NET).attribute(x, **WINDOW)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == x.shape
    assert np.allclose(out, captum(NET, X, **WINDOW).numpy(), atol=1e-6)
    assert Occlusion(NET).attribute(x.astype(np.float64), **WINDOW).dtype == np.float64
    ints = np.round(x * 3).astype(np.int64)  # an attribution of integers is not an integer
    assert Occlusion(NET).attribute(ints, **WINDOW).dtype == np.float32


def test_a_tuple_of_one_input_gives_a_tuple():
    (out,) = Occlusion(NET).attribute((X,), **WINDOW)
    assert torch.allclose(out, captum(NET, (X,), **WINDOW)[0], atol=1e-6)


def test_windows_record_every_window_and_its_difference():
    occ = Occlusion(NET)
    out = occ.attribute(X, sliding_window_shapes=(3, 3, 3), strides=(1, 2, 2), target=[0, 2])
    grid = Grid(8, 8, 3, 2, "cut")  # 4 x 4 windows, the last cut off to 2 x 2
    w = occ.windows
    assert w.column_names == ["example", "target", "y", "x", "h", "w", "difference"]
    assert w.num_rows == 2 * grid.count
    assert w.column("target").to_pylist()[::grid.count] == [0, 2]
    assert sorted(set(w.column("h").to_pylist())) == [2, 3]
    diff = np.asarray(w.column("difference")).reshape(2, *grid.shape)
    np.testing.assert_allclose(pixels(diff, grid), out[:, 0].numpy(), atol=1e-6)
    assert occ.stats["plan"] in ("naive", "incremental") and occ.stats["rows"] == 2 * grid.count


# --- forward_func kinds -------------------------------------------------------------------------


def onnx_file(module: nn.Module, folder) -> str:
    path = str(folder / "tiny.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, (X[:1],), path, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}})
    return path


def test_a_kryptondb_model_and_an_onnx_path_run_as_the_module_does(tmp_path):
    path = onnx_file(NET, tmp_path)
    x = X.numpy()
    theirs = captum(NET, X, **WINDOW).numpy()
    for forward in (path, load_model(path)):
        for plan in ("naive", "incremental"):
            ours = Occlusion(forward, plan=plan).attribute(x, **WINDOW)
            np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_module_is_exported_again_after_its_weights_change():
    net = tiny_net()
    occ = Occlusion(net)
    before = occ.attribute(X, **WINDOW)
    with torch.no_grad():
        net[0].weight.mul_(2.0)  # in place: the module's tensors, a new version
    after = occ.attribute(X, **WINDOW)
    assert torch.allclose(after, captum(net, X, **WINDOW), atol=1e-5)
    assert not torch.allclose(before, after)


def test_training_mode_matters_only_where_a_layer_computes_differently():
    """Captum's test models are never put in eval mode: without BatchNorm or dropout, training
    mode computes as eval mode does, and runs."""
    out = Occlusion(tiny_net().train()).attribute(X, **WINDOW)
    assert torch.allclose(out, captum(NET, X, **WINDOW), atol=1e-5)
    with pytest.raises(UnsupportedArgumentError, match=r"1 \(Dropout\) is in training mode"):
        Occlusion(nn.Sequential(NET, nn.Dropout()).train()).attribute(X, **WINDOW)


def test_a_model_for_other_inputs_is_a_shape_error(tmp_path):
    with pytest.raises(ShapeError, match="inputs: model tiny takes N x 3 x 8 x 8"):
        Occlusion(load_model(onnx_file(NET, tmp_path))).attribute(
            np.zeros((1, 3, 9, 8), np.float32), **WINDOW)


# --- Captum's argument errors, with Captum's messages -------------------------------------------


CAPTUM_ERRORS = {
    "too few window dimensions": dict(sliding_window_shapes=((1, 2),)),
    "too few stride dimensions": dict(sliding_window_shapes=(3, 2, 2), strides=(1, 2)),
    "stride larger than the window": dict(sliding_window_shapes=((3, 1, 2),), strides=2),
    "window larger than the input": dict(sliding_window_shapes=(3, 9, 2)),
    "window over more channels than the input": dict(sliding_window_shapes=(4, 1, 1)),
    "perturbations_per_eval 0": dict(sliding_window_shapes=(3, 2, 2), perturbations_per_eval=0),
    "target list of the wrong length": dict(sliding_window_shapes=(3, 2, 2), target=[0]),
}


@pytest.mark.parametrize("case", CAPTUM_ERRORS)
def test_captum_argument_errors_are_captums(case):
    """Each raises a CaptumArgumentError (a KryptonError, and an AssertionError as Captum's
    asserts are) whose message is Captum's."""
    kw = dict(target=0) | CAPTUM_ERRORS[case]
    with pytest.raises(AssertionError) as theirs:
        captum(NET, X, **kw)
    with pytest.raises(CaptumArgumentError) as ours:
        Occlusion(NET).attribute(X, **kw)
    assert isinstance(ours.value, KryptonError)
    assert _words(ours.value) == _words(theirs.value)


def _words(exc) -> str:
    """A message without its spacing and shape spelling (torch.Size([1, 2]) vs (1, 2))."""
    return "".join(str(exc).replace("torch.Size([", "(").replace("])", ")").split())


@pytest.mark.parametrize("target, match", [(3, "out of range"), ([0, 7], "out of range"),
                                           ("a", "Target type")])
def test_bad_targets_are_krypton_errors(target, match):
    with pytest.raises(KryptonError, match=match):
        Occlusion(NET).attribute(X, sliding_window_shapes=(3, 2, 2), target=target)


def test_baselines_that_do_not_broadcast_are_refused():
    with pytest.raises(KryptonError, match=r"baselines of shape \(3, 2, 2\) do not broadcast"):
        Occlusion(NET).attribute(X, sliding_window_shapes=(3, 2, 2), target=0,
                                 baselines=torch.zeros(3, 2, 2))


# --- what the engine does not run ---------------------------------------------------------------


def _refusals():
    net1 = tiny_net(1)
    x1 = torch.from_numpy(RNG.normal(size=(2, 1, 8, 8)).astype(np.float32))
    two_ins = torch.from_numpy(RNG.normal(size=(2, 3)).astype(np.float32))
    linear = nn.Sequential(nn.Linear(3, 2)).eval()

    class Two(nn.Module):
        def forward(self, a, b):
            return NET(a) + NET(b)

    class Scaled(nn.Module):
        def forward(self, a, k):
            return NET(a) * k

    return {
        "inputs": (Two().eval(), (X, X),
                   dict(sliding_window_shapes=((3, 4, 4), (3, 4, 4)), strides=(4, 4))),
        "additional_forward_args": (Scaled().eval(), X, dict(
            sliding_window_shapes=(3, 4, 4), strides=4, additional_forward_args=(2.0,))),
        "inputs ": (linear, two_ins, dict(sliding_window_shapes=(1,))),
        "sliding_window_shapes": (tiny_net(3), X, dict(sliding_window_shapes=(1, 4, 4),
                                                       strides=(1, 4, 4))),
        "forward_func": (lambda x: NET(x), X, dict(sliding_window_shapes=(3, 4, 4), strides=4)),
        "forward_func ": (nn.Sequential(nn.BatchNorm2d(3), tiny_net()).train(), X,
                          dict(sliding_window_shapes=(3, 4, 4), strides=4)),
        "sliding_window_shapes ": (net1, x1, dict(sliding_window_shapes=(1, 2, 2))),
    }


REFUSALS = _refusals()


@pytest.mark.parametrize("argument", REFUSALS)
def test_refusals_name_the_argument_and_fall_back_to_captum(argument):
    forward, x, kw = REFUSALS[argument]
    kw = dict(target=0) | kw
    if argument == "sliding_window_shapes ":  # the control: one channel, a full window runs
        Occlusion(forward).attribute(x, **kw)
        return
    with pytest.raises(UnsupportedArgumentError, match=f"^{argument.strip()}: ") as refusal:
        Occlusion(forward).attribute(x, **kw)
    assert refusal.value.argument == argument.strip()
    occ = Occlusion(forward, fallback="captum")
    ours, theirs = occ.attribute(x, **kw), captum(forward, x, **kw)
    for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (ours, theirs))):
        assert torch.equal(a, b)
    assert occ.stats["plan"] == "captum" and occ.windows is None


def test_fallback_hands_numpy_arrays_to_captum_as_tensors():
    linear = nn.Sequential(nn.Linear(3, 2)).eval()
    x = RNG.normal(size=(2, 3)).astype(np.float32)
    out = Occlusion(linear, fallback="captum").attribute(x, sliding_window_shapes=(1,), target=1)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, captum(linear, torch.from_numpy(x),
                                           sliding_window_shapes=(1,), target=1).numpy())


def test_fallback_cannot_hand_a_kryptondb_model_to_captum(tmp_path):
    with pytest.raises(KryptonError, match="Captum runs only Python callables"):
        Occlusion(load_model(onnx_file(NET, tmp_path)), fallback="captum").attribute(
            np.zeros((1, 3, 8, 8), np.float32), sliding_window_shapes=(1, 2, 2), target=0)


def test_an_export_that_fails_is_a_model_import_error():
    class Data(nn.Module):  # returns a dict: not an ONNX graph
        def forward(self, x):
            return {"y": NET(x)}

    with pytest.raises(ModelImportError, match="forward_func"):
        Occlusion(Data().eval()).attribute(X, **WINDOW)


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, error, match", [
    (dict(fallback="torch"), KryptonError, "fallback must be None or 'captum'"),
    (dict(backend="tpu"), BackendError, "no backend 'tpu'"),
    (dict(approximate={"tau": 0.5, "speed": 2}), KryptonError, "approximate must be a dict"),
    (dict(approximate={"drilldown": 1.5}), KryptonError, r"drilldown'\] must be in \(0, 1\)"),
])
def test_bad_options_are_refused_when_made(options, error, match):
    with pytest.raises(error, match=match):
        Occlusion(NET, **options)


def test_bad_plans_are_refused():
    with pytest.raises(KryptonError, match="plan must be one of naive, incremental"):
        Occlusion(NET, plan="fast").attribute(X, **WINDOW)
    with pytest.raises(UnsupportedArgumentError, match="^approximate: tau"):
        Occlusion(NET, plan="naive", approximate={"tau": 0.5}).attribute(X, **WINDOW)


def test_approximate_tau_one_is_exact_and_drill_down_runs_two_stages():
    kw = dict(sliding_window_shapes=(3, 4, 4), strides=(1, 1, 1), target=1)
    exact = captum(NET, X, **kw)
    assert torch.allclose(Occlusion(NET, approximate={"tau": 1.0}).attribute(X, **kw), exact,
                          atol=1e-5)
    occ = Occlusion(NET, approximate={"tau": 0.5, "drilldown": 0.25})
    rough = occ.attribute(X, **kw)
    assert rough.shape == exact.shape and occ.stats["stage2"] < occ.stats["rows"]
    assert occ.stats["coarse_strides"] == (3, 3)  # KQL's coarse stride, within the window


def test_show_progress_draws_a_bar(capsys):
    Occlusion(NET).attribute(X, show_progress=True, **WINDOW)  # quick: nothing drawn, no error


def test_attribute_future_is_not_implemented_as_in_captum():
    with pytest.raises(NotImplementedError):
        Occlusion(NET).attribute_future()

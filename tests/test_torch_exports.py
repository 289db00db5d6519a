"""Modern CNNs as PyTorch exports them (``torch.onnx.export(..., dynamo=False)``): a
ConvNeXt-style net (depthwise 7x7, LayerNorm over the channels behind channels-last permutes and
as ConvNeXt's channels-first LayerNorm2d, GELU), a small UNet (ConvTranspose of kernels 2, 3 and
4 with pads and output padding, Upsample nearest and bilinear, F.interpolate to a size, skip
concats) and a net with ZeroPad2d and F.pad. At several opsets each file imports, equals
onnxruntime running the file itself on both backends, and its incremental occlusion heatmap
equals the naive one.

torch is optional for the package: without it these tests skip."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kryptondb.graph.ir import Op
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.model.model import load_model
from kryptondb.obe.grid import Grid
from kryptondb.obe.scan import scan
from kryptondb.obe.spec import ScanSpec
from kryptondb.obe.strategy import Incremental, Naive, Runtime
from kryptondb.runtime.backends import get_backend

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
TOLERANCE = 1e-5
BACKENDS = ("numpy", "onnxruntime")


class LayerNorm2d(nn.Module):
    """ConvNeXt's channels-first LayerNorm, written out (a ReduceMean chain over axis 1)."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.rand(c) + 0.5), \
            nn.Parameter(torch.randn(c) * 0.1), eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Block(nn.Module):
    """ConvNeXt's block: dwconv 7x7, permute, LayerNorm, Linear, GELU (erf or tanh), Linear,
    scale, permute."""

    def __init__(self, c, approximate="none"):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.act = nn.GELU(approximate=approximate)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.stem_norm = nn.LayerNorm(8, eps=1e-6)
        self.b1 = Block(8)
        self.down = nn.Sequential(LayerNorm2d(8), nn.Conv2d(8, 16, 2, 2))
        self.b2 = Block(16, approximate="tanh")
        self.norm, self.head = nn.LayerNorm(16), nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem_norm(self.stem(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.b2(self.down(self.b1(x)))
        return self.head(self.norm(x.mean((2, 3))))


def _conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    """Three levels; decoders by ConvTranspose (k2 s2; k3 s2 p1 output_padding 1; k4 s2 p1),
    Upsample (bilinear, nearest) and F.interpolate to the skip's size, joined by concats;
    ends in per-class logits averaged over the map (what an occlusion scores)."""

    def __init__(self, cin=1, classes=3):
        super().__init__()
        self.e1, self.e2, self.e3 = _conv(cin, 8), _conv(8, 12), _conv(12, 16)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(16, 12, 2, 2)
        self.d2 = _conv(24, 12)
        self.up1 = nn.ConvTranspose2d(12, 8, 3, 2, padding=1, output_padding=1)
        self.d1 = _conv(16 + 12, 8)
        self.up4 = nn.ConvTranspose2d(8, 4, 4, 2, padding=1)
        self.bilinear = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.nearest = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Conv2d(4 + 8 + 8, classes, 1)

    def forward(self, x):
        a = self.e1(x)
        b = self.e2(self.pool(a))
        c = self.e3(self.pool(b))
        d = self.d2(torch.cat([self.up2(c), b], 1))
        e = self.d1(torch.cat([self.up1(d), a, self.bilinear(d)], 1))
        small = self.pool(e)
        f = torch.cat([self.up4(small), self.nearest(small),
                       F.interpolate(self.pool(small), size=e.shape[2:], mode="bilinear")], 1)
        return self.out(f).mean((2, 3))


class Padded(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 2, 0, 3))
        self.c1, self.c2 = nn.Conv2d(3, 6, 3), nn.Conv2d(6, 4, 3, 2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.c1(F.pad(self.pad(x), (2, 2, 1, 1), value=0.5)))
        return self.fc(self.c2(y).mean((2, 3)))


# name -> (module, input shape, opsets to export at (None: torch's default), IR ops it must
# hold, a feature map compared besides the output: a few pooled logits alone hide errors)
NETS = {
    "convnext": (ConvNeXt, (1, 3, 64, 64), (13, 17, None), {Op.LAYERNORM, Op.GELU},
                 "/b2/Add_output_0"),
    "unet": (UNet, (1, 1, 48, 64), (13, None), {Op.CONV_TRANSPOSE, Op.RESIZE, Op.CONCAT},
             "/out/Conv_output_0"),
    "zeropad": (Padded, (1, 3, 12, 14), (11, None), {Op.PAD}, "/c2/Conv_output_0"),
}
CASES = [pytest.param(name, opset, id=f"{name}-opset{opset or 'default'}")
         for name, (_, _, opsets, _, _) in NETS.items() for opset in opsets]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(name, opset) -> (path of the exported file, an input)."""
    folder, made = tmp_path_factory.mktemp("torch_exports"), {}

    def get(name, opset):
        if (name, opset) not in made:
            cls, shape = NETS[name][:2]
            torch.manual_seed(0)
            net = cls().eval()
            for m in net.modules():  # running statistics away from 0 and 1: BN must matter
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 1.5)
            x = torch.randn(shape)
            path = folder / f"{name}_{opset or 'default'}.onnx"
            kwargs = {} if opset is None else {"opset_version": opset}
            torch.onnx.export(net, x, str(path), dynamo=False, input_names=["x"],
                              output_names=["y"], **kwargs)
            made[name, opset] = (str(path), x.numpy())
        return made[name, opset]

    return get


def _onnxruntime(path, x, probe: str) -> list[np.ndarray]:
    """The file's output and the ``probe`` tensor, as onnxruntime computes them."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    model.graph.output.append(onnx.helper.make_tensor_value_info(probe, onnx.TensorProto.FLOAT,
                                                                 None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["y", probe], {"x": x})


@pytest.mark.parametrize("name, opset", CASES)
def test_export_imports_and_equals_onnxruntime(exported, measure, name, opset):
    path, x = exported(name, opset)
    graph = load_model(path).graph
    assert NETS[name][3] <= {n.op for n in graph.nodes}, "a pattern was not recognised"
    probe = NETS[name][4]
    refs = _onnxruntime(path, x, probe)
    for backend in BACKENDS:
        outs = get_backend(backend).run(graph, {graph.inputs[0]: x}, [graph.output, probe])
        for label, ours, ref in zip(("output", "map"), (outs[graph.output], outs[probe]), refs):
            err = measure(f"torch {name} opset {opset or 'default'} {label} {backend}",
                          ours.reshape(ref.shape), ref)
            assert err <= TOLERANCE, f"{backend} {label}: relative error {err:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, patch, stride", [("convnext", 8, 6), ("unet", 6, 5),
                                                 ("zeropad", 3, 2)])
def test_incremental_heatmap_equals_naive(exported, measure, backend, name, patch, stride):
    path, x = exported(name, None)
    model = load_model(path)
    _, _, h, w = x.shape
    grid = Grid(h, w, patch, stride, "cut")  # border windows cut: regions of several sizes
    plan = IncrementalPlan(model.graph, grid.inside(grid.corners()), patch,
                           base_views(model.graph, x[0], get_backend("numpy")))
    assert NETS[name][3] <= {model.graph[k].op for k in plan.incremental}, "not incremental"
    spec = ScanSpec(x, grid, (0, 1, 2), 0.0, score="logit")
    naive = scan(spec, Naive(16), Runtime(model, get_backend(backend)))
    incremental = scan(spec, Incremental(16), Runtime(model, get_backend(backend)))
    err = measure(f"torch {name} heatmap {backend}", incremental, naive)
    assert err <= TOLERANCE, f"relative error {err:.2e}"


def test_explain_occlusion_incremental_equals_naive_on_a_registered_model(exported, measure):
    """The same through KQL: the ConvNeXt export registered, an image file explained."""
    import kryptondb

    path, _ = exported("convnext", None)
    image = os.path.join(os.path.dirname(kryptondb.__file__), "data", "chelsea.png")
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL cn FROM '{path}'")
    maps = [con.execute(f"EXPLAIN OCCLUSION OF IMAGE '{image}' USING MODEL cn PATCH 8 STRIDE 4 "
                        f"{how}").heatmap.probability for how in ("INCREMENTAL", "NAIVE")]
    assert measure("torch convnext EXPLAIN OCCLUSION", *maps) <= TOLERANCE

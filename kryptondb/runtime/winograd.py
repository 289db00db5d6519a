"""3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2016).

Each 2x2 output tile of a 3x3 convolution (stride 1, no padding: an incremental plan's
context holds its padding) comes from a 4x4 input tile d as A^T [(G g G^T) . (B^T d B)] A:
16 multiplies per channel pair where the direct form takes 36. Per layer the weights are
transformed once, U = G g G^T (16 x Cin x Cout); per call the tiles are transformed (NumPy,
memory-bound), the 16 products are 16 matrix multiplications (T x Cin) @ (Cin x Cout) over T
tiles of the batch at a time (``TILES``), and the output transform adds them back into 2x2
tiles.

With many channels this runs the layer 1.4-1.8x faster than onnxruntime's direct convolution
on one core (``bench/winograd.py``: 512 channels on 6x6 contexts, 15 vs 27 ms for 31 of them);
with fewer channels the transforms, which are memory-bound, cost about what the multiplies
save (128 channels: 1.03x, 64: 0.70x), so plans use it only from ``MIN_CHANNELS`` channels in
and out. Results differ from the direct form by float rounding (relative 4-5e-7 on random
layers: the transforms' coefficients are 0, +-1 and +-1/2).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from kryptondb.graph.ir import Graph, Node, Op
from kryptondb.runtime.base import SESSIONS, ort_options

# bench/winograd.py: 512 channels 1.57-1.75x, 256 1.07-1.38x, 128 1.03x, 64 0.70x
MIN_CHANNELS = 256
# tiles per product call (more where one context has more): a bounded working set, (16, 256,
# 512) floats in and out, 8 MB each, instead of the whole batch's (85 MB each for 32 20x20
# contexts, 1.37x where it is 1.59x in calls of 256)
TILES = 256

_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])


def eligible(node: Node, graph: Graph, min_channels: int | None = None) -> bool:
    """A 3x3 convolution with stride 1, dilation 1, one group and at least ``min_channels``
    (default MIN_CHANNELS) channels in and out."""
    if node.op is not Op.CONV or node.attr("kernel") != (3, 3):
        return False
    if node.attr("stride") != (1, 1) or tuple(node.attr("dilation", (1, 1))) != (1, 1):
        return False
    cout, cin = graph.param(node, 0).shape[:2]
    least = MIN_CHANNELS if min_channels is None else min_channels
    return node.attr("groups", 1) == 1 and min(cin, cout) >= least


def wanted() -> bool:
    """False where the environment variable KRYPTONDB_WINOGRAD is 0 (to compare)."""
    return os.environ.get("KRYPTONDB_WINOGRAD") != "0"


def enabled(backend) -> bool:
    """Whether plans on ``backend`` run eligible layers this way: backends that say so
    (onnxruntime), unless KRYPTONDB_WINOGRAD is 0."""
    return bool(getattr(backend, "winograd", False)) and wanted()


def weights(w: np.ndarray) -> np.ndarray:
    """U = G g G^T per channel pair, laid out (16, Cin, Cout) for the products (computed in
    float64, stored float32)."""
    u = np.einsum("ai,ocij,bj->abco", _G, w.astype(np.float64), _G, optimize=True)
    return np.ascontiguousarray(u.reshape(16, w.shape[1], w.shape[0]), dtype=np.float32)


def context_tiles(h: int, w: int) -> int:
    """2x2 output tiles covering one h x w context's (h - 2) x (w - 2) outputs."""
    return ((h - 1) // 2) * ((w - 1) // 2)


def input_tiles(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(16, B * th * tw, C): B^T d B for every 4x4 tile (stride 2) of the channels-last
    contexts x (B, H, W, C), the map zero-extended to whole tiles; and (th, tw)."""
    b, h, w, c = x.shape
    th, tw = (h - 1) // 2, (w - 1) // 2  # 2x2 output tiles covering (h - 2) x (w - 2)
    if 2 * th + 2 > h or 2 * tw + 2 > w:
        x = np.pad(x, ((0, 0), (0, 2 * th + 2 - h), (0, 2 * tw + 2 - w), (0, 0)))
    r = [x[:, i:i + 2 * th:2] for i in range(4)]  # tile row i of every tile: (B, th, W, C)
    rows = _b_transform(r)
    v = np.empty((4, 4, b, th, tw, c), np.float32)
    for a in range(4):
        cols = [rows[a][:, :, j:j + 2 * tw:2] for j in range(4)]
        _b_transform(cols, v[a])
    return v.reshape(16, b * th * tw, c), th, tw


def _b_transform(d: list[np.ndarray], out=None) -> list[np.ndarray]:
    """B^T applied along one tile axis: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3."""
    if out is None:
        return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
    np.subtract(d[0], d[2], out=out[0])
    np.add(d[1], d[2], out=out[1])
    np.subtract(d[2], d[1], out=out[2])
    np.subtract(d[1], d[3], out=out[3])
    return list(out)


def output(m: np.ndarray, b: int, th: int, tw: int, h: int, w: int,
           bias: np.ndarray) -> np.ndarray:
    """(B, Cout, h, w) from the products m (16, B * th * tw, Cout): A^T m A per tile (rows
    m0 + m1 + m2 and m1 - m2 - m3 along each axis), plus the bias."""
    m = m.reshape(4, 4, b, th, tw, -1)
    rows = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]  # (4, B, th, tw, Cout) each
    y = np.empty((b, th, 2, tw, 2, m.shape[-1]), np.float32)
    for a, s in enumerate(rows):
        np.add(s[0] + s[1], s[2], out=y[:, :, a, :, 0])
        np.subtract(s[1] - s[2], s[3], out=y[:, :, a, :, 1])
    y = y.reshape(b, 2 * th, 2 * tw, -1)[:, :h, :w].transpose(0, 3, 1, 2)
    out = np.empty(y.shape, np.float32)
    np.add(y, bias.reshape(1, -1, 1, 1), out=out)
    return out


class Winograd:
    """One layer's Winograd form: call it on channels-last contexts (B, H, W, Cin) for the
    layer's output (B, Cout, H - 2, W - 2). The 16 products run in one onnxruntime MatMul on
    one thread (an incremental plan runs a batch per core; NumPy's BLAS would start its own
    threads on each), one session per shape of weights, built on first use; the transformed
    weights too (a plan that only estimates its memory never makes them)."""

    def __init__(self, node: Node, graph: Graph):
        self.name = node.name
        self._w = graph.param(node, 0)
        self.cout, self.cin = self._w.shape[:2]
        self.bias = np.ascontiguousarray(graph.param(node, 1), dtype=np.float32)
        self._u: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def u(self) -> np.ndarray:
        """The transformed weights (16, Cin, Cout), made on first use."""
        if self._u is None:
            with self._lock:  # two workers must not both make 17 MB of them
                if self._u is None:
                    self._u = weights(self._w)
        return self._u

    @property
    def weight_bytes(self) -> int:
        return 4 * 16 * self.cin * self.cout

    def scratch_bytes(self, tiles: int) -> int:
        """What one call on ``tiles`` tiles holds besides its contexts and output, at most:
        the tiles transformed (16 floats per channel in) and the row pass before (8), the
        products (16 per channel out), the output transform's rows (8) and tiles (4)."""
        return 4 * tiles * (24 * self.cin + 28 * self.cout)

    def tiles(self, h: int, w: int) -> int:
        """Tiles per call on contexts of h x w: ``TILES``, or one context's where larger."""
        return max(TILES, context_tiles(h, w))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        b, h, w, _ = x.shape
        out = np.empty((b, self.cout, h - 2, w - 2), np.float32)
        step = max(1, TILES // max(1, context_tiles(h, w)))
        products = session(self.cin, self.cout)
        for s in range(0, b, step):  # a few contexts at a time (TILES)
            part = x[s:s + step]
            v, th, tw = input_tiles(part)
            m = products.run(None, {"v": v, "u": self.u})[0]
            out[s:s + step] = output(m, len(part), th, tw, h - 2, w - 2, self.bias)
        return out


_LOCK = threading.Lock()
_SESSIONS: dict[tuple[int, int], object] = {}


def session(cin: int, cout: int):
    """The products' session for weights of (cin, cout) channels (shared by every layer, plan
    and thread: onnxruntime runs a session from several threads at once)."""
    if (cin, cout) in _SESSIONS:
        return _SESSIONS[cin, cout]
    with _LOCK:  # two workers must not build the same session twice
        if (cin, cout) not in _SESSIONS:
            _SESSIONS[cin, cout] = _matmul_session(cin, cout)
        return _SESSIONS[cin, cout]


def _matmul_session(cin: int, cout: int):
    """An onnxruntime session computing v (16, T, cin) @ u (16, cin, cout) on one thread. u is
    fed at each run, not an initializer: as one, the session would hold two more copies of it
    (the model's and a packed one: 34 MB for 512 channels) for no measurable gain."""
    import onnx  # ~55 ms to import: only a plan's first Winograd layer builds a session
    import onnxruntime as ort  # ~25 ms, likewise
    from onnx import TensorProto, helper  # part of onnx, imported above

    t = time.perf_counter()
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, [16, "t", cin])
    u = helper.make_tensor_value_info("u", TensorProto.FLOAT, [16, cin, cout])
    m = helper.make_tensor_value_info("m", TensorProto.FLOAT, [16, "t", cout])
    graph = helper.make_graph([helper.make_node("MatMul", ["v", "u"], ["m"])], "winograd",
                              [v, u], [m])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    sess = ort.InferenceSession(model.SerializeToString(), ort_options(1, spinning=False),
                                providers=["CPUExecutionProvider"])
    SESSIONS.add(time.perf_counter() - t)
    return sess

"""3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3) and F(4x4, 3x3) (Lavin and
Gray, 2016).

Each m x m output tile of a 3x3 convolution (stride 1, no padding: an incremental plan's
context holds its padding) comes from an n x n input tile d (n = m + 2) as
A^T [(G g G^T) . (B^T d B)] A: n^2 multiplies per channel pair where the direct form takes
9 m^2 (F(2x2): 16 for 36; F(4x4): 36 for 144). Per layer and form the weights are transformed
once, U = G g G^T (n^2 x Cin x Cout); per call the tiles are transformed (NumPy,
memory-bound), the n^2 products are matrix multiplications (T x Cin) @ (Cin x Cout) over T
tiles of the batch at a time (``call_tiles``), and the output transform adds them back into
m x m tiles. ``form`` picks F(4x4, 3x3) where its tiles cover the outputs as tightly as
F(2x2, 3x3)'s (7x7 outputs: 2x2 tiles of 4x4 where F(2x2) needs 4x4 of 2x2).

With many channels this runs the layer 1.4-1.8x faster than onnxruntime's direct convolution
on one core (``bench/winograd.py``: 512 channels on 6x6 contexts, 15 vs 29 ms for 31 of them;
on 9x9, by F(4x4), 87 vs 146 ms for 64); with fewer channels the transforms, which are
memory-bound, cost about what the multiplies save (128 channels: 0.85-1.03x, 64: 0.5-0.7x),
so plans use it only from ``MIN_CHANNELS`` channels in and out. Results differ from the direct
form by float rounding (relative 4-5e-7 of the output's largest magnitude in F(2x2), whose
coefficients are 0, +-1 and +-1/2; 2.5-3.3e-6 in F(4x4)).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from kryptondb.graph.ir import Graph, Node, Op
from kryptondb.runtime.base import SESSIONS, ort_options

# bench/winograd.py: 512 channels 1.57-1.75x, 256 1.07-1.38x, 128 1.03x, 64 0.70x
MIN_CHANNELS = 256
# F(2x2) tiles per product call (more where one context has more): a bounded working set,
# (16, 256, 512) floats in and out, 8 MB each, instead of the whole batch's (85 MB each for 32
# 20x20 contexts, 1.37x where it is 1.59x in calls of 256); F(4x4): ``call_tiles``
TILES = 256

@dataclass(frozen=True, eq=False)
class Form:
    """Winograd's F(m x m, 3x3): an output tile of m x m from an (m + 2) x (m + 2) input tile
    d as A^T [(G g G^T) . (B^T d B)] A, (m + 2)^2 multiplies per channel pair."""

    m: int
    bt: np.ndarray  # B^T, (n, n) with n = m + 2
    g: np.ndarray  # G, (n, 3)
    at: np.ndarray  # A^T, (m, n)

    @property
    def n(self) -> int:
        return self.m + 2

    @property
    def fewer(self) -> float:
        """How many times fewer multiplies than the direct form: 9 m^2 / n^2."""
        return 9 * self.m ** 2 / self.n ** 2

    def tiles(self, h: int, w: int) -> tuple[int, int]:
        """m x m output tiles covering an h x w context's (h - 2) x (w - 2) outputs."""
        return -(-(h - 2) // self.m), -(-(w - 2) // self.m)


# F(2x2, 3x3): points 0, 1, -1 and infinity (Lavin and Gray)
F2 = Form(2, np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float),
          np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]),
          np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float))
# F(4x4, 3x3): points 0, -1, 1, 1/2, -2 and infinity, which round less than Lavin and Gray's
# 0, +-1, +-2 (a 512-channel layer on ReLU'd inputs: 3.9e-6 of the output's largest magnitude
# against 1.0e-5, F(2x2, 3x3) 6.8e-7; bench/winograd.py's random inputs: 2.5-3.3e-6)
F4 = Form(4, np.array([[1, -1.5, -2, 1.5, 1, 0], [0, 1, -2.5, .5, 1, 0], [0, -1, .5, 2.5, 1, 0],
                       [0, -2, -1, 2, 1, 0], [0, .5, -1, -.5, 1, 0], [0, 1, -1.5, -2, 1.5, 1]]),
          np.array([[1, 0, 0], [-1 / 3, 1 / 3, -1 / 3], [1 / 3, 1 / 3, 1 / 3],
                    [-16 / 15, -8 / 15, -4 / 15], [1 / 15, -2 / 15, 4 / 15], [0, 0, 1]]),
          np.array([[1, 1, 1, 1, 1, 0], [0, -1, 1, .5, -2, 0], [0, 1, 1, .25, 4, 0],
                    [0, -1, 1, .125, -8, 1]]))


for _f in (F2, F4):
    for _a in (_f.bt, _f.g, _f.at):
        _a.setflags(write=False)


def form(h: int, w: int) -> Form:
    """The form for h x w contexts: F(4x4, 3x3) where its tiles cover the outputs as tightly as
    F(2x2, 3x3)'s (4k - 1 or 4k outputs a side: 1.78x fewer multiplies) from 7 outputs a side,
    else F(2x2, 3x3). Measured on one core (bench/winograd.py): 512 channels on 9x9 contexts
    1.3-1.4x, 256 on 13x13 1.2-1.3x; on 6x6 (4x4 outputs) its products are too short to gain
    (0.90-1.05x) what its weights, 2.25x as large, cost in memory."""
    return F4 if all(s - 2 >= 7 and (s - 2) % 4 in (0, 3) for s in (h, w)) else F2


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


def weights(w: np.ndarray, f: Form = F2) -> np.ndarray:
    """U = G g G^T per channel pair, laid out (n^2, Cin, Cout) for the products (computed in
    float64, stored float32)."""
    u = np.einsum("ai,ocij,bj->abco", f.g, w.astype(np.float64), f.g, optimize=True)
    return np.ascontiguousarray(u.reshape(f.n ** 2, w.shape[1], w.shape[0]), dtype=np.float32)


def call_tiles(f: Form) -> int:
    """Tiles per product call in form ``f``: ``TILES`` of F(2x2, 3x3); two thirds as many of
    F(4x4, 3x3), 2.25x as large (170: 1.5x F(2x2)'s scratch, within 4% of 256's speed; 113,
    F(2x2)'s scratch, was 10-15% slower, measured in turns on 512 and 256 channels)."""
    return TILES if f.m == 2 else TILES * 2 // 3


def contexts_per_call(f: Form, h: int, w: int) -> int:
    """Contexts of h x w per product call in form ``f``: as many as ``call_tiles`` holds, at
    least one."""
    return max(1, call_tiles(f) // math.prod(f.tiles(h, w)))


def input_tiles(x: np.ndarray, f: Form = F2) -> tuple[np.ndarray, int, int]:
    """(n^2, B * th * tw, C): B^T d B for every n x n tile (stride m) of the channels-last
    contexts x (B, H, W, C), the map zero-extended to whole tiles; and (th, tw)."""
    b, h, w, c = x.shape
    th, tw = f.tiles(h, w)
    if f.m * th + 2 > h or f.m * tw + 2 > w:
        x = np.pad(x, ((0, 0), (0, f.m * th + 2 - h), (0, f.m * tw + 2 - w), (0, 0)))
    rows = np.empty((f.n, b, th, x.shape[2], c), np.float32)
    _combine(f.bt, [x[:, i:i + f.m * th:f.m] for i in range(f.n)], rows)
    v = np.empty((f.n, f.n, b, th, tw, c), np.float32)
    for a in range(f.n):
        _combine(f.bt, [rows[a][:, :, j:j + f.m * tw:f.m] for j in range(f.n)], v[a])
    return v.reshape(f.n ** 2, b * th * tw, c), th, tw


def _combine(mat: np.ndarray, d: list, out) -> None:
    """out[a] = sum over k of mat[a, k] d[k], for each row a of ``mat``: one pass per term
    (two for a coefficient other than +-1), the first two terms in one where they can be."""
    scratch = None
    for a, row in enumerate(mat):
        terms = sorted(((float(c), d[k]) for k, c in enumerate(row) if c), key=lambda t: t[0] != 1)
        (c0, x0), rest = terms[0], terms[1:]
        if c0 == 1 and rest and abs(rest[0][0]) == 1:
            (np.add if rest[0][0] == 1 else np.subtract)(x0, rest[0][1], out=out[a])
            rest = rest[1:]
        elif c0 == 1:
            np.copyto(out[a], x0)
        else:
            np.multiply(x0, np.float32(c0), out=out[a])
        for c, x in rest:
            if abs(c) == 1:
                (np.add if c == 1 else np.subtract)(out[a], x, out=out[a])
                continue
            scratch = np.empty(out[a].shape, np.float32) if scratch is None else scratch
            np.multiply(x, np.float32(c), out=scratch)
            np.add(out[a], scratch, out=out[a])


def output(m: np.ndarray, b: int, th: int, tw: int, h: int, w: int, bias: np.ndarray,
           f: Form = F2) -> np.ndarray:
    """(B, Cout, h, w) from the products m (n^2, B * th * tw, Cout): A^T m A per tile, plus
    the bias."""
    m = m.reshape(f.n, f.n, b, th, tw, -1)
    y = np.empty((b, th, f.m, tw, f.m, m.shape[-1]), np.float32)
    rows = np.empty((f.n, b, th, tw, m.shape[-1]), np.float32)  # one output row of tiles
    for i in range(f.m):
        _combine(f.at[i:i + 1], list(m), [rows])  # (n, B, th, tw, C): A^T's row i
        _combine(f.at, list(rows), [y[:, :, i, :, j] for j in range(f.m)])
    y = y.reshape(b, f.m * th, f.m * tw, -1)[:, :h, :w].transpose(0, 3, 1, 2)
    out = np.empty(y.shape, np.float32)
    np.add(y, bias.reshape(1, -1, 1, 1), out=out)
    return out


class Winograd:
    """One layer's Winograd form: call it on channels-last contexts (B, H, W, Cin) for the
    layer's output (B, Cout, H - 2, W - 2), in the form for their size (``form``). The n^2
    products run in one onnxruntime MatMul on one thread (an incremental plan runs a batch per
    core; NumPy's BLAS would start its own threads on each), one session per shape, built on
    first use; the transformed weights too, per form (a plan that only estimates its memory
    never makes them)."""

    def __init__(self, node: Node, graph: Graph):
        self.name = node.name
        self._w = graph.param(node, 0)
        self.cout, self.cin = self._w.shape[:2]
        self.bias = np.ascontiguousarray(graph.param(node, 1), dtype=np.float32)
        self._u: tuple[Form, np.ndarray] | None = None
        self._lock = threading.Lock()

    def u(self, f: Form = F2) -> np.ndarray:
        """The transformed weights (n^2, Cin, Cout) of form ``f``, made on first use. One form's
        are kept: the other's, if made before, are dropped (a plan's step runs one form, and
        the memory estimate counts that one's; plans alternating forms make them again, ~10 ms
        for 512 channels)."""
        kept = self._u
        if kept is None or kept[0] is not f:
            with self._lock:  # two workers must not both make 17-38 MB of them
                kept = self._u
                if kept is None or kept[0] is not f:
                    kept = self._u = (f, weights(self._w, f))
        return kept[1]  # this call's: another thread may replace self._u meanwhile

    def weight_bytes(self, h: int, w: int) -> int:
        """The transformed weights calls on h x w contexts use."""
        return 4 * form(h, w).n ** 2 * self.cin * self.cout

    def scratch_bytes(self, h: int, w: int) -> int:
        """What one call on h x w contexts holds at once besides its contexts and output: the
        most of its three phases (``__call__`` frees each chunk's tiles and products before the
        next). Transforming the input: the contexts extended to whole tiles, the row pass and
        its scratch, the tiles transformed (n^2 floats per tile and channel) and their scratch;
        the products: the tiles and the products (n^2 per channel out); transforming the
        output: the products, one output row of tiles and its scratch (n each), the tiles
        (m^2), a column's scratch (1) and the chunk's output."""
        f = form(h, w)
        th, tw = f.tiles(h, w)
        step = contexts_per_call(f, h, w)
        t, wide, high = step * th * tw, f.m * tw + 2, f.m * th + 2
        pad = step * high * wide if high > h or wide > w else 0
        tiles_in = pad + (f.n + 1) * step * th * wide + (f.n ** 2 + 1) * t
        tiles_out = (f.n ** 2 + 2 * f.n + f.m ** 2 + 1) * t + step * (h - 2) * (w - 2)
        return 4 * max(tiles_in * self.cin, f.n ** 2 * t * (self.cin + self.cout),
                       tiles_out * self.cout)

    def __call__(self, x: np.ndarray, f: Form | None = None) -> np.ndarray:
        """The layer's output on contexts x, in form ``f`` (default: the form for their size)."""
        b, h, w, _ = x.shape
        f = f or form(h, w)
        out = np.empty((b, self.cout, h - 2, w - 2), np.float32)
        step = contexts_per_call(f, h, w)
        products, u = session(f.n ** 2, self.cin, self.cout), self.u(f)
        for s in range(0, b, step):  # a few contexts at a time (call_tiles)
            part = x[s:s + step]
            v, th, tw = input_tiles(part, f)
            m = products.run(None, {"v": v, "u": u})[0]
            del v  # freed before the output transform, as scratch_bytes counts
            out[s:s + step] = output(m, len(part), th, tw, h - 2, w - 2, self.bias, f)
            del m  # ... and before the next chunk's input transform
        return out


_LOCK = threading.Lock()
_SESSIONS: dict[tuple[int, int, int], object] = {}


def session(products: int, cin: int, cout: int):
    """The session of ``products`` matrix products on weights of (cin, cout) channels (shared
    by every layer, plan and thread: onnxruntime runs a session from several threads at once)."""
    key = (products, cin, cout)
    if key in _SESSIONS:
        return _SESSIONS[key]
    with _LOCK:  # two workers must not build the same session twice
        if key not in _SESSIONS:
            _SESSIONS[key] = _matmul_session(*key)
        return _SESSIONS[key]


def _matmul_session(products: int, cin: int, cout: int):
    """An onnxruntime session computing v (n^2, T, cin) @ u (n^2, cin, cout) on one thread. u
    is fed at each run, not an initializer: as one, the session would hold two more copies of
    it (the model's and a packed one: 34 MB for 512 channels and 16 products) for no
    measurable gain."""
    import onnx  # ~55 ms to import: only a plan's first Winograd layer builds a session
    import onnxruntime as ort  # ~25 ms, likewise
    from onnx import TensorProto, helper  # part of onnx, imported above

    t = time.perf_counter()
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, [products, "t", cin])
    u = helper.make_tensor_value_info("u", TensorProto.FLOAT, [products, cin, cout])
    m = helper.make_tensor_value_info("m", TensorProto.FLOAT, [products, "t", cout])
    graph = helper.make_graph([helper.make_node("MatMul", ["v", "u"], ["m"])], "winograd",
                              [v, u], [m])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    sess = ort.InferenceSession(model.SerializeToString(), ort_options(1, spinning=False),
                                providers=["CPUExecutionProvider"])
    SESSIONS.add(time.perf_counter() - t)
    return sess

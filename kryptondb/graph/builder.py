"""A small graph builder for the zoo: PyTorch-style layer calls named like torchvision modules,
so a state dict's keys find their tensors; layers a state dict does not cover get seeded weights.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from kryptondb.errors import CheckpointError
from kryptondb.graph.fold import bn_scale_shift, fold_batchnorm
from kryptondb.graph.ir import Graph, Node, Op, input_node, make_node
from kryptondb.graph.shapes import infer_shape


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _pads(v) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from one int, (h, w), or the four."""
    return tuple(v) if isinstance(v, (tuple, list)) and len(v) == 4 else _pair(v) * 2


class Builder:
    """Records nodes and weights; ``state`` (if given) must supply every named parameter.
    Seeded biases are zero (torchvision's init) unless ``bias_std`` asks for random offsets."""

    def __init__(self, name: str, input_shape, seed: int = 0,
                 state: Mapping[str, np.ndarray] | None = None, bias_std: float = 0.0):
        self.name, self.state, self.rng = name, state, np.random.default_rng(seed)
        self.bias_std = bias_std
        self.nodes: list[Node] = [input_node("input", tuple(input_shape))]
        self.shapes = {"input": tuple(input_shape)}
        self.weights: dict[str, np.ndarray] = {}
        self.used: set[str] = set()
        self._count = 0

    # -- weights ---------------------------------------------------------------------------
    def _param(self, key: str, shape, init) -> np.ndarray:
        if self.state is None:
            return np.asarray(init(shape), np.float32)
        if key not in self.state:
            raise CheckpointError(f"checkpoint for {self.name} lacks {key!r}")
        arr = np.asarray(self.state[key], np.float32)
        if arr.shape != tuple(shape):
            raise CheckpointError(f"checkpoint tensor {key!r} has shape {list(arr.shape)}, "
                                  f"{self.name} needs {list(shape)}")
        self.used.add(key)
        return arr

    def _he(self, shape):
        std = math.sqrt(2.0 / math.prod(shape[1:]))
        return self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def _add(self, node: Node) -> str:
        shape = infer_shape(node, [self.shapes[i] for i in node.inputs], self.weights)
        self.shapes[node.name] = tuple(shape)
        self.nodes.append(node)
        return node.name

    def _bias(self, shape):
        if not self.bias_std:
            return np.zeros(shape)
        return self.rng.normal(0.0, self.bias_std, shape)

    def _auto(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    # -- layers ----------------------------------------------------------------------------
    def conv(self, x, name, cout, k, stride=1, pad=0, groups=1, dilation=1, bias=False) -> str:
        kh, kw = _pair(k)
        pads = _pads(pad)
        cin = self.shapes[x][0]
        w = self._param(f"{name}.weight", (cout, cin // groups, kh, kw), self._he)
        b = self._param(f"{name}.bias", (cout,), self._bias) if bias else np.zeros(cout)
        self.weights[f"{name}.weight"], self.weights[f"{name}.bias"] = w, np.asarray(b, np.float32)
        return self._add(make_node(
            name, Op.CONV, [x], (f"{name}.weight", f"{name}.bias"), kernel=(kh, kw),
            stride=_pair(stride), pads=pads, dilation=_pair(dilation), groups=groups))

    def conv_transpose(self, x, name, cout, k, stride=1, pad=0, output_padding=0, groups=1,
                       dilation=1, bias=False) -> str:
        """torch.nn.ConvTranspose2d: weight (cin, cout / groups, kh, kw)."""
        kh, kw = _pair(k)
        cin = self.shapes[x][0]
        w = self._param(f"{name}.weight", (cin, cout // groups, kh, kw),
                        lambda s: self._he((s[1],) + s[:1] + s[2:]).transpose(1, 0, 2, 3))
        b = self._param(f"{name}.bias", (cout,), self._bias) if bias else np.zeros(cout)
        self.weights[f"{name}.weight"], self.weights[f"{name}.bias"] = w, np.asarray(b, np.float32)
        return self._add(make_node(
            name, Op.CONV_TRANSPOSE, [x], (f"{name}.weight", f"{name}.bias"), kernel=(kh, kw),
            stride=_pair(stride), pads=_pads(pad), dilation=_pair(dilation), groups=groups,
            output_padding=_pair(output_padding)))

    def resize(self, x, size=None, scale=None, mode="nearest", coord="asymmetric",
               nearest="floor", name=None) -> str:
        """Upsample (or shrink) to ``size`` (h, w), or by ``scale`` (output: input times
        scale, truncated); the coordinates use ``scale``, or output / input when only the
        size is given (ONNX Resize)."""
        _, h, w = self.shapes[x]
        if size is None:
            sh, sw = (float(v) for v in _pair(scale))
            size = (int(np.float32(h) * np.float32(sh)), int(np.float32(w) * np.float32(sw)))
        elif scale is None:
            sh, sw = float(np.float32(size[0]) / h), float(np.float32(size[1]) / w)
        return self._add(make_node(name or self._auto("resize"), Op.RESIZE, [x],
                                   size=tuple(size), scale=(sh, sw), mode=mode, coord=coord,
                                   nearest=nearest))

    def layernorm(self, x, name, eps=1e-6) -> str:
        """LayerNorm over the channels at each pixel (ConvNeXt's LayerNorm2d)."""
        c = self.shapes[x][0]
        scale = self._param(f"{name}.weight", (c,), lambda s: self.rng.uniform(0.5, 1.5, s))
        shift = self._param(f"{name}.bias", (c,), lambda s: self.rng.normal(0, 0.1, s))
        self.weights[f"{name}.weight"], self.weights[f"{name}.bias"] = scale, shift
        return self._add(make_node(name, Op.LAYERNORM, [x], (f"{name}.weight", f"{name}.bias"),
                                   eps=float(eps)))

    def bn(self, x, name, eps=1e-5) -> str:
        c = self.shapes[x][0]
        gamma = self._param(f"{name}.weight", (c,), lambda s: self.rng.uniform(0.5, 1.0, s))
        beta = self._param(f"{name}.bias", (c,), lambda s: self.rng.normal(0, 0.1, s))
        mean = self._param(f"{name}.running_mean", (c,), lambda s: self.rng.normal(0, 0.1, s))
        var = self._param(f"{name}.running_var", (c,), lambda s: self.rng.uniform(0.5, 1.5, s))
        self.used.add(f"{name}.num_batches_tracked")
        scale, shift = bn_scale_shift(gamma, beta, mean, var, eps)
        self.weights[f"{name}.scale"], self.weights[f"{name}.shift"] = scale, shift
        return self._add(make_node(name, Op.BATCHNORM, [x], (f"{name}.scale", f"{name}.shift")))

    def conv_bn(self, x, conv_name, bn_name, cout, k, stride=1, pad=0, groups=1, eps=1e-5,
                act: str | None = "relu") -> str:
        y = self.conv(x, conv_name, cout, k, stride, pad, groups)
        y = self.bn(y, bn_name, eps)
        return self.act(y, act, f"{bn_name}.{act}") if act else y

    def act(self, x, kind: str, name: str | None = None) -> str:
        name = name or self._auto(kind)
        if kind == "relu":
            return self._add(make_node(name, Op.RELU, [x]))
        if kind == "relu6":
            return self._add(make_node(name, Op.CLIP, [x], min=0.0, max=6.0))
        if kind == "sigmoid":
            return self._add(make_node(name, Op.SIGMOID, [x]))
        if kind in ("gelu", "gelu_tanh"):
            return self._add(make_node(name, Op.GELU, [x],
                                       approximate="tanh" if kind == "gelu_tanh" else "none"))
        raise ValueError(f"unknown activation {kind!r}")

    def pool(self, x, kind, k, stride, pad=0, ceil=False, count_include_pad=True, name=None):
        """``pad``: one int, (h, w), or (top, left, bottom, right)."""
        op = Op.MAXPOOL if kind == "max" else Op.AVGPOOL
        extra = {"count_include_pad": int(count_include_pad)} if op is Op.AVGPOOL else {}
        return self._add(make_node(
            name or self._auto(f"{kind}pool"), op, [x], kernel=_pair(k), stride=_pair(stride),
            pads=_pads(pad), dilation=(1, 1), ceil_mode=int(ceil), **extra))

    def pad(self, x, pads, value=0.0, name=None) -> str:
        return self._add(make_node(name or self._auto("pad"), Op.PAD, [x], pads=_pads(pads),
                                   value=float(value)))

    def constant(self, x, kind, shape, name=None) -> str:
        """``x`` plus (kind "add") or times ("mul") a seeded constant of ``shape`` broadcast
        over it, e.g. an input-sized offset (C x H x W or 1 x H x W)."""
        name = name or self._auto(kind)
        init = (lambda s: self.rng.normal(0.0, 0.5, s)) if kind == "add" else \
            (lambda s: self.rng.uniform(0.5, 1.5, s))
        self.weights[f"{name}.const"] = self._param(f"{name}.const", shape, init)
        op = Op.ADD if kind == "add" else Op.MUL
        return self._add(make_node(name, op, [x], (f"{name}.const",)))

    def mul(self, a, b, name=None) -> str:
        return self._add(make_node(name or self._auto("mul"), Op.MUL, [a, b]))

    def channel_shuffle(self, x, groups, name=None) -> str:
        return self._add(make_node(name or self._auto("shuffle"), Op.CHANNEL_SHUFFLE, [x],
                                   groups=groups))

    def lrn(self, x, size, alpha=1e-4, beta=0.75, bias=1.0, name=None) -> str:
        return self._add(make_node(name or self._auto("lrn"), Op.LRN, [x], size=size,
                                   alpha=alpha, beta=beta, bias=bias))

    def global_pool(self, x, name="avgpool") -> str:
        return self._add(make_node(name, Op.GLOBAL_AVGPOOL, [x]))

    def add(self, a, b, name=None) -> str:
        return self._add(make_node(name or self._auto("add"), Op.ADD, [a, b]))

    def concat(self, xs, name=None) -> str:
        return self._add(make_node(name or self._auto("concat"), Op.CONCAT, xs, axis=0))

    def flatten(self, x, name="flatten") -> str:
        return self._add(make_node(name, Op.FLATTEN, [x]))

    def linear(self, x, name, cout) -> str:
        cin = self.shapes[x][0]
        w = self._param(f"{name}.weight", (cout, cin),
                        lambda s: self.rng.standard_normal(s, dtype=np.float32) * np.float32(cin ** -0.5))
        b = self._param(f"{name}.bias", (cout,), self._bias)
        self.weights[f"{name}.weight"], self.weights[f"{name}.bias"] = w, np.asarray(b, np.float32)
        return self._add(make_node(name, Op.GEMM, [x], (f"{name}.weight", f"{name}.bias")))

    def softmax(self, x, name="softmax") -> str:
        return self._add(make_node(name, Op.SOFTMAX, [x], axis=0))

    # -- result ----------------------------------------------------------------------------
    def build(self, output: str) -> Graph:
        if self.state is not None:
            unused = sorted(set(self.state) - self.used)
            if unused:
                raise CheckpointError(f"checkpoint for {self.name} has tensors the model does not "
                                      f"use: {', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}")
        nodes = fold_batchnorm(self.nodes, self.weights, keep=(output,))
        used = {p for n in nodes for p in n.params}
        return Graph.build(self.name, nodes, output, {k: self.weights[k] for k in used})

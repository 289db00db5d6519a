"""Load-time graph simplifications that change no result: BatchNorm folded into the conv before
it, dead nodes dropped."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

import numpy as np

from kryptondb.graph.ops import Node, Op


def bn_scale_shift(gamma, beta, mean, var, eps) -> tuple[np.ndarray, np.ndarray]:
    """Inference-form BatchNorm as y = x * scale + shift."""
    scale = (np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps))
    shift = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return scale.astype(np.float32), shift.astype(np.float32)


def fold_batchnorm(nodes: list[Node], weights: dict, keep: Iterable[str] = ()) -> list[Node]:
    """Fold each BATCHNORM into the CONV feeding it when that conv has no other user.

    The folded conv keeps the conv's name (the BatchNorm's, if that is a graph output) and later
    references to the BatchNorm are renamed to it.
    """
    keep = set(keep)
    users: dict[str, int] = {}
    for n in nodes:
        for i in n.inputs:
            users[i] = users.get(i, 0) + 1
    rename: dict[str, str] = {}
    out: dict[str, Node] = {}  # insertion-ordered, already renamed
    for n in nodes:
        n = replace(n, inputs=tuple(rename.get(i, i) for i in n.inputs))
        src = out.get(n.inputs[0]) if n.inputs else None
        if (n.op is Op.BATCHNORM and src is not None and src.op is Op.CONV
                and users.get(src.name) == 1 and src.name not in keep):
            name = n.name if n.name in keep else src.name
            rename[n.name] = name
            del out[src.name]
            out[name] = _folded(src, n, weights, name)
        else:
            out[n.name] = n
    return list(out.values())


def _folded(conv: Node, bn: Node, weights: dict, name: str) -> Node:
    scale, shift = weights[bn.params[0]], weights[bn.params[1]]
    w, b = weights[conv.params[0]], weights[conv.params[1]]
    wkey, bkey = f"{name}.weight+{bn.name}", f"{name}.bias+{bn.name}"
    weights[wkey] = (w * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
    weights[bkey] = (b * scale + shift).astype(np.float32)
    return Node(name, Op.CONV, conv.inputs, (wkey, bkey), conv.attrs)


def drop_dead(nodes: list[Node], outputs: Iterable[str]) -> list[Node]:
    """Remove nodes no output depends on."""
    live = set(outputs)
    for n in reversed(nodes):
        if n.name in live:
            live.update(n.inputs)
    return [n for n in nodes if n.name in live]

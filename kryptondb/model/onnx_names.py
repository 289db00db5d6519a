"""Tensor names KryptonDB keeps for itself, renamed where an imported graph uses them.

The names KryptonDB derives from a node's join a suffix with ``::``: a per-layer graph's inputs
(``conv::in0``), a channels-last output (``conv::nhwc``), a divisor map (``pool::factor``), the
constants an export adds (``conv::shape``), weight keys with their shape (``w::3x3``). An
imported tensor named that way could meet one (a legal ONNX graph whose Conv ``c`` is followed
by a Relu ``c::in0`` failed to plan incrementally: two nodes of one name). So a tensor whose
name holds ``::`` or ends in ``:`` is renamed on import, each ``:`` of it to ``_`` (``c::in0``
becomes ``c__in0``; ``_`` is appended while that name is taken). Single colons elsewhere
(TensorFlow's ``dense/BiasAdd:0``) stay as they are.
"""

from __future__ import annotations


def reserved(name: str) -> bool:
    """Whether ``name`` could meet a name KryptonDB derives."""
    return "::" in name or name.endswith(":")


def rename_reserved(graph) -> dict[str, str]:
    """Rename, in the ONNX GraphProto ``graph`` itself, every tensor whose name is ``reserved``;
    returns {new name: old name} (empty when none was)."""
    tensors = [graph.input, graph.output, graph.value_info, graph.initializer]
    names = {t for n in graph.node for t in (*n.input, *n.output)}
    names |= {v.name for group in tensors for v in group}
    names.discard("")  # an omitted optional input
    bad = sorted(n for n in names if reserved(n))
    if not bad:  # nearly every file: leave the graph untouched
        return {}
    taken, new = names - set(bad), {}
    for old in bad:
        name = old.replace(":", "_")
        while name in taken:
            name += "_"
        taken.add(name)
        new[old] = name
    for n in graph.node:
        for names_of in (n.input, n.output):
            for k, t in enumerate(names_of):
                if t in new:
                    names_of[k] = new[t]
    for group in tensors:
        for v in group:
            v.name = new.get(v.name, v.name)
    return {b: a for a, b in new.items()}

"""Where an incremental plan stops: the calibrated cost model's choice of frontier.

The layers an incremental plan can maintain form chains, one backend call per batch each (a
windowed or merging head and the pointwise layers fused after it). Keeping the first k chains
costs, per position: each chain's gather (bytes and per item), its layers on their regions at
the measured throughput of that region size (a large 3x3 convolution at Winograd's,
runtime/winograd.py), and its share of a call's overhead (a sibling that reads the context of
an earlier chain, its layers only: they share one gather and call, ivm/siblings.py); then the
frontier maps written into copies of the views, and every later layer in full in one call
(the suffix). ``choose`` predicts that for every k (0: nothing maintained) and keeps the
cheapest (the fewest chains within the calibration's ``tie`` of it), so a layer is maintained only where that is predicted cheaper than handing it, and
the rest of the network, to the full call. Seconds are one core's (``ivm/calibration.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kryptondb.format import fmt_time
from kryptondb.graph.ir import POINTWISE, WINDOWED, Graph, Node, Op
from kryptondb.graph.ops import UPSAMPLING
from kryptondb.graph.shapes import node_flops
from kryptondb.ivm import calibration
from kryptondb.ivm.calibration import Calibration
from kryptondb.ivm.cost import centre_regions, memo, prefix
from kryptondb.ivm.regions import FixedRegion, fix, read_in, spatial_params
from kryptondb.ivm.step_ops import pool_factor
from kryptondb.runtime import winograd as winograd_module

NO_SEGMENT = (Op.PAD, Op.RESIZE)  # steps computed by the gather itself, nothing fused after
# Predictions within a calibration's ``tie`` (2%) of the cheapest count as a tie, won by the
# fewest chains: near its optimum the cost is flat (ResNet18: 14 frontiers within 2.5%), and
# every chain adds what the model prices least well (a gather, a call, a worker contending for
# the cores). Nominal FLOP counts have no ties: every layer that saves any is maintained.


def is_pointwise(n: Node, graph: Graph) -> bool:
    """Ops whose changed output region is exactly their input's: fused after the op before them
    and fed its new values directly, with no gather."""
    if n.op is Op.CONV:  # a 1x1 convolution with stride 1 and no padding
        return (n.attr("kernel") == (1, 1) and n.attr("stride") == (1, 1)
                and not any(n.attr("pads")))
    if n.op in (Op.ADD, Op.MUL):  # one operand, and no constant that widens the map
        return len(n.inputs) == 1 and n.shape[1:] == graph[n.inputs[0]].shape[1:]
    return n.op in POINTWISE


def chains(graph: Graph, keep: set[str],
           regions: dict[str, FixedRegion] | None = None) -> list[tuple[Node, ...]]:
    """The kept layers as fused chains, in graph order: a head and the pointwise layers that
    are each the single user of the one before (never a graph output inside a chain); with
    ``regions``, a chain whose last layer feeds a residual Add that changes exactly the
    chain's region continues through the Add (``_through_merges``)."""
    users, out, fused = graph.consumers(), [], set()
    for n in graph.nodes:
        if n.name not in keep or n.op is Op.INPUT or n.name in fused:
            continue
        chain = [n]
        while True:
            nxt = users[chain[-1].name]
            if len(nxt) != 1 or nxt[0] not in keep:
                break
            cand = graph[nxt[0]]
            if not is_pointwise(cand, graph) or cand.name in graph.outputs:
                break
            chain.append(cand)
        if len(chain) > 1 and chain[0].op in NO_SEGMENT:
            chain = chain[:1]
        fused.update(c.name for c in chain[1:])
        out.append(tuple(chain))
    return out if regions is None else _through_merges(graph, out, regions)


def _through_merges(graph: Graph, every: list[tuple[Node, ...]],
                    regions: dict[str, FixedRegion]) -> list[tuple[Node, ...]]:
    """Chains joined across residual Adds: a chain whose last layer's single user heads
    another chain with an Add (the convolution before a skip connection joins) becomes
    that chain's beginning, at its place, where the Add changes the same rectangle as the
    chain's head for every query. The Add's other inputs are then read at that rectangle
    like a merge's (``merge_extras``), and one backend call computes convolution, Add and
    activation (onnxruntime fuses them) instead of two calls and a copy between them.
    The moved chain's layers have no other users, so no chain between needs them."""
    users = graph.consumers()
    at = {c[0].name: k for k, c in enumerate(every)}
    out: list = list(every)
    for j in range(len(out)):
        chain = out[j]
        nxt = users[chain[-1].name]
        k = at.get(nxt[0]) if len(nxt) == 1 else None
        if k is None or chain[0].op in NO_SEGMENT or chain[-1].name in graph.outputs or \
                len(out[k]) != len(every[k]) or not _same_rectangle(graph, chain[0], out[k][0],
                                                                     regions):
            continue  # (out[k] already took one chain in: a second cannot be linear)
        out[k], out[j] = chain + out[k], ()
    return [c for c in out if c]


def _same_rectangle(graph: Graph, head: Node, merge: Node, regions) -> bool:
    """``merge`` is an Add of same-shaped maps, with no constants, changing exactly the
    rectangle ``head`` recomputes for every query."""
    if merge.op is not Op.ADD or merge.params or len(merge.inputs) < 2 or \
            any(graph[i].shape != merge.shape for i in merge.inputs):
        return False
    a, b = regions.get(head.name), regions.get(merge.name)
    return a is not None and b is not None and (a.h, a.w) == (b.h, b.w) and \
        np.array_equal(a.y, b.y) and np.array_equal(a.x, b.x)


def merge_extras(chain) -> list[tuple[Node, str]]:
    """(merge, input) for every input a chain's fused Adds read besides the chain itself,
    each once, in chain order."""
    out, seen = [], {n.name for n in chain}
    for prev, n in zip(chain, chain[1:]):
        for i in n.inputs if n.op is Op.ADD and len(n.inputs) > 1 else ():
            if i != prev.name and i not in seen:
                seen.add(i)
                out.append((n, i))
    return out


def kind(n: Node, graph: Graph) -> str:
    """The calibration's kind of layer ``n``."""
    if n.op in (Op.CONV, Op.CONV_TRANSPOSE):
        cin = graph[n.inputs[0]].shape[0]
        if n.attr("groups", 1) > 1 and n.attr("groups") == cin:
            return "depthwise"
        return "conv1x1" if n.attr("kernel") == (1, 1) else "conv"
    if n.op in (Op.MAXPOOL, Op.AVGPOOL):
        return "pool"
    return "gemm" if n.op is Op.GEMM else "elementwise"


def flops(graph: Graph, n: Node) -> int:
    """FLOPs of ``n`` as the backend runs it: none for an elementwise op on a convolution's
    output, which onnxruntime fuses into the convolution (Conv+Relu/Clip/Add)."""
    if kind(n, graph) == "elementwise" and any(graph[i].op is Op.CONV for i in n.inputs):
        return 0
    return int(node_flops(n, [graph[i].shape for i in n.inputs], graph.weights))


def full_seconds(cal: Calibration, graph: Graph, n: Node) -> float:
    """One core's seconds of layer ``n`` on a whole map, per item."""
    if n.op is Op.INPUT:
        return 0.0
    pixels = n.shape[1] * n.shape[2] if len(n.shape) == 3 else 1
    return cal.seconds(kind(n, graph), flops(graph, n), pixels)


@dataclass(frozen=True)
class Cut:
    """The frontier the cost model chose: the first ``k`` chains maintained; ``seconds[j]``:
    one core's predicted seconds per position keeping the first j chains; ``naive``: the
    same for one full inference per position."""

    chains: tuple[tuple[Node, ...], ...]  # every chain the plan could maintain
    k: int
    seconds: tuple[float, ...]
    naive: float
    label: str  # what the predictions rest on (Calibration.label)
    tie: float  # Calibration.tie

    @property
    def keep(self) -> set[str]:
        return {n.name for c in self.chains[:self.k] for n in c}

    @property
    def predicted(self) -> float:
        return self.seconds[self.k]

    def reason(self) -> str | None:
        """Why the plan stops at chain k (None: it maintains every chain it could)."""
        if self.k == len(self.chains):
            return None
        here, later = self.predicted, min(self.seconds[self.k + 1:])
        if later < here:
            return (f"maintaining it and what follows saves at most "
                    f"{100 * (1 - later / here):.1f}% ({fmt_time(later)} per position against "
                    f"{fmt_time(here)} handing it and the rest of the network to one full call), "
                    f"within the {100 * self.tie:g}% the cost model counts as a tie ({self.label})")
        return (f"maintaining it too is predicted at {fmt_time(self.seconds[self.k + 1])} per "
                f"position, against {fmt_time(here)} handing it and the rest of the network to "
                f"one full call ({self.label})")


def chain_seconds(cal: Calibration, graph: Graph, chain, regions,
                  winograd: bool = False, shared: bool = False) -> float:
    """One core's seconds per position of a maintained chain: gather, compute, call share;
    with ``winograd`` (the plan runs it), an eligible head by Winograd where ``cal`` measured
    it (runtime/winograd.py); ``shared``: a sibling's gather and call run it (no cost of its
    own but its compute)."""
    head = chain[0]
    r: FixedRegion = regions[head.name]
    wino = winograd and cal.prices_winograd and winograd_pays(cal, graph, head, r)
    if shared:
        return sum(direct_seconds(cal, graph, n, r) for n in chain)
    if head.op in WINDOWED or head.op in UPSAMPLING or head.op is Op.PAD:
        src = graph[head.inputs[0]].shape
        ctx = read_in(head, r, src[1:])
        moved = [4 * src[0] * ctx.rh * ctx.rw]
    else:
        moved = [4 * graph[i].shape[0] * r.h * r.w for i in head.inputs]
    moved += [4 * graph[i].shape[0] * r.h * r.w for _, i in merge_extras(chain)]
    gather = sum(moved) / cal.gather_bytes_per_s + len(moved) * cal.gather_item_s
    compute = 0.0
    for n in chain:
        compute += winograd_seconds(cal, graph, n, r) if n is head and wino else \
            direct_seconds(cal, graph, n, r)
    calls = int(head.op not in NO_SEGMENT and not (len(chain) == 1 and not head.params and
                                                   head.op in (Op.ADD, Op.CONCAT)))
    calls += int(wino and len(chain) > 1)  # the nodes after a Winograd head: a second call
    return gather + compute + calls * cal.call_s / cal.batch


def shared_context(graph: Graph, chain) -> tuple | None:
    """What a chain's head gathers, decided by the heads alone: its input, window (kernel,
    stride, dilation, pads, ceil mode; a pointwise head's is its region), whether it is fed
    as it is or channels-last, and where it pads, its pad value. Heads with equal keys read
    the same input's changed region through the same window, so they gather the same
    context for every query, and run as one gather and call (ivm/siblings.py). None for a
    chain that never shares: more inputs, a fused residual Add, a transposed convolution's
    box, a Pad or Resize, side maps (spatial constants, an AveragePool's divisor map)."""
    head = chain[0]
    if len(head.inputs) != 1 or merge_extras(chain) or head.op in NO_SEGMENT or \
            head.op is Op.CONV_TRANSPOSE or any(spatial_params(n, graph.weights) for n in chain):
        return None
    if head.op not in WINDOWED or is_pointwise(head, graph):
        return (head.inputs[0], "region")
    if head.op is Op.AVGPOOL and pool_factor(head, graph) is not None:
        return None  # its step reads a divisor map
    pads, ceil = tuple(head.attr("pads")), bool(head.attr("ceil_mode", 0))
    value = -np.inf if head.op is Op.MAXPOOL else float(head.attr("value", 0.0))
    return (head.inputs[0], head.attr("kernel"), head.attr("stride"),
            head.attr("dilation", (1, 1)), pads, ceil, value if any(pads) or ceil else None)


def winograd_pays(cal: Calibration, graph: Graph, n: Node, r: FixedRegion) -> bool:
    """Whether a plan that can runs head ``n`` on its region by Winograd: an eligible layer,
    predicted faster so where ``cal`` measured Winograd (not on the smallest regions, whose
    whole 2x2 tiles are mostly waste), always where it did not."""
    if not winograd_module.eligible(n, graph):
        return False
    return not cal.prices_winograd or \
        winograd_seconds(cal, graph, n, r) < direct_seconds(cal, graph, n, r)


def direct_seconds(cal: Calibration, graph: Graph, n: Node, r: FixedRegion) -> float:
    """One core's seconds per position of layer ``n`` on its region, as onnxruntime runs it."""
    share = r.h * r.w / (n.shape[1] * n.shape[2])
    return cal.seconds(kind(n, graph), flops(graph, n) * share, r.h * r.w)


def winograd_seconds(cal: Calibration, graph: Graph, n: Node, r: FixedRegion) -> float:
    """One core's seconds per position of a 3x3 convolution head by Winograd: the direct
    form's FLOPs on the region grown to whole 2x2 tiles, at the calibration's Winograd rate for
    its channels (its direct one where it has none). Both are F(2x2, 3x3)'s, deliberately
    also for the sizes that run F(4x4, 3x3) (runtime/winograd.form), which the calibration
    does not measure: there this is an upper bound (those run 1.2-1.3x faster)."""
    h, w = r.h + r.h % 2, r.w + r.w % 2
    rate = cal.winograd_rate(h * w, min(graph.param(n, 0).shape[:2]))
    return flops(graph, n) * h * w / (n.shape[1] * n.shape[2]) / rate


def choose(graph: Graph, candidates: set[str], regions: dict[str, FixedRegion],
           cal: Calibration, winograd: bool = False) -> Cut:
    """The cheapest frontier over the chains of ``candidates`` (layers with an incremental
    form, with their fixed regions): the fewest chains predicted within ``cal.tie`` of the
    least; ``winograd``: the plan runs eligible heads by Winograd."""
    every = chains(graph, candidates, regions)
    full = {n.name: full_seconds(cal, graph, n) for n in graph.nodes}
    call = cal.call_s / cal.batch
    inp = graph.inputs[0]
    naive = call + sum(full.values()) + 4 * math.prod(graph[inp].shape) / cal.copy_bytes_per_s
    seconds, kept, maintained, gathered = [], {inp}, 0.0, set()
    for k in range(len(every) + 1):
        if k:
            chain = every[k - 1]
            kept |= {n.name for n in chain}
            key = None if winograd and winograd_pays(cal, graph, chain[0], regions[
                chain[0].name]) else shared_context(graph, chain)
            maintained += chain_seconds(cal, graph, chain, regions, winograd,
                                        key is not None and key in gathered)
            gathered.add(key)
        rest = [n for n in graph.nodes if n.name not in kept]
        used = {i for n in rest for i in n.inputs} | set(graph.outputs)
        copies = sum(4 * math.prod(graph[f].shape) for f in kept if f in used)
        suffix = (call + sum(full[n.name] for n in rest)) if rest else 0.0
        seconds.append(maintained + copies / cal.copy_bytes_per_s + suffix)
    least = min(seconds)
    best = next(j for j, t in enumerate(seconds) if t <= least * (1 + cal.tie))
    return Cut(tuple(every), best, tuple(seconds), naive, cal.label, cal.tie)



def centre_cut(graph: Graph, patch, tau: float | None = None,
               cal: Calibration | None = None, winograd: bool = False) -> Cut:
    """The cost model's frontier for ``patch`` (h, w) at the centre of the input (its worst
    case), on this machine's calibration unless ``cal`` is given; ``winograd``: for a backend
    that runs eligible heads by Winograd."""
    cal = cal or calibration.load()

    def compute() -> Cut:
        regions = {k: fix(r, graph[k].shape)
                   for k, r in centre_regions(graph, patch, tau).items()}
        return choose(graph, set(prefix(graph)), regions, cal, winograd)

    return memo(graph, ("centre_cut", tuple(patch), tau, cal.key, winograd), compute)

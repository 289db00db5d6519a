"""Change-based approximate inference on feature maps (in the spirit of CBinfer).

The network is cut at a few *gates*: the input and layers every later layer reads through
(block outputs, where no skip connection crosses), so the network is a chain of segments.
Each gate keeps a stored feature map: what the next segment last saw. For each frame, gate by
gate, the positions (pixels of the map) whose change against the stored map exceeds the gate's
threshold theta (on any channel) are written into the stored map, and the others keep their
stored values: codec noise and small changes stop there. The next segment runs on the stored
map; a frame none of whose positions pass a gate stops there and reuses the output of the last
frame that reached the end (its later segments are not run at all: the saving).

Frames of a window are processed gate by gate in one batched backend call per segment (the
frames still running); the stored maps are updated frame by frame in order, so the result is
that of processing the frames one after another. With every theta 0 each frame's output equals
full inference on it (a stored map then always equals the last frame's map). Key frames
(``KEYFRAME EVERY n``) run with theta 0, which bounds the drift.

Default thresholds come from feature statistics: theta_l = scale x the standard deviation of
gate l's map on the first frame; one ``scale`` (tuned for a target top-1 agreement,
kryptondb/orv/feature_tuning.py) sets them all.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np

from kryptondb.errors import KryptonError
from kryptondb.graph.ir import GLOBAL, POINTWISE, Graph
from kryptondb.graph.shapes import node_flops
from kryptondb.ivm.cost import prefix
from kryptondb.orv.incremental import FrameStat, Settings, VideoIVM

WIDE = 2  # a gate is skipped when its map has more than WIDE x the channels of the narrowest
# cut of its resolution (the expanded maps inside inverted residual blocks)
MIN_SHARE = 0.12  # of the model's FLOPs at least, between two gates: each segment is one backend
# call per window, and a chain of many small calls runs slower than the whole model (measured on
# MobileNetV2: 20 segments 3x, 5 segments 1.3x its time)


def cut_nodes(graph: Graph) -> list[str]:
    """Spatial nodes every later node reads through (no edge crosses them), in order."""
    at = {n.name: k for k, n in enumerate(graph.nodes)}
    last_use: dict[str, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            last_use[i] = max(last_use.get(i, 0), at[n.name])
    spatial, live, cuts = set(prefix(graph)), set(), []
    for k, n in enumerate(graph.nodes):
        live = {x for x in live | {n.name} if last_use.get(x, -1) > k}
        if live == {n.name} and n.name in spatial and n.op not in GLOBAL:
            cuts.append(n.name)
    return cuts


def gates(graph: Graph) -> list[str]:
    """The gates: the input, then the cuts not read by a pointwise op (block outputs), leaving
    out maps much wider than the narrowest cut of their resolution."""
    users = graph.consumers()
    cuts = [c for c in cut_nodes(graph) if c not in graph.inputs
            and not any(graph[u].op in POINTWISE for u in users[c])]
    narrow: dict[tuple, int] = {}
    for c in cuts:
        key = graph[c].shape[1:]
        narrow[key] = min(narrow.get(key, 1 << 30), graph[c].shape[0])
    cuts = [c for c in cuts if graph[c].shape[0] <= WIDE * narrow[graph[c].shape[1:]]]
    flops = _cumulative_flops(graph)
    total, kept = flops[graph.output], [graph.inputs[0]]
    for c in cuts:  # at least MIN_SHARE of the FLOPs after the last gate and before the end
        if min(flops[c] - flops[kept[-1]], total - flops[c]) >= MIN_SHARE * total:
            kept.append(c)
    return kept


def _cumulative_flops(graph: Graph) -> dict[str, float]:
    """Per node, the FLOPs of the nodes up to it (in the graph's order)."""
    done, acc = {}, 0.0
    for n in graph.nodes:
        acc += _flops(graph, n.name)
        done[n.name] = acc
    return done


def _flops(graph: Graph, name: str) -> int:
    n = graph[name]
    return node_flops(n, [graph[i].shape for i in n.inputs], graph.weights)


@dataclass(frozen=True)
class Chain:
    """The model as segments between gates: ``segments[l]`` maps gate l's map to gate l+1's
    (the last one to the output); ``flops[l]``: its share of the model's FLOPs."""

    graph: Graph
    gates: tuple[str, ...]
    segments: tuple[Graph, ...]
    flops: tuple[float, ...]

    @staticmethod
    def of(graph: Graph) -> "Chain":
        """The graph's chain, built once per Graph object (its segments keep their sessions)."""
        if graph not in _CHAINS:
            _CHAINS[graph] = Chain._build(graph)
        return _CHAINS[graph]

    @staticmethod
    def _build(graph: Graph) -> "Chain":
        names = gates(graph)
        at = {n.name: k for k, n in enumerate(graph.nodes)}
        bounds = [at[g] for g in names] + [len(graph.nodes) - 1]
        segs, flops = [], []
        for l, g in enumerate(names):
            members = [n.name for n in graph.nodes[bounds[l] + 1:bounds[l + 1] + 1]]
            out = names[l + 1] if l + 1 < len(names) else graph.output
            segs.append(graph.segment(members, [out]))
            flops.append(sum(_flops(graph, m) for m in members))
        total = max(1.0, float(sum(flops)))
        return Chain(graph, tuple(names), tuple(segs), tuple(f / total for f in flops))


_CHAINS: "weakref.WeakKeyDictionary[Graph, Chain]" = weakref.WeakKeyDictionary()


def check_thetas(thetas, count: int) -> tuple[float, ...]:
    """Thresholds as a tuple of ``count`` non-negative finite floats, else KryptonError."""
    values = tuple(float(t) for t in thetas)
    if len(values) != count:
        raise KryptonError(f"expected {count} per-layer thresholds (one per gate), got "
                           f"{len(values)}")
    for k, t in enumerate(values):
        if not np.isfinite(t) or t < 0:
            raise KryptonError(f"per-layer threshold {k} must be a finite number >= 0, got {t:g}")
    return values


def video_ivm(model, backend, settings: Settings, stats: dict | None = None):
    """The streaming state for ``settings``: change thresholds on feature maps when it has a
    ``feature_scale``, else boxes of changed pixels (kryptondb/orv/incremental.py)."""
    stats = {} if stats is None else stats
    if settings.feature_scale is None:
        return VideoIVM(model, backend, settings, stats=stats)
    return FeatureIVM(model, backend, settings.feature_scale,
                      keyframe_every=settings.keyframe_every, agreement=settings.agreement,
                      stats=stats)


@dataclass
class FeatureIVM:
    """Streaming state of change-based inference: feed windows of model inputs to ``window``.

    ``thetas``: one threshold per gate (None: ``scale`` x each gate's standard deviation on the
    first frame); ``keyframe_every``: every n-th frame runs with theta 0."""

    model: object
    backend: object
    scale: float = 0.0
    thetas: tuple[float, ...] | None = None
    keyframe_every: int | None = None
    agreement: bool = False         # also run full inference and compare (WITH AGREEMENT)
    chain: Chain | None = None
    stored: list = field(default_factory=list)   # per gate: its stored map (C, H, W)
    sigmas: list = field(default_factory=list)   # per gate: std of its map on the first frame
    out: np.ndarray | None = None                # the output of the last frame to reach the end
    since_key: int = 0
    stats: dict = field(default_factory=dict)
    _tested: dict = field(default_factory=dict)  # per gate: [frames tested, sum changed share]

    def __post_init__(self):
        if not np.isfinite(self.scale) or self.scale < 0:
            raise KryptonError(f"the feature threshold scale must be a finite number >= 0, got "
                               f"{self.scale:g}")
        if self.chain is None:
            self.chain = Chain.of(self.model.graph)
        if self.thetas is not None:
            self.thetas = check_thetas(self.thetas, len(self.chain.gates))

    def window(self, x: np.ndarray) -> tuple[np.ndarray, list[FrameStat]]:
        """Model outputs (n, ...) for frames x (n, C, H, W), and per-frame stats."""
        n = len(x)
        stats = [FrameStat(mode="incremental", flops_share=0.0) for _ in range(n)]
        keys = self._keys(n, stats)
        alive, feats, reached = list(range(n)), x, {}
        # many sessions run in turn: without spinning threads, which would starve the busy one
        # (measured on MobileNetV2's 6 segments: 1.6x the whole model's time with, 1.15x without)
        backend = self.backend.for_segments()
        for l, seg in enumerate(self.chain.segments):
            with self._clock("change_detection_s"):
                alive, inputs = self._gate(l, alive, feats, keys, stats)
            if not alive:
                break
            for i in alive:
                stats[i].flops_share += self.chain.flops[l]
            with self._clock("incremental_s"):  # key frames' segments too
                res = backend.run(seg, {seg.inputs[0]: inputs})[seg.outputs[0]]
                feats = backend.host(res)
            if l + 1 == len(self.chain.segments):
                reached = dict(zip(alive, feats))
        out = np.stack(self._outputs(n, reached, stats))
        self.stats["feature_gates"] = self.report()
        if self.agreement:
            self._agree(x, out, stats)
        return out, stats

    _clock = VideoIVM._clock  # the block's time added to ``stats[stage]``, as there
    _agree = VideoIVM._agree  # WITH AGREEMENT: each frame against full inference, as there

    def report(self) -> list[tuple[str, float | None, float | None]]:
        """Per gate: (name, theta, mean share of positions passing it over the frames tested
        so far, key frames apart; None before any)."""
        shares = {l: s / n for l, (n, s) in self._tested.items() if n}
        return [(g, theta, shares.get(l)) for l, (g, theta) in enumerate(self.thresholds())]

    def thresholds(self) -> list[tuple[str, float | None]]:
        """(gate, theta) per gate; theta None while its default awaits the first frame."""
        known = len(self.thetas) if self.thetas is not None else len(self.sigmas)
        return [(g, self.theta(l) if l < known else None)
                for l, g in enumerate(self.chain.gates)]

    def _keys(self, n: int, stats: list[FrameStat]) -> set[int]:
        """The window's key frames (the first frame ever, then every ``keyframe_every``-th)."""
        keys = set()
        for i in range(n):
            if self.out is None and not keys or (self.keyframe_every is not None
                                                 and self.since_key >= self.keyframe_every):
                keys.add(i)
                self.since_key = 0
                stats[i].mode = "keyframe"
            self.since_key += 1
        return keys

    def _gate(self, l: int, alive: list[int], feats, keys: set[int], stats):
        """The frames that pass gate ``l`` and their inputs to segment ``l`` (N', C, H, W: the
        stored map after each one's changes), updating the stored map frame by frame in order."""
        if len(self.stored) <= l:  # the first frame ever: its map is the stored one
            self.stored.append(feats[0].copy())
            self.sigmas.append(float(feats[0].std()))
        s, passed = self.stored[l], []
        batch = np.empty((len(alive),) + s.shape, np.float32)
        diff = np.empty_like(s)
        tested = self._tested.setdefault(l, [0, 0.0])
        for k, i in enumerate(alive):
            np.abs(np.subtract(feats[k], s, out=diff), out=diff)
            mask = diff.max(axis=0) > (0.0 if i in keys else self.theta(l))
            share = float(mask.mean())
            if l == 0:
                stats[i].changed = share
            if i not in keys:  # per gate: frames tested, sum of their changed shares
                tested[0], tested[1] = tested[0] + 1, tested[1] + share
            if share > 0 or i in keys:  # a key frame runs to the end (exact: theta 0)
                np.copyto(s, feats[k], where=mask[None])
                batch[len(passed)] = s
                passed.append(i)
            elif stats[i].mode != "keyframe":
                stats[i].mode = "reuse"
        return passed, batch[:len(passed)]

    def theta(self, l: int) -> float:
        """Gate l's threshold: given, or ``scale`` x the std of its map on the first frame."""
        return self.thetas[l] if self.thetas is not None else self.scale * self.sigmas[l]

    def _outputs(self, n: int, reached: dict, stats) -> list:
        """Each frame's output: its own where it reached the end, else the last one's before."""
        outs = []
        for i in range(n):
            if i in reached:
                self.out = reached[i]
            outs.append(self.out)
        return outs


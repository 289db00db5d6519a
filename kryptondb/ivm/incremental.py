"""Incremental inference for many queries that each change one small region of the input.

Built once per (graph, query set): the region every layer recomputes (fixed size, per-query
start), and per layer a small graph that applies the layer to a gathered read-in context with
padding 0. Run per batch of queries: layer by layer, gather contexts from the materialized views
with the batch's new values written in, apply the layer to the whole batch in one backend call,
keep the new output regions; before the first global layer, write the regions into copies of
the stored view and run the rest of the network in full.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field, replace

import numpy as np

from kryptondb.ivm import calibration
from kryptondb.ivm.cost import patch_regions, prefix
from kryptondb.ivm.frontier import NO_SEGMENT, choose, is_pointwise, merge_extras, winograd_pays
from kryptondb.ivm.counters import SUFFIX, TAIL, count
from kryptondb.ivm.gather import (ChannelsLast, ChannelsLastViews, NewValues, PaddedView, gather,
                                  margins, overlay)
from kryptondb.ivm.layout import channels_last_outputs
from kryptondb.ivm.siblings import Siblings, run_siblings, schedule
from kryptondb.ivm.step_ops import crop, merge, padless, pool_factor, resampled
from kryptondb.ivm.tail import tail_cut
from kryptondb.ivm.regions import FixedRegion, as_map, fix, read_in, spatial_params
from kryptondb.graph.ir import WINDOWED, Graph, Node, Op, input_node, make_node
from kryptondb.graph.ops import UPSAMPLING
from kryptondb.runtime import winograd
from kryptondb.runtime.base import NHWC
from kryptondb.runtime.winograd import Winograd


_SEGMENTS: "weakref.WeakKeyDictionary[Graph, dict]" = weakref.WeakKeyDictionary()


def segments_built(graph: Graph) -> int:
    """How many per-layer graphs (and suffixes) incremental plans on this Graph object have
    built so far; backends keep their compiled sessions as long as the graphs live."""
    return len(_SEGMENTS.get(graph, ()))


@dataclass
class Step:
    """One backend call per batch: a windowed or merging op plus the pointwise ops fused after it."""

    name: str                      # the node whose new region this step produces
    head: Node                     # the op that reads the gathered contexts
    inputs: tuple[str, ...]
    region: FixedRegion
    segment: Graph | None          # None for Pad (the gather is the whole op) and Resize
    contexts: list = field(default_factory=list)  # per input: (rh, rw, ys, xs, PaddedView)
    sides: list = field(default_factory=list)  # per side input: a PaddedView read at the box
    # (h, w, ys, xs): what the segment yields where it is larger than the region (transposed
    # convolutions: a stride-aligned box); the region is cropped out of it. None: the region.
    box: tuple | None = None
    chain: tuple[str, ...] = ()  # the head and the pointwise nodes fused after it
    channels_last: bool = False  # the head's context is gathered and fed (B, rh, rw, C)
    # a 3x3 convolution head by Winograd (F(2x2, 3x3) or F(4x4, 3x3)) on backends that take it
    # (runtime/winograd.py), then ``rest``: the fused nodes after it (None: the head alone)
    winograd: Winograd | None = None
    rest: Graph | None = None
    out_last: bool = False  # its segment's output comes back channels-last (ivm/layout.py)


class IncrementalPlan:
    def __init__(self, graph: Graph, corners: np.ndarray, patch: int | tuple[int, int],
                 views: dict[str, np.ndarray], tau: float | None = None,
                 sizes: dict[str, tuple[int, int]] | None = None):
        """Queries change a ``patch`` (a square side or an (h, w) box) of the input at
        ``corners``; ``tau``: projective field threshold (approximate), None: exact;
        ``sizes``: every layer's fixed region size (``region_sizes`` of a larger query set).
        ``views`` as ChannelsLastViews: windowed layers' contexts are gathered channels-last,
        and, unless its ``winograd`` is False, large 3x3 convolutions on them run by Winograd
        (runtime/winograd.py) on backends that take it."""
        self.graph, self.views = graph, views
        self.hwc = views if isinstance(views, ChannelsLastViews) else None
        self.winograd = self.hwc is not None and self.hwc.winograd and winograd.wanted()
        changed = patch_regions(graph, corners, patch, tau)
        self.regions = {k: fix(r, graph[k].shape, sizes and sizes[k]) for k, r in changed.items()}
        del changed  # four arrays per query and layer, not needed past this point
        # the calibrated cost model's frontier: maintained chains, then one full call
        self.cal = calibration.load()
        self.cut = choose(graph, set(prefix(graph)), self.regions, self.cal, self.winograd)
        self.incremental = self.cut.keep | {graph.inputs[0]}
        self.steps = [self._step(list(c)) for c in self.cut.chains[:self.cut.k]]
        used_outside = {i for n in graph.nodes if n.name not in self.incremental
                        for i in n.inputs}
        self.frontier = [n.name for n in graph.nodes if n.name in self.incremental and
                         (n.name in used_outside or n.name in graph.outputs)]  # graph order
        rest = tuple(n.name for n in graph.nodes if n.name not in self.incremental)
        cut = tail_cut(graph, rest, views) if rest else None  # the large classifier's input
        head = rest[:len(rest) - len(cut[1])] if cut else rest
        self.out = cut[0] if cut else graph.output  # what run_to_tail returns
        self.suffix = self._cached(("suffix", head), lambda: graph.segment(
            list(head), [self.out] if cut else graph.outputs)) if rest else None
        self.tail = self._cached(("tail", cut[1]), lambda: graph.segment(
            list(cut[1]), graph.outputs)) if cut else None
        channels_last_outputs(self.steps, self.frontier)
        self.schedule = schedule(self.steps, graph, self._cached, self.contexts)  # siblings.py

    # -- building ---------------------------------------------------------------------------
    def _step(self, chain: list[Node]) -> Step:
        """The fused nodes change the same rectangle as the head, except where a query changes
        nothing (a patch between the samples of a strided layer): empty regions sit wherever
        the region algebra left them, so the whole chain is computed and labelled at the head's
        region."""
        head, last = chain[0], chain[-1]
        region = self.regions[head.name]
        step = Step(last.name, head, head.inputs, region, None,
                    chain=tuple(c.name for c in chain))
        if head.op in WINDOWED or head.op in UPSAMPLING or head.op is Op.PAD:
            shapes = self._read_context(step)
        else:  # pointwise on one input or a merge: contexts are the output region itself
            step.contexts = [self._merge_context(src, head, region) for src in head.inputs]
            shapes = [(self.views[s].shape[0], c[0], c[1])
                      for s, c in zip(head.inputs, step.contexts)]
        for merge, src in merge_extras(chain):  # residual Adds fused into the chain
            step.inputs += (src,)
            step.contexts.append(self._merge_context(src, merge, region))
            shapes.append((self.views[src].shape[0], region.h, region.w))
        sides = self._sides(chain)
        h, w, ys, xs = step.box or (region.h, region.w, region.y, region.x)
        step.sides = [PaddedView(m, margins(m.shape, ys, xs, h, w), 0.0) for _, _, m in sides]
        shapes += [(m.shape[0], h, w) for _, _, m in sides]
        cheap = len(chain) == 1 and head.op in (Op.ADD, Op.CONCAT) and not head.params
        # Pad is the gather itself, Resize a gather with weights; a lone Add or Concat of
        # gathered buffers is cheaper in NumPy than a backend call with its layout conversions.
        sides = tuple((i, n) for i, n, _ in sides)
        step.segment = None if head.op in NO_SEGMENT or cheap else self._segment(
            chain, shapes, sides, step.channels_last)
        if self.winograd and step.channels_last and winograd_pays(self.cal, self.graph, head,
                                                                  region):
            step.winograd = self._cached(("winograd", head.name), lambda: Winograd(
                head, self.graph))
            step.rest = self._segment(chain, [(head.shape[0], region.h, region.w)] + shapes[1:],
                                      sides, rest=True) if len(chain) > 1 else None
        return step

    def _read_context(self, step: Step) -> list[tuple[int, int, int]]:
        """The read-in context of a windowed, upsampling or Pad head (and for a transposed
        convolution the box its segment yields); returns the context's shape."""
        head, region = step.head, step.region
        view = self.views[head.inputs[0]]
        r = read_in(head, region, view.shape[1:])
        value = -np.inf if head.op is Op.MAXPOOL else float(head.attr("value", 0.0))
        margin = margins(view.shape, r.ys, r.xs, r.rh, r.rw)
        src = head.inputs[0]
        step.channels_last = self.hwc is not None and head.op in WINDOWED and \
            not is_pointwise(head, self.graph)  # a 1x1 conv's context is its input's region
        pv = ChannelsLast(view, margin, value, lambda: self.hwc.hwc(src)) \
            if step.channels_last else PaddedView(view, margin, value)
        step.contexts = [(r.rh, r.rw, r.ys, r.xs, pv)]
        if r.box is not None:
            step.box = (*r.box, region.y - r.offset[0], region.x - r.offset[1])
        return [(view.shape[0], r.rh, r.rw)]

    def _merge_context(self, src: str, head: Node, region: FixedRegion):
        """The context of a merge input: the output region, or, along an axis the input
        broadcasts (size 1), its whole single row or column."""
        view = self.views[src]
        _, h, w = head.shape
        rh, ys = (region.h, region.y) if view.shape[1] == h else (1, np.zeros_like(region.y))
        rw, xs = (region.w, region.x) if view.shape[2] == w else (1, np.zeros_like(region.x))
        return rh, rw, ys, xs, PaddedView(view, (0, 0, 0, 0), 0.0)

    def _sides(self, chain: list[Node]) -> list[tuple[str, str, np.ndarray]]:
        """Maps whose value depends on where an output pixel lies in its map, which the
        segment reads at each query's region besides its contexts: (segment input, node, the
        full C' x H x W map). Per chain node: the spatial constants of an Add/Mul, and an
        AveragePool's divisor correction (see ``step_ops.pool_factor``)."""
        out = []
        for n in chain:
            if n.op is Op.AVGPOOL and (f := pool_factor(n, self.graph)) is not None:
                out.append((f"{n.name}::factor", n.name, f))
            out += [(f"{n.name}::{p}", n.name, as_map(self.graph.weights[p], n.shape))
                    for p in spatial_params(n, self.graph.weights)]
        return out

    def _segment(self, chain: list[Node], shapes, sides: tuple[tuple[str, str], ...],
                 channels_last: bool = False, rest: bool = False) -> Graph:
        """The per-layer graph for a fused chain reading contexts of the given shapes (the
        head's first channels-last); with ``rest``, of the nodes after the head, reading the
        head's output region first."""
        key = (tuple(n.name for n in chain), tuple(shapes), sides, channels_last, rest)
        return self._cached(key, lambda: self._build_segment(chain, shapes, sides,
                                                             channels_last, rest))

    def _cached(self, key, build) -> Graph:
        """Segments (per-layer graphs and the global suffix) are shared by every plan on the same
        model, so a backend compiles each once: a new suffix session for VGG16 re-exports and
        re-loads its 500 MB of classifier weights (seconds per query)."""
        per_model = _SEGMENTS.setdefault(self.graph, {})
        if key not in per_model:
            per_model[key] = build()
        return per_model[key]

    def _build_segment(self, chain: list[Node], shapes, sides, channels_last,
                       rest=False) -> Graph:
        """Inputs: the head's contexts (``rest``: its output), then the side maps ((input,
        node) pairs); the head with padding 0; each node with side maps reads them as extra
        inputs."""
        head = chain[0]
        own = [head.name] if rest else [f"{head.name}::in{k}" for k in range(len(head.inputs))]
        ins = own + [src for _, src in merge_extras(chain)]  # fused Adds read them by name
        nodes = [input_node(i, s, channels_last and k == 0)
                 for k, (i, s) in enumerate(zip(ins, shapes))]
        nodes += [input_node(i, s) for (i, _), s in zip(sides, shapes[len(ins):])]
        body = chain[1:] if rest else [replace(padless(head), inputs=tuple(own))] + chain[1:]
        for n in body:
            nodes += _with_sides(n, [i for i, owner in sides if owner == n.name],
                                 self.graph.weights)
        used = {p for n in nodes for p in n.params}
        return Graph.build(f"{self.graph.name}:{head.name}", nodes, chain[-1].name,
                           {k: self.graph.weights[k] for k in used})

    # -- running ----------------------------------------------------------------------------
    def run(self, idx: np.ndarray, patch_values: np.ndarray, backend, stats: dict,
            owners: np.ndarray | None = None, keep: bool = False):
        """Graph output for the queries ``idx`` whose input patches hold ``patch_values``.

        ``owners`` (len(idx),): queries with one owner are several changed boxes of one input
        (a video frame); the output then has one row per owner, in order of first appearance.
        ``keep``: also return the last owner's maintained views (every layer's new full map).
        """
        out = self.run_to_tail(idx, patch_values, backend, stats, owners, keep)
        if self.tail is None:
            return out
        if keep:
            return self.run_tail(out[0], backend, stats), out[1]
        return self.run_tail(out, backend, stats)

    def run_tail(self, values: np.ndarray, backend, stats: dict) -> np.ndarray:
        """The graph output from ``run_to_tail``'s values (any number of positions at once)."""
        t = time.perf_counter()
        out = backend.host(backend.run(self.tail, {self.out: values})[self.graph.output])
        count(stats, TAIL, len(values), 0, 0.0, time.perf_counter() - t)
        return out

    def run_to_tail(self, idx: np.ndarray, patch_values: np.ndarray, backend, stats: dict,
                    owners: np.ndarray | None = None, keep: bool = False):
        """``run`` up to the classifier tail's input (``self.out``; the graph output where the
        plan has no tail, kryptondb/ivm/tail.py)."""
        g, segments = self.graph, backend.for_segments()
        if owners is not None and len(np.unique(owners)) == len(owners):
            owners = None
        inp = self.regions[g.inputs[0]]
        new = {g.inputs[0]: (patch_values, inp.y[idx], inp.x[idx])}
        for step in self.schedule:
            if isinstance(step, Siblings):
                new.update(run_siblings(step, idx, new, segments, stats, owners))
            else:
                new[step.name] = self._run_step(step, idx, new, segments, stats, owners)
        return self._finish(idx, new, backend, stats, owners, keep)

    def contexts(self, step: Step, idx, new, backend, owners=None) -> tuple[list, int]:
        """A step's gathered contexts for the queries ``idx`` (and bytes moved)."""
        bufs, moved, fetch = [], 0, backend.gather or gather
        for src, (rh, rw, ys, xs, pv) in zip(step.inputs, step.contexts):
            vals, ny, nx = new[src]
            if owners is None and not pv.channels_last and vals.shape[2:] == (rh, rw) and \
                    (ny == ys[idx]).all() and (nx == xs[idx]).all():
                bufs.append(vals)  # the context is exactly the new region: nothing to gather
            else:
                bufs.append(fetch(pv, ys[idx], xs[idx], rh, rw, NewValues(vals, ny, nx, owners)))
                moved += bufs[-1].nbytes
        return bufs, moved

    def _run_step(self, step: Step, idx, new, backend, stats, owners=None):
        t = time.perf_counter()
        bufs, moved = self.contexts(step, idx, new, backend, owners)
        fetch = backend.gather or gather
        r = step.region
        h, w, ys, xs = step.box or (r.h, r.w, r.y, r.x)
        bufs += [fetch(pv, ys[idx], xs[idx], h, w) for pv in step.sides]
        moved += sum(b.nbytes for b in bufs[len(step.contexts):])
        t2 = time.perf_counter()
        if step.head.op is Op.RESIZE:  # NumPy code: a device backend's buffer visits the host
            out = resampled(step, idx, backend.host(bufs[0]))
        elif step.segment is None:
            out = merge(step.head, bufs)
        elif step.winograd is not None and winograd.enabled(backend):
            out = step.winograd(bufs[0])
            if step.rest is not None:
                feeds = dict(zip(step.rest.inputs, [out] + bufs[1:]))
                out = backend.run(step.rest, feeds)[step.rest.output]
        else:
            name = step.segment.output + (NHWC if step.out_last else "")
            out = backend.run(step.segment, dict(zip(step.segment.inputs, bufs)), [name])[name]
            if step.out_last:  # (B, h, w, C) read as (B, C, h, w); the gathers copy its rows
                out = out.transpose(0, 3, 1, 2)
        if step.box is not None:  # NumPy code, as Resize's
            out = crop(backend.host(out), r.y[idx] - ys[idx], r.x[idx] - xs[idx], r.h, r.w)
        count(stats, step.name, len(idx), moved, t2 - t, time.perf_counter() - t2)
        return out, step.region.y[idx], step.region.x[idx]

    def _full_maps(self, name, new, group, n_groups, backend) -> np.ndarray:
        """(n_groups, C, H, W): the view of ``name`` with each group's new regions written in
        (on a device backend, by its gather: the whole map as every item's context)."""
        vals, ny, nx = new[name]
        if backend.gather is not None:
            pv, at = PaddedView(self.views[name], (0, 0, 0, 0), 0.0), np.zeros(len(group), int)
            full = backend.gather(pv, at, at, *self.views[name].shape[1:],
                                  NewValues(vals, ny, nx, group))
            return full if n_groups == len(group) else full[np.unique(group, return_index=True)[1]]
        full = np.repeat(self.views[name][None], n_groups, axis=0)
        overlay(full, vals, ny, nx, group, np.arange(len(group)))
        return full

    def _finish(self, idx, new, backend, stats, owners=None, keep=False):
        t = time.perf_counter()
        if owners is None:
            group, n_groups = np.arange(len(idx)), len(idx)
        else:
            _, first, group = np.unique(owners, return_index=True, return_inverse=True)
            rank = np.argsort(np.argsort(first))  # groups in order of first appearance
            group, n_groups = rank[group], len(first)
        feeds = {f: self._full_maps(f, new, group, n_groups, backend) for f in self.frontier}
        t2 = time.perf_counter()
        g = self.graph
        kept = {}
        if self.suffix is None:
            out = feeds[g.output]
        else:
            extra = [n for n in self.views if n in self.suffix
                     and n not in self.suffix.inputs] if keep else []
            res = backend.run(self.suffix, {k: feeds[k] for k in self.suffix.inputs},
                              [self.out, *extra])
            out = res[self.out]
            kept = {n: backend.host(res[n][-1]) for n in extra}
        count(stats, SUFFIX, n_groups, sum(f.nbytes for f in feeds.values()), t2 - t,
              time.perf_counter() - t2)
        out = backend.host(out)
        if not keep:
            return out
        last = group == n_groups - 1
        for name, (vals, ny, nx) in new.items():
            full = self.views[name].copy()
            overlay(full[None], backend.host(vals[last]), ny[last], nx[last],
                    np.zeros(last.sum(), int), np.arange(last.sum()))
            kept[name] = full
        return out, kept


def _with_sides(n: Node, sides: list[str], weights) -> list[Node]:
    """``n`` reading its side maps as inputs: an AveragePool's output times its factor map (the
    pool renamed ``n::pool``), an Add/Mul's spatial constants as operands instead of params."""
    if not sides:
        return [n]
    if n.op is Op.AVGPOOL:
        pool = replace(n, name=f"{n.name}::pool")
        return [pool, make_node(n.name, Op.MUL, [pool.name, *sides])]
    spatial = set(spatial_params(n, weights))
    return [replace(n, inputs=n.inputs + tuple(sides),
                    params=tuple(p for p in n.params if p not in spatial))]


def read_views(graph: Graph) -> list[str]:
    """The views a plan can read: every incremental layer but those whose only user is a
    pointwise op that ``_steps`` fuses after them (a fused chain is never read in between)."""
    users = graph.consumers()

    def fused_away(n: Node) -> bool:
        u = users[n.name]
        return (len(u) == 1 and is_pointwise(graph[u[0]], graph) and u[0] not in graph.outputs
                and n.op not in NO_SEGMENT and n.name not in graph.outputs)

    return [n for n in prefix(graph) if graph[n].op is not Op.INPUT and not fused_away(graph[n])]


def base_views(graph: Graph, x: np.ndarray, backend, with_output: bool = False,
               names: list[str] | None = None):
    """The materialized views: every incremental layer's output (or those in ``names``) for
    the base input (C, H, W); with ``with_output``, (views, the graph's output for x) from the
    same single pass."""
    names = [n for n in prefix(graph) if graph[n].op is not Op.INPUT] if names is None \
        else list(names)
    want = names + ([graph.output] if with_output and graph.output not in names else [])
    out = backend.run(graph, {graph.inputs[0]: x[None]}, want) if want else {}
    views = {k: np.ascontiguousarray(out[k][0]) for k in names}
    views[graph.inputs[0]] = np.ascontiguousarray(x)
    return (views, out[graph.output][0]) if with_output else views

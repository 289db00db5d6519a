"""Layered (Sugiyama-style) layout of a plan DAG, top to bottom, in pixels.

1. layer = longest path from a source, so every edge points down;
2. edges longer than one layer get a zero-width waypoint per layer they cross, so they route
   around boxes instead of through them;
3. a few barycenter sweeps order each layer, keeping the order with the fewest crossings;
4. x positions: each item is pulled towards its neighbours' mean, then pushed apart just enough
   to keep its order and spacing (isotonic regression, pool-adjacent-violators).
Pure arithmetic on the given sizes; the caller measures text.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

LAYER_GAP = 52.0  # vertical space between layers, room for edge curves
SEPARATION = {2: 32.0, 1: 22.0, 0: 14.0}  # horizontal gap by number of real boxes in the pair
WAYPOINT_WEIGHT = 0.1  # how little a waypoint resists being pushed aside by a box
SWEEPS = 8  # barycenter passes per start, alternating down and up
RESTARTS = 8  # seeded shuffled starts, on plans small enough for them to be cheap


@dataclass(frozen=True)
class Box:
    x: float  # left
    y: float  # top
    w: float
    h: float


@dataclass(frozen=True)
class Route:
    src: int
    dst: int
    # From the source's bottom to the consumer's top. Points with equal x are joined by a
    # straight line (within a layer), others by a curve leaving and arriving vertically.
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Layout:
    boxes: dict[int, Box]
    routes: tuple[Route, ...]
    width: float
    height: float


def layout(sizes: dict[int, tuple[float, float]], edges: list[tuple[int, int]]) -> Layout:
    """``sizes``: node id -> (w, h) in plan (topological) order; ``edges``: (src, dst) pairs.
    Coordinates start at (0, 0); the caller adds margins."""
    g = _Graph(sizes, edges)
    order = _order(g)
    x = _place(g, order)
    tops, heights = _bands(g, order)
    left = min(x[i] - g.width[i] / 2 for layer in order for i in layer) if order else 0.0
    boxes = {}
    for i, nid in enumerate(g.ids):
        w, h = sizes[nid]
        boxes[nid] = Box(x[i] - w / 2 - left, tops[g.layer[i]], w, h)
    routes = _routes(g, x, left, boxes, tops, heights)
    right = [x for r in routes for x, _ in r.points]  # a long edge may pass right of all boxes
    width = max([b.x + b.w for b in boxes.values()] + right, default=0.0)
    height = max((b.y + b.h for b in boxes.values()), default=0.0)
    return Layout(boxes, routes, width, height)


class _Graph:
    """Items 0..n-1 are the plan's nodes in order; items n.. are waypoints of long edges."""

    def __init__(self, sizes: dict[int, tuple[float, float]], edges: list[tuple[int, int]]):
        self.ids = list(sizes)
        index = {nid: i for i, nid in enumerate(self.ids)}
        self.width = [sizes[nid][0] for nid in self.ids]
        self.height = [sizes[nid][1] for nid in self.ids]
        inputs: list[list[int]] = [[] for _ in self.ids]
        for s, d in edges:
            inputs[index[d]].append(index[s])
        self.layer = []
        for i in range(len(self.ids)):  # plan order is topological: inputs are settled first
            self.layer.append(max((self.layer[s] + 1 for s in inputs[i]), default=0))
        self.up: list[list[int]] = [[] for _ in self.ids]
        self.down: list[list[int]] = [[] for _ in self.ids]
        self.chains = [self._chain(index[s], index[d]) for s, d in edges]
        self.edges = edges

    def _chain(self, s: int, d: int) -> list[int]:
        chain = [s]
        for layer in range(self.layer[s] + 1, self.layer[d]):
            chain.append(self._item(layer))
        chain.append(d)
        for a, b in itertools.pairwise(chain):
            self.down[a].append(b)
            self.up[b].append(a)
        return chain

    def _item(self, layer: int) -> int:
        self.width.append(0.0)
        self.height.append(0.0)
        self.layer.append(layer)
        self.up.append([])
        self.down.append([])
        return len(self.layer) - 1

    def is_box(self, item: int) -> bool:
        return item < len(self.ids)


def _order(g: _Graph) -> list[list[int]]:
    """Barycenter sweeps, each followed by adjacent swaps that remove crossings. Sweeps stall in
    local minima, so they run from several starts: plan order (long edges right of the boxes),
    its mirror, then a few seeded shuffles (seeded: same plan, same picture). Fewest crossings
    wins, the first found on a tie."""
    plan: list[list[int]] = [[] for _ in range(max(g.layer, default=-1) + 1)]
    for item, layer in enumerate(g.layer):
        plan[layer].append(item)
    best, fewest = plan, _crossings(g, plan)
    restarts = RESTARTS if len(g.layer) <= 400 else 0
    starts = [plan, [layer[::-1] for layer in plan]]
    starts += [
        [random.Random(seed).sample(layer, len(layer)) for layer in plan]
        for seed in range(restarts)
    ]
    for layers in starts:
        for sweep in range(SWEEPS):
            if fewest == 0:
                return best
            _sweep(g, layers, sweep % 2 == 0)
            _transpose(g, layers)
            crossings = _crossings(g, layers)
            if crossings < fewest:
                best, fewest = [list(layer) for layer in layers], crossings
    return best


def _sweep(g: _Graph, layers: list[list[int]], downward: bool) -> None:
    span = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
    nbrs = g.up if downward else g.down
    for k in span:
        ref = {item: p for p, item in enumerate(layers[k - 1 if downward else k + 1])}
        here = {item: p for p, item in enumerate(layers[k])}
        layers[k].sort(key=lambda i: (_mean([ref[n] for n in nbrs[i]], here[i]), here[i]))


def _transpose(g: _Graph, layers: list[list[int]], rounds: int = 8) -> None:
    pos = {item: p for layer in layers for p, item in enumerate(layer)}
    for _ in range(rounds):
        improved = False
        for layer in layers:
            for p in range(len(layer) - 1):
                u, v = layer[p], layer[p + 1]
                if _pair_crossings(g, pos, v, u) < _pair_crossings(g, pos, u, v):
                    layer[p], layer[p + 1], pos[u], pos[v] = v, u, p + 1, p
                    improved = True
        if not improved:
            return


def _pair_crossings(g: _Graph, pos: dict[int, int], left: int, right: int) -> int:
    """Crossings between the edges at ``left`` and those at ``right`` when left is on the left."""
    return sum(pos[a] > pos[b] for nbrs in (g.up, g.down) for a in nbrs[left] for b in nbrs[right])


def _crossings(g: _Graph, layers: list[list[int]]) -> int:
    total = 0
    for upper, lower in itertools.pairwise(layers):
        pos = {item: p for p, item in enumerate(lower)}
        segs = [(p, pos[d]) for p, item in enumerate(upper) for d in g.down[item]]
        total += sum(1 for a in segs for b in segs if a[0] < b[0] and a[1] > b[1])
    return total


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def _place(g: _Graph, layers: list[list[int]]) -> list[float]:
    x = [0.0] * len(g.layer)
    for layer in layers:
        _assign(g, layer, x, [0.0] * len(layer))
    downward, upward = range(1, len(layers)), range(len(layers) - 2, -1, -1)
    for _ in range(4):
        _pull(g, layers, x, downward, lambda i: g.up[i])
        _pull(g, layers, x, upward, lambda i: g.down[i])
    _pull(g, layers, x, range(len(layers)), lambda i: g.up[i] + g.down[i])
    return x


def _pull(g: _Graph, layers: list[list[int]], x: list[float], span, neighbours) -> None:
    for k in span:
        want = [_mean([x[n] for n in neighbours(i)], x[i]) for i in layers[k]]
        _assign(g, layers[k], x, want)


def _assign(g: _Graph, layer: list[int], x: list[float], want: list[float]) -> None:
    """Closest positions to ``want`` (weighted least squares) that keep order and spacing."""
    offset = [0.0]
    for a, b in itertools.pairwise(layer):
        gap = SEPARATION[g.is_box(a) + g.is_box(b)]
        offset.append(offset[-1] + (g.width[a] + g.width[b]) / 2 + gap)
    blocks: list[list[float]] = []  # pooled runs: [weighted sum, total weight, length]
    for item, o, t in zip(layer, offset, want):
        w = 1.0 if g.is_box(item) else WAYPOINT_WEIGHT
        blocks.append([w * (t - o), w, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, tw, n = blocks.pop()
            blocks[-1] = [blocks[-1][0] + s, blocks[-1][1] + tw, blocks[-1][2] + n]
    values = [s / tw for s, tw, n in blocks for _ in range(int(n))]
    for item, v, o in zip(layer, values, offset):
        x[item] = v + o


def _bands(g: _Graph, layers: list[list[int]]) -> tuple[list[float], list[float]]:
    heights = [max(g.height[i] for i in layer) for layer in layers]
    tops, y = [], 0.0
    for h in heights:
        tops.append(y)
        y += h + LAYER_GAP
    return tops, heights


def _routes(g, x, left, boxes, tops, heights) -> tuple[Route, ...]:
    """Edges leave a box's bottom and enter its top at ports spread left to right in the order
    of where they go, so fan-in and fan-out do not stack on one point."""
    outs: dict[int, list[tuple[float, int]]] = {}
    ins: dict[int, list[tuple[float, int]]] = {}
    for k, chain in enumerate(g.chains):
        outs.setdefault(chain[0], []).append((x[chain[1]], k))
        ins.setdefault(chain[-1], []).append((x[chain[-2]], k))
    start = _ports(g, outs, boxes, x, left, bottom=True)
    end = _ports(g, ins, boxes, x, left, bottom=False)
    routes = []
    for k, ((s, d), chain) in enumerate(zip(g.edges, g.chains)):
        points = [start[k]]
        band_bottom = tops[g.layer[chain[0]]] + heights[g.layer[chain[0]]]
        if start[k][1] < band_bottom:  # a short box: drop straight out of its layer first
            points.append((start[k][0], band_bottom))
        for item in chain[1:-1]:
            top = tops[g.layer[item]]
            points += [(x[item] - left, top), (x[item] - left, top + heights[g.layer[item]])]
        routes.append(Route(s, d, (*points, end[k])))
    return tuple(routes)


def _ports(g, edges_at, boxes, x, left, bottom: bool) -> dict[int, tuple[float, float]]:
    ports = {}
    for item, ends in edges_at.items():
        box = boxes[g.ids[item]]
        y = box.y + box.h if bottom else box.y
        ends.sort()
        for rank, (_, k) in enumerate(ends):
            ports[k] = (box.x + box.w * (rank + 1) / (len(ends) + 1), y)
    return ports

"""An occlusion scan's plan as EXPLAIN PLAN prints it under the scan's physical line: what the
plan is and why the planner chose it; with VERBOSE or ANALYZE, the per-layer table (and after
ANALYZE each segment's measured counters beside it). Reads the profile document's scan
(kryptondb/plan/profile_doc.py), so that text, JSON and pictures show the same numbers, each
formatted by kryptondb/format.py."""

from __future__ import annotations

from collections import Counter

from kryptondb.format import fmt_bytes, fmt_count, fmt_flops, fmt_percent, fmt_rate, fmt_time
from kryptondb.orv.features import Chain
from kryptondb.runtime.winograd import form

HEAD = ("seg", "layer", "op", "kernel", "stride", "map", "region", "share", "context", "full",
        "incremental")
MEASURED = ("calls", "positions", "gathered", "gather", "time", "wall", "achieved")
RIGHT = {"seg", "share", "full", "incremental", "calls", "positions", "gathered", "gather", "time",
         "wall", "achieved"}


def scan_lines(scan: dict, table: bool) -> list[str]:
    """Lines about ``scan``: its plan and the reason; with ``table``, the per-layer plan."""
    out = [_plan_line(scan), f"chosen: {scan['choice']['reason'] or 'the only plan'}"]
    if not table:
        return out
    out += _predicted(scan['choice'])
    if scan["stages"]:
        coarse, fine = scan["stages"]
        out.append(f"stages: coarse stride {_x(coarse['stride'])} ({fmt_count(coarse['positions'])}"
                   f" positions), then stride {_x(fine['stride'])} at {fmt_percent(fine['ratio'])} "
                   f"of them ({fmt_count(fine['positions'])} positions)")
    if scan["plan"] == "naive":
        return out + ([_scan_measured(scan["measured"], scan)] if scan.get("measured") else [])
    cap = f", tau {scan['tau']:g} caps the regions marked *" if scan["tau"] is not None else ""
    out.append(f"per layer, for the position nearest the centre{cap}:")
    out += ["  " + line for line in _table(scan["layers"])]
    if wino := [r for r in scan["layers"] if r.get("winograd")]:
        out.append(_winograd_legend(wino))
    out.append(f"frontier: [{','.join(scan['frontier'])}]: {scan['frontier_reason']}")
    suffix = scan["suffix"]
    out.append(f"suffix: {suffix['layers']} layers in full, {fmt_flops(suffix['flops'])} per "
               f"position" + _suffix_measured(suffix["measured"]))
    if tail := suffix.get("tail"):
        out.append(f"  of them the last {tail['layers']} (large weights) over up to "
                   f"{tail['batch']} positions per call, {fmt_flops(tail['flops'])} per position"
                   + _tail_measured(tail["measured"]))
    full, incr = scan["full_flops"], scan["incremental_flops"]
    out.append(f"per position: {fmt_flops(full)} full, {fmt_flops(incr)} incremental "
               f"({full / incr:.2f}x)")
    if scan.get("measured"):
        out.append(_scan_measured(scan["measured"], scan))
    return out


def _plan_line(scan: dict) -> str:
    if scan["plan"] == "naive":
        return (f"plan: naive, every position runs the whole network "
                f"({scan['suffix']['layers']} layers)")
    layers, segments = len(scan["layers"]), len({r["segment"] for r in scan["layers"]})
    return (f"plan: {scan['plan']}, {layers} layers in {segments} segments up to "
            f"[{','.join(scan['frontier'])}], then {scan['suffix']['layers']} layers in full")


def _predicted(choice: dict) -> list[str]:
    flops, secs = choice["predicted_flops"], choice["predicted_s"]
    if flops["naive"] is None:
        return []
    return [f"predicted: naive {fmt_flops(flops['naive'])}, incremental "
            f"{fmt_flops(flops['incremental'])} with setup (~{fmt_time(secs['naive'])} vs "
            f"~{fmt_time(secs['incremental'])} by the cost model)"]


def _winograd_legend(rows: list[dict]) -> str:
    """What Conv(W) means: the forms the marked layers run (by their context's size), each
    with its multiplies against the direct form's FLOPs the table shows."""
    forms = Counter(form(*r["context"]) for r in rows)
    return "Conv(W): by Winograd (docs/ivm.md#winograd), with fewer multiplies than the FLOPs " \
        "shown: " + "; ".join(f"F({f.m}x{f.m}, 3x3) on {k} of them, {f.fewer:g}x fewer"
                              for f, k in sorted(forms.items(), key=lambda fk: -fk[0].m))


def _row(r: dict) -> list[str]:
    capped = "*" if r["capped"] else ""
    op = r["op"] + ("(W)" if r.get("winograd") else "")
    return [str(r["segment"]), r["name"], op, _x(r["kernel"]), _x(r["stride"]),
            _x(r["map"]), _x(r["region"]) + capped, fmt_percent(r["share"]), _x(r["context"]),
            fmt_flops(r["full_flops"]), fmt_flops(r["incremental_flops"])]


def _measured(m: dict | None) -> list[str]:
    if m is None:
        return [""] * len(MEASURED)
    return [fmt_count(m["calls"]), fmt_count(m["positions"]), fmt_bytes(m["gather_bytes"]),
            fmt_time(m["gather_s"]), fmt_time(m["time_s"]),
            fmt_percent(m["wall_share"]) if m["wall_share"] is not None else "",
            fmt_rate(m["gflops"] * 1e9) if m["gflops"] is not None else ""]


def _table(layers: list[dict]) -> list[str]:
    analyzed = any(r["measured"] for r in layers)
    head = HEAD + (MEASURED if analyzed else ())
    rows = [_row(r) + (_measured(r["measured"]) if analyzed else []) for r in layers]
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]
    return [_line(head, widths)] + [_line(r, widths) for r in rows]


def _line(cells, widths) -> str:
    return "  ".join(c.rjust(w) if h in RIGHT else c.ljust(w)
                     for c, w, h in zip(cells, widths, _heads(len(cells)))).rstrip()


def _heads(n: int) -> tuple[str, ...]:
    return (HEAD + MEASURED)[:n]


def _suffix_measured(m: dict | None) -> str:
    if m is None:
        return ""
    return (f"; measured {fmt_count(m['calls'])} calls, {fmt_count(m['positions'])} positions, "
            f"{fmt_time(m['time_s'])}{_wall(m)} (frontier maps {fmt_time(m['gather_s'])}, "
            f"{fmt_bytes(m['gather_bytes'])})")


def _tail_measured(m: dict | None) -> str:
    if m is None:
        return ""
    return f"; measured {fmt_count(m['calls'])} calls, {fmt_time(m['time_s'])}{_wall(m)}"


def _wall(m: dict) -> str:
    return f", {fmt_percent(m['wall_share'])} of the wall" if m["wall_share"] is not None else ""


def _scan_measured(m: dict, scan: dict) -> str:
    rate = f", {fmt_count(round(m['positions_per_s']))} positions/s" \
        if m["positions_per_s"] else ""
    busy = (m["gather_s"] or 0.0) + (m["compute_s"] or 0.0)
    gather = f", gather {fmt_percent(m['gather_s'] / busy)} of the work" if busy else ""
    workers = m["workers"] or 1
    return (f"measured: {fmt_count(scan['positions'])} positions in {fmt_time(m['time_s'])}"
            f"{rate} on {workers} worker{'s' if workers > 1 else ''}{gather}")


def _x(v) -> str:
    return "" if v is None else "x".join(map(str, v))


def gate_lines(node, measured: dict | None) -> list[str]:
    """The per-layer change thresholds of a FEATURE THRESHOLD plan (kryptondb/orv/features.py):
    one line per gate with its map's shape and the FLOPs after it up to the next gate; the
    threshold as scale x the map's std on the first frame, or, measured (EXPLAIN PLAN ANALYZE),
    its value and the mean share of positions that passed it."""
    chain = Chain.of(node.arg("model").graph)
    scale = node.arg("feature_scale")
    seen = {g: (theta, share) for g, theta, share in (measured or {}).get("feature_gates", ())}
    lines = [f"change thresholds per layer: theta = {scale:g} x the map's std on the first "
             "frame (key frames: 0)"]
    graph = chain.graph
    for gate, flops in zip(chain.gates, chain.flops):
        shape = "x".join(map(str, graph[gate].shape))
        line = f"  {gate} {shape}: next segment {fmt_percent(flops)} of the FLOPs"
        theta, share = seen.get(gate, (None, None))
        if theta is not None:
            line += f"; theta {theta:.4g}"
        if share is not None:
            line += f", {fmt_percent(share)} of positions passed it"
        lines.append(line)
    return lines

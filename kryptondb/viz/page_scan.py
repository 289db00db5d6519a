"""One occlusion scan on the plan page: the planner's choice and why, the frontier, the suffix,
drill-down stages, and the per-layer table with bars for region share and (after ANALYZE) time
share. Reads one ``scans`` entry of the profile document (kryptondb.plan/1); every optional part
may be null or missing. Numbers go through kryptondb.format.

>>> row = {"name": "conv1", "op": "Conv", "kernel": [7, 7], "stride": [2, 2],
...        "map": [64, 112, 112], "region": [11, 11], "share": 0.0096, "context": [27, 27],
...        "full_flops": 236027904, "incremental_flops": 2276352, "segment": 0}
>>> html = layer_table({"node": 5, "layers": [row]})
>>> html.count('class="layer-row'), "236.0 MFLOPs" in html, "1.0%" in html
(1, True, True)
"""

from __future__ import annotations

from html import escape

from kryptondb.format import fmt_bytes, fmt_flops, fmt_percent, fmt_time
from kryptondb.viz.field import dims, field_svg

STATIC = (("#", "num"), ("layer", ""), ("op", ""), ("kernel / stride", ""), ("map", "num"),
          ("region", "num"), ("share of map", "share"), ("context", "num"), ("FLOPs full", "num"),
          ("FLOPs incr.", "num"), ("seg", "num"))
MEASURED = (("calls", "num"), ("positions", "num"), ("time", "num"), ("wall share", "share"),
            ("gather", "num"), ("gathered", "num"), ("achieved", "num"))


def scan_section(scan: dict, node: dict | None = None) -> str:
    """The scan's summary, its layer table and its projective field."""
    nid = scan.get("node", "?")
    title = f"%{nid} {(node or {}).get('op', 'scan')}: {scan.get('plan', '?')} plan"
    parts = [f'<section class="scan" id="scan-{escape(str(nid))}">',
             f"<h2>{escape(title)}</h2>", _summary(scan, node)]
    if scan.get("layers"):
        parts += ["<h3>Per-layer plan (patch at the centre of the input)</h3>", layer_table(scan),
                  "<h3>Projective field: what one patch position recomputes</h3>",
                  '<figure class="field-figure">', field_svg(scan), _field_legend(),
                  "</figure>"]
    elif scan.get("plan") == "naive":
        parts.append('<p class="note">A naive scan runs the whole network at every position: '
                     "no layer is maintained incrementally.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _summary(scan: dict, node: dict | None) -> str:
    facts = [("positions", _positions(scan, node)),
             ("patch / stride", f"{dims(scan.get('patch'))} / {dims(scan.get('stride'))} "
              f"over {dims(scan.get('input'))}")]
    if scan.get("tau") is not None:
        facts.append(("τ (projective field cap)", f"{scan['tau']:g}"))
    if scan.get("frontier"):
        why = scan.get("frontier_reason") or ""
        facts.append(("frontier", ", ".join(scan["frontier"]) + (f" ({why})" if why else "")))
    suffix = scan.get("suffix")
    if suffix:
        facts.append(("global suffix", f"{suffix.get('layers', '?')} layers run in full, "
                      f"{fmt_flops(suffix.get('flops') or 0)} per position"))
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return (f'<div class="summary"><table class="facts">{rows}</table>'
            f"{_choice(scan.get('choice'))}{_stages(scan.get('stages'))}</div>")


def _positions(scan: dict, node: dict | None) -> str:
    n = scan.get("positions")
    text = "?" if n is None else f"{n:,}"
    stats = (node or {}).get("stats") or {}
    if n and stats.get("time_s"):
        text += f" in {fmt_time(stats['time_s'])} ({n / stats['time_s']:,.1f} positions/s)"
    return text


def _choice(choice: dict | None) -> str:
    """The planner's pick, its reason, and both predicted costs as bars against the larger."""
    if not choice:
        return ""
    out = [f'<div class="choice"><h3>Planner\'s choice: <span class="picked">'
           f"{escape(str(choice.get('picked', '?')))}</span></h3>"]
    if choice.get("reason"):
        out.append(f'<p class="reason">{escape(choice["reason"])}</p>')
    predicted = {k: v for k, v in (choice.get("predicted_s") or {}).items() if v is not None}
    top = max(predicted.values(), default=0) or 1
    for plan, seconds in predicted.items():
        cls = "bar picked" if plan == choice.get("picked") else "bar"
        out.append(f'<div class="predicted"><span class="label">{escape(plan)}</span>'
                   f"{_bar(seconds / top, cls)}<span class=\"num\">predicted "
                   f"{fmt_time(seconds)}</span></div>")
    out.append("</div>")
    return "".join(out)


def _stages(stages) -> str:
    if not stages:
        return ""
    rows = "".join(f"<tr><td>{escape(str(s.get('name', '?')))}</td>"
                   f"<td class=\"num\">{dims(s.get('stride'))}</td>"
                   f"<td class=\"num\">{s.get('positions', 0):,}</td></tr>" for s in stages)
    return ('<table class="stages"><caption>drill-down stages</caption><tr><th>stage</th>'
            f"<th>stride</th><th>positions</th></tr>{rows}</table>")


def layer_table(scan: dict) -> str:
    """One ``layer-row`` per layer of the scan, shaded by fused segment."""
    layers = scan.get("layers") or []
    measured = any(r.get("measured") for r in layers)
    columns = STATIC + (MEASURED if measured else ())
    head = "".join(f'<th class="{c}">{escape(name)}</th>' for name, c in columns)
    body = [_layer_row(k, row, measured) for k, row in enumerate(layers)]
    return (f'<div class="table-box"><table class="layers" '
            f'id="layers-{escape(str(scan.get("node", "?")))}">'
            f"<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) +
            "\n</tbody></table></div>")


def _layer_row(k: int, row: dict, measured: bool) -> str:
    seg = row.get("segment")
    shade = "" if seg is None else f" seg-{seg % 2}"
    capped = ' <span class="badge" title="region capped by τ">τ cap</span>' \
        if row.get("capped") else ""
    cells = [str(k), f"{escape(str(row.get('name', '?')))}{capped}", escape(str(row.get("op", ""))),
             f"{dims(row.get('kernel'))} / {dims(row.get('stride'))}", dims(row.get("map")),
             dims(row.get("region")), _share(row.get("share")), dims(row.get("context")),
             _num(row.get("full_flops"), fmt_flops), _num(row.get("incremental_flops"), fmt_flops),
             "" if seg is None else str(seg)]
    if measured:
        cells += _measured(row.get("measured") or {})
    tds = "".join(f'<td class="{c}">{v}</td>' for v, (_, c) in zip(cells, STATIC + MEASURED))
    return (f'<tr class="layer-row{shade}" data-layer="{escape(str(row.get("name", "")))}">'
            f"{tds}</tr>")


def _measured(m: dict) -> list[str]:
    gflops = m.get("gflops")
    return [_num(m.get("calls"), lambda n: f"{n:,}"), _num(m.get("positions"), lambda n: f"{n:,}"),
            _num(m.get("time_s"), fmt_time), _share(m.get("wall_share"), "bar time"),
            _num(m.get("gather_s"), fmt_time), _num(m.get("gather_bytes"), fmt_bytes),
            "" if gflops is None else fmt_flops(gflops * 1e9)[:-1] + "/s"]


def _share(share, cls: str = "bar") -> str:
    if share is None:
        return ""
    return f'{_bar(share, cls)}<span class="pct">{fmt_percent(share)}</span>'


def _bar(fraction: float, cls: str = "bar") -> str:
    width = 100 * min(1.0, max(0.0, float(fraction)))
    return f'<span class="{cls}"><span style="width:{width:.1f}%"></span></span>'


def _field_legend() -> str:
    return ('<figcaption><span class="key region"></span> recomputed region '
            '<span class="key context"></span> context read in '
            '<span class="key capped"></span> capped by τ '
            "(each map scaled to the same size; hover a row or a tile)</figcaption>")


def _num(v, fmt) -> str:
    return "" if v is None else escape(fmt(v))

"""An occlusion scan on the plan page: the planner's choice and why, the frontier, the suffix,
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

from kryptondb.format import fmt_bytes, fmt_flops, fmt_percent, fmt_rate, fmt_time
from kryptondb.viz.field import dims, field_svg

STATIC = (("#", "num"), ("layer", ""), ("op", ""), ("kernel / stride", ""), ("map", "num"),
          ("region", "num"), ("share of map", "share"), ("context", "num"), ("FLOPs full", "num"),
          ("FLOPs incr.", "num"), ("seg", "num"))
MEASURED = (("calls", "num"), ("positions", "num"), ("time", "num"), ("wall", "share"),
            ("gather", "num"), ("gathered", "num"), ("achieved", "num"))


def scan_summary(scan: dict, node: dict | None = None) -> str:
    """What the scan is and why: positions, patch, FLOPs, frontier, suffix, the planner's
    choice, drill-down stages."""
    nid = scan.get("node", "?")
    title = f"%{nid} {(node or {}).get('op', 'scan')}: {scan.get('plan', '?')} plan"
    return (f'<section class="scan-summary" id="scan-{escape(str(nid))}">'
            f"<h2>{escape(title)}</h2>\n{_summary(scan, node)}</section>")


def scan_details(scan: dict) -> str:
    """The scan's per-layer table and projective field (a naive scan has neither)."""
    nid = escape(str(scan.get("node", "?")))
    if scan.get("layers"):
        return "\n".join([
            f'<section class="scan" id="layers-of-{nid}">',
            f"<h2>Per-layer plan of %{nid} (the patch at the centre of the input)</h2>",
            layer_table(scan),
            "<h3>Projective field: what one patch position recomputes, layer by layer</h3>",
            '<figure class="field-figure">', field_svg(scan), _field_legend(), "</figure>",
            "</section>"])
    if scan.get("plan") == "naive":
        return (f'<p class="note">%{nid} is a naive scan: it runs the whole network at every '
                "position; no layer is maintained incrementally.</p>")
    return ""


def _summary(scan: dict, node: dict | None) -> str:
    facts = [("positions", _positions(scan, node)),
             ("patch / stride", f"{dims(scan.get('patch'))} / {dims(scan.get('stride'))} "
              f"over {dims(scan.get('input'))}")]
    if scan.get("full_flops") and scan.get("incremental_flops"):
        full, incr = scan["full_flops"], scan["incremental_flops"]
        facts.append(("FLOPs per position", f"{fmt_flops(incr)} incremental, {fmt_flops(full)} "
                      f"full ({full / incr:.2f}× fewer)"))
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
    return (f'<table class="facts">{rows}</table>'
            f"{_choice(scan.get('choice'))}{_stages(scan.get('stages'))}")


def _positions(scan: dict, node: dict | None) -> str:
    """How many, and after ANALYZE in how long: the scan's own measurement, else its node's."""
    n = scan.get("positions")
    text = "?" if n is None else f"{n:,}"
    measured = scan.get("measured") or {}
    seconds = measured.get("time_s") or ((node or {}).get("stats") or {}).get("time_s")
    if n and seconds:
        rate = measured.get("positions_per_s") or n / seconds
        text += f" in {fmt_time(seconds)} ({rate:,.1f} positions/s)"
    return text


def _choice(choice: dict | None) -> str:
    """The planner's pick, its reason, and both predicted costs as bars against the larger:
    FLOPs with their seconds at the cost model's nominal rate (not measured), or either alone."""
    if not choice:
        return ""
    picked = choice.get("picked")
    out = [f'<div class="choice"><h3>Planner\'s choice: <span class="picked">'
           f"{escape(str(picked or '?'))}</span></h3>"]
    reason, speedup = choice.get("reason") or "", choice.get("theoretical_speedup")
    if speedup is not None and "theoretical speedup" not in reason:
        reason += ("; " if reason else "") + f"theoretical speedup {speedup:.2f}×"
    if reason:
        out.append(f'<p class="reason">{escape(reason)}</p>')
    flops, secs = (_known(choice.get(k)) for k in ("predicted_flops", "predicted_s"))
    amounts = flops or secs
    for plan, amount in amounts.items():
        text = fmt_flops(amount) if flops else fmt_time(amount)
        if flops and plan in secs:
            text += f" (~{fmt_time(secs[plan])})"
        out.append(_predicted(plan, amount / (max(amounts.values()) or 1), text, plan == picked))
    rate = [flops[k] / secs[k] for k in flops if secs.get(k)]
    if rate:
        out.append(f'<p class="note">seconds at a nominal {escape(fmt_rate(rate[0]))}, not '
                   "calibrated on this machine</p>")
    out.append("</div>")
    return "".join(out)


def _known(values) -> dict:
    return {k: v for k, v in (values or {}).items() if v is not None}


def _predicted(plan: str, fraction: float, text: str, picked: bool) -> str:
    return (f'<div class="predicted"><span class="label">{escape(plan)}</span>'
            f'{_bar(fraction, "bar picked" if picked else "bar")}'
            f'<span class="num">predicted {escape(text)}</span></div>')


def _stages(stages) -> str:
    """A drill-down's stages; the positions stage 2 really ran, after ANALYZE."""
    if not stages:
        return ""
    ran = any("measured_positions" in s for s in stages)
    rows = "".join(f"<tr><td>{escape(str(s.get('name', '?')))}</td>"
                   f"<td class=\"num\">{dims(s.get('stride'))}</td>"
                   f"<td class=\"num\">{s.get('positions') or 0:,}</td>"
                   + (f"<td class=\"num\">{_num(s.get('measured_positions'), _count)}</td>"
                      if ran else "") + "</tr>" for s in stages)
    return ('<table class="stages"><caption>drill-down stages</caption><tr><th>stage</th>'
            "<th>stride</th><th>positions</th>" + ("<th>ran</th>" if ran else "") +
            f"</tr>{rows}</table>")


def layer_table(scan: dict) -> str:
    """One ``layer-row`` per layer of the scan, shaded by fused segment."""
    layers = scan.get("layers") or []
    measured = any(r.get("measured") for r in layers)
    columns = STATIC + (MEASURED if measured else ())
    head = "".join(f'<th class="{c}">{escape(name)}</th>' for name, c in columns)
    body = [_layer_row(k, row, measured) for k, row in enumerate(layers)]
    if scan.get("suffix"):
        body.append(_suffix_row(scan["suffix"], measured))
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
             _window(row), dims(row.get("map")),
             dims(row.get("region")), _share(row.get("share")), dims(row.get("context")),
             _num(row.get("full_flops"), fmt_flops), _num(row.get("incremental_flops"), fmt_flops),
             "" if seg is None else str(seg)]
    if measured:
        cells += _measured(row.get("measured") or {})
    tds = "".join(f'<td class="{c}">{v}</td>' for v, (_, c) in zip(cells, STATIC + MEASURED))
    return (f'<tr class="layer-row{shade}" data-layer="{escape(str(row.get("name", "")))}">'
            f"{tds}</tr>")


def _window(row: dict) -> str:
    """Kernel / stride of a windowed layer; a dash for one without (pointwise, merges)."""
    if not row.get("kernel") and not row.get("stride"):
        return dims(None)
    return f"{dims(row.get('kernel'))} / {dims(row.get('stride'))}"


def _suffix_row(suffix: dict, measured: bool) -> str:
    """The global part after the frontier, in full at every position: one row under the layers,
    its FLOPs under the incremental column, its time (after ANALYZE) under time."""
    cells = [f'<td colspan="{len(STATIC) - 2}">global suffix: {suffix.get("layers", "?")} '
             "layers, run in full</td>", f'<td class="num">{_num(suffix.get("flops"), fmt_flops)}'
             "</td>", "<td></td>"]
    if measured:
        cells += [f'<td class="{c}">{v}</td>'
                  for v, (_, c) in zip(_measured(suffix.get("measured") or {}), MEASURED)]
    return f'<tr class="suffix-row">{"".join(cells)}</tr>'


def _measured(m: dict) -> list[str]:
    gflops = m.get("gflops")
    return [_num(m.get("calls"), _count), _num(m.get("positions"), _count),
            _num(m.get("time_s"), fmt_time), _share(m.get("wall_share"), "bar time"),
            _num(m.get("gather_s"), fmt_time), _num(m.get("gather_bytes"), fmt_bytes),
            "" if gflops is None else fmt_rate(gflops * 1e9)]


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


def _count(n) -> str:
    return f"{n:,}"


def _num(v, fmt) -> str:
    return "" if v is None else escape(fmt(v))

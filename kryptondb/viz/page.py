"""The plan page: one self-contained HTML file drawn from the profile document
(kryptondb.plan/1, what EXPLAIN PLAN FORMAT JSON prints). It shows the statement, the run's
total and its setup, the operator DAG (viz.svg) beside the heatmap, and for each occlusion scan
the planner's choice beside them, then the per-layer table and the projective field of one
patch position.
Styles, scripts and pictures are inline (the heatmap as a PNG data URI): the page works offline
in any browser and can be mailed as is.

>>> doc = {"schema": "kryptondb.plan/1", "statement": "SHOW MODELS", "analyzed": False,
...        "nodes": [{"id": 0, "op": "ShowCatalog", "inputs": [], "args": {"what": "models"}}]}
>>> page = to_page(doc)
>>> page.startswith("<!DOCTYPE html>"), "ShowCatalog" in page, "<script src" in page
(True, True, False)
"""

from __future__ import annotations

import base64
import json
import math
from html import escape

from kryptondb.errors import KryptonError
from kryptondb.format import fmt_percent, fmt_time, shorten
from kryptondb.viz.diagram import Diagram, DiagramNode
from kryptondb.viz.page_assets import CSS, GUARD, SCRIPT
from kryptondb.viz.page_scan import scan_details, scan_summary
from kryptondb.viz.svg import to_svg

SCHEMA = "kryptondb.plan/1"
SETUP = (("model_load", "model load"), ("sessions", "sessions"), ("views", "views"))
TELLING = ("model", "grid", "source", "target", "shape", "what", "name", "path", "k")
BOX_ARGS = 2  # arguments drawn in a box of the page's DAG; the full drawing has them all
VIDEO = (("decode_s", "decode"), ("preprocess_s", "preprocess"),
         ("change_detection_s", "change detection"), ("incremental_s", "incremental"),
         ("full_s", "full"))


def to_page(doc: dict, heatmap_png: bytes | None = None, plan_text: str = "") -> str:
    """The page of ``doc``; ``heatmap_png``: the statement's heatmap (PNG bytes) drawn beside
    the DAG; ``plan_text``: EXPLAIN's text, folded away at the bottom."""
    check(doc)
    statement = doc.get("statement") or ""
    title = "KryptonDB plan" + (f": {shorten(statement, 60)}" if statement else "")
    nodes = {n["id"]: n for n in doc.get("nodes") or ()}
    scans = doc.get("scans") or ()
    side = [_result(doc, heatmap_png), *(scan_summary(s, nodes.get(s.get("node")))
                                         for s in scans)]
    body = [
        '<div id="page-errors" role="alert"></div>',
        _header(doc),
        '<div class="top">', _dag(doc), '<div class="side">', *side, "</div></div>",
        _video(doc.get("video")),
        *(scan_details(s) for s in scans),
        _plan_text(plan_text),
        f'<p class="note">document schema {escape(str(doc.get("schema")))}</p>',
        f'<script type="application/json" id="plan-document">{embedded(doc)}</script>',
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>\n{CSS}\n</style>\n"
        f"<script>\n{GUARD}\n</script>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + f"\n<script>\n{SCRIPT}\n</script>\n</body>\n</html>\n"
    )


def check(doc) -> None:
    """A profile document of the one schema this page draws."""
    if not isinstance(doc, dict):
        raise KryptonError(f"plan page: a profile document is a JSON object, got "
                           f"{type(doc).__name__}")
    if doc.get("schema") != SCHEMA:
        raise KryptonError(f"plan page: document schema {doc.get('schema')!r} is not "
                           f"{SCHEMA!r}")


def embedded(doc: dict) -> str:
    r"""The document as JSON inside the page, for whoever reads the page's data back: every
    ``<``, ``>`` and ``&`` escaped so no text in it can close the script element; a number
    that is not finite (JSON has none) as null.

    >>> print(embedded({"statement": "</script><!--", "total_s": float("nan")}))
    {"statement": "\u003c/script\u003e\u003c!--", "total_s": null}
    """
    text = json.dumps(_finite(doc), ensure_ascii=False, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _header(doc: dict) -> str:
    badge = '<span class="badge analyzed">analyzed</span>' if doc.get("analyzed") else \
        '<span class="badge">planned, not run</span>'
    out = [f"<h1>KryptonDB plan {badge}</h1>"]
    if doc.get("statement"):
        out.append(f'<div class="statement">{escape(doc["statement"])}</div>')
    line = _setup_line(doc.get("total_s"), doc.get("setup_s"))
    if line:
        out.append(f'<p class="setup">{escape(line)}</p>')
    return "\n".join(out)


def _setup_line(total, setup) -> str:
    """'total 5.29 s; setup 2.60 s (49.2%): model load ..., sessions ..., views ...'"""
    parts = [f"total {fmt_time(total)}"] if total is not None else []
    setup = {k: v for k, v in (setup or {}).items() if isinstance(v, (int, float))}
    if any(setup.values()):  # a statement that set nothing up says nothing of it
        spent = sum(setup.values())
        share = f" ({fmt_percent(spent / total)} of the total)" if total else ""
        names = dict(SETUP)
        order = [k for k in names if k in setup] + sorted(k for k in setup if k not in names)
        each = ", ".join(f"{names.get(k, k.replace('_', ' '))} {fmt_time(setup[k])}"
                         for k in order)
        parts.append(f"setup {fmt_time(spent)}{share}: {each}")
    return "; ".join(parts)


def _dag(doc: dict) -> str:
    """The DAG with a few telling arguments per box (what a box needs to be recognised); every
    argument in a second drawing, folded away."""
    nodes = doc.get("nodes") or ()
    if not nodes:
        return ""
    short = to_svg(Diagram(tuple(_box(n, BOX_ARGS) for n in nodes)))
    full = to_svg(Diagram(tuple(_box(n) for n in nodes)))
    return (f'<figure class="dag">\n{short}<details><summary>every argument</summary>\n{full}'
            "</details></figure>")


def _box(n: dict, keep: int | None = None) -> DiagramNode:
    args = (n.get("args") or {}).items()
    if keep is not None:
        rank = {k: i for i, k in enumerate(TELLING)}
        args = sorted((kv for kv in args if kv[0] in rank), key=lambda kv: rank[kv[0]])[:keep]
    args = tuple((k, _arg(v)) for k, v in args)
    return DiagramNode(n["id"], str(n.get("op", "?")), args,
                       tuple(n.get("inputs") or ()), dict(n.get("stats") or {}))


def _arg(v):
    """An argument as its box shows it: a grid (an object) as EXPLAIN writes one, another
    object as its fields, a list as a tuple, the rest as it is."""
    if isinstance(v, dict):
        if {"rows", "cols", "patch", "stride"} <= v.keys():
            return f"{v['rows']}x{v['cols']}(patch={_side(v['patch'])},stride={_side(v['stride'])})"
        return " ".join(f"{k}={_arg(x)}" for k, x in v.items())
    return tuple(v) if isinstance(v, list) else v


def _side(pair) -> str:
    """A window or stride as EXPLAIN writes it: 16 for 16x16, else 16x8."""
    pair = list(pair or ())
    return str(pair[0]) if len(pair) == 2 and pair[0] == pair[1] else "x".join(map(str, pair))


def _result(doc: dict, png: bytes | None) -> str:
    if png:
        data = base64.b64encode(png).decode("ascii")
        return (f'<figure class="result"><img class="heatmap" alt="heatmap" '
                f'src="data:image/png;base64,{data}"><figcaption>the statement\'s heatmap: '
                "the score's drop with the patch at each position</figcaption></figure>")
    if not doc.get("scans"):
        return ""
    why = "the plan ran, but its heatmap was not kept" if doc.get("analyzed") else \
        "EXPLAIN PLAN ANALYZE runs the statement and draws its heatmap here"
    return f'<figure class="result"><p class="note">No heatmap: {escape(why)}.</p></figure>'


def _video(video: dict | None) -> str:
    """Per-stage video timing, each a bar against the stages' sum."""
    stages = {k: v for k, v in ((video or {}).get("stages") or {}).items() if v is not None}
    if not stages:
        return ""
    total = sum(stages.values()) or 1.0
    rows = []
    for key, label in VIDEO:
        if key in stages:
            share = stages[key] / total
            rows.append(f'<tr><th>{label}</th><td class="num">{fmt_time(stages[key])}</td><td>'
                        f'<span class="bar time"><span style="width:{100 * share:.1f}%">'
                        f'</span></span><span class="pct">{fmt_percent(share)}</span></td></tr>')
    return ('<section class="video"><h2>Video stages</h2><table class="facts">'
            + "".join(rows) + "</table></section>")


def _plan_text(text: str) -> str:
    if not text:
        return ""
    return (f'<details class="plan-text"><summary>EXPLAIN text</summary>'
            f'<pre class="plan">{escape(text)}</pre></details>')

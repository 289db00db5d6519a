"""A self-contained SVG picture of a physical plan, laid out by ``viz.layout``: no Graphviz, no
fonts or scripts from elsewhere. Text is measured by assuming a monospace font.

>>> from kryptondb.viz.diagram import Diagram, DiagramNode
>>> svg = to_svg(Diagram((DiagramNode(0, "LoadImage", (("path", "a<b>.png"),), ()),)), "demo")
>>> svg.startswith("<svg") and "a&lt;b&gt;.png" in svg
True
"""

from __future__ import annotations

import itertools
import unicodedata

from kryptondb.viz.diagram import Diagram, DiagramNode
from kryptondb.viz import style
from kryptondb.viz.layout import Box, Layout, Route, layout

FONT = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace"
FONT_SIZE, CHAR_W, LINE_H = 12, 7.2, 16  # px; 0.6 em per character is typical for monospace
TITLE_SIZE, TITLE_CHAR_W = 16, 9.6
PAD_X, PAD_Y, RULE_GAP = 10, 7, 7  # inside a box; RULE_GAP: room for a divider line
MARGIN, MIN_BOX_W = 24, 96
EDGE, STAT_INK, RULE = "#555555", "#7a2e0e", "#9a9a9a"
LEGEND_BAR_W, LEGEND_BAR_H, LEGEND_GAP, LEGEND_H = 180, 10, 28, 46


def to_svg(dag: Diagram, title: str = "") -> str:
    """Title, then the plan top to bottom, then a legend for the fill colours. Same plan, same
    bytes: no ids but node numbers, and the layout is deterministic."""
    style.check(dag)
    costs = style.costs(dag)
    sections = {n.id: _sections(n, costs) for n in dag.nodes}
    lay = layout({i: _box_size(s) for i, s in sections.items()}, style.edges(dag))
    caption = _caption(costs) if dag.nodes else ""
    content_w = max(lay.width, _text_w(title, TITLE_CHAR_W), _legend_w(costs, caption))
    top = MARGIN + (TITLE_SIZE + 14 if title else 0)
    dx = MARGIN + (content_w - lay.width) / 2  # centre a narrow graph under a wide title
    legend_y = top + lay.height + LEGEND_GAP
    height = (legend_y + LEGEND_H if caption else top + lay.height) + MARGIN
    out = [_open(content_w + 2 * MARGIN, height, costs)]
    if title:
        heading = {"size": TITLE_SIZE, "bold": True, "anchor": "middle"}
        out.append(_text(MARGIN + content_w / 2, MARGIN + TITLE_SIZE, title, "title", **heading))
    out += _edges(dag, lay, dx, top)
    fills = style.fills(dag)
    out.append('<g class="nodes">')
    for n in dag.nodes:
        out += _node(n, lay.boxes[n.id], sections[n.id], fills[n.id], dx, top)
    out.append("</g>")
    if caption:
        out += _legend(costs, caption, MARGIN + content_w / 2, legend_y)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _sections(n: DiagramNode, costs) -> list[tuple[str, list[str]]]:
    """Header, args, costs: the blocks of a box, divided by thin rules."""
    blocks = (
        ("op", [style.header(n)]),
        ("arg", style.arg_lines(n)),
        ("stat", style.cost_lines(n, costs)),
    )
    return [(kind, lines) for kind, lines in blocks if lines]


def _box_size(sections: list[tuple[str, list[str]]]) -> tuple[float, float]:
    lines = [line for _, block in sections for line in block]
    w = max(_text_w(line, CHAR_W) for line in lines) + 2 * PAD_X
    h = len(lines) * LINE_H + 2 * PAD_Y + (len(sections) - 1) * RULE_GAP
    return max(w, MIN_BOX_W), h


def _text_w(text: str, char_w: float) -> float:
    """Monospace advance; East Asian wide characters take two cells, combining marks none."""
    cells = 0
    for c in text:
        if unicodedata.combining(c):
            continue
        cells += 2 if unicodedata.east_asian_width(c) in "WF" else 1
    return cells * char_w


def _open(width: float, height: float, costs) -> str:
    gradient = ""
    if costs is not None:
        stops = "".join(f'<stop offset="{t:g}" stop-color="{c}"/>' for t, c in style.HEAT_STOPS)
        gradient = f'<linearGradient id="heat">{stops}</linearGradient>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" font-family="{FONT}" font-size="{FONT_SIZE}" '
        f'xml:space="preserve">\n<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" '
        f'refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" '
        f'orient="auto"><polygon points="0,0 10,5 0,10" fill="{EDGE}"/></marker>{gradient}</defs>'
        f'\n<rect class="background" width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>'
    )


def _edges(dag: Diagram, lay: Layout, dx: float, dy: float) -> list[str]:
    ops = {n.id: n.op for n in dag.nodes}
    out = ['<g class="edges" fill="none">']
    for r in lay.routes:
        tip = style.visible(f"%{r.src} {ops[r.src]} -> %{r.dst} {ops[r.dst]}")
        out.append(
            f'<path class="edge" d="{_path(r, dx, dy)}" stroke="{EDGE}" '
            f'stroke-width="1.4" marker-end="url(#arrow)"><title>{_esc(tip)}</title></path>'
        )
    out.append("</g>")
    return out


def _path(r: Route, dx: float, dy: float) -> str:
    """Straight lines down through a layer, cubic Béziers with vertical tangents between."""
    pts = [(x + dx, y + dy) for x, y in r.points]
    d = [f"M{_n(pts[0][0])},{_n(pts[0][1])}"]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 == x1:
            d.append(f"L{_n(x1)},{_n(y1)}")
        else:
            m = (y0 + y1) / 2
            d.append(f"C{_n(x0)},{_n(m)} {_n(x1)},{_n(m)} {_n(x1)},{_n(y1)}")
    return " ".join(d)


def _node(n: DiagramNode, b: Box, sections, fill: str, dx: float, dy: float) -> list[str]:
    x, y = b.x + dx, b.y + dy
    out = [
        f'<g class="node" id="node-{n.id}">',
        f"<title>{_esc(style.tooltip(n))}</title>",
        (
            f'<rect class="node-box" x="{_n(x)}" y="{_n(y)}" width="{_n(b.w)}" height="{_n(b.h)}" '
            f'rx="5" fill="{fill}" stroke="{style.BORDER}" stroke-width="1.2"/>'
        ),
    ]
    cy = y + PAD_Y
    for k, (kind, block) in enumerate(sections):
        if k:
            ry = cy + RULE_GAP / 2
            out.append(
                f'<line x1="{_n(x)}" y1="{_n(ry)}" x2="{_n(x + b.w)}" y2="{_n(ry)}" '
                f'stroke="{RULE}" stroke-width="0.8"/>'
            )
            cy += RULE_GAP
        for line in block:
            cy += LINE_H
            colour = STAT_INK if kind == "stat" and style.is_light(fill) else style.INK
            out.append(_text(x + PAD_X, cy - 4, line, kind, colour=colour, bold=kind == "op"))
    out.append("</g>")
    return out


def _caption(costs) -> str:
    return "fill: role in the plan" if costs is None else style.legend_caption(costs)


def _legend_w(costs, caption: str) -> float:
    if not caption:
        return 0.0
    items = LEGEND_BAR_W + 40 if costs else sum(_swatch_w(k) for k, _ in style.KIND_COLOURS)
    return max(items, _text_w(caption, CHAR_W))


def _swatch_w(kind: str) -> float:
    return 16 + _text_w(kind, CHAR_W) + 18


def _legend(costs, caption: str, cx: float, y: float) -> list[str]:
    """A heat bar from 0% to 100% after ANALYZE; otherwise a swatch per node role."""
    out = ['<g class="legend">', _text(cx, y + 12, caption, "legend", anchor="middle")]
    if costs is not None:
        x0 = cx - LEGEND_BAR_W / 2
        out.append(
            f'<rect class="legend-bar" x="{_n(x0)}" y="{_n(y + 20)}" '
            f'width="{LEGEND_BAR_W}" height="{LEGEND_BAR_H}" fill="url(#heat)" '
            f'stroke="{style.BORDER}" stroke-width="0.8"/>'
        )
        for t in (0, 0.5, 1):
            out.append(
                _text(x0 + t * LEGEND_BAR_W, y + 44, f"{t:.0%}", "legend", anchor="middle", size=10)
            )
    else:
        swatches = style.KIND_COLOURS
        x = cx - sum(_swatch_w(k) for k, _ in swatches) / 2 + 9
        for kind, colour in swatches:
            out.append(
                f'<rect class="legend-swatch" x="{_n(x)}" y="{_n(y + 22)}" width="12" '
                f'height="12" rx="2" fill="{colour}" stroke="{style.BORDER}" '
                f'stroke-width="0.8"/>'
            )
            out.append(_text(x + 16, y + 32, kind, "legend"))
            x += _swatch_w(kind)
    out.append("</g>")
    return out


def _text(x, y, text, cls, *, colour=style.INK, size=None, bold=False, anchor=None) -> str:
    attrs = f'class="{cls}" x="{_n(x)}" y="{_n(y)}" fill="{colour}"'
    attrs += f' font-size="{size}"' if size else ""
    attrs += ' font-weight="bold"' if bold else ""
    attrs += f' text-anchor="{anchor}"' if anchor else ""
    return f"<text {attrs}>{_esc(style.visible(text))}</text>"


def _esc(text: str) -> str:
    """XML character data and attribute values alike."""
    text = style.visible(text, keep="\n")
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _n(v: float) -> str:
    """Coordinates to 0.1 px: short, stable output (and never '-0.0')."""
    return f"{round(v, 1) + 0.0:g}"

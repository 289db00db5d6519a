"""One self-contained HTML page: the plan's SVG inline, then the plan text. No scripts, no links
to anything outside the page, so it can be mailed or attached to a bug report as is."""

from __future__ import annotations

from html import escape

from kryptondb.viz.diagram import Diagram
from kryptondb.viz.svg import to_svg

CSS = """\
body { margin: 24px; font-family: system-ui, sans-serif; color: #1a1a1a; background: #fff; }
h1 { font-size: 18px; margin: 0 0 12px; }
figure { margin: 0; overflow-x: auto; }
figure svg { max-width: none; height: auto; }
pre { font: 12px/1.45 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f6f6f6;
      border: 1px solid #ddd; border-radius: 4px; padding: 12px; overflow-x: auto; }"""


def to_html(dag: Diagram, title: str = "", plan_text: str = "") -> str:
    """The page's title names the plan; the SVG carries no title of its own to avoid saying it
    twice. ``plan_text`` (e.g. EXPLAIN output) goes below the picture, escaped."""
    heading = f"<h1>{escape(title)}</h1>\n" if title else ""
    text = f'<pre class="plan">{escape(plan_text)}</pre>\n' if plan_text else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title or 'KryptonDB plan')}</title>\n<style>\n{CSS}\n</style>\n"
        f"</head>\n<body>\n{heading}<figure>\n{to_svg(dag)}</figure>\n{text}</body>\n</html>\n"
    )

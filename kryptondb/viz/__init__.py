"""Pictures of physical plans: Graphviz DOT, a self-contained SVG, and an HTML page around it.

>>> from kryptondb.viz.diagram import Diagram, DiagramNode
>>> dag = Diagram((DiagramNode(0, "LoadImage", (("path", "cat.png"),), ()),))
>>> render(dag, "svg").startswith("<svg")
True
>>> render(dag, "png")
Traceback (most recent call last):
...
ValueError: unknown plan format 'png'; known: dot, html, svg
"""

from __future__ import annotations

from kryptondb.viz.diagram import Diagram
from kryptondb.viz.dot import to_dot
from kryptondb.viz.html import to_html
from kryptondb.viz.svg import to_svg

__all__ = ["FORMATS", "render", "to_dot", "to_html", "to_svg"]

FORMATS = ("dot", "html", "svg")


def render(dag: Diagram, fmt: str, title: str = "", plan_text: str = "") -> str:
    """``fmt`` is one of FORMATS; ``plan_text`` only shows in the HTML page."""
    if fmt == "dot":
        return to_dot(dag, title)
    if fmt == "svg":
        return to_svg(dag, title)
    if fmt == "html":
        return to_html(dag, title, plan_text)
    raise ValueError(f"unknown plan format {fmt!r}; known: {', '.join(FORMATS)}")

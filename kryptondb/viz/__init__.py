"""Pictures of physical plans: Graphviz DOT and a self-contained SVG of the DAG (``render``);
the HTML plan page (``page.to_page``) is drawn from the profile document and embeds the SVG.

>>> from kryptondb.viz.diagram import Diagram, DiagramNode
>>> dag = Diagram((DiagramNode(0, "LoadImage", (("path", "cat.png"),), ()),))
>>> render(dag, "svg").startswith("<svg")
True
>>> render(dag, "png")
Traceback (most recent call last):
...
ValueError: unknown plan format 'png'; known: dot, svg
"""

from __future__ import annotations

from kryptondb.viz.diagram import Diagram
from kryptondb.viz.dot import to_dot
from kryptondb.viz.svg import to_svg

__all__ = ["FORMATS", "render", "to_dot", "to_svg"]

FORMATS = ("dot", "svg")


def render(dag: Diagram, fmt: str, title: str = "") -> str:
    """``fmt`` is one of FORMATS."""
    if fmt == "dot":
        return to_dot(dag, title)
    if fmt == "svg":
        return to_svg(dag, title)
    raise ValueError(f"unknown plan format {fmt!r}; known: {', '.join(FORMATS)}")

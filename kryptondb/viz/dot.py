"""Graphviz DOT for a physical plan: sources at the top, data flowing down to the root.

>>> from kryptondb.viz.diagram import Diagram, DiagramNode
>>> dag = Diagram((DiagramNode(0, "LoadImage", (("path", "cat.png"),), ()),
...            DiagramNode(1, "Inference", (("model", "resnet18"),), (0,))))
>>> for line in to_dot(dag).splitlines()[-4:]:
...     print(line)
  n0 [label="%0 LoadImage\\npath='cat.png'\\l", fillcolor="#dbe9f6"];
  n1 [label="%1 Inference\\nmodel='resnet18'\\l", fillcolor="#dcefd6"];
  n0 -> n1;
}
"""

from __future__ import annotations

from kryptondb.viz.diagram import Diagram
from kryptondb.viz import style


def to_dot(dag: Diagram, title: str = "") -> str:
    """One box per node (``%id Op``, its args, its costs after ANALYZE), one edge per input.
    Same plan, same bytes: nodes are named by position and listed in plan order."""
    style.check(dag)
    fills, costs = style.fills(dag), style.costs(dag)
    name = {n.id: f"n{pos}" for pos, n in enumerate(dag.nodes)}
    out = ["digraph plan {", *_preamble(dag, title)]
    for n in dag.nodes:
        label = _quote(style.header(n)) + "\\n"
        label += "".join(_quote(line) + "\\l" for line in style.arg_lines(n))
        label += "".join(_quote(line) + "\\l" for line in style.cost_lines(n, costs))
        out.append(f'  {name[n.id]} [label="{label}", fillcolor="{fills[n.id]}"];')
    out += [f"  {name[s]} -> {name[d]};" for s, d in style.edges(dag)]
    out.append("}")
    return "\n".join(out) + "\n"


def _preamble(dag: Diagram, title: str) -> list[str]:
    costs = style.costs(dag)
    caption = [title] if title else []
    if costs is not None:
        caption.append(style.legend_caption(costs) + " (white 0% -> red 100%)")
    graph = 'rankdir=TB, nodesep=0.35, ranksep=0.45, fontname="monospace", fontsize=14'
    if caption:
        graph += f', labelloc=t, label="{_quote(chr(10).join(caption))}"'
    return [
        f"  graph [{graph}];",
        (
            f'  node [shape=box, style="rounded,filled", color="{style.BORDER}", '
            f'fontname="monospace", fontsize=10, fontcolor="{style.INK}", margin="0.12,0.06"];'
        ),
        '  edge [color="#555555", arrowsize=0.7];',
    ]


def _quote(text: str) -> str:
    """Text for inside a double-quoted DOT string: backslashes and quotes escaped (so no
    ``\\N``-style substitutions fire), newlines as DOT line breaks, other controls visible."""
    text = style.visible(text.replace("\r\n", "\n"), keep="\n")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

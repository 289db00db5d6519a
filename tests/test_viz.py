"""Plan pictures: DOT, SVG and HTML from a physical DAG, checked for structure, escaping,
determinism and a sane layout (no overlapping boxes, nothing clipped, edges around boxes)."""

from __future__ import annotations

import itertools
import random
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from kryptondb.viz.diagram import Diagram as Dag, DiagramNode as DagNode
from kryptondb.viz import FORMATS, render, to_dot, to_svg
from kryptondb.format import fmt_bytes, fmt_flops, fmt_time, fmt_value

SVG_NS = {"s": "http://www.w3.org/2000/svg"}

OCCLUSION_STATS = {  # seconds, FLOPs, bytes as EXPLAIN PLAN ANALYZE would report them
    0: {"time_s": 0.0042, "bytes": 151_230, "rows": 1},
    1: {"time_s": 0.0019, "bytes": 602_112, "flops": 3_010_560},
    2: {"time_s": 0.0113, "flops": 613_993_472, "bytes": 14_214_400, "batches": 1},
    3: {"time_s": 0.00002, "rows": 1},
    4: {"time_s": 3.4171, "flops": 1_724_707_662_848, "bytes": 1_691_332_608, "batches": 44},
    5: {"time_s": 0.0031, "bytes": 11_236, "rows": 2809},
    6: {"time_s": 0.0008, "bytes": 11_236, "rows": 2809, "files": 1},
}


def occlusion_dag(with_stats: bool = False) -> Dag:
    """The physical plan of an occlusion query over one image (naive re-inference)."""
    spec = [
        ("LoadImage", {"path": "cat.png"}, ()),
        ("Preprocess", {"resize": 256, "crop": 224}, (0,)),
        ("Inference", {"model": "mobilenet_v2", "backend": "onnxruntime", "batch": 1}, (1,)),
        ("PickClass", {"class": "auto"}, (2,)),
        (
            "OcclusionScan",
            {
                "mode": "naive",
                "patch": 16,
                "stride": 4,
                "positions": "53x53",
                "batch": 64,
                "flops_per_position": 613_993_472,
            },
            (1, 3),
        ),
        ("Heatmap", {"shape": (53, 53), "normalize": None, "colormap": "inferno"}, (4, 2, 3)),
        ("StoreTable", {"name": "heat"}, (5,)),
    ]
    total = sum(s["time_s"] for s in OCCLUSION_STATS.values())
    nodes = []
    for i, (op, args, inputs) in enumerate(spec):
        stats = dict(OCCLUSION_STATS[i], share=OCCLUSION_STATS[i]["time_s"] / total)
        nodes.append(DagNode(i, op, tuple(args.items()), inputs, stats if with_stats else {}))
    return Dag(tuple(nodes))


def diamond_dag() -> Dag:
    return Dag(
        (
            DagNode(0, "LoadImage", (("path", "dog.png"),), ()),
            DagNode(1, "Inference", (("model", "resnet18"),), (0,)),
            DagNode(2, "Inference", (("model", "vgg16"),), (0,)),
            DagNode(3, "Compare", (("metric", "top1"),), (1, 2)),
        )
    )


def chain_dag(n: int = 30) -> Dag:
    first = DagNode(0, "ScanFrames", (("video", "street.mp4"),), ())
    rest = [DagNode(i, f"Layer{i}", (("k", i),), (i - 1,)) for i in range(1, n)]
    return Dag((first, *rest))


def nasty_dag() -> Dag:
    """Arguments and names that break naive escaping in DOT, XML and HTML."""
    return Dag(
        (
            DagNode(
                0, "Load<Image>", (("path", 'C:\\imgs\\"a&b".png'), ("note", "x < y && y > z")), ()
            ),
            DagNode(
                1,
                "Filter",
                (("pred", "label = 'cat'\nOR label = \"dog\""), ("ctl", "\x01\x1b")),
                (0,),
                {"time_s": 0.5, "why<&>": 3},
            ),
        )
    )


def random_dag(seed: int) -> Dag:
    """Irregular plans: several sources, fan-in up to three, long skip edges, ragged box sizes."""
    rng = random.Random(seed)
    nodes = []
    for i in range(rng.randint(6, 28)):
        k = 0 if i == 0 or rng.random() < 0.15 else rng.choice((1, 1, 1, 2, 2, 3))
        inputs = tuple(sorted({rng.choice(range(max(0, i - 6), i)) for _ in range(k)}))
        args = tuple((f"a{j}", "v" * rng.randint(1, 60)) for j in range(rng.randint(0, 5)))
        stats = {"time_s": rng.random(), "flops": rng.randint(0, 10**12)} if seed % 2 else {}
        nodes.append(
            DagNode(i, rng.choice(("Scan", "Inference", "OcclusionScan", "X")), args, inputs, stats)
        )
    return Dag(tuple(nodes))


EXAMPLES = {
    "occlusion": occlusion_dag(),
    "occlusion+stats": occlusion_dag(True),
    "diamond": diamond_dag(),
    "chain": chain_dag(),
    "nasty": nasty_dag(),
    **{f"random{seed}": random_dag(seed) for seed in range(12)},
}


def edges_of(dag: Dag) -> set[tuple[int, int]]:
    return {(i, n.id) for n in dag.nodes for i in n.inputs}


# --- DOT -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLES)
def test_dot_has_every_node_and_edge_exactly_once(name):
    dag = EXAMPLES[name]
    dot = to_dot(dag, title=name)
    declared = re.findall(r"^  n(\d+) \[label=\"%(\d+) ", dot, re.MULTILINE)
    assert sorted(int(pos) for pos, _ in declared) == list(range(len(dag.nodes)))
    assert [int(nid) for _, nid in declared] == [n.id for n in dag.nodes]
    arrows = re.findall(r"^  n(\d+) -> n(\d+);$", dot, re.MULTILINE)
    assert len(arrows) == len(set(arrows)) == len(edges_of(dag))
    assert {(int(a), int(b)) for a, b in arrows} == edges_of(dag)  # ids == positions here


def test_dot_is_deterministic_and_ignores_stats_insertion_order():
    dag = occlusion_dag(True)
    shuffled = Dag(
        tuple(
            DagNode(n.id, n.op, n.args, n.inputs, dict(reversed(list(n.stats.items()))))
            for n in dag.nodes
        )
    )
    assert to_dot(dag, "t") == to_dot(dag, "t") == to_dot(shuffled, "t")
    assert to_svg(dag, "t") == to_svg(shuffled, "t")


def test_dot_labels_show_args_and_costs():
    dot = to_dot(occlusion_dag(True), "occlusion")
    assert "positions='53x53'\\l" in dot
    assert "3.42 s  " in dot and "1.7 TFLOPs  1.7 GB" in dot and "44 batches" in dot
    assert 'label="occlusion\\nfill: share of total time' in dot
    plain = to_dot(occlusion_dag())
    assert "TFLOPs" not in plain and "fill:" not in plain


def test_dot_escapes_quotes_backslashes_and_newlines():
    dot = to_dot(nasty_dag(), title='say "hi"\\')
    assert "'C:\\\\\\\\imgs\\\\\\\\\\\"a&b\\\".png'" in dot  # repr doubles \, DOT doubles again
    assert 'label="say \\"hi\\"\\\\\\nfill: share of total time' in dot
    for line in dot.splitlines():  # no raw newline or control character inside any statement
        assert line == "}" or line.startswith(("digraph", "  ")) and line.endswith((";", "{"))
    assert not re.search(r"[\x00-\x08\x0b-\x1f]", dot)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` not installed")
@pytest.mark.parametrize("name", EXAMPLES)
def test_graphviz_parses_our_dot(name):
    dag = EXAMPLES[name]
    run = subprocess.run(
        ["dot", "-Tplain"],
        input=to_dot(dag, name),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and not run.stderr, run.stderr
    plain = run.stdout.splitlines()
    assert sum(ln.startswith("node ") for ln in plain) == len(dag.nodes)
    assert sum(ln.startswith("edge ") for ln in plain) == len(edges_of(dag))


# --- SVG -----------------------------------------------------------------------------------------


def parse_svg(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything not well-formed


def boxes(root: ET.Element) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for g in root.iterfind(".//s:g[@class='node']", SVG_NS):
        r = g.find("s:rect[@class='node-box']", SVG_NS)
        out[g.get("id")] = tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
    return out


def overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def bezier_samples(d: str, steps: int = 24) -> list[tuple[float, float]]:
    """Points along an SVG path made of M, L and C commands (the only ones we emit)."""
    pts, cur = [], None
    for cmd, args in re.findall(r"([MLC])([^MLC]*)", d):
        nums = [float(v) for v in re.findall(r"-?[\d.]+(?:e[-+]?\d+)?", args)]
        xy = list(zip(nums[::2], nums[1::2]))
        if cmd == "M":
            cur = xy[0]
            pts.append(cur)
        elif cmd == "L":
            pts += [
                (cur[0] + (xy[0][0] - cur[0]) * t / steps, cur[1] + (xy[0][1] - cur[1]) * t / steps)
                for t in range(1, steps + 1)
            ]
            cur = xy[0]
        else:
            (x1, y1), (x2, y2), (x3, y3) = xy
            for k in range(1, steps + 1):
                t = k / steps
                a, b, c, e = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
                pts.append(
                    (a * cur[0] + b * x1 + c * x2 + e * x3, a * cur[1] + b * y1 + c * y2 + e * y3)
                )
            cur = (x3, y3)
    return pts


@pytest.mark.parametrize("name", EXAMPLES)
def test_svg_is_well_formed_with_a_group_per_node_and_a_path_per_edge(name):
    dag = EXAMPLES[name]
    root = parse_svg(to_svg(dag, title=name))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(boxes(root)) == len(dag.nodes)
    assert len(root.findall(".//s:path", SVG_NS)) == len(edges_of(dag))
    assert all(p.get("class") == "edge" for p in root.iterfind(".//s:path", SVG_NS))
    text = "\n".join("".join(t.itertext()) for t in root.iterfind(".//s:text", SVG_NS))
    for n in dag.nodes:
        assert f"%{n.id} {n.op}" in text
    assert not root.findall(".//s:script", SVG_NS) and "href" not in to_svg(dag).replace(
        "url(#", ""
    )


@pytest.mark.parametrize("name", EXAMPLES)
def test_svg_boxes_do_not_overlap_and_fit_the_view_box(name):
    root = parse_svg(to_svg(EXAMPLES[name], title=name))
    vx, vy, vw, vh = (float(v) for v in root.get("viewBox").split())
    assert (float(root.get("width")), float(root.get("height"))) == (vw, vh)
    rects = list(boxes(root).values())
    for i, a in enumerate(rects):
        assert vx <= a[0] and a[0] + a[2] <= vx + vw and vy <= a[1] and a[1] + a[3] <= vy + vh
        assert not any(overlap(a, b) for b in rects[i + 1 :])
    for el in root.iterfind(".//s:text", SVG_NS):  # text anchored inside the picture too
        assert vx <= float(el.get("x")) <= vx + vw and vy < float(el.get("y")) <= vy + vh


@pytest.mark.parametrize("name", EXAMPLES)
def test_svg_edges_run_downwards_around_other_boxes(name):
    dag = EXAMPLES[name]
    root = parse_svg(to_svg(dag))
    vx, vy, vw, vh = (float(v) for v in root.get("viewBox").split())
    rects = boxes(root)
    for path in root.iterfind(".//s:path", SVG_NS):
        src, dst = (int(v) for v in re.findall(r"%(\d+)", path.find("s:title", SVG_NS).text))
        pts = bezier_samples(path.get("d"))
        s, d = rects[f"node-{src}"], rects[f"node-{dst}"]
        assert pts[0][1] == pytest.approx(s[1] + s[3]) and pts[-1][1] == pytest.approx(d[1])
        assert all(b[1] >= a[1] - 1e-6 for a, b in itertools.pairwise(pts))  # never climbs
        assert all(vx < px < vx + vw and vy < py < vy + vh for px, py in pts)
        for key, (x, y, w, h) in rects.items():
            if key not in (f"node-{src}", f"node-{dst}"):
                assert not any(x < px < x + w and y < py < y + h for px, py in pts), (src, dst, key)


def test_svg_formats_every_measured_figure_by_its_unit():
    stats = {"time_s": 0.5, "gather_s": 0.0123456, "setup_s": 1.23456, "gather_bytes": 123456,
             "workers": 2, "ssim": 0.9123456, "layers": {"conv1": [3, 49, 1024, 0.1, 0.2]}}
    svg = to_svg(Dag((DagNode(0, "IncrementalOcclusionScan", (), (), stats),)))
    root = parse_svg(svg)
    text = "\n".join("".join(t.itertext()) for t in root.iterfind(".//s:text", SVG_NS))
    assert "gather 12.3 ms" in text and "setup 1.23 s" in text and "workers 2" in text
    assert "gather bytes 123.5 kB" in text and "ssim 0.912" in text
    assert not re.search(r"\d\.\d{4,}", svg)  # no raw floats, boxes or tooltips
    assert "layers=" not in svg  # the per-layer counters are EXPLAIN's table's


def test_svg_escapes_markup_in_args_names_and_title():
    svg = to_svg(nasty_dag(), title="plans & <pictures>")
    root = parse_svg(svg)
    text = "\n".join("".join(t.itertext()) for t in root.iterfind(".//s:text", SVG_NS))
    assert "%0 Load<Image>" in text and "plans & <pictures>" in text
    assert "note='x < y && y > z'" in text and "why<&> 3" in text
    assert "path='C:\\\\imgs\\\\\"a&b\".png'" in text
    tips = [t.text for t in root.iterfind(".//s:g/s:title", SVG_NS)]
    assert any("pred='label = \\'cat\\'\\nOR label = \"dog\"'" in t for t in tips)
    assert "<Image>" not in svg and "&amp;&amp;" in svg


def test_svg_diamond_puts_the_branches_side_by_side():
    r = boxes(parse_svg(to_svg(diamond_dag())))
    src, left, right, sink = (r[f"node-{i}"] for i in range(4))
    assert left[1] == right[1] and not overlap(left, right)
    assert src[1] + src[3] < left[1] and left[1] + left[3] < sink[1]
    centre = lambda b: b[0] + b[2] / 2
    lo, hi = sorted((centre(left), centre(right)))
    assert lo < centre(src) < hi and lo < centre(sink) < hi  # the diamond is symmetric-ish


def test_svg_chain_is_one_straight_column():
    dag = chain_dag(30)
    root = parse_svg(to_svg(dag))
    r = [boxes(root)[f"node-{i}"] for i in range(30)]
    assert all(a[1] + a[3] < b[1] for a, b in itertools.pairwise(r))
    assert len({round(b[0] + b[2] / 2, 1) for b in r}) == 1
    assert float(root.get("width")) < 400  # a chain does not spread sideways


def test_svg_orders_layers_to_avoid_crossings():
    dag = Dag(
        (
            DagNode(0, "LoadImage", (("path", "a.png"),), ()),
            DagNode(1, "LoadImage", (("path", "b.png"),), ()),
            DagNode(2, "Preprocess", (), (1,)),  # plan order would cross the two branches
            DagNode(3, "Preprocess", (), (0,)),
            DagNode(4, "Stack", (), (2, 3)),
        )
    )
    r = boxes(parse_svg(to_svg(dag)))
    x = {i: r[f"node-{i}"][0] for i in range(5)}
    assert (x[0] < x[1]) == (x[3] < x[2])


def test_svg_colours_by_cost_share_with_a_legend_after_analyze():
    root = parse_svg(to_svg(occlusion_dag(True)))
    fill = {k: root.find(f".//s:g[@id='{k}']/s:rect", SVG_NS).get("fill") for k in boxes(root)}
    darkness = {k: -sum(int(f[i : i + 2], 16) for i in (1, 3, 5)) for k, f in fill.items()}
    assert fill["node-3"] == "#ffffff" and max(darkness, key=darkness.get) == "node-4"
    assert root.find(".//s:g[@class='legend']/s:rect[@fill='url(#heat)']", SVG_NS) is not None
    plain = parse_svg(to_svg(occlusion_dag()))
    fills = {r.get("fill") for r in plain.iterfind(".//s:rect[@class='node-box']", SVG_NS)}
    assert len(fills) == 3  # source, operator, sink
    assert plain.find(".//s:linearGradient", SVG_NS) is None


def test_svg_of_an_empty_plan_is_still_a_picture():
    root = parse_svg(to_svg(Dag(()), title="nothing"))
    assert not boxes(root) and float(root.get("width")) > 0


def test_renderers_reject_inputs_that_are_not_earlier_nodes():
    bad = Dag((DagNode(0, "Heatmap", (), (1,)), DagNode(1, "LoadImage", (), ())))
    for fmt in FORMATS:
        with pytest.raises(ValueError, match="reads %1, which is not an earlier node"):
            render(bad, fmt)


# --- HTML and render() ---------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_render_dispatches_and_names_the_formats():
    dag = diamond_dag()
    assert render(dag, "dot", "t") == to_dot(dag, "t")
    assert render(dag, "svg", "t") == to_svg(dag, "t")
    with pytest.raises(ValueError, match="unknown plan format 'png'; known: dot, svg"):
        render(dag, "png")


# --- number formatting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, value, text",
    [
        (fmt_flops, 0, "0 FLOPs"),
        (fmt_flops, 999, "999 FLOPs"),
        (fmt_flops, 1_000, "1.0 kFLOPs"),
        (fmt_flops, 1.2e9, "1.2 GFLOPs"),
        (fmt_flops, 999_960_000, "1.0 GFLOPs"),
        (fmt_bytes, 35_100_000, "35.1 MB"),
        (fmt_bytes, 999_999, "1.0 MB"),
        (fmt_bytes, 3e18, "3.0 EB"),
        (fmt_bytes, 5e21, "5000.0 EB"),
        (fmt_time, 0.0123, "12.3 ms"),
        (fmt_time, 0.000999, "999.0 µs"),
        (fmt_time, 0.99999, "1.00 s"),
        (fmt_time, 0.00099999, "1.0 ms"),
        (fmt_time, 0.9996, "999.6 ms"),
        (fmt_time, 61, "61.00 s"),
        (fmt_time, float("nan"), "nan s"),
    ],
)
def test_number_formats(fn, value, text):
    assert fn(value) == text


def test_fmt_value_shortens_long_values_to_the_limit():
    assert fmt_value((1, "a", None, 2.5)) == "(1, 'a', None, 2.5)"
    assert fmt_value((7,)) == "(7,)" and fmt_value(True) == "True"
    long = fmt_value("x" * 100)
    assert len(long) == 40 and long.startswith("'xx") and long.endswith("x'") and "…" in long
    assert fmt_value("x" * 100, limit=None) == repr("x" * 100)

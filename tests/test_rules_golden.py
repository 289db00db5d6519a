"""Each rewrite rule on its own: for tests/fixtures/rules/<rule>.kql, the rule must fire on the
file's query and the plan right after it must equal the file's text (one loader: golden.py;
KRYPTON_UPDATE_GOLDEN=1 rewrites them). Then the laws every rule keeps, checked on each rule's
output for every golden query: applying a rule again changes nothing, the statement's result
kind is kept, every argument is typed (PlanNode checks its schema), and the rule's own
invariant holds (INVARIANTS)."""

from __future__ import annotations

import pathlib
from functools import partial

import numpy as np
import pyarrow as pa
import pytest

import kryptondb
from golden import cases, check, read
from kryptondb.obe.tuning import Tuning, lookup, table_name
from kryptondb.lang import parse
from kryptondb.plan.binder import bind
from kryptondb.plan.explain import format_tree
from kryptondb.plan.ops import Op
from kryptondb.rewrite import RULES, RuleContext
from test_video_naive import write_video

RULES_DIR = pathlib.Path(__file__).parent / "fixtures" / "rules"
PLANS_DIR = pathlib.Path(__file__).parent / "fixtures" / "plans"
AFTER = "\n-- plan after the rule --\n"


@pytest.fixture(scope="module")
def con(tmp_path_factory, sessions_counted_built):
    """The bundled image as ``cat``, a short video as ``clip``, a stored tuning of resnet18 at
    patch 16 stride 8 (made up: SSIM falls with tau), and a table for SELECT."""
    c = kryptondb.connect()
    c.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS cat")
    frames = [np.full((48, 64, 3), 16 * i, np.uint8) for i in range(6)]
    clip = write_video(tmp_path_factory.mktemp("v") / "clip.mp4", frames)
    c.execute(f"LOAD VIDEO '{clip}' AS clip")
    c.execute("PREDICT IMAGE cat USING MODEL mobilenet_v2 TOP 3 INTO preds")
    rows = [{"image": f"i{i}", "tau": tau, "drilldown": drill,
             "ssim": 1 - 0.8 * (1 - tau) ** 1.5 - (0.15 if drill else 0) - 0.001 * i,
             "seconds": 10 * tau / (3 if drill else 1)}
            for i in range(10) for tau in (1.0, 0.8, 0.6, 0.4) for drill in (False, True)]
    tuning = Tuning("resnet18", 16, 8, pa.Table.from_pylist(rows), 12.0)
    c.db.put_table(table_name("resnet18", 16, 8), tuning.table, info=tuning.info())
    return c


def _steps(con, query: str):
    """(rule, plan before it, plan after it, the rules' context) for every rule in order."""
    logical, options = bind(con.db, parse(query), query)
    ctx = RuleContext(options, partial(lookup, con.db), query)
    plan, out = logical, []
    for rule in RULES:
        new = rule(plan, ctx)
        out.append((rule, plan, new, ctx))
        plan = new
    return out


def _rule(name: str):
    return next(r for r in RULES if r.__name__ == name)


def test_every_rule_has_a_golden_file():
    assert sorted(p.stem for p in cases(RULES_DIR)) == sorted(r.__name__ for r in RULES)


@pytest.mark.parametrize("path", cases(RULES_DIR), ids=lambda p: p.stem)
def test_rule_matches_golden_file(con, path):
    query, _ = read(path, AFTER)
    rule = _rule(path.stem)
    (_, before, after, _), = [s for s in _steps(con, query) if s[0] is rule]
    assert after != before, f"{rule.__name__} does not fire on {query!r}"
    check(path, AFTER, format_tree(after))


def _scans(plan):
    return [n for n in plan.walk() if n.op is Op.OCCLUSION_SCAN]


def _backend_set(plan):
    return all(n.arg("backend") for n in plan.walk() if n.op is Op.INFERENCE)


def _fused(plan):
    return not any(n.op in (Op.OCCLUDE, Op.CLASS_PROBABILITY) for n in plan.walk())


def _views_read(plan):
    for n in _scans(plan):
        if n.arg("mode") == "incremental":
            views = n.children[2]
            if views.op is not Op.MATERIALIZE_VIEWS or views.arg("model") != n.arg("model"):
                return False
            if n.arg("flops_incremental") > n.arg("flops_full"):
                return False
        elif len(n.children) != 2:
            return False
    return True


def _video_incremental(plan):
    for n in plan.walk():
        over_video = n.children and n.children[0].children and \
            n.children[0].children[0].op is Op.VIDEO_SCAN
        if n.op is Op.VIDEO_IVM and not over_video:
            return False
    return True


def _tau_capped(plan):
    return all(0 < n.arg("tau") <= 1 for n in _scans(plan) if n.arg("tau") is not None)


def _target_met(plan):
    return all(n.arg("tau") is not None and n.arg("predicted_ssim") is not None and n.arg("why")
               for n in _scans(plan))


def _drilled(plan):
    return all(n.arg("coarse_stride") >= max(n.arg("grid").strides) and 0 < n.arg("drilldown") < 1
               for n in _scans(plan) if n.arg("drilldown") is not None)


def _batched(plan):
    for n in _scans(plan):
        if not n.arg("batch") or n.arg("batch") < 1:
            return False
        if n.arg("memory_mb") and n.arg("memory_estimate_mb") > n.arg("memory_mb"):
            return False
        if n.arg("mode") == "incremental" and not (n.arg("frontier") and n.arg("segments")):
            return False
    return all(n.arg("batch") for n in plan.walk() if n.op is Op.INFERENCE)


INVARIANTS = {
    "choose_backend": _backend_set, "fuse_occlusion_scan": _fused,
    "meet_accuracy_target": lambda p: True, "maintain_views": _views_read,
    "maintain_video_views": _video_incremental, "threshold_projective_field": _tau_capped,
    "drill_down": _drilled, "batch_queries": _batched,
}
QUERIES = sorted({read(p, AFTER)[0] for p in cases(RULES_DIR)} |
                 {read(p, "\n-- expected plan --\n")[0] for p in cases(PLANS_DIR)})


def test_every_rule_has_an_invariant():
    assert sorted(INVARIANTS) == sorted(r.__name__ for r in RULES)


@pytest.mark.parametrize("query", QUERIES)
def test_rules_keep_their_laws(con, query):
    for rule, before, after, ctx in _steps(con, query):
        name = rule.__name__
        assert rule(after, ctx) == after, f"{name} is not idempotent on {query!r}"
        assert after.op == before.op, f"{name} changed what {query!r} returns"
        assert INVARIANTS[name](after), f"{name} broke its invariant on {query!r}"
    if "SSIM >=" in query:
        assert _target_met(_steps(con, query)[-1][2])

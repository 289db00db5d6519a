"""The planning pipeline, in one place: a statement -> bind (catalog) -> logical plan ->
rewrite rules -> physical DAG. ``Connection`` plans its statements here, and so does TUNE for
the occlusion queries it runs in its scratch database.

Binding always runs: it reads the catalog and the files the statement names, and its logical
plan holds everything it resolved (the model's digest, the paths, the grid, the options' values,
a tensor's digest). The rules and the lowering after it are kept with the bound model
(``plan_key``): a statement planned again against an unchanged logical plan, calibration and
process state takes its plans from there (0.6 ms of a small model's 3 ms outside inference).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from kryptondb.ivm import calibration
from kryptondb.ivm.incremental import segments_built
from kryptondb.lang import ast
from kryptondb.model.binding import ModelRef
from kryptondb.obe.tuning import lookup
from kryptondb.plan.binder import bind
from kryptondb.plan.explain import Explained
from kryptondb.plan.nodes import PlanNode
from kryptondb.plan.physical import lower
from kryptondb.rewrite import RuleContext, rewrite

PLANS_KEPT = 32  # per loaded model: statements a session repeats on it


def plan(db, stmt: ast.Statement, text: str = "", params=()) -> Explained:
    """Every plan of ``stmt`` against ``db``: logical, after each rule that fired, physical;
    ``params`` are the values of its ``?``."""
    logical, options = bind(db, stmt, text, params)
    ref = _model(logical)
    kept, key = _kept(ref), plan_key(logical, options, ref)
    hit = kept.get(key) if key is not None else None
    if hit is not None:
        return replace(hit, logical=logical)
    read: list = []  # the tunings a rule looked up: catalog state the key does not hold
    ctx = RuleContext(options, partial(_noted, read, partial(lookup, db)), text)
    rewritten, steps = rewrite(logical, ctx)
    explained = Explained(logical, rewritten, tuple(r for r, _ in steps), steps, lower(rewritten))
    if key is not None and not read:
        kept[key] = explained
        while len(kept) > PLANS_KEPT:  # the oldest first
            kept.pop(next(iter(kept)), None)
    return explained


def plan_key(logical: PlanNode, options, ref: ModelRef | None = None) -> tuple | None:
    """What the rules and the lowering read besides the catalog's tunings (plans that read one
    are never kept): the logical plan, the statement's options, the cost model's calibration and
    the incremental sessions already built for the model (the setup the cost model counts).
    None: nothing to key on (no bound model, or an argument without a hash). ``ref``: the
    plan's bound model, when the caller has found it already."""
    ref = ref or _model(logical)
    if ref is None:
        return None
    key = (logical, options, calibration.load().key, segments_built(ref.graph))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _kept(ref: ModelRef | None) -> dict:
    """The plans kept with the statement's bound model (they live as long as the loaded model,
    which the model cache holds by digest); a statement without one keeps none."""
    if ref is None:
        return {}
    return ref.model.memo.setdefault("plans", {})


def _model(logical: PlanNode) -> ModelRef | None:
    return next((v for n in logical.walk() for _, v in n.args if isinstance(v, ModelRef)), None)


def _noted(read: list, look, *args):
    read.append(args)
    return look(*args)

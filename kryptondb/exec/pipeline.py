"""The planning pipeline, in one place: a statement -> bind (catalog) -> logical plan ->
rewrite rules -> physical DAG. ``Connection`` plans its statements here, and so does TUNE for
the occlusion queries it runs in its scratch database."""

from __future__ import annotations

from functools import partial

from kryptondb.lang import ast
from kryptondb.obe.tuning import lookup
from kryptondb.plan.binder import bind
from kryptondb.plan.explain import Explained
from kryptondb.plan.physical import lower
from kryptondb.rewrite import RuleContext, rewrite


def plan(db, stmt: ast.Statement, text: str = "", params=()) -> Explained:
    """Every plan of ``stmt`` against ``db``: logical, after each rule that fired, physical;
    ``params`` are the values of its ``?``."""
    logical, options = bind(db, stmt, text, params)
    ctx = RuleContext(options, partial(lookup, db), text)
    rewritten, steps = rewrite(logical, ctx)
    return Explained(logical, rewritten, tuple(r for r, _ in steps), steps, lower(rewritten))

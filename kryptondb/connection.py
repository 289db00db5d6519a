"""A connection to a KryptonDB database: the whole query pipeline in one place.

text -> parse -> bind (catalog) -> logical plan -> rewrite rules -> physical DAG -> execute
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings

from kryptondb.catalog import Database
from kryptondb.dist import describe
from kryptondb.dist.cluster import TIMEOUT_S, address_from, open_cluster
from kryptondb.errors import KryptonError, KryptonWarning, StorageError
from kryptondb.exec.executor import ExecContext, run
from kryptondb.exec.pipeline import plan
from kryptondb.files import user_path
from kryptondb.lang import ast, parse
from kryptondb.lang.parser import split_statements
from kryptondb.limits import applied, resolve
from kryptondb.model.model import CACHE
from kryptondb.plan.explain import Explained, plain
from kryptondb.plan.profile_doc import document
from kryptondb.progress import ProgressBar
from kryptondb.result import Heatmap, Heatmaps, Later, Result
from kryptondb.sql import Sandbox
from kryptondb.viz import render
from kryptondb.viz.diagram import diagram
from kryptondb.viz.page import to_page


class Connection:
    """``Connection(path)`` opens (or creates) an on-disk database; ``None`` keeps it in memory.

    >>> import kryptondb
    >>> con = kryptondb.connect()
    >>> print(con.execute("SHOW MODELS"))
    name                kind  source
    ------------------  ----  ------------------
    resnet18            zoo   resnet18
    resnet50            zoo   resnet50
    vgg16               zoo   vgg16
    inception3          zoo   inception3
    mobilenet_v2        zoo   mobilenet_v2
    efficientnet_lite0  zoo   efficientnet_lite0
    (6 rows)
    """

    def __init__(self, path: str | os.PathLike | None = None, progress=None, limits=None,
                 sql_limits=None, cluster: str | None = None, cluster_timeout_s: float = TIMEOUT_S,
                 cluster_security=None):
        self.limits = resolve(limits)  # kryptondb.limits: sizes and waits, applied per statement
        where = None if path is None else user_path(path, "database directory", StorageError)
        if where is not None and not where.strip():
            raise StorageError("database directory: the path is empty (None opens an in-memory "
                               "database)")
        self.db = Database(where, lock_timeout=self.limits.lock_timeout)
        self.progress = progress
        self._sql = Sandbox(sql_limits)  # SELECT runs here (DuckDB, started on first use)
        self._memo: dict = {}  # exact heatmaps of this session, to score approximate ones
        address = address_from(cluster)  # chosen by whoever runs KryptonDB, never by a query
        self.cluster = None if address is None else \
            open_cluster(address, cluster_timeout_s, cluster_security)

    def execute(self, text: str, params=None) -> Result:
        """Run one statement (or several separated by ';'; the last one's result is returned).
        ``params`` holds the values of the ``?`` in the text, in order (NumPy arrays, torch
        tensors, numbers): they are bound as values, never pasted into the text."""
        check_text(text)
        values = check_params(params)
        with applied(self.limits):
            return self._execute(text, values)

    def _execute(self, text: str, params: tuple) -> Result:
        parts = split_statements(text)
        if len(parts) > 1:
            for part in parts[:-1]:
                stmt = parse(part)
                self._statement(stmt, part, params[:stmt.params])
                params = params[stmt.params:]
            text = parts[-1]
        return self._statement(parse(text), text, params)

    def _statement(self, stmt: ast.Statement, text: str, params: tuple) -> Result:
        if len(params) > stmt.params:
            raise KryptonError(f"{len(params)} parameter value(s) given for "
                               f"{stmt.params} ? in the statement: {text.strip()[:60]!r}")
        if isinstance(stmt, ast.ExplainPlan):
            return self._explain(stmt, text, params)
        loaded = CACHE.load_s
        explained = self.plan(stmt, text, params)
        ctx = self._context(text)
        ctx.profile.setup["model_load"] = CACHE.load_s - loaded  # while binding
        value, notes = _run_noting(explained.dag, ctx)
        result = _result(value, explained)
        result.profile = ctx.profile
        result.message = "\n".join(m for m in (result.message, *notes) if m)
        return result

    def plan(self, stmt: ast.Statement, text: str = "", params=()) -> Explained:
        """Every plan of ``stmt``: logical, after each rule that fired, physical."""
        return plan(self.db, stmt, text, params)

    def _explain(self, stmt: ast.ExplainPlan, text: str, params: tuple = ()) -> Result:
        loaded = CACHE.load_s
        explained = self.plan(stmt.statement, text, params)
        notes: list[str] = []
        profile = value = None
        if stmt.analyze:
            ctx = self._context(text)
            ctx.profile.setup["model_load"] = CACHE.load_s - loaded  # while binding
            value, notes = _run_noting(explained.dag, ctx)
            profile = ctx.profile
        spread = None if self.cluster is None else \
            describe.distribution(self.cluster, explained.dag, profile)
        if stmt.format == "json":
            doc = document(explained, profile, _statement(text), spread)
            return Result("plan", message=json.dumps(doc, indent=1), plan=explained,
                          extra={"format": "json", "document": doc}, profile=profile)
        plan_text = "\n".join([explained.text(profile, stmt.verbose),
                               *(describe.lines(spread) if spread else ()), *notes])
        if stmt.format == "text":
            return Result("plan", message=plan_text, plan=explained, profile=profile)
        if stmt.format == "html":  # the plan page: drawn from the profile document
            doc = document(explained, profile, _statement(text))
            body = to_page(doc, _png(value), plan_text)
        else:
            body = render(diagram(explained.dag, profile, plain), stmt.format,
                          title=_title(stmt.statement))
        return Result("plan", message=body, plan=explained, extra={"format": stmt.format},
                      profile=profile)

    def _context(self, text: str) -> ExecContext:
        return ExecContext(self.db, text, self.progress, self._memo, sql=self._sql,
                           cluster=self.cluster)

    def close(self) -> None:
        self._sql.close()
        self._memo.clear()
        if self.cluster is not None:  # a LocalCluster it started goes with it
            self.cluster.close()
            self.cluster = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_text(text) -> None:
    """A query is a str (a NUL byte or any other character is the parser's to judge)."""
    if not isinstance(text, str):
        raise KryptonError(f"a query is a str, got {type(text).__name__} {text!r:.60}")


def check_params(params) -> tuple:
    """The values of a statement's ``?``: a list or tuple of them (None: none)."""
    if params is None:
        return ()
    if not isinstance(params, (list, tuple)):
        raise KryptonError(f"params is a list of values, one per ? in the statement; got a "
                           f"{type(params).__name__} (wrap it: execute(text, [value]))")
    return tuple(params)


def _statement(text: str) -> str:
    """The statement EXPLAIN PLAN explains: the text after its flags' FOR."""
    return _EXPLAINED.sub("", text, count=1).strip()


_EXPLAINED = re.compile(r"^\s*EXPLAIN\s+PLAN\b.*?\bFOR\b\s*", re.I | re.S)


def _title(stmt) -> str:
    return type(stmt).__name__


def _png(value) -> bytes | None:
    """The picture of a statement's (first) heatmap, for the plan page; None: it made none."""
    maps = value.maps if isinstance(value, Heatmaps) else (value,)
    return maps[0]._repr_png_() if maps and isinstance(maps[0], Heatmap) else None


def _run_noting(dag, ctx) -> tuple[object, list[str]]:
    """Run the plan, then store the caches it deferred (they are kept only when the statement
    succeeds); (its value, a 'warning: ...' line per KryptonDB warning raised). Every warning is
    also shown again to the caller."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = run(dag, ctx)
        ctx.commit_deferred()
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value, [f"warning: {w.message}" for w in caught
                   if issubclass(w.category, KryptonWarning)]


def _result(value, explained: Explained) -> Result:
    if isinstance(value, Result):
        value.plan = explained
        return value
    if isinstance(value, Heatmaps):
        return _heatmaps(value, explained)
    if isinstance(value, Heatmap):
        return Result("heatmap", table=Later(value.to_arrow), heatmap=value,
                      message=_said(value), plan=explained, heatmaps=(value,))
    return Result("table", table=value, plan=explained)


def _heatmaps(value: Heatmaps, explained: Explained) -> Result:
    """One heatmap keyed by image or class is still a heatmap result; several are a table."""
    maps = value.maps
    if len(maps) == 1:
        return Result("heatmap", table=Later(value.to_arrow), heatmap=maps[0],
                      message=_said(maps[0]), plan=explained, heatmaps=maps)
    rows, cols = maps[0].probability.shape
    inputs, classes = len({m.source for m in maps}), len({m.class_id for m in maps})
    msg = f"{len(maps)} heatmaps {rows}x{cols} ({_count(inputs, 'input')}, " \
          f"{_count(classes, 'class', 'classes')}); largest drop " \
          f"{max(float(m.drop.max()) for m in maps):.3f}" + _approximate(maps[0])
    return Result("table", table=Later(value.to_arrow), message=msg, plan=explained,
                  heatmaps=maps)


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _said(value: Heatmap) -> str:
    short = "p" if value.score == "probability" else "logit"
    return (f"heatmap {value.probability.shape[0]}x{value.probability.shape[1]} for class "
            f"{value.class_id} ({value.label!r}, {short}={value.base_probability:.3f}); "
            f"largest drop {float(value.drop.max()):.3f}" + _approximate(value))


def _approximate(value: Heatmap) -> str:
    if not value.approximate:
        return ""
    settings = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in value.approximate.items())
    msg = f"\napproximate ({settings})"
    return msg + (f"; SSIM {value.ssim:.3f} against the exact heatmap" if value.ssim is not None
                  else "; no exact heatmap at hand to score it against")


def terminal_progress(total: int, label: str):
    """A progress bar on stderr, shown only for work that lasts more than a second."""
    return ProgressBar(total, label, stream=sys.stderr)

"""KryptonDB: a query engine for fast, incremental re-inference of CNNs.

>>> import kryptondb
>>> m = kryptondb.load_model("mobilenet_v2")
>>> [p.label for p in m.top(kryptondb.bundled_image(), k=1)[0]]
['Egyptian cat']
"""

from kryptondb import attr  # noqa: F401 - kryptondb.attr.Occlusion, Captum's API; no torch import
from kryptondb.connection import Connection, check_text
from kryptondb.errors import KryptonError
from kryptondb.media.images import Preprocess, bundled_image, load_image
from kryptondb.model.model import Model, Prediction, load_model
from kryptondb.sql import SqlLimits
from kryptondb.version import __version__  # noqa: F401 - the package's version, re-exported

__all__ = ["KryptonError", "Model", "Prediction", "Preprocess", "attr", "bundled_image", "connect",
           "execute", "explain", "load_image", "load_model"]

_default = None


def connect(path=None, progress=None, limits=None, *, cluster=None, cluster_timeout_s=10.0,
            cluster_security=None, sql_max_rows=None, sql_timeout_s=None, sql_memory_mb=None,
            sql_threads=None):
    """A connection to the database at ``path`` (a directory; created if missing), or to a
    fresh in-memory database when ``path`` is None.

    ``limits``: a kryptondb.limits.Limits or a dict of the limits to change (image_pixels,
    tensor_bytes, model_bytes, lock_timeout; see docs/limits.md). The ``sql_*`` options bound each
    SQL statement (``SELECT``): result rows (default 1,000,000), seconds (30), DuckDB's memory in
    MB (1024) and threads (up to 4); see docs/language.md.

    ``cluster``: run occlusion scans on a Dask cluster (docs/scale-out.md): a scheduler's
    ``tcp://host:port`` or ``tls://host:port`` (with ``cluster_security``, a
    distributed.security.Security), or ``local`` / ``local:N`` for N worker processes on this
    machine, started and closed with the connection. None: the environment variable
    KRYPTONDB_CLUSTER, if set; else everything runs in this process. A scheduler not reached
    within ``cluster_timeout_s`` seconds is a ClusterError. The cluster runs pickled code: it is
    trusted infrastructure, chosen here, never by a query.
    """
    given = {"max_rows": sql_max_rows, "timeout_s": sql_timeout_s, "memory_mb": sql_memory_mb,
             "threads": sql_threads}
    return Connection(path, progress, limits,
                      SqlLimits(**{k: v for k, v in given.items() if v is not None}),
                      cluster, cluster_timeout_s, cluster_security)


def execute(query: str, params=None):
    """Run a query on the process-wide in-memory database and return its Result; ``params``
    are the values of its ``?`` (see ``Connection.execute``).

    >>> import kryptondb
    >>> r = kryptondb.execute("PREDICT IMAGE '" + kryptondb.bundled_image() + "' USING MODEL mobilenet_v2 TOP 1")
    >>> r.to_arrow().column("label").to_pylist()
    ['Egyptian cat']
    """
    global _default
    if _default is None:
        _default = connect()
    return _default.execute(query, params)


def explain(query: str) -> str:
    """The EXPLAIN PLAN text of a query, without running it."""
    check_text(query)
    return execute(f"EXPLAIN PLAN FOR {query}").message

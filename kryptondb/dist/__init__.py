"""Distributed execution on Dask: the same per-input (or per-chunk) work functions the method
rooms run in one process, farmed out to the workers of a Dask cluster.

- ``cluster.py``: the connection's cluster (an address, or a LocalCluster it owns), the model
  shipped once per worker;
- ``split.py``: the planner's split of a scan into tasks of sensible size (pure);
- ``worker.py``: what runs on a worker (the model cache by digest, the backend with the
  worker's share of cores, errors made portable);
- ``tasks.py``: submitting tasks, progress, cancellation, errors, per-worker time on the client;
- ``obe.py``: an occlusion scan over the cluster; ``describe.py``: what EXPLAIN shows.

Workers get arrays, never the database path: the client alone writes the catalog. A Dask
cluster runs pickled code by design; it is trusted infrastructure chosen by whoever runs
KryptonDB (``connect(cluster=...)``, ``--cluster``, KRYPTONDB_CLUSTER), never by a query.
"""

from kryptondb.dist.cluster import Cluster, open_cluster

__all__ = ["Cluster", "open_cluster"]

"""The connection's Dask cluster: where the address comes from, connecting (or starting a
LocalCluster the connection owns), and the models shipped to its workers.

The address comes from whoever runs KryptonDB: ``connect(path, cluster=...)``, ``kryptondb
--cluster ADDRESS`` or the environment variable KRYPTONDB_CLUSTER, never from query text. A
Dask cluster runs pickled code by design, so it is trusted infrastructure: ``tcp://host:port``
for a scheduler on a private network, ``tls://host:port`` with a
``distributed.security.Security`` for one reached over an untrusted network, ``local`` or
``local:N`` for N worker processes on this machine (loopback only).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections import Counter

from kryptondb.dist.worker import parts_of, share_of
from kryptondb.errors import ClusterError

ENV = "KRYPTONDB_CLUSTER"
LOCAL_WORKERS = 2
TIMEOUT_S = 10.0
_LOCAL = re.compile(r"local(?::(\d+))?")
_REMOTE = re.compile(r"(tcp|tls)://\S+")


def address_from(cluster: str | None) -> str | None:
    """The cluster a connection uses: ``cluster`` if given, else KRYPTONDB_CLUSTER (unset or
    empty: none, everything runs in this process)."""
    return cluster if cluster is not None else (os.environ.get(ENV, "").strip() or None)


def check_address(address) -> tuple[str, int | None]:
    """(the address, the number of local workers; None for a remote scheduler).

    >>> check_address("local:3"), check_address("tcp://10.0.0.5:8786")
    (('local:3', 3), ('tcp://10.0.0.5:8786', None))
    """
    text = address.strip() if isinstance(address, str) else ""
    local = _LOCAL.fullmatch(text)
    if local and int(local.group(1) or LOCAL_WORKERS) >= 1:
        return text, int(local.group(1) or LOCAL_WORKERS)
    if _REMOTE.fullmatch(text):
        return text, None
    raise ClusterError(f"cluster address {address!r}: give tcp://host:port, tls://host:port, "
                       f"'local' or 'local:N' (N >= 1 worker processes on this machine)")


def open_cluster(address: str, timeout_s: float = TIMEOUT_S, security=None) -> "Cluster":
    """Connect to the scheduler at ``address`` (or start a LocalCluster for ``local[:N]``);
    a scheduler not reached within ``timeout_s`` seconds is a ClusterError naming it."""
    address, workers = check_address(address)
    import dask  # dask and distributed: ~1 s to import, only a cluster's connection needs them
    import distributed  # (lazily, as dask)

    if workers is not None:
        return _local(dask, distributed, address, workers, timeout_s)
    try:
        client = distributed.Client(address, timeout=timeout_s, security=security,
                                    set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} within "
                           f"{timeout_s:g} s: {exc}") from None
    return Cluster(address, client)


def _local(dask, distributed, address: str, workers: int, timeout_s: float) -> "Cluster":
    """A LocalCluster of ``workers`` processes (one thread each) on loopback, its files in a
    scratch directory of its own, closed with the connection."""
    scratch = tempfile.mkdtemp(prefix="kryptondb-dask-")
    try:
        with dask.config.set(worker_config(workers)):  # read as each nanny starts
            local = distributed.LocalCluster(
                n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1",
                dashboard_address=":0",  # a free port: 8787 may be taken (a warning)
                worker_dashboard_address=None, local_directory=scratch,
                silence_logs=logging.ERROR)
        client = distributed.Client(local, timeout=timeout_s, set_as_default=False)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return Cluster(address, client, local, scratch)


def worker_config(workers: int) -> dict:
    """Dask settings for the LocalCluster's workers: BLAS threads at their share of the cores
    (the nanny's default is 1), glibc's allocator left as a single process has it (the nanny's
    MALLOC_TRIM_THRESHOLD_ costs page faults on every feature map; see
    kryptondb.dist.worker.allocate_as_one_process), no statistical profiler (it samples every
    thread's stack every 10 ms for a dashboard nobody looks at here), and the scheduler's and
    nannies' housekeeping (they run in this process, on the cores the workers use) at
    intervals of seconds: measured, the client's CPU per ResNet18 image from 0.72 s to 0.3 s."""
    share = str(share_of(workers))
    env = {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": share,
           "MKL_NUM_THREADS": share, "OPENBLAS_NUM_THREADS": share}
    return {"distributed.nanny.pre-spawn-environ": env, "distributed.worker.profile.enabled": False,
            "distributed.admin.tick.interval": "500ms",  # event-loop stall detection
            "distributed.worker.memory.monitor-interval": "1s",
            "distributed.admin.system-monitor.interval": "2s"}


class Cluster:
    """A connection's cluster: its Dask client, the LocalCluster it owns (if any), and the
    models already shipped to the workers (one scattered copy per worker, by digest)."""

    def __init__(self, address: str, client, local=None, scratch: str | None = None):
        self.address, self.client, self.local, self.scratch = address, client, local, scratch
        self._models: dict[str, object] = {}

    def workers(self) -> list[str]:
        """The addresses of the workers the scheduler knows now."""
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])

    def hosts(self) -> dict[str, int]:
        """Workers per host (each worker's onnxruntime threads are its share of its host); a
        scheduler without workers is a ClusterError (tasks would wait forever)."""
        workers = self.workers()
        if not workers:
            raise ClusterError(f"cluster {self.address}: the scheduler has no workers; start "
                               f"some (dask worker {self.address})")
        return dict(Counter(w.split("://")[-1].rsplit(":", 1)[0] for w in workers))

    def ship(self, ref):
        """A reference to model ``ref``'s parts on every worker, scattered once per digest
        (a worker that joins later fetches them from a peer the first time a task needs them)."""
        if ref.digest not in self._models:
            self.hosts()  # some worker to send it to
            [self._models[ref.digest]] = self.client.scatter([parts_of(ref.model)],
                                                             broadcast=True, hash=False)
        return self._models[ref.digest]

    def close(self) -> None:
        if self._models:  # released first: else the scheduler reports lost scattered data
            self.client.cancel(list(self._models.values()))
            self._models.clear()
        self.client.close()
        if self.local is not None:
            self.local.close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __repr__(self) -> str:
        return f"Cluster({self.address!r})"

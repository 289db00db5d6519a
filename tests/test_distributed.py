"""Occlusion scans on a Dask cluster (kryptondb/dist/) give what one process gives.

One LocalCluster of 2 worker processes on loopback serves the module (started once: about
2 s). Each result is compared with the same statement run in this process: heatmaps equal
(exactly, here; the bound is 1e-6). A worker killed mid-query, a task that raises a
KryptonError, workers' files and an unreachable scheduler are checked too.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kryptondb
from kryptondb.dist.split import split
from kryptondb.errors import ClusterError, KryptonError, ShapeError
from test_explain_layers import check_document
from test_sets import photos, videos  # noqa: F401 - their fixtures: real photos, two videos

QUERY = ("EXPLAIN OCCLUSION OF IMAGES '{dir}/*.png' USING MODEL resnet18 PATCH 32 STRIDE 32")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """6 distinct images: crops and flips of the bundled one."""
    where = tmp_path_factory.mktemp("images")
    cat = Image.open(kryptondb.bundled_image()).convert("RGB")
    w, h = cat.size
    for i in range(6):
        one = cat.crop((i * 9, i * 5, w - 30 + i * 4, h - 25 + i * 3))
        (one.transpose(Image.FLIP_LEFT_RIGHT) if i % 2 else one).save(where / f"im{i}.png")
    return where


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "kdb"
    with kryptondb.connect(db, cluster="local:2") as c:
        yield c


@pytest.fixture(scope="module")
def here(images):
    """The statement's result in this process (the reference)."""
    with kryptondb.connect() as c:
        return c.execute(QUERY.format(dir=images))


def _same(a, b) -> None:
    assert a.table.column("image").to_pylist() == b.table.column("image").to_pylist()
    assert a.table.column("class").to_pylist() == b.table.column("class").to_pylist()
    pa, pb = (np.asarray(r.table.column("probability")) for r in (a, b))
    np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-6)


def test_six_image_obe_equals_one_process(con, images, here):
    got = con.execute(QUERY.format(dir=images))
    _same(got, here)
    dist = _distribution(got)
    assert dist["tasks"] == 6 and dist["task_size"] == 49
    assert len(dist["workers"]) == 2  # both workers took images


def test_one_image_in_chunks_of_positions_equals_one_process(con, images):
    query = (f"EXPLAIN OCCLUSION OF IMAGE '{images}/im3.png' USING MODEL resnet18 PATCH 32 "
             f"STRIDE 16")
    with kryptondb.connect() as c:
        want = c.execute(query)
    got = con.execute(query)
    np.testing.assert_allclose(got.heatmap.probability, want.heatmap.probability, rtol=0,
                               atol=1e-6)
    dist = _distribution(got)
    assert dist["tasks"] == 4 and dist["task_size"] < 169  # 13 x 13 positions in 4 chunks


def test_explain_shows_the_distribution_and_analyze_each_worker(con, images):
    plan = con.execute("EXPLAIN PLAN FOR " + QUERY.format(dir=images)).message
    assert "== distribution ==\ncluster local:2: 2 workers" in plan
    assert "IncrementalOcclusionScan: 6 tasks (one input each, 49 positions)" in plan
    analyzed = con.execute("EXPLAIN PLAN ANALYZE FOR " + QUERY.format(dir=images)).message
    workers = con.cluster.workers()
    assert all(f"worker {w}: " in analyzed for w in workers), analyzed
    doc = con.execute("EXPLAIN PLAN ANALYZE FORMAT JSON FOR " + QUERY.format(dir=images))
    doc = doc.extra["document"]
    check_document(doc)  # the schema's other keys as they were
    [scan] = doc["distribution"]["nodes"]
    assert scan["tasks"] == 6 and set(scan["measured"]["workers"]) <= set(workers)
    assert sum(w["tasks"] for w in scan["measured"]["workers"].values()) == 6


def _same_table(got, want) -> None:
    """Equal tables (probabilities within 1e-6, every other column exactly)."""
    got, want = (t.replace_schema_metadata(None) for t in (got, want))
    assert got.column_names == want.column_names
    for name in got.column_names:
        if name == "probability":
            np.testing.assert_allclose(np.asarray(got.column(name)),
                                       np.asarray(want.column(name)), rtol=0, atol=1e-6)
        else:
            assert got.column(name).equals(want.column(name)), name


def test_predict_images_equals_one_process(con, photos):
    query = f"PREDICT IMAGES '{photos}/*.png' USING MODEL mobilenet_v2 TOP 3"
    with kryptondb.connect() as c:
        want = c.execute(query).table
    got = con.execute(query)
    _same_table(got.table, want)
    assert _distribution(got)["tasks"] == 3
    plan = con.execute("EXPLAIN PLAN ANALYZE FOR " + query).message
    assert "PredictImages: 3 tasks (one image each)\n    ran 3 tasks in" in plan, plan


@pytest.mark.parametrize("mode", ["NAIVE", "INCREMENTAL THRESHOLD 0.02"])
def test_two_video_recognize_equals_one_process(con, videos, mode):
    query = (f"RECOGNIZE OBJECTS IN VIDEOS ('{videos[0]}', '{videos[1]}') USING MODEL "
             f"mobilenet_v2 TOP 2 FRAMES 0 TO 7 {mode}")
    with kryptondb.connect() as c:
        want = c.execute(query).table
    got = con.execute(query)
    _same_table(got.table, want)
    dist = _distribution(got)
    assert dist["tasks"] == 2 and dist["task_size"] == 1  # one video per task


def _distribution(result) -> dict:
    [found] = [s["distribution"] for s in result.profile.stats.values() if "distribution" in s]
    return found


def test_a_worker_killed_mid_query_does_not_change_the_result(con, images, here):
    pids = con.cluster.client.run(os.getpid)  # worker address -> pid
    killed = []

    def bar(total, label):
        class Bar:
            def update(self, n):
                if not killed:  # the first task finished: the others are running or queued
                    victim = sorted(pids.values())[0]
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)

            def close(self):
                pass

        return Bar()

    con.progress = bar
    try:
        got = con.execute(QUERY.format(dir=images))
    finally:
        con.progress = None
    assert killed
    assert killed[0] not in con.cluster.client.run(os.getpid).values()  # it did die
    _same(got, here)


def test_ctrl_c_cancels_the_tasks(con, images):
    def bar(total, label):
        class Bar:
            def update(self, n):
                raise KeyboardInterrupt  # Ctrl-C while the first results come in

            def close(self):
                pass

        return Bar()

    con.progress = bar
    try:
        with pytest.raises(KeyboardInterrupt):
            con.execute(QUERY.format(dir=images) + " INTO interrupted")
    finally:
        con.progress = None
    client = con.cluster.client
    for _ in range(100):  # the scheduler forgets the cancelled tasks
        if not any(client.processing().values()) and not _queued(client):
            break
        time.sleep(0.1)
    assert not any(client.processing().values()) and not _queued(client)
    assert "interrupted" not in con.db.names("table")


def _queued(client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.queued)
                                   + len(dask_scheduler.unrunnable))


def test_a_task_error_is_the_same_krypton_error_and_nothing_is_written(con, images):
    def plant():  # on each worker: the scan's positions raise
        from kryptondb.obe import scan
        from kryptondb.obe.strategy import Incremental

        def broken(*args):
            raise ShapeError("planted on a worker: 3 x 5 is not 3 x 224 x 224")

        scan.POSITIONS[Incremental] = broken

    def restore():
        from kryptondb.obe import incremental, scan
        from kryptondb.obe.strategy import Incremental

        scan.POSITIONS[Incremental] = incremental.incremental_positions

    before = sorted(p.relative_to(con.db.path) for p in Path(con.db.path).rglob("*"))
    con.cluster.client.run(plant)
    try:
        with pytest.raises(ShapeError, match="planted on a worker: 3 x 5") as caught:
            con.execute(QUERY.format(dir=images) + " INTO failed")
    finally:
        con.cluster.client.run(restore)
    assert type(caught.value) is ShapeError
    assert "Traceback" not in str(caught.value)
    assert sorted(p.relative_to(con.db.path) for p in Path(con.db.path).rglob("*")) == before
    assert "failed" not in con.db.names("table")


def test_workers_write_no_files_in_the_database(con, images, tmp_path):
    """Workers keep their files in the cluster's scratch directory; the database directory
    changes exactly as the same statement changes a copy of it in one process."""
    scratch = con.cluster.client.run(lambda dask_worker: dask_worker.local_directory)
    db, twin = Path(con.db.path), tmp_path / "twin"
    assert all(not Path(d).resolve().is_relative_to(db.resolve()) for d in scratch.values())
    shutil.copytree(db, twin)
    con.execute(QUERY.format(dir=images) + " INTO heat_dist")
    with kryptondb.connect(twin) as local:
        local.execute(QUERY.format(dir=images) + " INTO heat_dist")
    assert _listing(db) == _listing(twin)
    assert "heat_dist" in con.db.names("table")


def _listing(root: Path) -> list[str]:
    """Relative paths, each version's random token masked (``heat.5655f49144ac318a.arrow``)."""
    return sorted(re.sub(r"\.[0-9a-f]{16}\.", ".*.", str(p.relative_to(root)))
                  for p in root.rglob("*") if p.name != "lock")


def test_an_unreachable_scheduler_is_an_error_naming_it():
    with pytest.raises(ClusterError, match=r"tcp://127\.0\.0\.1:9 within 1 s"):
        kryptondb.connect(cluster="tcp://127.0.0.1:9", cluster_timeout_s=1)


def test_a_scheduler_without_workers_is_an_error(images):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None) \
            as empty, \
            kryptondb.connect(cluster=empty.scheduler_address) as c:
        with pytest.raises(ClusterError, match="the scheduler has no workers"):
            c.execute(f"PREDICT IMAGES '{images}/*.png' USING MODEL resnet18")


def test_the_environment_names_the_cluster(monkeypatch):
    monkeypatch.setenv("KRYPTONDB_CLUSTER", "tcp://127.0.0.1:9")
    with pytest.raises(ClusterError, match="127.0.0.1:9"):
        kryptondb.connect(cluster_timeout_s=1)
    monkeypatch.setenv("KRYPTONDB_CLUSTER", "")
    with kryptondb.connect() as c:
        assert c.cluster is None


def test_the_command_line_takes_the_address(capsys):
    from kryptondb.cli import main

    assert main(["--cluster", "http://x:1", "-c", "SHOW MODELS"]) == 1
    assert "cluster address 'http://x:1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the shell's and scripts' option, and plan's
        main(["--cluster", "local", "predict", "x.png"])


@pytest.mark.parametrize("bad", ["http://x:1", "local:0", "localhost", "", 5])
def test_a_bad_address_is_refused(bad):
    with pytest.raises(ClusterError, match="tcp://host:port"):
        kryptondb.connect(cluster=bad)


def test_tasks_are_inputs_or_chunks_never_positions():
    assert [t.size for t in split(6, 196, 2)] == [196] * 6
    chunks = split(1, 729, 64, 1.66e9)  # 64 workers: chunks of at least 0.3 s (nominal)
    assert all(t.size >= 5 for t in chunks) and sum(t.size for t in chunks) == 729
    assert len(split(1, 729, 2, 1.66e9, chunkable=False)) == 1
    with pytest.raises(KryptonError):
        split(0, 10, 2)


def test_local_workers_get_their_share_of_threads_and_a_single_process_allocator(con):
    """The nanny's defaults (1 BLAS thread, MALLOC_TRIM_THRESHOLD_) are not what the workers
    of a LocalCluster get: their share of the cores, glibc's allocator left alone."""
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    names = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    seen = con.cluster.client.run(lambda: tuple(os.environ.get(k) for k in names))
    assert len(seen) == 2 and set(seen.values()) == {(None, share, share)}


FAULTS = """
import os, resource, sys
import numpy as np
from kryptondb.dist.worker import allocate_as_one_process
applied = allocate_as_one_process() if sys.argv[1] == "fix" else False
np.ones(1 << 18)  # the heap grows once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    np.ones(1 << 18)  # 2 MiB, allocated, touched, freed
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_a_nanny_trim_threshold_no_longer_faults_every_feature_map_in():
    """With MALLOC_TRIM_THRESHOLD_ set (as a Dask nanny sets it), every 2 MiB array is a fresh
    mmap whose 512 pages fault in; after allocate_as_one_process it reuses the heap."""
    import subprocess
    import sys

    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    runs = {how: subprocess.run([sys.executable, "-c", FAULTS, how], env=env, check=True,
                                capture_output=True, text=True).stdout.split()
            for how in ("nanny", "fix")}
    assert runs["nanny"][0] == "False" and runs["fix"][0] == "True"
    assert int(runs["nanny"][1]) > 100 * 400  # ~512 faults per array
    assert int(runs["fix"][1]) < 100 * 10

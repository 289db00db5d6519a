"""The catalog and storage layer: round trips, naming rules, errors that name the file, and crash
safety (a writer SIGKILLed mid-commit leaves one complete version, never a mix)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import kryptondb
from kryptondb.catalog import (Database, MediaEntry, ModelEntry, TableEntry, atomic_write,
                               atomic_write_bytes, read_arrow, write_arrow)
from kryptondb.catalog import writes as writes_module
from kryptondb.catalog.storage import is_temp_name, temp_path_for
from kryptondb.errors import (CatalogError, ImageError, KryptonError, StorageError,
                              UnknownNameError)

REPO = Path(kryptondb.__file__).resolve().parents[1]


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temp_name(p.name)]


def _scores(n: int = 5) -> pa.Table:
    return pa.table({"label": [f"c{i}" for i in range(n)], "p": np.linspace(0, 1, n)})


# -- round trips -------------------------------------------------------------------------------

def test_in_memory_round_trip():
    db = Database()
    entry = db.put_table("scores", _scores(), info={"model": "resnet18"})
    assert entry == TableEntry("scores", "table", 5, ("label", "p"), entry.created,
                               {"model": "resnet18"})
    table = db.get_table("scores")
    assert table.equals(_scores())  # equals ignores metadata
    assert json.loads(table.schema.metadata[b"kryptondb"]) == {"model": "resnet18"}
    assert db.names("table") == ["scores"] and db.tables() == {"scores": entry}
    assert db.path is None and not db.tables("view")


def test_on_disk_round_trip_survives_reopen(tmp_path):
    root = tmp_path / "db"
    data = pa.table({"x": np.arange(1_000_000, dtype=np.float64)})
    data = data.replace_schema_metadata({b"owner": b"obe"})
    entry = Database(root).put_table("heat", data, kind="view", info={"stride": 4})
    file = Database(root).file_of("view", "heat")
    assert file.parent == root / "views" and re.fullmatch(r"heat\.[0-9a-f]{16}\.arrow", file.name)
    assert file.is_file() and (root / "catalog.json").is_file()

    db = Database(root)
    assert db.tables("view") == {"heat": entry}
    before = pa.total_allocated_bytes()
    table = db.get_table("heat", kind="view")
    assert pa.total_allocated_bytes() - before < 1_000_000  # memory-mapped, not copied (8 MB)
    assert table.equals(data)
    meta = table.schema.metadata
    assert meta[b"owner"] == b"obe" and json.loads(meta[b"kryptondb"]) == {"stride": 4}
    assert db.get_table("heat", kind="view") is table  # cached


def test_models_and_media_round_trip(tmp_path):
    root, onnx, image = tmp_path / "db", tmp_path / "net.onnx", tmp_path / "cat.png"
    onnx.write_bytes(b"onnx bytes")
    image.write_bytes(b"png bytes")
    db = Database(root)
    assert db.register_model("r18", "resnet18", "zoo") == ModelEntry("r18", "resnet18", "zoo")
    copied = db.register_model("net", onnx, "onnx")
    copy_name = Path(copied.source).relative_to(root / "models")
    assert re.fullmatch(r"net\.[0-9a-f]{16}/net\.onnx", copy_name.as_posix())
    assert Path(copied.source).read_bytes() == b"onnx bytes"  # self-contained copy
    cat = db.add_media("cat", "image", image, {"width": 224, "height": 200})
    assert cat == MediaEntry("cat", "image", str(image), {"width": 224, "height": 200})

    moved = tmp_path / "moved"
    root.rename(moved)  # catalog.json stores the copy's path relative to the database
    db = Database(moved)
    assert db.models()["net"].source == str(moved / "models" / copy_name)
    assert db.media("image") == {"cat": cat}
    assert db.relation("models").to_pylist() == [
        {"name": "net", "kind": "onnx", "source": str(moved / "models" / copy_name)},
        {"name": "r18", "kind": "zoo", "source": "resnet18"}]
    assert db.relation("images").to_pylist() == [
        {"name": "cat", "path": str(image), "width": 224, "height": 200}]


def test_in_memory_onnx_model_keeps_original_path(tmp_path):
    onnx = tmp_path / "net.onnx"
    onnx.write_bytes(b"x")
    assert Database().register_model("net", onnx, "onnx").source == str(onnx)


def test_relations_have_fixed_schemas_when_empty():
    db = Database()
    assert db.relation("videos").column_names == ["name", "path", "width", "height", "frames",
                                                  "fps"]
    assert db.relation("tables").num_rows == 0
    db.put_table("t", _scores(3))
    row = db.relation("tables").to_pylist()[0]
    assert row["name"] == "t" and row["rows"] == 3 and row["columns"] == "label, p"
    with pytest.raises(UnknownNameError, match="known: images, models, tables, videos, views"):
        db.relation("modls")


def test_put_table_replaces_and_second_object_sees_it(tmp_path):
    first, second = Database(tmp_path), Database(tmp_path)  # empty dir: becomes a database
    first.put_table("t", _scores(3))
    assert second.get_table("t").num_rows == 3  # re-read the catalog it did not write
    second.put_table("u", _scores(4))
    first.put_table("t", _scores(6))  # must not lose second's "u"
    third = Database(tmp_path)
    assert third.names("table") == ["t", "u"] and third.get_table("t").num_rows == 6


# -- names -------------------------------------------------------------------------------------

def test_drop_semantics(tmp_path):
    image, onnx = tmp_path / "a.png", tmp_path / "m.onnx"
    image.write_bytes(b"png")
    onnx.write_bytes(b"onnx")
    db = Database(tmp_path / "db")
    db.put_table("t", _scores())
    db.register_model("m", onnx, "onnx")
    db.add_media("a", "image", image)
    table_file, model_file = db.file_of("table", "t"), db.file_of("model", "m")
    assert table_file.exists() and model_file.exists() and db.file_of("image", "a") is None
    assert db.drop("table", "t") is True
    assert not table_file.exists()
    assert db.drop("model", "m") and not model_file.exists()
    assert db.drop("image", "a") and image.exists()  # the caller's file stays
    assert db.drop("table", "t", if_exists=True) is False
    with pytest.raises(UnknownNameError, match=r"no table 't'; known: \(none\)"):
        db.drop("table", "t")
    assert Database(tmp_path / "db").names("table") == []


def test_unknown_names_list_known_ones_with_hints():
    db = Database()
    for name in ("scores", "heat"):
        db.put_table(name, _scores())
    db.put_table("occl", _scores(), kind="view")
    with pytest.raises(UnknownNameError) as err:
        db.lookup("table", "Scores")
    assert err.value.known == ("heat", "scores")
    assert "known: heat, scores" in str(err.value) and "did you mean 'scores'" in str(err.value)
    with pytest.raises(UnknownNameError, match="'occl' is a view"):
        db.get_table("occl")
    with pytest.raises(UnknownNameError, match="no model 'resnt18'"):
        db.lookup("model", "resnt18")


@pytest.mark.parametrize("name", ["1abc", "a-b", "", "a b", "é", "models", "Tables", None])
def test_invalid_names_are_rejected(name):
    with pytest.raises(CatalogError, match="invalid name"):
        Database().put_table(name, _scores())


def test_tables_and_views_share_a_namespace():
    db = Database()
    db.put_table("t", _scores())
    with pytest.raises(CatalogError, match="share one namespace"):
        db.put_table("t", _scores(), kind="view")
    with pytest.raises(CatalogError, match="unknown table kind 'index'"):
        db.put_table("u", _scores(), kind="index")


def test_bad_inputs_are_named():
    db = Database()
    with pytest.raises(ImageError, match="no image file"):
        db.add_media("a", "image", "/no/such.png")
    with pytest.raises(CatalogError, match="not JSON-serializable"):
        db.put_table("t", _scores(), info={"f": object()})
    with pytest.raises(CatalogError, match="model kind"):
        db.register_model("m", "x", "pytorch")


# -- damaged files -----------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"{not json", b"", b'{"format": "kryptondb", "version": 99}',
                                     b'{"format": "kryptondb", "version": 1, "tables": {"t": 1}}'])
def test_corrupt_catalog_names_the_file_and_changes_nothing(tmp_path, content):
    db = Database(tmp_path)
    db.put_table("t", _scores())
    file = db.file_of("table", "t")
    (tmp_path / "catalog.json").write_bytes(content)
    with pytest.raises(StorageError, match=str(tmp_path / "catalog.json")):
        Database(tmp_path)
    assert (tmp_path / "catalog.json").read_bytes() == content
    assert file.exists()  # not swept up as an orphan


def test_corrupt_or_truncated_arrow_names_the_file(tmp_path):
    Database(tmp_path).put_table("t", _scores(1000))
    path = Database(tmp_path).file_of("table", "t")
    data = path.read_bytes()
    for damaged in (data[: len(data) // 2], data[:-10], b"\0" * 64, b""):
        path.write_bytes(damaged)
        with pytest.raises(StorageError, match=str(path)):
            Database(tmp_path).get_table("t")
        with pytest.raises(StorageError, match=str(path)):
            read_arrow(path)


def test_missing_arrow_file_names_it(tmp_path):
    Database(tmp_path).put_table("t", _scores())
    Database(tmp_path).file_of("table", "t").unlink()
    with pytest.raises(StorageError, match=r"missing Arrow file .*t\.[0-9a-f]{16}\.arrow"):
        Database(tmp_path).get_table("t")


def test_directory_that_is_not_a_database(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match=f"{tmp_path} is not a KryptonDB database"):
        Database(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    with pytest.raises(KryptonError, match="is a file"):
        Database(tmp_path / "notes.txt")


# -- atomic writes and recovery ----------------------------------------------------------------

def test_writer_failure_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def half_then_fail(f):
        f.write(b"new, partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_failed_put_table_keeps_previous_version(tmp_path, monkeypatch):
    db = Database(tmp_path)
    db.put_table("t", _scores(3))

    def failing_write(path, table):
        atomic_write(path, lambda f: (f.write(b"ARROW1 partial"), 1 / 0))

    monkeypatch.setattr(writes_module, "write_arrow", failing_write)
    with pytest.raises(ZeroDivisionError):
        db.put_table("t", _scores(9))
    assert db.get_table("t").num_rows == 3 and not _temp_files(tmp_path)
    assert Database(tmp_path).get_table("t").num_rows == 3


def test_crash_before_the_catalog_commit_is_never_rolled_forward(tmp_path, monkeypatch):
    """A writer that died after its data file landed but before catalog.json was replaced did
    not commit: reopening keeps the previous version and removes the new file as garbage.
    (Version 1 of the layout rolled such a file forward, also after a reported failure.)"""
    Database(tmp_path).put_table("t", _scores(3), info={"v": 1})
    db = Database(tmp_path)

    def crash(*args):
        raise KeyboardInterrupt("killed after the data file landed")

    monkeypatch.setattr(Database, "_write_catalog", crash)
    monkeypatch.setattr(Database, "_remove_files", staticmethod(lambda files: None))  # died
    for name, rows in (("t", 7), ("new", 2)):
        with pytest.raises(KeyboardInterrupt):
            db.put_table(name, _scores(rows), info={"v": 2})
    monkeypatch.undo()
    landed = sorted(p.name for p in (tmp_path / "tables").iterdir())
    assert len(landed) == 3  # t's version 1, and the two files no entry names

    reopened = Database(tmp_path)
    entry = reopened.lookup("table", "t")
    assert (entry.rows, entry.info) == (3, {"v": 1}) and reopened.get_table("t").num_rows == 3
    assert reopened.names("table") == ["t"] and db.get_table("t").num_rows == 3
    assert [p.name for p in (tmp_path / "tables").iterdir()] == [reopened.file_of("table",
                                                                                  "t").name]
    assert json.loads((tmp_path / "catalog.json").read_text())["tables"]["t"]["rows"] == 3


def test_stale_temp_files_are_ignored_then_removed(tmp_path):
    Database(tmp_path).put_table("t", _scores())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = Database(tmp_path).file_of("table", "t")
    stale = target.parent / temp_path_for(target).name.replace(f".{os.getpid()}-",
                                                                f".{dead.pid}-")
    stale.write_bytes(b"half a table")
    live = temp_path_for(tmp_path / "catalog.json")  # our own pid: a write in progress
    live.write_bytes(b"{")
    assert Database(tmp_path).get_table("t").num_rows == 5
    assert not stale.exists() and live.exists()


# -- the kill test -----------------------------------------------------------------------------

ROWS = 4_000_000
WRITER = """
import sys
import numpy as np, pyarrow as pa
from kryptondb.catalog import Database
db, rows = Database(sys.argv[1]), int(sys.argv[2])
versions = [pa.table({"x": np.full(rows, v)}) for v in (1.0, 2.0)]
i = 0
while True:
    db.put_table("t", versions[i % 2], info={"value": float(i % 2 + 1)})
    print("commit", i, flush=True)
    i += 1
"""


def _assert_one_complete_version(root: Path) -> float:
    json.loads((root / "catalog.json").read_text())  # parses
    db = Database(root)  # repairs: removes dead temp files and files no entry names
    entry, x = db.lookup("table", "t"), db.get_table("t").column("x")
    assert len(x) == entry.rows == ROWS and x.null_count == 0
    lo, hi = (v.as_py() for v in pc.min_max(x).values())
    assert lo == hi and lo in (1.0, 2.0), f"mixed or foreign values {lo}..{hi}"
    assert entry.info == {"value": lo}  # the catalog describes the data it points at
    assert not _temp_files(root)
    return lo


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_write_leaves_one_complete_version(tmp_path):
    root, rng = tmp_path / "db", random.Random(7)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    for _ in range(5):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(ROWS)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline()
            assert line.startswith("commit"), f"writer failed: {line}{child.stderr.read()}"
            time.sleep(rng.uniform(0.0, 0.15))
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
            child.stderr.close()
        _assert_one_complete_version(root)


def test_open_neither_waits_for_a_live_writer_nor_sweeps_its_file(tmp_path, monkeypatch):
    """The writer holds the lock between its data file and catalog.json; an open meanwhile
    must not wait for it (readers never block) and must not delete the new file as an orphan
    (repair is skipped while a writer is at work)."""
    import threading

    landed, opened = threading.Event(), threading.Event()

    def slow_write(path, table):
        write_arrow(path, table)
        landed.set()
        opened.wait(10)  # the window between the data file and catalog.json

    writer = Database(tmp_path)
    monkeypatch.setattr(writes_module, "write_arrow", slow_write)
    thread = threading.Thread(target=writer.put_table, args=("new", _scores()))
    thread.start()
    assert landed.wait(10)
    reader = Database(tmp_path, lock_timeout=0)
    assert thread.is_alive() and reader.names("table") == []  # did not wait for the writer
    opened.set()
    thread.join()
    assert reader.names("table") == ["new"] and reader.get_table("new").num_rows == 5


def test_replacing_an_onnx_model_by_a_zoo_model_removes_the_copy(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"v1")
    db = Database(tmp_path / "db")
    copy = Path(db.register_model("m", onnx, "onnx").source)
    onnx.write_bytes(b"v2")
    second = Path(db.register_model("m", onnx, "onnx").source)
    assert second.read_bytes() == b"v2" and not copy.exists()  # each version its own file
    db.register_model("m", "mobilenet_v2", "zoo")
    assert not second.exists() and Database(tmp_path / "db").models()["m"].kind == "zoo"
    assert os.listdir(tmp_path / "db" / "models") == []

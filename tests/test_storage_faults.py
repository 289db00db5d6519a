"""Nothing stored is lost, nothing waits forever: every step of every write fails in turn (disk
full, file too large, read-only file system, name too long), and the database must keep the
previous version of every entry, in the same session and after reopening, and say so; a writer
held up by another process waits a bounded time and names it; readers never wait."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hostile import png_header, save_external, tiny_cnn

import kryptondb
from kryptondb.catalog import Database, layout
from kryptondb.catalog.storage import is_temp_name, write_arrow
from kryptondb.errors import CatalogError, StorageError
from kryptondb.model import onnx_files

REPO = Path(kryptondb.__file__).resolve().parents[1]
ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.ENAMETOOLONG)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | getattr(os, "O_DIRECTORY", 0)


class Faults:
    """Makes the n-th OS call that changes something under ``root`` (counted from ``arm``) fail
    with ``code``, and with ``sticky`` every later one too, as a full or read-only disk would.
    Counted: opens for writing (and of directories, for fsync), write, pwrite, ftruncate, fsync,
    replace, rename, mkdir. Unlink is never failed: removing a file works on a full disk."""

    CALLS = ("open", "write", "pwrite", "ftruncate", "fsync", "replace", "rename", "mkdir",
             "close")

    def __init__(self, monkeypatch, root: Path):
        self.root, self.fds, self.calls = str(root), set(), 0
        self.fail_at, self.code, self.sticky = None, errno.ENOSPC, False
        for name in self.CALLS:
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))

    def arm(self, fail_at: int | None, code: int = errno.ENOSPC, sticky: bool = False):
        self.calls, self.fail_at, self.code, self.sticky = 0, fail_at, code, sticky

    def _ours(self, name: str, args) -> bool:
        if name in ("write", "pwrite", "ftruncate", "fsync"):
            return args[0] in self.fds
        if name == "open":
            return str(args[0]).startswith(self.root) and bool(args[1] & _WRITE_FLAGS)
        return any(str(a).startswith(self.root) for a in args[:2])

    def _wrap(self, name: str, real):
        def call(*args, **kwargs):
            if name == "close":
                self.fds.discard(args[0])
                return real(*args, **kwargs)
            if self._ours(name, args):
                self.calls += 1
                if self.fail_at is not None and (self.calls == self.fail_at + 1 or
                                                 self.sticky and self.calls > self.fail_at):
                    raise OSError(self.code, os.strerror(self.code), str(args[0]))
            result = real(*args, **kwargs)
            if name == "open" and str(args[0]).startswith(self.root):
                self.fds.add(result)
            return result
        return call


def _table(rows: int, value: float) -> pa.Table:
    return pa.table({"x": np.full(rows, value)})


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """ONNX files to register: one with its weights inside, one with external data."""
    root = tmp_path_factory.mktemp("sources")
    inline = root / "inline.onnx"
    inline.write_bytes(tiny_cnn(seed=1).SerializeToString())
    external = save_external(tiny_cnn(seed=2), root / "ext" / "model.onnx")
    image = root / "cat.png"
    image.write_bytes(png_header(4, 4))
    return {"inline": inline, "external": external, "image": image}


def _base(root: Path, sources) -> None:
    db = Database(root)
    db.put_table("t", _table(3, 1.0), info={"v": 1})
    db.put_table("v", _table(2, 5.0), kind="view")
    db.register_model("m", sources["inline"], "onnx")
    db.register_model("z", "resnet18", "zoo")
    db.add_media("a", "image", sources["image"], {"width": 4, "height": 4})


SCENARIOS = {
    "replace table": lambda db, s: db.put_table("t", _table(7, 2.0), info={"v": 2}),
    "new table": lambda db, s: db.put_table("u", _table(2, 3.0)),
    "replace view": lambda db, s: db.put_table("v", _table(4, 6.0), kind="view"),
    "drop table": lambda db, s: db.drop("table", "t"),
    "replace model": lambda db, s: db.register_model("m", s["external"], "onnx"),
    "replace model, weights in a data file": lambda db, s: db.register_model(
        "m", s["external"], "onnx"),
    "new model": lambda db, s: db.register_model("n", s["inline"], "onnx"),
    "onnx model by zoo": lambda db, s: db.register_model("m", "vgg16", "zoo"),
    "zoo model by onnx": lambda db, s: db.register_model("z", s["external"], "onnx"),
    "drop model": lambda db, s: db.drop("model", "m"),
    "add media": lambda db, s: db.add_media("b", "image", s["image"]),
    "drop media": lambda db, s: db.drop("image", "a"),
}


def _snapshot(db: Database) -> dict:
    """Everything a user can read: entries, table contents, registered model bytes."""
    out = {}
    for kind in ("model", "image", "video", "table", "view"):
        for name in db.names(kind):
            entry = db.lookup(kind, name)
            if kind in ("table", "view"):
                content = (entry.rows, entry.info, db.get_table(name, kind).to_pydict())
            elif kind == "model":
                owned = db.file_of(kind, name)
                files = [owned, layout.external_file(owned)] if owned else []
                content = (entry.kind, entry.source if not owned else
                           [f.read_bytes() for f in files if f.exists()])
            else:
                content = entry
            out[(kind, name)] = content
    return out


def _assert_clean(root: Path) -> None:
    """After a reopen: no temp files, and every data file is named by an entry."""
    db = Database(root)
    owned = {layout.stored_item(root, kind, db.file_of(kind, name))
             for kind in ("model", "table", "view") for name in db.names(kind)
             if db.file_of(kind, name)}
    for sub in ("tables", "views", "models"):
        for file in (root / sub).iterdir():
            assert not is_temp_name(file.name), file
            assert file in owned, f"{file} is named by no entry"
            if file.is_dir():  # a model version: its model file, and maybe external data
                assert {p.name for p in file.iterdir()} <= {f"{file.name.split('.')[0]}.onnx",
                                                            f"{file.name.split('.')[0]}"
                                                            ".onnx.data"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_failed_write_changes_nothing_at_every_step(tmp_path, monkeypatch, sources, scenario):
    if "data file" in scenario:  # as if the weights were too big for one protobuf
        monkeypatch.setattr(onnx_files, "_PROTOBUF_MAX", 0)
    template = tmp_path / "template"
    _base(template, sources)
    before = _snapshot(Database(template))
    faults = Faults(monkeypatch, tmp_path)

    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    db = Database(clean)
    faults.arm(None)
    SCENARIOS[scenario](db, sources)
    steps, after = faults.calls, _snapshot(db)
    assert after != before and _snapshot(Database(clean)) == after
    assert steps >= 5, "the fault injector does not see the writes"

    failures = 0
    for step in range(steps):
        for sticky in (False, True):
            root = tmp_path / f"run{step}{sticky}"
            shutil.copytree(template, root)
            db = Database(root)
            faults.arm(step, ERRNOS[step % len(ERRNOS)], sticky)
            try:
                SCENARIOS[scenario](db, sources)
            except StorageError as exc:
                faults.arm(None)
                failures += 1
                assert "nothing was changed" in str(exc) and str(root) in str(exc)
                assert os.strerror(ERRNOS[step % len(ERRNOS)]) in str(exc)
                want = before
            else:  # the fault came after the point of no return (or was harmless)
                faults.arm(None)
                want = after
            assert _snapshot(db) == want, f"session state after a fault at step {step}"
            assert _snapshot(Database(root)) == want, f"reopened after a fault at step {step}"
            _assert_clean(root)
            shutil.rmtree(root)
    assert failures >= 2


def test_a_failed_write_is_never_rolled_forward(tmp_path, monkeypatch):
    """Disk full while replacing catalog.json: the new table file had landed, and version 1
    rolled it forward on the next open, although the statement had reported failure."""
    db = Database(tmp_path)
    db.put_table("t", _table(3, 1.0))
    real = os.replace

    def full(src, dst, *args, **kwargs):
        if str(dst).endswith("catalog.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StorageError, match="nothing was changed"):
        db.put_table("t", _table(9, 2.0))
    monkeypatch.undo()
    assert db.get_table("t").num_rows == 3 and db.lookup("table", "t").rows == 3
    assert Database(tmp_path).get_table("t").num_rows == 3


def test_a_replaced_model_whose_old_views_cannot_be_dropped_is_not_reported_unchanged(
        tmp_path, monkeypatch, sources):
    """CREATE MODEL commits the new model, then drops the views of its old weights. A fault there
    said 'nothing was changed' although the model had been replaced: the drops are clean-up after
    the point of no return, so they may fail (the views are unreadable garbage), the statement
    may not."""
    template = tmp_path / "template"
    con = kryptondb.connect(template)
    con.execute(f"CREATE MODEL m FROM '{sources['inline']}'")
    image = tmp_path / "cat.png"
    from PIL import Image

    Image.new("RGB", (20, 20), (120, 40, 200)).save(image)
    con.execute(f"EXPLAIN OCCLUSION OF IMAGE '{image}' USING MODEL m PATCH 4 STRIDE 4 "
                "INCREMENTAL")
    assert Database(template).names("view")
    before = _snapshot(Database(template))
    faults = Faults(monkeypatch, tmp_path)
    statement = f"CREATE MODEL m FROM '{sources['external']}'"
    for step in range(40):
        root = tmp_path / f"run{step}"
        shutil.copytree(template, root)
        con = kryptondb.connect(root)
        faults.arm(step, errno.ENOSPC, sticky=True)
        try:
            con.execute(statement)
        except StorageError:
            faults.arm(None)
            assert _snapshot(Database(root)) == before, f"a fault at step {step}"
        else:
            faults.arm(None)
            models = _snapshot(Database(root))
            assert models[("model", "m")] != before[("model", "m")], f"step {step}"
            if not Database(root).names("view"):
                break  # every step of the statement has failed once
        shutil.rmtree(root)
    else:
        pytest.fail("the statement never ran to its end")


def test_an_occlusion_whose_into_fails_stores_no_views_either(tmp_path, monkeypatch, sources):
    """EXPLAIN OCCLUSION ... INCREMENTAL INTO t materializes views, then stores t. A fault at
    any step of either write fails the statement, and then nothing is stored: the views are a
    cache written only once the statement has succeeded. A fault that hits only the views'
    write leaves a complete result, t stored, and a CacheWarning."""
    from PIL import Image

    from kryptondb.errors import CacheWarning

    template = tmp_path / "template"
    kryptondb.connect(template).execute(f"CREATE MODEL m FROM '{sources['inline']}'")
    image = tmp_path / "cat.png"
    Image.new("RGB", (20, 20), (120, 40, 200)).save(image)
    before = _snapshot(Database(template))
    statement = (f"EXPLAIN OCCLUSION OF IMAGE '{image}' USING MODEL m PATCH 4 STRIDE 4 "
                 "INCREMENTAL INTO t")
    faults, outcomes = Faults(monkeypatch, tmp_path), set()
    for step in range(60):
        root = tmp_path / f"run{step}"
        shutil.copytree(template, root)
        con = kryptondb.connect(root)
        faults.arm(step, errno.ENOSPC)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                con.execute(statement)
        except StorageError:
            faults.arm(None)
            assert _snapshot(Database(root)) == before, f"a fault at step {step}"
            outcomes.add("failed")
        else:
            reached = faults.calls > step
            faults.arm(None)
            after = Database(root)
            assert "t" in after.names("table"), f"step {step}"
            views = after.names("view")
            warned = any(issubclass(w.category, CacheWarning) for w in caught)
            assert bool(views) != warned, f"step {step}: views {views}, warned {warned}"
            outcomes.add("views lost" if warned else "done")
            if not reached:
                break  # every step of the statement has failed once
        _assert_clean(root)
        shutil.rmtree(root)
    assert outcomes == {"failed", "views lost", "done"}, outcomes


def test_names_too_long_for_a_file_are_refused_up_front(tmp_path):
    db = Database(tmp_path)
    for name in ("x" * 129, "y" * 300):
        with pytest.raises(CatalogError, match="at most 128 characters"):
            db.put_table(name, _table(1, 1.0))
    longest = "n" * 128
    db.put_table(longest, _table(1, 1.0))
    assert Database(tmp_path).get_table(longest).num_rows == 1


# -- version-1 databases -----------------------------------------------------------------------

def _version1(root: Path, rows: int = 3) -> None:
    """A database as version 1 wrote it: files named <name>.arrow and <name>.onnx."""
    (root / "tables").mkdir(parents=True)
    (root / "views").mkdir()
    (root / "models").mkdir()
    write_arrow(root / "tables" / "t.arrow", _table(rows, 1.0))
    (root / "models" / "m.onnx").write_bytes(tiny_cnn().SerializeToString())
    doc = {"format": "kryptondb", "version": 1, "images": {}, "videos": {}, "views": {},
           "models": {"m": {"kind": "onnx", "source": "models/m.onnx"}},
           "tables": {"t": {"rows": rows, "columns": ["x"], "created": "2024-01-01T00:00:00+00:00",
                            "info": {}, "token": "00000000000000aa"}}}
    (root / "catalog.json").write_text(json.dumps(doc))


def test_version_1_databases_are_read_and_upgraded_on_write(tmp_path):
    _version1(tmp_path)
    con = kryptondb.connect(tmp_path)
    assert con.db.get_table("t").num_rows == 3
    assert con.execute("DESCRIBE MODEL m").table.num_rows > 0
    con.db.put_table("t", _table(5, 2.0))
    con.db.register_model("m", tmp_path / "models" / "m.onnx", "onnx")
    assert sorted(os.listdir(tmp_path / "tables")) == [con.db.file_of("table", "t").name]
    assert not (tmp_path / "models" / "m.onnx").exists()
    assert json.loads((tmp_path / "catalog.json").read_text())["version"] == 2
    again = kryptondb.connect(tmp_path)
    assert again.db.get_table("t").num_rows == 5 and again.execute("DESCRIBE MODEL m").table


def test_a_version_1_replace_that_landed_before_its_commit_is_adopted(tmp_path):
    """Version-1 writers overwrote <name>.arrow in place before committing: the old data is
    gone, so open adopts the file's own entry (its schema metadata) rather than keep a catalog
    entry that describes other data. Token-named files are never adopted."""
    from kryptondb.catalog.recovery import stamp_table
    from kryptondb.catalog.entries import TableEntry

    _version1(tmp_path)
    landed = TableEntry("t", "table", 6, ("x",), "2024-01-02T00:00:00+00:00", {"v": 2})
    write_arrow(tmp_path / "tables" / "t.arrow",
                stamp_table(_table(6, 2.0), landed, "00000000000000bb"))
    assert Database(tmp_path).lookup("table", "t") == landed


# -- the writers' lock ---------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys
    from kryptondb.catalog import Database
    from kryptondb.catalog.lock import locked
    from pathlib import Path
    with locked(Path(sys.argv[1]), 10):
        print("held", flush=True)
        sys.stdin.readline()  # until the test lets go
""")


@pytest.fixture
def held(tmp_path):
    """A database whose writer lock a second process holds until the test ends."""
    Database(tmp_path).put_table("t", _table(3, 1.0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "--marker-arg"],
                             env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        yield tmp_path, child.pid
    finally:
        child.stdin.close()
        child.wait(30)
        child.stdout.close()


def test_a_writer_waits_a_bounded_time_and_names_the_holder(held):
    root, pid = held
    db = Database(root, lock_timeout=0.2)
    with pytest.raises(StorageError) as err:
        db.put_table("t", _table(9, 2.0))
    message = str(err.value)
    assert f"pid {pid}" in message and "--marker-arg" in message
    assert "nothing was changed" in message and "lock_timeout" in message
    assert db.get_table("t").num_rows == 3
    con = kryptondb.connect(root, limits={"lock_timeout": 0})
    with pytest.raises(StorageError, match=f"pid {pid}"):
        con.execute("DROP TABLE t")


def test_a_holder_that_did_not_record_itself_is_named_by_the_kernel(tmp_path):
    """Another program (or an older KryptonDB) holding the lock without writing into it."""
    Database(tmp_path).put_table("t", _table(3, 1.0))
    code = ("import fcntl, sys; f = open(sys.argv[1], 'ab'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); sys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "catalog.lock")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(StorageError, match=f"pid {child.pid}, running .*fcntl"):
            Database(tmp_path, lock_timeout=0.1).drop("table", "t")
    finally:
        child.stdin.close()
        child.wait(30)
        child.stdout.close()
    assert Database(tmp_path).names("table") == ["t"]


def test_readers_never_wait_for_a_writer(held):
    root, _ = held
    con = kryptondb.connect(root, limits={"lock_timeout": 0})  # opening needs no lock
    assert con.execute("SHOW TABLES").table.column("name").to_pylist() == ["t"]
    assert con.execute("SELECT COUNT(*) AS n FROM t").table.column("n").to_pylist() == [3]
    assert Database(root, lock_timeout=0).get_table("t").num_rows == 3


def _writer_strikes(monkeypatch, module, name: str, times: int, write) -> None:
    """Before each of the first ``times`` calls of ``module.name``, another process's ``write``
    commits (and removes the version the caller is about to read)."""
    real, calls = getattr(module, name), []

    def call(*args, **kwargs):
        calls.append(1)
        if len(calls) <= times:
            write(len(calls))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, call)


def test_a_reader_keeps_up_with_writers_replacing_a_table(tmp_path, monkeypatch):
    """A reader read a table's file after two writers had replaced it in turn (each removing the
    old file after its commit): 'missing Arrow file', although a newer version was there."""
    from kryptondb.catalog import database

    Database(tmp_path).put_table("t", _table(1, 0.0))
    reader, writer = Database(tmp_path), Database(tmp_path)
    reader.names("table")
    _writer_strikes(monkeypatch, database, "read_arrow", 3,
                    lambda i: writer.put_table("t", _table(1 + i, float(i))))
    assert reader.get_table("t").num_rows == 4


def test_binding_keeps_up_with_writers_replacing_a_model(tmp_path, monkeypatch, sources):
    """PREDICT while another process replaced the model: 'ONNX file ... does not exist' (the
    version it had looked up was removed after the other commit)."""
    from kryptondb.model import binding

    root = tmp_path / "db"
    kryptondb.connect(root).execute(f"CREATE MODEL m FROM '{sources['inline']}'")
    reader, writer = kryptondb.connect(root), Database(root)
    files = [sources["external"], sources["inline"]]
    _writer_strikes(monkeypatch, binding, "load_source", 2,
                    lambda i: writer.register_model("m", files[i % 2], "onnx"))
    ref = binding.resolve(reader.db, "m")
    assert ref.source == str(writer.file_of("model", "m"))


def test_the_lock_timeout_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("KRYPTON_LOCK_TIMEOUT", "2.5")
    assert kryptondb.connect().limits.lock_timeout == 2.5
    assert Database()._lock_timeout() == 2.5

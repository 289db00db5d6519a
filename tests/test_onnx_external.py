"""ONNX models with external data: registered in memory or in an on-disk database (which keeps a
self-contained copy, so the source folder may go and the database may move) and used later; and
hostile external data (paths out of the model's folder, bytes outside the file) refused."""

from __future__ import annotations

import shutil

import onnx
import pytest
from hostile import save_external, tiny_cnn

import kryptondb
from kryptondb.catalog import Database
from kryptondb.errors import ModelImportError
from kryptondb.model import onnx_files

CAT = kryptondb.bundled_image()


def _top(con, model: str = "m") -> list:
    result = con.execute(f"PREDICT IMAGE '{CAT}' USING MODEL {model} TOP 3").table
    return list(zip(result.column("class").to_pylist(), result.column("probability").to_pylist()))


def _expected(tmp_path, model) -> list:
    """The predictions of the same network with its weights inside the file."""
    inline = tmp_path / "inline" / "m.onnx"
    inline.parent.mkdir(exist_ok=True)
    onnx.save(model, str(inline))
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL m FROM '{inline}'")
    return _top(con)


@pytest.fixture
def expected(tmp_path) -> list:
    return _expected(tmp_path, tiny_cnn())


@pytest.mark.parametrize("locations", [None, {"W": "w.bin", "G": "weights/g.bin"}],
                         ids=["one data file", "several data files"])
def test_in_memory_and_on_disk_and_later(tmp_path, expected, locations):
    source = save_external(tiny_cnn(), tmp_path / "src" / "m.onnx", locations)
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL m FROM '{source}'")
    assert _top(con) == expected

    kryptondb.connect(tmp_path / "db").execute(f"CREATE MODEL m FROM '{source}'")
    shutil.rmtree(tmp_path / "src")  # the database holds its own copy
    (tmp_path / "db").rename(tmp_path / "moved")  # and can be moved
    later = kryptondb.connect(tmp_path / "moved")
    assert _top(later) == expected
    assert later.execute("DESCRIBE MODEL m").table.num_rows > 0


def test_a_statement_does_not_parse_the_model_again_to_list_its_data_files(tmp_path,
                                                                            monkeypatch):
    """The digest lists the external data files once per version of the model file; binding
    the model again (every statement that uses it) reads none of it."""
    source = save_external(tiny_cnn(), tmp_path / "src" / "m.onnx", {"W": "w.bin"})
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL m FROM '{source}'")
    parses, load = [], onnx.load
    monkeypatch.setattr(onnx, "load", lambda *a, **k: parses.append(a) or load(*a, **k))
    con.execute("DESCRIBE MODEL m")
    con.execute("DESCRIBE MODEL m")
    assert parses == []


def test_weights_too_big_for_one_protobuf_go_to_a_data_file(tmp_path, monkeypatch):
    expected = _expected(tmp_path, tiny_cnn(channels=64))  # W: 6912 bytes, G: 2560
    source = save_external(tiny_cnn(channels=64), tmp_path / "src" / "m.onnx")
    monkeypatch.setattr(onnx_files, "_PROTOBUF_MAX", 0)  # as if they were over 2 GiB
    kryptondb.connect(tmp_path / "db").execute(f"CREATE MODEL m FROM '{source}'")
    monkeypatch.undo()
    shutil.rmtree(tmp_path / "src")
    db = Database(tmp_path / "db")
    copy = db.file_of("model", "m")
    assert sorted(p.name for p in copy.parent.iterdir()) == ["m.onnx", "m.onnx.data"]
    assert _top(kryptondb.connect(tmp_path / "db")) == expected
    db.drop("model", "m")
    assert list((tmp_path / "db" / "models").iterdir()) == []


def _hostile(tmp_path, **external) -> str:
    """A model whose tensor W's external data entries are overwritten by ``external``."""
    path = save_external(tiny_cnn(), tmp_path / "model" / "m.onnx", {"W": "w.bin"})
    proto = onnx.load(str(path), load_external_data=False)
    w = next(t for t in proto.graph.initializer if t.name == "W")
    entries = {e.key: e.value for e in w.external_data} | {k: str(v) for k, v in
                                                            external.items()}
    del w.external_data[:]
    for key, value in entries.items():
        w.external_data.add(key=key, value=value)
    path.write_bytes(proto.SerializeToString())
    return str(path)


HOSTILE = {
    "parent directory": ({"location": "../../../../etc/passwd"}, "outside the model's folder"),
    "absolute path": ({"location": "/etc/passwd"}, "outside the model's folder"),
    "climbing inside": ({"location": "sub/../../secret.bin"}, "outside the model's folder"),
    "symlink out": ({"location": "link.bin"}, "outside the model's folder"),
    "missing file": ({"location": "nope.bin"}, "does not exist"),
    "offset past the end": ({"offset": 10**9}, "lie outside"),
    "length past the end": ({"length": 10**9}, "lie outside"),
    "negative offset": ({"offset": -8}, "lie outside"),
    "length not the tensor's size": ({"length": 16}, "its external data is 16 bytes"),
    "offset not a number": ({"offset": "1e3"}, "are not integers"),
    "no location": ({"location": ""}, "no usable location"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_external_data_is_refused(tmp_path, case):
    external, message = HOSTILE[case]
    path = _hostile(tmp_path, **external)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    (tmp_path / "model" / "link.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(ModelImportError, match=message) as err:
        kryptondb.load_model(path)
    assert path in str(err.value) and "tensor 'W'" in str(err.value)
    con = kryptondb.connect(tmp_path / "db")
    with pytest.raises(ModelImportError, match=message):
        con.execute(f"CREATE MODEL m FROM '{path}'")
    with pytest.raises(ModelImportError, match=message):
        con.db.register_model("m", path, "onnx")  # the copy checks it too
    assert con.db.names("model") == [] and list((tmp_path / "db" / "models").iterdir()) == []

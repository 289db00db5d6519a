"""Only regular files are read: a FIFO, /dev/zero (also behind a symlink), a directory or a
socket given as an image, video, model, external data, checkpoint, script, TUNE glob match or
database file is a KryptonError at once, naming what it is, and COPY writes to none of them.
(A FIFO used to hang forever; /dev/zero as a model grew until the kernel killed the process.)

The cases run in one child process, each under an alarm and the whole under a memory cap and a
timeout, so that a regression fails the test instead of hanging it or exhausting memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kryptondb

REPO = Path(kryptondb.__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
FIFO, DEVICE, DIRECTORY, SOCKET = "FIFO", "character device", "directory", "socket"

SETUP = textwrap.dedent("""
    import os, sys
    import onnx
    from hostile import fifo, link, save_external, tiny_cnn, unix_socket
    import kryptondb
    from kryptondb.catalog import Database
    d = sys.argv[1]
    j = lambda *p: os.path.join(d, *p)
    for name in ("x.png", "x.avi", "x.onnx", "x.pth", "x.kql"):
        fifo(j(name))
        link(j("zero-" + name), "/dev/zero")
    os.mkdir(j("dir.png"))
    sock = unix_socket(j("sock.png"))
    os.mkdir(j("glob"))
    fifo(j("glob", "a.png"))
    for kind, special in (("fifo", fifo), ("zero", lambda p: link(p, "/dev/zero"))):
        model = save_external(tiny_cnn(), j(kind, "model.onnx"))
        os.unlink(j(kind, "model.onnx.data"))
        special(j(kind, "model.onnx.data"))
    db = Database(j("db"))
    db.put_table("t", __import__("pyarrow").table({"x": [1]}))
    table_file = db.file_of("table", "t")
    os.unlink(table_file)
    fifo(table_file)
    Database(j("db2"))
    os.unlink(j("db2", "catalog.json"))
    fifo(j("db2", "catalog.json"))
    con = kryptondb.connect()
    # COPY's device: root could replace /dev/null itself if a check ever failed; make its own
    null = j("null.csv") if os.geteuid() == 0 else "/dev/null"
    if os.geteuid() == 0:
        os.mknod(null, 0o20666, os.makedev(1, 3))
""")

CASES = {
    "load_image FIFO": ("kryptondb.load_image(j('x.png'))", FIFO),
    "load_image /dev/zero": ("kryptondb.load_image('/dev/zero')", DEVICE),
    "load_image link to /dev/zero": ("kryptondb.load_image(j('zero-x.png'))", DEVICE),
    "load_image directory": ("kryptondb.load_image(j('dir.png'))", DIRECTORY),
    "load_image socket": ("kryptondb.load_image(j('sock.png'))", SOCKET),
    "LOAD IMAGE FIFO": ("con.execute(f\"LOAD IMAGE '{j('x.png')}' AS a\")", FIFO),
    "PREDICT IMAGE FIFO": (
        "con.execute(f\"PREDICT IMAGE '{j('x.png')}' USING MODEL resnet18\")", FIFO),
    "LOAD VIDEO FIFO": ("con.execute(f\"LOAD VIDEO '{j('x.avi')}' AS v\")", FIFO),
    "LOAD VIDEO /dev/zero": ("con.execute(f\"LOAD VIDEO '{j('zero-x.avi')}' AS v\")", DEVICE),
    "RECOGNIZE FIFO": ("con.execute(f\"RECOGNIZE OBJECTS IN VIDEO '{j('x.avi')}' "
                       "USING MODEL resnet18 NAIVE\")", FIFO),
    "video frames socket": (
        "next(__import__('kryptondb.media.video').media.video.frames(j('sock.png')))", SOCKET),
    "CREATE MODEL FIFO": ("con.execute(f\"CREATE MODEL m FROM '{j('x.onnx')}'\")", FIFO),
    "CREATE MODEL /dev/zero": (
        "con.execute(f\"CREATE MODEL m FROM '{j('zero-x.onnx')}'\")", DEVICE),
    "load_model /dev/zero": ("kryptondb.load_model(j('zero-x.onnx'))", DEVICE),
    "external data FIFO": ("kryptondb.load_model(j('fifo', 'model.onnx'))", FIFO),
    "external data /dev/zero": ("kryptondb.load_model(j('zero', 'model.onnx'))", DEVICE),
    "register_model FIFO": ("Database(j('db3')).register_model('m', j('x.onnx'), 'onnx')", FIFO),
    "checkpoint FIFO": (
        "__import__('kryptondb.model.checkpoint').model.checkpoint.load_checkpoint(j('x.pth'))",
        FIFO),
    "checkpoint /dev/zero": (
        "__import__('kryptondb.model.checkpoint').model.checkpoint.load_checkpoint("
        "j('zero-x.pth'))", DEVICE),
    "TUNE glob matching a FIFO": (
        "con.execute(f\"TUNE MODEL resnet18 PATCH 56 STRIDE 56 ON IMAGES '{j('glob')}/*.png'\")",
        FIFO),
    "add_media FIFO": ("Database().add_media('a', 'image', j('x.png'))", FIFO),
    "Arrow file FIFO": ("Database(j('db')).get_table('t')", FIFO),
    "catalog.json FIFO": ("Database(j('db2'))", FIFO),
    # COPY writes only regular files (tests/test_copy.py: folders, links, missing folders)
    "COPY TO a FIFO": ("con.execute(f\"COPY models TO '{j('x.kql')}' (FORMAT csv)\")", FIFO),
    "COPY TO a device": ("con.execute(f\"COPY models TO '{null}' (FORMAT json)\")", DEVICE),
    "COPY TO a socket": ("con.execute(f\"COPY models TO '{j('sock.png')}' (FORMAT parquet)\")",
                         SOCKET),
}

CLI_CASES = {
    "kryptondb -f FIFO": (["-f", "x.kql"], FIFO),
    "kryptondb -f /dev/zero": (["-f", "zero-x.kql"], DEVICE),
    "kryptondb predict FIFO": (["predict", "x.png", "-m", "resnet18"], FIFO),
    "kryptondb describe /dev/zero": (["describe", "zero-x.onnx"], DEVICE),
    "kryptondb recognize directory": (["recognize", "dir.png", "-m", "resnet18"], DIRECTORY),
}

RUNNER = SETUP + textwrap.dedent("""
    import contextlib, io, json, resource, signal
    from kryptondb import cli
    from kryptondb.errors import KryptonError
    cases, cli_cases = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    class Hang(BaseException):  # not an OSError: no reader may take it for a read error
        pass
    def alarm(*_):
        raise Hang()
    signal.signal(signal.SIGALRM, alarm)
    def run(name, fn):
        signal.alarm(20)
        try:
            fn()
            out = {"outcome": "no error"}
        except KryptonError as exc:
            out = {"outcome": "krypton", "message": str(exc)}
        except Hang:
            out = {"outcome": "hang"}
        except BaseException as exc:
            out = {"outcome": type(exc).__name__, "message": str(exc)}
        finally:
            signal.alarm(0)
        print(json.dumps({"name": name, **out}), flush=True)
    for name, code in cases.items():
        run(name, lambda: exec(code, globals()))
    os.chdir(d)
    for name, argv in cli_cases.items():
        err = io.StringIO()
        def call():
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                status = cli.main(argv)
            if status != 1:
                raise RuntimeError(f"status {status}")
            raise KryptonError(err.getvalue())
        run(name, call)
""")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("special")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), str(HERE), os.environ.get("PYTHONPATH")) if p)}
    cases = {name: code for name, (code, _) in CASES.items()}
    cli_cases = {name: argv for name, (argv, _) in CLI_CASES.items()}
    try:
        done = subprocess.run([sys.executable, "-c", RUNNER, str(root), json.dumps(cases),
                               json.dumps(cli_cases)], env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        stdout, stderr = exc.stdout or "", f"the child hung: {exc.stderr or ''}"
    found = {}
    for line in (stdout if isinstance(stdout, str) else stdout.decode()).splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            found[result.pop("name")] = result
    found["stderr"] = stderr
    return found


@pytest.mark.parametrize("case", [*CASES, *CLI_CASES])
def test_special_files_are_refused_at_once(outcomes, case):
    kind = {**CASES, **CLI_CASES}[case][1]
    got = outcomes.get(case)
    assert got is not None, f"the child never reached this case:\n{outcomes['stderr'][-3000:]}"
    assert got["outcome"] == "krypton", got
    assert kind in got["message"] and "not a regular file" in got["message"], got

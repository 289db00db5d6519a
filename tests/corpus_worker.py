"""The bad-input corpus's world, the guard every case runs under, and the worker process that
runs the cases (tests/test_bad_input.py starts it and sends it cases).

The world: a tiny ONNX CNN (3x16x16 input, two convs, global average pool, Gemm, softmax),
two small images, a six-frame video, a batch of two inputs as an .npy file, a folder COPY writes
into, and a marker path that hostile payloads try to create. Statements with ``?`` get values
for them.
Every case gets a fresh in-memory connection with these registered (``tiny``, ``cat``,
``clip``) and result tables (``heat``, ``preds``, a tuning), so one case cannot spoil the next.

The worker reads one JSON request per line (a statement to execute, or a hostile file and the
statement or function to read it with) and answers one JSON line: the outcome ('ok',
'refused' for a KryptonError, else the finding) and the seconds it took. It runs in its own
process so that a runaway case can neither take the test run's memory nor stall it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TIMEOUT_S = 20  # per case; the slowest legitimate one (TUNE at PATCH 1) takes about 3 s
MEMORY_HEADROOM = 3 << 30  # address space a case may add; far more than any cheap case needs


# -- the world ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    dir: Path

    onnx = property(lambda self: self.dir / "tiny.onnx")
    img = property(lambda self: self.dir / "images" / "cat.png")
    img2 = property(lambda self: self.dir / "images" / "dog.jpg")
    vid = property(lambda self: self.dir / "clip.mp4")
    npy = property(lambda self: self.dir / "batch.npy")
    marker = property(lambda self: self.dir / "pwned")
    out = property(lambda self: self.dir / "out")  # where COPY's seeds write

    def fill(self, text: str) -> str:
        """Put the world's paths into a statement template."""
        for key in ("onnx", "img", "img2", "vid", "npy", "out", "marker"):
            text = text.replace("{" + key + "}", str(getattr(self, key)))
        return text.replace("{dir}", str(self.dir / "images"))

    def executed(self) -> bool:
        """True when a payload created the marker (SQL engines may lower-case the path)."""
        found = False
        for path in {self.marker, Path(str(self.marker).lower())}:
            if path.exists():
                found = True
                path.unlink()
        return found


def tiny_onnx(path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1],
                              strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    inits = [init("w1", (4, 3, 3, 3)), init("b1", (4,)), init("w2", (8, 4, 3, 3)),
             init("b2", (8,)), init("wf", (10, 8)), init("bf", (10,))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def make_world(root) -> World:
    """Write the world's files under ``root``."""
    from PIL import Image
    from test_video_naive import write_video

    world = World(Path(root))
    world.img.parent.mkdir(parents=True, exist_ok=True)
    world.out.mkdir(exist_ok=True)
    tiny_onnx(world.onnx)
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((20, 20, 3)) * 255).astype(np.uint8)).save(world.img)
    Image.fromarray((rng.random((18, 24, 3)) * 255).astype(np.uint8)).save(world.img2)
    write_video(world.vid, [(rng.random((16, 16, 3)) * 255).astype(np.uint8) for _ in range(6)])
    np.save(world.npy, rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    return world


def params(statement: str) -> list:
    """Values for a statement's ``?`` (a batch for the input, a number for BASELINE), as many
    as it seems to hold: a mutated statement may hold more or fewer."""
    batch = np.random.default_rng(4).standard_normal((2, 3, 16, 16)).astype(np.float32)
    return [batch, -0.5, batch[0]][:statement.count("?")]


_TABLES: dict = {}  # name -> (Arrow table, catalog info), computed once per process


def connect(world: World):
    """A fresh in-memory connection with the world registered."""
    import kryptondb

    con = kryptondb.connect()
    con.execute(f"CREATE MODEL tiny FROM '{world.onnx}'; LOAD IMAGE '{world.img}' AS cat; "
                f"LOAD VIDEO '{world.vid}' AS clip")
    if not _TABLES:
        con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 4 INTO heat")
        con.execute("PREDICT IMAGE cat USING MODEL tiny INTO preds")
        con.execute("TUNE MODEL tiny PATCH 4 STRIDE 2 ON IMAGES cat")  # for WITH SSIM, WITHIN
        _TABLES.update({name: (con.db.get_table(name), entry.info)
                        for name, entry in con.db.tables().items()})
    for name, (table, info) in _TABLES.items():
        con.db.put_table(name, table, info=info)
    return con


# -- the guard ---------------------------------------------------------------------------------


class Hang(BaseException):
    """A case ran past TIMEOUT_S (a BaseException, so no `except Exception` swallows it)."""


class _Clock:
    """Interrupts the main thread once ``seconds`` have passed: a thread sends SIGALRM to the
    main thread itself (a process-wide timer's signal may land on any thread, leaving a read
    blocked in the main one), and the handler raises Hang there."""

    def __init__(self, seconds: float):
        self.fired = False
        self.timer = threading.Timer(seconds, self._ring)
        self.timer.daemon = True

    def _ring(self):
        self.fired = True
        signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)

    def _raise(self, signum, frame):
        if self.fired:
            raise Hang()


@contextlib.contextmanager
def guarded(seconds: float = TIMEOUT_S, headroom: int = MEMORY_HEADROOM):
    """Run a case with a time limit and an address-space cap (a runaway allocation is a
    MemoryError, not the machine's memory). Yields the clock: ``clock.fired`` is True when
    the limit was reached, even if the code under test turned Hang into an error of its own.
    A hang in C code that never checks for signals ends the process with every thread's
    traceback after three times the limit."""
    clock = _Clock(seconds)
    old = signal.signal(signal.SIGALRM, clock._raise)
    faulthandler.dump_traceback_later(seconds * 3, exit=True)
    limits = _cap_memory(headroom)
    clock.timer.start()
    try:
        yield clock
    finally:
        clock.timer.cancel()
        signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()
        if limits is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, limits)


def _cap_memory(headroom: int):
    try:
        import resource

        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        old = resource.getrlimit(resource.RLIMIT_AS)
        cap = used + headroom
        if old[1] != resource.RLIM_INFINITY:
            cap = min(cap, old[1])
        resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
        return old
    except (ImportError, OSError, ValueError):  # not Linux: no cap
        return None


def outcome(world: World, action, seconds: float = TIMEOUT_S,
            headroom: int = MEMORY_HEADROOM) -> str:
    """'ok' or 'refused' (a KryptonError), else what went wrong: 'hang', 'executed code', or
    the exception's type and message."""
    from kryptondb.errors import KryptonError

    clock = None
    try:
        with guarded(seconds, headroom) as clock:
            action()
        result = "ok"
    except KryptonError:
        result = "refused"
    except Hang:
        pass
    except Exception as exc:  # noqa: BLE001 - the point: anything else is a finding
        result = f"{type(exc).__name__}: {str(exc)[:300]}"
    if clock is None or clock.fired:
        result = f"hang (over {seconds} s)"
    return "executed code" if world.executed() else result


# -- the worker --------------------------------------------------------------------------------


def serve(world_dir: str) -> None:
    """Answer requests from stdin until it closes (see the module docstring)."""
    world = World(Path(world_dir))
    connect(world)  # warm up (tables, sessions, thread pools) before any case is capped
    files = None
    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        if "statement" in request:
            con = connect(world)
            text = request["statement"]
            result = outcome(world, lambda: con.execute(text, params(text)))
        else:
            from hostile_files import (HOSTILE_HEADROOM, HOSTILE_TIMEOUT_S, hostile_files,
                                       read_action)

            files = files or hostile_files(world)
            reader, name = request["read"]
            result = outcome(world, lambda: read_action(world, reader, files[name])(),
                             HOSTILE_TIMEOUT_S, HOSTILE_HEADROOM)
        print(json.dumps({"outcome": result, "seconds": round(time.perf_counter() - start, 3)}),
              flush=True)

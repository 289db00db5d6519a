"""The cost model's calibration: what a backend call costs on this machine, measured.

A calibration says, per core (one onnxruntime thread, as the incremental plan's workers run):

- ``rates``: FLOPs per second of each kind of layer (``KINDS``) by the output pixels one item
  computes (a region of h x w, or a whole map), read log-log between the measured sizes: small
  contexts run well below full-image throughput; and, where measured, ``winograd`` and
  ``winograd512``: a 3x3 convolution by Winograd's F(2x2, 3x3) (runtime/winograd.py) with 256
  and 512 channels in and out, in the direct form's FLOPs (``winograd_rate``);
- ``call_s``: the fixed cost of one backend call (feeding, dispatch), whatever its size;
- ``gather_bytes_per_s`` and ``gather_item_s``: the gather, by bytes copied and per item;
- ``copy_bytes_per_s``: the frontier maps written into copies of the views;
- ``batch``: the items per call the rates were measured at; ``cores``: the cores plans run on.

A default calibration ships in the package (``kryptondb/data/calibration.json``, measured on the
2-core development machine); ``kryptondb calibrate`` measures this machine
(``ivm/calibrate.py``) and writes ``machine_path()``, which ``load()`` prefers.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from kryptondb.errors import FileError, KryptonError
from kryptondb.files import read_regular

SCHEMA = "kryptondb.calibration/1"
KINDS = ("conv", "conv1x1", "depthwise", "pool", "elementwise", "gemm")
# kinds a calibration may lack (written before they were measured), read as another kind's rates:
# a 3x3 convolution by Winograd (runtime/winograd.py) as a direct one, at 512 channels as at 256
OPTIONAL = {"winograd": "conv", "winograd512": "winograd"}
# the channels (in and out) each Winograd kind is measured at: its products' share of the work
# grows with them (one core, 32 contexts per call: 512 channels 145-170 GFLOP/s, 256 120-150)
WINOGRAD_WIDTHS = {"winograd": 256, "winograd512": 512}
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "calibration.json"


class CalibrationError(KryptonError):
    """A calibration file that cannot be read or lacks what the cost model needs."""


@dataclass(frozen=True)
class Calibration:
    rates: dict  # kind -> ((pixels, flops per second), ...) by increasing pixels
    call_s: float
    gather_bytes_per_s: float
    gather_item_s: float
    copy_bytes_per_s: float
    batch: int = 32  # items per call the rates were measured at (an incremental chunk)
    cores: int = 2  # the cores plans run on: predicted wall seconds are core-seconds over them
    tie: float = 0.02  # predictions this close to the cheapest tie (ivm/frontier.py)
    source: str = "default"  # where it was read from

    @functools.cached_property  # every plan reads it (the frontier's memo, the kept plans' key)
    def key(self) -> tuple:
        """Every value, hashable: what a prediction made with this calibration depends on."""
        return (tuple(sorted(self.rates.items())), self.call_s, self.gather_bytes_per_s,
                self.gather_item_s, self.copy_bytes_per_s, self.batch, self.cores, self.tie,
                self.source)

    @property
    def label(self) -> str:
        """What EXPLAIN says the predictions rest on."""
        return {NOMINAL: "nominal FLOP counts", "default": "the default calibration"}.get(
            self.source, "this machine's calibration")

    def rate(self, kind: str, pixels: int) -> float:
        """FLOPs per second of a ``kind`` layer computing ``pixels`` output pixels per item."""
        points = self.rates.get(kind)
        while not points and kind in OPTIONAL:  # a kind not measured: the one it falls back to
            kind = OPTIONAL[kind]
            points = self.rates.get(kind)
        points = points or self.rates["elementwise"]
        xs = [p for p, _ in points]
        k = bisect.bisect_left(xs, pixels)
        if k == 0:
            return points[0][1]
        if k == len(points):
            return points[-1][1]
        (x0, r0), (x1, r1) = points[k - 1], points[k]
        t = (math.log(pixels) - math.log(x0)) / (math.log(x1) - math.log(x0))
        return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))

    def seconds(self, kind: str, flops: float, pixels: int) -> float:
        return flops / self.rate(kind, max(1, pixels))

    @property
    def prices_winograd(self) -> bool:
        """Whether Winograd was measured (at either width): else plans price its layers as
        onnxruntime's direct form runs them."""
        return any(k in self.rates for k in WINOGRAD_WIDTHS)

    def winograd_rate(self, pixels: int, channels: int) -> float:
        """FLOPs per second (the direct form's) of a 3x3 convolution by Winograd computing
        ``pixels`` per item with ``channels`` (the fewer of in and out): read log-log between
        the widths measured (``WINOGRAD_WIDTHS``), at the nearest one outside them."""
        (k0, c0), (k1, c1) = WINOGRAD_WIDTHS.items()
        t = min(1.0, max(0.0, math.log(channels / c0) / math.log(c1 / c0)))
        return self.rate(k0, pixels) ** (1 - t) * self.rate(k1, pixels) ** t

    def to_json(self, machine: dict | None = None) -> dict:
        return {"schema": SCHEMA, "machine": machine or {},
                "rates": {k: [list(p) for p in v] for k, v in self.rates.items()},
                "call_s": self.call_s, "gather_bytes_per_s": self.gather_bytes_per_s,
                "gather_item_s": self.gather_item_s, "copy_bytes_per_s": self.copy_bytes_per_s,
                "batch": self.batch, "cores": self.cores, "tie": self.tie}


def dumps(doc: dict) -> str:
    """A calibration document as JSON text, one line per kind of layer's rates."""
    rates = doc["rates"]
    body = json.dumps(doc | {"rates": 0}, indent=1)
    rows = ",\n".join(f'  "{k}": {json.dumps([[p, round(r)] for p, r in v])}'
                      for k, v in rates.items())
    return body.replace('"rates": 0', '"rates": {\n' + rows + "\n }") + "\n"


def from_json(doc: dict, source: str) -> Calibration:
    """A Calibration from its JSON document; CalibrationError naming ``source`` if malformed."""
    try:
        if doc.get("schema") != SCHEMA:
            raise CalibrationError(f"{source}: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
        rates = {k: tuple((int(p), float(r)) for p, r in sorted(doc["rates"][k]))
                 for k in (*KINDS, *OPTIONAL) if k in KINDS or k in doc["rates"]}
        scalars = [float(doc[k]) for k in ("call_s", "gather_bytes_per_s", "gather_item_s",
                                           "copy_bytes_per_s")]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CalibrationError(f"{source}: not a calibration file ({type(exc).__name__}: "
                               f"{exc})") from None
    if any(not v for v in rates.values()) or any(r <= 0 for v in rates.values() for _, r in v):
        raise CalibrationError(f"{source}: every kind needs positive rates "
                               f"({', '.join(KINDS)}; {', '.join(OPTIONAL)} where given)")
    counts = {k: doc.get(k, 32 if k == "batch" else 2) for k in ("batch", "cores")}
    for k, v in counts.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise CalibrationError(f"{source}: {k} must be a positive integer, got {v!r}")
    tie = doc.get("tie", 0.02)
    if not isinstance(tie, (int, float)) or isinstance(tie, bool) or not 0 <= tie < 1:
        raise CalibrationError(f"{source}: tie must be a number from 0 to 1, got {tie!r}")
    return Calibration(rates, *scalars, **counts, tie=float(tie), source=source)


def read(path: str | os.PathLike) -> Calibration:
    try:  # a regular file only: a FIFO or a device is an error at once, not a hang
        text = read_regular(path, "calibration").decode("utf-8")
    except FileError as exc:
        raise CalibrationError(f"{path}: cannot read the calibration ({exc})") from None
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})") from None
    return from_json(doc, str(path))


def machine_path() -> Path:
    """Where ``kryptondb calibrate`` writes this machine's calibration:
    $KRYPTONDB_CALIBRATION, else ~/.cache/kryptondb/calibration.json. ($KRYPTONDB_CALIBRATION
    set to ``nominal`` makes ``load`` count FLOPs instead: ``nominal()``.)"""
    return _machine_path(os.environ.get("KRYPTONDB_CALIBRATION"),
                         os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))


@functools.lru_cache(maxsize=8)
def _machine_path(env: str | None, cache: str | None, home: str | None) -> Path:
    """``machine_path`` for these values of its variables (made once: Path.home() and the
    joins cost a statement's plan 0.05 ms)."""
    if env:
        return Path(env)
    return Path(cache or Path.home() / ".cache") / "kryptondb" / "calibration.json"


_LOADED: dict = {}


def load() -> Calibration:
    """This machine's calibration if ``kryptondb calibrate`` wrote one, else the default one;
    read once per path and modification time."""
    if os.environ.get("KRYPTONDB_CALIBRATION") == NOMINAL:
        return nominal()
    path = machine_path()
    try:  # one stat, no Path.is_file: every statement's plan asks (0.07 of its 0.3 ms)
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        path, st = DEFAULT_PATH, os.stat(DEFAULT_PATH)
    key = (str(path), st.st_mtime_ns)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = read(path) if path != DEFAULT_PATH else default()
    return _LOADED[key]


def default() -> Calibration:
    """The calibration shipped in the package (tests pin plans on it)."""
    return replace(read(DEFAULT_PATH), source="default")


NOMINAL = "nominal"
NOMINAL_FLOPS_PER_S = 25e9  # ivm/cost.py FLOPS_PER_S


def nominal() -> Calibration:
    """No machine's: every layer at one rate, no call, gather or copy costs, no ties. The cost
    model then counts FLOPs alone, so a plan maintains every layer whose region saves any (the test
    suite runs on it: its small graphs exercise the incremental executor on every layer)."""
    flat = ((1, NOMINAL_FLOPS_PER_S),)
    return Calibration({k: flat for k in KINDS}, 0.0, math.inf, 0.0, math.inf, tie=0.0,
                       source=NOMINAL)

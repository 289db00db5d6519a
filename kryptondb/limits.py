"""Every size limit and wait in one place, checked before memory is spent or time is lost.

A file whose declared size is beyond a limit fails at once with a KryptonError naming the file,
what was too big and the limit, and saying how to raise it. Defaults fit any CNN this engine
runs; raise them per connection, ``kryptondb.connect(path, limits={"image_pixels": 4e8})``, or
for the process with environment variables (read when a connection is made, and by the plain
API such as ``load_model``):

==================  ===========================  ==========================================
field               environment variable         default and what it bounds
==================  ===========================  ==========================================
``image_pixels``    ``KRYPTON_MAX_IMAGE_PIXELS`` 100 MP: an image's (or video frame's) width
                                                 x height, checked from the header, before
                                                 any pixel is decoded
``tensor_bytes``    ``KRYPTON_MAX_TENSOR_BYTES`` 2 GiB: one tensor a model file declares (an
                                                 ONNX initializer, Constant, placeholder,
                                                 input or activation per image; a checkpoint
                                                 storage or tensor; an .npy input file)
``model_bytes``     ``KRYPTON_MAX_MODEL_BYTES``  8 GiB: a whole model (ONNX file plus external
                                                 data plus seeded placeholders; a checkpoint's
                                                 storages)
``lock_timeout``    ``KRYPTON_LOCK_TIMEOUT``     10 s: how long a write waits for another
                                                 process's write to the same database
``set_inputs``      ``KRYPTON_MAX_INPUTS``       10,000: the images or videos one statement
                                                 names (OF IMAGES, PREDICT IMAGES, RECOGNIZE
                                                 ... IN VIDEOS, TUNE), patterns' matches
                                                 counted before any file is read
==================  ===========================  ==========================================

>>> Limits().image_pixels, Limits(image_pixels=5).image_pixels
(100000000, 5)
>>> with applied({"image_pixels": 7}):
...     current().image_pixels
7
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Iterator, Mapping

from kryptondb.errors import KryptonError

GiB = 1 << 30


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits in force; see the module docstring for each field."""

    image_pixels: int = 100_000_000
    tensor_bytes: int = 2 * GiB
    model_bytes: int = 8 * GiB
    lock_timeout: float = 10.0
    set_inputs: int = 10_000

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not value >= 0 or math.isinf(value):
                raise KryptonError(f"limit {f.name} must be a non-negative number, got {value!r}")
            if f.type == "int":
                object.__setattr__(self, f.name, int(value))


ENV = {"image_pixels": "KRYPTON_MAX_IMAGE_PIXELS", "tensor_bytes": "KRYPTON_MAX_TENSOR_BYTES",
       "model_bytes": "KRYPTON_MAX_MODEL_BYTES", "lock_timeout": "KRYPTON_LOCK_TIMEOUT",
       "set_inputs": "KRYPTON_MAX_INPUTS"}
_active: ContextVar[Limits | None] = ContextVar("kryptondb_limits", default=None)


def from_env(environ: Mapping[str, str] = os.environ) -> Limits:
    """The defaults, overridden by the KRYPTON_* variables that are set."""
    values = {}
    for name, var in ENV.items():
        if environ.get(var, "").strip():
            try:
                values[name] = float(environ[var])
            except ValueError:
                raise KryptonError(f"environment variable {var}={environ[var]!r} is not a "
                                   "number") from None
    return Limits(**values)


def resolve(limits: Limits | Mapping | None) -> Limits:
    """A Limits from None (what is in force), a Limits, or a dict of fields to change."""
    if limits is None or isinstance(limits, Limits):
        return limits or current()
    if not isinstance(limits, Mapping):
        raise KryptonError(f"limits must be a kryptondb.limits.Limits or a dict, got "
                           f"{type(limits).__name__}")
    unknown = sorted(set(limits) - set(ENV))
    if unknown:
        raise KryptonError(f"unknown limit {unknown[0]!r}; known: {', '.join(ENV)}")
    return replace(current(), **limits)


def current() -> Limits:
    """The limits of the connection running now, else those of the environment."""
    return _active.get() or from_env()


@contextmanager
def applied(limits: Limits | Mapping | None) -> Iterator[Limits]:
    """Make ``limits`` the ones in force inside the block (per thread and task)."""
    token = _active.set(resolve(limits))
    try:
        yield _active.get()
    finally:
        _active.reset(token)


def how_to_raise(name: str) -> str:
    return f"raise it with kryptondb.connect(..., limits={{{name!r}: ...}}) or {ENV[name]}"


def check_size(size: int, limit_name: str, what: str, error: type[KryptonError],
               unit: str = "bytes") -> None:
    """Raise ``error`` when ``size`` exceeds the limit ``limit_name`` in force."""
    limit = getattr(current(), limit_name)
    if size > limit:
        raise error(f"{what}: {size:,} {unit}, over the {limit_name} limit of {limit:,} "
                    f"{unit} ({how_to_raise(limit_name)})")


class ModelSize:
    """The tensors of one model file, counted as it declares them: each within ``tensor_bytes``
    (checked by ``add``), all together within ``model_bytes`` (checked by ``check_total``).

    >>> size = ModelSize(KryptonError)
    >>> size.add(1024, "tensor 'w'"); size.add(2048, "tensor 'b'"); size.total
    3072
    """

    def __init__(self, error: type[KryptonError]):
        self.error, self.total = error, 0

    def add(self, nbytes: int, what: str) -> None:
        check_size(nbytes, "tensor_bytes", what, self.error)
        self.total += nbytes

    def check_total(self, what: str) -> None:
        check_size(self.total, "model_bytes", what, self.error)


def tensor_bytes(shape, itemsize: int) -> int:
    """Bytes of a tensor of ``shape``; unknown (negative) dimensions count as 1."""
    return math.prod(max(int(d), 1) for d in shape) * itemsize

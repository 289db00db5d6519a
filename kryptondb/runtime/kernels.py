"""The CUDA kernels of kernels/*.cu, callable like ``cupy.RawKernel`` on either array module.

``kernel(name, xp)(grid, block, args)`` launches kernel ``name`` over a ``grid`` of ``block``
threads. With CuPy it is the function of a cached ``cupy.RawModule`` of the source. With NumPy
the same source is compiled on the host by gcc through kernels/host_shim.h (each launch runs as
loops over every block and thread), cached on disk by a hash of everything that goes into the
build, and called through ctypes: that is how the default test suite checks every kernel
against the NumPy reference without a GPU.

Arguments follow the kernel's C signature, which is read from its source: a pointer takes a
C-contiguous array of its element type (float32 or int32; writable where the kernel writes),
an ``int`` a Python or NumPy integer, a ``float`` a Python or NumPy number. Scalars are passed
as 32-bit on both paths (CuPy would otherwise pass a Python int as 64 bits). Only the package's
own .cu files reach a compiler; names are checked against them.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.resources
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kryptondb.errors import BackendError, ShapeError, UnknownNameError

HOST_COMPILER_MISSING = ("no C compiler (gcc) on PATH: the host build of the CUDA kernels "
                         "(kernels/*.cu through kernels/host_shim.h) needs one")
CFLAGS = ("-O2", "-shared", "-fPIC", "-x", "c++", "-std=c++17", "-ffp-contract=off", "-w")
_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
_PARAM = re.compile(r"^(const\s+)?(float|int)\s*(\*)?\s*(?:__restrict__\s+)?(\w+)$")
_DTYPES = {"float": np.dtype(np.float32), "int": np.dtype(np.int32)}
# bias_act's ``act`` argument (kernels/bias_act.cu; alpha, beta as noted)
ACTIVATIONS = {"none": 0, "relu": 1, "clip": 2, "sigmoid": 3, "silu": 4, "hardswish": 5,
               "hard_sigmoid": 6, "leaky_relu": 7, "gelu": 8, "gelu_tanh": 9}


@dataclass(frozen=True, slots=True)
class Param:
    """One kernel parameter: ``float* out`` is Param("out", "float", pointer=True, const=False)."""

    name: str
    ctype: str
    pointer: bool
    const: bool


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    params: tuple[Param, ...]


def kernel_dir() -> Path:
    return Path(str(importlib.resources.files("kryptondb.kernels")))


def names() -> tuple[str, ...]:
    """The kernels shipped with the package (one per kernels/<name>.cu)."""
    return tuple(sorted(p.stem for p in kernel_dir().glob("*.cu")))


def source(name: str) -> str:
    if name not in names():
        raise UnknownNameError("kernel", name, names())
    return (kernel_dir() / f"{name}.cu").read_text()


@functools.cache
def signature(name: str) -> Signature:
    """The parameters of ``extern "C" __global__ void name(...)`` in kernels/<name>.cu."""
    for found, params in _SIGNATURE.findall(source(name)):
        if found == name:
            return Signature(name, tuple(_param(name, p) for p in params.split(",")))
    raise BackendError(f"kernels/{name}.cu declares no extern \"C\" __global__ void {name}(...)")


def _param(kernel: str, text: str) -> Param:
    m = _PARAM.match(" ".join(text.split()))
    if m is None:
        raise BackendError(f"kernels/{kernel}.cu: parameter {text.strip()!r} is not float, int, "
                           "float* or int*")
    return Param(m.group(4), m.group(2), bool(m.group(3)), bool(m.group(1)))


def kernel(name: str, xp):
    """Kernel ``name`` for array module ``xp`` (numpy or cupy), cached per process."""
    if xp is np:
        return _host_kernel(name)
    return _device_kernel(name, xp)


@functools.cache
def _device_kernel(name: str, xp):
    module = xp.RawModule(code=source(name))
    return Kernel(signature(name), module.get_function(name), xp)


@functools.cache
def _host_kernel(name: str):
    lib = ctypes.CDLL(str(host_library(name)))
    fn = getattr(lib, f"launch_{name}")
    sig = signature(name)
    fn.argtypes = [ctypes.c_int] * 6 + [_ctype(p) for p in sig.params]
    fn.restype = None
    return Kernel(sig, fn, np)


def _ctype(p: Param):
    if p.pointer:
        return ctypes.c_void_p
    return ctypes.c_float if p.ctype == "float" else ctypes.c_int


class Kernel:
    """A launchable kernel: ``k(grid, block, args)``, grid and block tuples of 1-3 ints."""

    def __init__(self, sig: Signature, fn, xp):
        self.signature, self._fn, self._xp = sig, fn, xp

    def __call__(self, grid: tuple, block: tuple, args: tuple) -> None:
        g, b = _dims(self.signature.name, "grid", grid), _dims(self.signature.name, "block", block)
        args = marshal(self.signature, args, self._xp)
        if self._xp is np:
            self._fn(*g, *b, *args)
        else:
            self._fn(g, b, args)

    def __repr__(self) -> str:
        return f"<kernel {self.signature.name} ({self._xp.__name__})>"


def _dims(name: str, what: str, dims) -> tuple[int, int, int]:
    dims = tuple(int(d) for d in (dims if isinstance(dims, tuple) else (dims,)))
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise ShapeError(f"kernel {name}: {what} {dims} must be 1 to 3 positive ints")
    return dims + (1,) * (3 - len(dims))


def marshal(sig: Signature, args: tuple, xp) -> tuple:
    """``args`` checked against the signature: arrays as pointers (host) or as they are
    (device), scalars as 32-bit."""
    if len(args) != len(sig.params):
        raise ShapeError(f"kernel {sig.name} takes {len(sig.params)} arguments "
                         f"({', '.join(p.name for p in sig.params)}), got {len(args)}")
    return tuple(_argument(sig.name, i, p, a, xp) for i, (p, a) in enumerate(zip(sig.params, args)))


def _argument(kernel_name: str, i: int, p: Param, a, xp):
    where = f"kernel {kernel_name}: argument {i} ({p.name})"
    if p.pointer:
        return _pointer(where, p, a, xp)
    if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, float, np.integer, np.floating)):
        raise ShapeError(f"{where} must be a {p.ctype}, got {type(a).__name__}")
    if p.ctype == "int":
        if not float(a).is_integer() or not -2**31 <= int(a) < 2**31:
            raise ShapeError(f"{where} must be a 32-bit int, got {a!r}")
        return int(a) if xp is np else np.int32(a)
    return float(a) if xp is np else np.float32(a)


def _pointer(where: str, p: Param, a, xp):
    want = _DTYPES[p.ctype]
    if not isinstance(a, xp.ndarray):
        raise ShapeError(f"{where} must be a {xp.__name__} array of {want}, got "
                         f"{type(a).__name__}")
    if a.dtype != want:
        raise ShapeError(f"{where} must be {want}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ShapeError(f"{where} must be C-contiguous (use ascontiguousarray)")
    if xp is not np:
        return a
    if not p.const and not a.flags.writeable:
        raise ShapeError(f"{where} is written by the kernel but the array is read-only")
    return a.ctypes.data


def cache_dir() -> Path:
    """Where host builds are kept: $XDG_CACHE_HOME/kryptondb/kernels (~/.cache by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kryptondb" / "kernels"


def host_source(name: str) -> str:
    """The translation unit gcc builds: the shim, the kernel, and its launch_<name>."""
    sig = signature(name)
    params = ", ".join(_declare(p) for p in sig.params)
    call = f"{name}({', '.join(p.name for p in sig.params)})"
    return (f'#include "host_shim.h"\n#include "{name}.cu"\n'
            f'extern "C" void launch_{name}(int gx, int gy, int gz, int bx, int by, int bz, '
            f"{params}) {{\n    KRYPTON_LAUNCH(gx, gy, gz, bx, by, bz, {call});\n}}\n")


def _declare(p: Param) -> str:
    return f"{'const ' if p.const else ''}{p.ctype}{'*' if p.pointer else ''} {p.name}"


def host_library(name: str) -> Path:
    """The host build of kernel ``name``, compiled once per content of its inputs."""
    unit = host_source(name)
    key = hashlib.sha256("\0".join(
        [unit, source(name), (kernel_dir() / "host_shim.h").read_text(), " ".join(CFLAGS)]
    ).encode()).hexdigest()[:16]
    lib = cache_dir() / f"{name}-{key}.so"
    if not lib.exists():
        compile_host(name, unit, lib)
    return lib


def compile_host(name: str, unit: str, lib: Path) -> None:
    """gcc ``unit`` into ``lib``, written atomically (a temporary file, then a rename)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BackendError(HOST_COMPILER_MISSING)
    try:
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
            src, out = Path(tmp) / f"{name}.cpp", Path(tmp) / f"{name}.so"
            src.write_text(unit)
            cmd = [gcc, *CFLAGS, "-I", str(kernel_dir()), str(src), "-o", str(out)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise BackendError(f"host build of kernels/{name}.cu failed:\n{done.stderr}")
            os.replace(out, lib)
    except OSError as e:
        raise BackendError(f"cannot write the kernel cache {lib.parent} ({e.strerror}); "
                           "point XDG_CACHE_HOME at a writable directory") from None

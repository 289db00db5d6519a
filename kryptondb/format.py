"""Human-readable numbers and values, shared by the graph renderers and the EXPLAIN text.

Small pure functions: same input, same string, no locale.

>>> fmt_flops(1.2e9), fmt_bytes(35_100_000), fmt_time(0.0123)
('1.2 GFLOPs', '35.1 MB', '12.3 ms')
>>> fmt_value("cat.png"), fmt_value((53, 53)), fmt_value(None)
("'cat.png'", '(53, 53)', 'None')
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

ELLIPSIS = "…"


def _scaled(n: float, base: str, prefixes: str, step: float = 1000.0) -> str:
    """One decimal in the largest unit that keeps the number under ``step``; whole base units."""
    if not math.isfinite(n):
        return f"{n} {base}"
    if abs(n) < step:
        return f"{round(n):d} {base}" if n == round(n) else f"{n:.1f} {base}"
    for prefix in prefixes:
        n /= step
        if abs(n) < step - 0.05 or prefix == prefixes[-1]:
            return f"{n:.1f} {prefix}{base}"
    raise AssertionError("unreachable")


def fmt_flops(n: float) -> str:
    """Floating-point operations with a decimal prefix.

    >>> fmt_flops(812), fmt_flops(35_000_000), fmt_flops(2.5e12)
    ('812 FLOPs', '35.0 MFLOPs', '2.5 TFLOPs')
    """
    return _scaled(n, "FLOPs", "kMGTPE")


def fmt_bytes(n: float) -> str:
    """Decimal units, as disks and network links count them.

    >>> fmt_bytes(512), fmt_bytes(1536), fmt_bytes(1.25e9)
    ('512 B', '1.5 kB', '1.2 GB')
    """
    return _scaled(n, "B", "kMGTPE")


def fmt_time(seconds: float) -> str:
    """Seconds in the unit that gives one to three integer digits.

    >>> fmt_time(2.5), fmt_time(0.0123), fmt_time(4.2e-5), fmt_time(3e-9), fmt_time(0)
    ('2.50 s', '12.3 ms', '42.0 µs', '3.0 ns', '0 s')
    """
    s = float(seconds)
    if s == 0 or not math.isfinite(s):
        return f"{s:g} s"
    if abs(s) >= 0.99995:  # what would print as "1000.0 ms" reads better as "1.00 s"
        return f"{s:.2f} s"
    for scale, unit in ((1e3, "ms"), (1e6, "µs"), (1e9, "ns")):
        if abs(s * scale) >= 0.99995 or unit == "ns":
            return f"{s * scale:.1f} {unit}"
    raise AssertionError("unreachable")


def fmt_percent(fraction: float) -> str:
    """A fraction of the whole, as a percentage.

    >>> fmt_percent(0.4123), fmt_percent(1)
    ('41.2%', '100.0%')
    """
    return f"{100 * fraction:.1f}%"


def fmt_rate(flops_per_s: float) -> str:
    """Achieved floating-point operations per second.

    >>> fmt_rate(2.34e10), fmt_rate(950)
    ('23.4 GFLOP/s', '950 FLOP/s')
    """
    return _scaled(flops_per_s, "FLOP/s", "kMGTPE")


def fmt_count(n: float) -> str:
    """A count with thousands separators; a fractional one with three significant digits.

    >>> fmt_count(2809), fmt_count(12.3456)
    ('2,809', '12.3')
    """
    return f"{int(n):,}" if float(n) == int(n) else f"{n:.3g}"


def fmt_stat(key: str, v: Any) -> str:
    """A measured figure by what its name says it is: ``*_s`` seconds, ``*bytes`` bytes,
    ``*flops`` FLOPs, ``*share`` a fraction; other numbers as counts; the rest as values.

    >>> fmt_stat("gather_s", 0.01234), fmt_stat("gather_bytes", 2048), fmt_stat("workers", 2)
    ('12.3 ms', '2.0 kB', '2')
    """
    if isinstance(v, bool) or not isinstance(v, Real):
        return fmt_value(v)
    if key.endswith("_s") or key == "seconds":
        return fmt_time(v)
    if key.endswith("bytes"):
        return fmt_bytes(v)
    if key.endswith("flops"):
        return fmt_flops(v)
    if key.endswith("share"):
        return fmt_percent(v)
    return fmt_count(v)


def fmt_value(v: Any, limit: int | None = 40) -> str:
    """An argument value as the plan prints it: strings quoted, tuples bracketed, floats exact;
    longer than ``limit`` characters -> elided in the middle, where paths are least telling.

    >>> fmt_value("/data/images/2024/very/long/directory/name/cat.png", limit=24)
    "'/data/images/2…cat.png'"
    """
    if isinstance(v, bool) or v is None:
        text = repr(v)
    elif isinstance(v, Integral):
        text = str(int(v))
    elif isinstance(v, Real):
        text = repr(float(v))
    elif isinstance(v, tuple | list):
        inner = ", ".join(fmt_value(x, None) for x in v)
        text = f"({inner},)" if isinstance(v, tuple) and len(v) == 1 else f"({inner})"
    else:
        text = repr(v) if isinstance(v, str) else str(v)
    return shorten(text, limit)


def shorten(text: str, limit: int | None) -> str:
    """Cut ``text`` to ``limit`` characters, keeping two thirds of them from the head."""
    if limit is None or len(text) <= limit:
        return text
    head = max(1, (limit - 1) * 2 // 3)
    tail = limit - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail > 0 else "")

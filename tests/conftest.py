"""Shared fixtures: the relative error every numeric test uses, and a table of the largest errors
measured in this run, printed after the test summary (so a review sees how close, not only that
it passed); and the cost model the suite plans with."""

from __future__ import annotations

import os

import numpy as np
import pytest

# The suite's plans count FLOPs (kryptondb/ivm/calibration.py ``nominal``), whatever this
# machine's calibration says: small test graphs then maintain every layer whose region saves
# any; tests of the calibrated cost model's choices pass their calibration explicitly.
os.environ.setdefault("KRYPTONDB_CALIBRATION", "nominal")

_MEASURED: dict[str, float] = {}  # label -> largest relative error seen under that label


def relative_error(ours, ref) -> float:
    """max |ours - ref| / max |ref|: one number per tensor, insensitive to a tensor's scale."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != reference {ref.shape}"
    scale = np.abs(ref).max()
    return float(np.abs(ours - ref).max() / scale) if scale else float(np.abs(ours).max())


def _log(label: str, ours, ref) -> float:
    err = relative_error(ours, ref)
    _MEASURED[label] = max(err, _MEASURED.get(label, 0.0))
    return err


@pytest.fixture(scope="session")
def log_error():
    """log_error(label, ours, ref) -> relative error; safe inside hypothesis tests."""
    return _log


@pytest.fixture
def measure(record_property):
    """Like log_error, and also recorded as a property of the test (for junit XML)."""

    def record(label: str, ours, ref) -> float:
        err = _log(label, ours, ref)
        record_property(label, err)
        return err

    return record


def pytest_terminal_summary(terminalreporter):
    if not _MEASURED:
        return
    terminalreporter.write_sep("-", "largest relative errors (max|ours - ref| / max|ref|)")
    width = max(len(label) for label in _MEASURED)
    for label, err in _MEASURED.items():
        terminalreporter.write_line(f"{label.ljust(width)}  {err:.2e}")


@pytest.fixture(scope="module")
def sessions_counted_built():
    """Every model's incremental sessions counted as built for a module's plans: the planner's
    predicted setup (and so a golden plan's text) otherwise depends on what ran before in
    the process."""
    import importlib  # the rule's module, not the function the package exports by that name

    mp = pytest.MonkeyPatch()
    mp.setattr(importlib.import_module("kryptondb.rewrite.maintain_views"), "segments_built",
               lambda graph: 1)
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _winograd_tiles_on_two_cores(monkeypatch):
    """Memory estimates count one Winograd call's tiles per core (kryptondb/rewrite/
    batch_queries.py): pinned at the development machine's 2, so that golden plans (their
    batch and estimate) read the same on any machine."""
    import importlib  # the rule's module, not the function the package exports by that name

    monkeypatch.setattr(importlib.import_module("kryptondb.rewrite.batch_queries"),
                        "usable_cores", lambda: 2)

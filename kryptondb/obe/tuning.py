"""Tuning projective field thresholding for an accuracy target.

On a sample of images, compute the exact heatmap and approximate ones over a grid of tau (with
and without drill-down), score each with SSIM against the exact map, and time them. Per setting,
the 10th percentile of the sample's scores at each tau (not the mean) is what the planner trusts,
so that about nine images in ten meet a target; a degree-2 polynomial fitted through those
percentiles predicts SSIM between tuned taus (for WITHIN and for reports), but an SSIM target is
met only with a tuned tau, because SSIM can fall off a cliff between two of them. The result is a
table in the catalog, one per (model, patch, stride), that the planner reads to pick tau for
``APPROXIMATE WITH SSIM >= q`` or ``APPROXIMATE WITHIN <seconds>``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

from kryptondb.approx.drilldown import DEFAULT_RATIO, DEFAULT_TARGET, coarse_stride
from kryptondb.approx.quality import ssim
from kryptondb.errors import KryptonError

TAUS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
QUANTILE = 0.10  # the fit follows this quantile of the sample's SSIM at each tau
FINE = np.round(np.arange(0.30, 1.0001, 0.01), 2)  # taus the planner may choose


def table_name(model: str, patch: int, stride: int) -> str:
    return f"tuning_{model}_p{patch}_s{stride}"


@dataclass(frozen=True)
class Choice:
    tau: float
    drilldown: bool
    predicted_ssim: float
    predicted_seconds: float
    why: str


@dataclass(frozen=True)
class Tuning:
    """Measured SSIM and seconds per (image, tau, drilldown), and the fits derived from them."""

    model: str
    patch: int
    stride: int
    table: pa.Table  # image, tau, drilldown, ssim, seconds
    exact_seconds: float

    # -- fits -------------------------------------------------------------------------------
    @cached_property
    def _summary(self) -> dict[bool, tuple[list[float], list[float], list[float], np.ndarray]]:
        """Per setting (drill-down or not) that was measured: tuned taus ascending, the sample's
        QUANTILE SSIM and median seconds at each, and the degree-2 fit of SSIM(tau) through the
        quantiles."""
        d = self.table.to_pydict()
        out = {}
        for drill in (False, True):
            rows = [(round(float(t), 4), s, sec) for t, dd, s, sec in
                    zip(d["tau"], d["drilldown"], d["ssim"], d["seconds"]) if dd == drill]
            if not rows:  # drill-down is not measured where it cannot run (small maps)
                continue
            taus = sorted({t for t, _, _ in rows})
            q = [float(np.quantile([s for t2, s, _ in rows if t2 == t], QUANTILE)) for t in taus]
            secs = [statistics.median(sec for t2, _, sec in rows if t2 == t) for t in taus]
            out[drill] = (taus, q, secs, np.polyfit(taus, q, deg=min(2, len(taus) - 1)))
        return out

    def curve(self, drill: bool) -> np.ndarray:
        """Coefficients (highest power first) of the fitted SSIM(tau)."""
        return self._summary[drill][3]

    def predicted_ssim(self, tau: float, drill: bool) -> float:
        return float(min(1.0, np.polyval(self.curve(drill), tau)))

    def predicted_seconds(self, tau: float, drill: bool) -> float:
        """Median measured seconds per heatmap, linearly interpolated over tau."""
        taus, _, secs, _ = self._summary[drill]
        return float(np.interp(tau, taus, secs))

    # -- choices ----------------------------------------------------------------------------
    def measured(self, drill: bool) -> list[tuple[float, float]]:
        """(tau, the sample's QUANTILE SSIM at tau) for every tuned tau, largest tau first."""
        taus, q, _, _ = self._summary[drill]
        return list(zip(taus, q))[::-1]

    def for_ssim(self, target: float, drill: bool | None = None) -> Choice:
        """The fastest setting that meets ``target``: per setting (with or without drill-down,
        or only as ``drill`` says), the smallest *tuned* tau at which, and at every larger tau,
        the sample's 10th-percentile SSIM reaches the target. Only tuned taus are candidates:
        SSIM can fall off a cliff between two of them (MobileNetV2 between 0.9 and 0.8), which
        the fitted curve smooths over. Exact (tau 1) when no setting qualifies."""
        best = None
        for drill in self._drills(drill):
            tau = None
            for t, q in self.measured(drill):
                if q < target:
                    break
                tau = t
            if tau is None:
                continue
            c = Choice(tau, drill, dict(self.measured(drill))[tau],
                       self.predicted_seconds(tau, drill), "")
            if best is None or c.predicted_seconds < best.predicted_seconds:
                best = c
        if best is None:
            return Choice(1.0, False, 1.0, self.exact_seconds,
                          f"no tuned setting reached SSIM {target:g} on 90% of the sample: exact")
        return _why(best, f"smallest tuned tau whose SSIM reached {target:g} on 90% of the sample")

    def for_seconds(self, budget: float, drill: bool | None = None) -> Choice:
        """The most accurate setting predicted to finish within ``budget`` seconds; the
        fastest one when none does."""
        cands = [Choice(float(t), d, self.predicted_ssim(t, d), self.predicted_seconds(t, d), "")
                 for d in self._drills(drill) for t in FINE]
        if not cands:
            return Choice(1.0, False, 1.0, self.exact_seconds, "no tuned setting: exact")
        fits = [c for c in cands if c.predicted_seconds <= budget]
        if fits:
            best = max(fits, key=lambda c: (round(c.predicted_ssim, 4), -c.predicted_seconds))
            return _why(best, f"most accurate setting predicted within {budget:g} s")
        best = min(cands, key=lambda c: c.predicted_seconds)
        return _why(best, f"nothing is predicted within {budget:g} s: the fastest setting")

    def _drills(self, drill: bool | None) -> tuple[bool, ...]:
        """The settings to choose among: both, or only as ``drill`` says; measured ones only."""
        return tuple(d for d in ((False, True) if drill is None else (drill,))
                     if d in self._summary)

    # -- storage ----------------------------------------------------------------------------
    def info(self) -> dict:
        return {"kind": "tuning", "model": self.model, "patch": self.patch,
                "stride": self.stride, "exact_seconds": self.exact_seconds,
                "quantile": QUANTILE}

    @classmethod
    def from_table(cls, table: pa.Table, info: dict) -> "Tuning":
        return cls(info["model"], int(info["patch"]), int(info["stride"]),
                   table.select(["image", "tau", "drilldown", "ssim", "seconds"]),
                   float(info["exact_seconds"]))


def _why(c: Choice, reason: str) -> Choice:
    drill = " with drill-down" if c.drilldown else ""
    return Choice(c.tau, c.drilldown, c.predicted_ssim, c.predicted_seconds,
                  f"{reason}: tau {c.tau:g}{drill}, predicted SSIM {c.predicted_ssim:.3f}, "
                  f"predicted {c.predicted_seconds:.1f} s")


def speedup(t: "Tuning", c: Choice) -> float:
    """Predicted speedup of a choice over the exact incremental plan, from measured times."""
    return t.exact_seconds / max(1e-9, c.predicted_seconds)


def lookup(db, model, patch: int, stride: int) -> Tuning | None:
    """The stored tuning of ``model`` (a bound ModelRef, or a name) at patch and stride. For a
    ModelRef, only a tuning measured on the same weights (its digest) counts; one measured before
    the model was replaced is ignored (tunings stored before digests were recorded still count)."""
    name = table_name(_entry(model), patch, stride)
    if name not in db.names("table"):
        return None
    info = dict(db.lookup("table", name).info)
    digest = getattr(model, "digest", None)
    if digest is not None and info.get("digest", digest) != digest:
        return None
    return Tuning.from_table(db.get_table(name), info)


def _entry(model) -> str:
    """The name tunings are stored under: the catalog entry (or zoo model) a ref bound to."""
    return getattr(model, "entry", model)


Occlude = Callable[[str, "float | None", bool], np.ndarray]
"""(image path, tau or None for the exact scan, drill-down) -> the image's heatmap (rows, cols)."""


def drills(model, patch: int, stride: int) -> tuple[bool, ...]:
    """The settings worth measuring: with drill-down only where its coarse stage fits 2+
    positions on ``model``'s input."""
    side = min(model.input_shape[1:])
    fits = coarse_stride(stride, DEFAULT_RATIO, DEFAULT_TARGET) <= side - patch
    return (False, True) if fits else (False,)


def tune(model, images: Sequence[str], occlude: Occlude, patch: int = 16,
         stride: int = 4) -> Tuning:
    """Measure exact vs approximate heatmaps of ``model`` (a bound ModelRef) on ``images``
    (paths), each computed by ``occlude``, which the caller runs on the same weights (the
    TUNE operator: a scratch database, so that no views are left behind)."""
    if not images:
        raise KryptonError("tuning needs at least one image")
    rows: dict[str, list] = {"image": [], "tau": [], "drilldown": [], "ssim": [], "seconds": []}
    exact_times = [_measure(str(path), occlude, drills(model, patch, stride), rows)
                   for path in images]
    table = pa.table({"image": pa.array(rows["image"], pa.string()),
                      "tau": pa.array(rows["tau"], pa.float32()),
                      "drilldown": pa.array(rows["drilldown"], pa.bool_()),
                      "ssim": pa.array(rows["ssim"], pa.float32()),
                      "seconds": pa.array(rows["seconds"], pa.float32())})
    return Tuning(model.entry, patch, stride, table, float(statistics.median(exact_times)))


def _measure(image: str, occlude: Occlude, drill_settings: tuple[bool, ...],
             rows: dict[str, list]) -> float:
    """One image's rows (per tau in TAUS and drill-down setting); returns the exact scan's
    seconds."""
    t = time.perf_counter()
    exact = occlude(image, None, False)
    exact_s = time.perf_counter() - t
    for tau in TAUS:
        for drill in drill_settings:
            rows["image"].append(image)
            rows["tau"].append(float(tau))
            rows["drilldown"].append(drill)
            if tau >= 1 and not drill:  # no cap, one stage: the exact plan itself
                rows["seconds"].append(exact_s)
                rows["ssim"].append(1.0)
                continue
            t = time.perf_counter()
            approx = occlude(image, float(tau), drill)
            rows["seconds"].append(time.perf_counter() - t)
            rows["ssim"].append(ssim(exact, approx))
    return exact_s

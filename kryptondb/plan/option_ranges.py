"""The valid range of every statement option, checked when a statement is bound.

Each error names the option, its range and why, with a caret under the option as written
(``Statement.spans``). docs/language.md lists the same ranges. Defaults live here too, so a
default is always inside its range (STRIDE defaults to min(4, PATCH), TOP to min(5, classes)).
"""

from __future__ import annotations

import math

from kryptondb.approx import drilldown as D
from kryptondb.obe.tuning import lookup
from kryptondb.lang import ast

DEFAULT_PATCH, DEFAULT_STRIDE, DEFAULT_TOP = 16, 4, 5
DEFAULT_MEMORY_MB = 512
MAX_BATCH = 4096  # a larger batch of occluded inputs only costs memory (the planner's cap: 32)
MAX_MEMORY_MB = 1 << 20  # 1 TiB
MAX_BOXES = 64  # change boxes per frame
FILLS = ("constant", "gray", "black", "mean", "blur")
# RECOGNIZE options that only the incremental plan reads (NAIVE would ignore them)
INCREMENTAL_ONLY = ("threshold", "feature_scale", "approximate", "keyframe_every", "keyframe_area", "max_boxes",
                    "agreement")


def where(s: ast.Statement, key: str) -> ast.Span:
    """The option's span, or the statement's when it was not written (a default)."""
    return s.spans.get(key) or s.span


def check_int(b, s, key: str, what: str, hi: int | None = None, why: str = "",
              unit: str = "") -> None:
    """An integer option in [1, hi] (hi None: any positive integer).

    The message: "STRIDE 8 is out of range: STRIDE must be a positive integer, at most 4
    (PATCH 4: ...)"."""
    value = getattr(s, key)
    if value is None or 1 <= value <= (hi or value):
        return
    bound = "" if hi is None else f", at most {hi}{unit}{why}"
    raise b.fail(f"{what} {value}{unit} is out of range: {what} must be a positive integer{bound}",
                 where(s, key))


def check_window(b, s, model) -> tuple[tuple[int, int], tuple[int, int]]:
    """PATCH and STRIDE (EXPLAIN OCCLUSION, TUNE) as (height, width) pairs, one number meaning
    both axes: the window fits the model's input, and each stride is at most the window along
    its axis, so every pixel is occluded at some position."""
    _, h, w = model.input_shape
    side = "side" if h == w else "shorter side"
    window = _pair(b, s, "patch", "PATCH", (h, w),
                   f" (the {side} of {model.name}'s {h}x{w} input)",
                   lambda axis, v: f" ({model.name}'s input is {h}x{w})")
    if window is None:
        if DEFAULT_PATCH > min(h, w):
            raise b.fail(f"the default PATCH {DEFAULT_PATCH} is larger than {model.name}'s "
                         f"{h}x{w} input: give PATCH <= {min(h, w)}", s.span)
        window = (DEFAULT_PATCH, DEFAULT_PATCH)
    written = " ".join(map(str, window)) if isinstance(s.patch, tuple) else str(window[0])
    strides = _pair(b, s, "stride", "STRIDE", window,
                    f" (PATCH {written}: a larger stride leaves pixels that no patch covers)",
                    lambda axis, v: f" (the window's {axis} is {v}: a larger stride leaves "
                                    "pixels that no window covers)")
    return window, strides or (min(DEFAULT_STRIDE, window[0]), min(DEFAULT_STRIDE, window[1]))


def _pair(b, s, key: str, what: str, most: tuple[int, int], why: str,
          why_axis) -> tuple[int, int] | None:
    """An option of one positive integer (both axes, at most the smaller bound) or two (each
    at most its axis's bound); None when not given."""
    value = getattr(s, key)
    if value is None:
        return None
    if not isinstance(value, tuple):
        check_int(b, s, key, what, min(most), why)
        return value, value
    for axis, v, hi in zip(("height", "width"), value, most):
        if not 1 <= v <= hi:
            raise b.fail(f"{what} {value[0]} {value[1]}: the {axis} {v} is out of range: it must "
                         f"be a positive integer, at most {hi}{why_axis(axis, hi)}",
                         where(s, key))
    return value


def check_fill(b, s) -> ast.Fill:
    fill = s.fill or ast.Fill()
    if fill.kind not in FILLS:
        raise b.fail(f"unknown FILL {fill.kind.upper()!r}", where(s, "fill"),
                     ("a number in [0, 1]", "GRAY", "BLACK", "MEAN", "BLUR"))
    if fill.kind == "constant" and not 0 <= fill.value <= 1:
        raise b.fail(f"FILL must be a pixel value in [0, 1] (before normalisation), got "
                     f"{fill.value:g}; BASELINE takes any value in the model's input space",
                     where(s, "fill"))
    return fill


def check_occlusion(b, s: ast.ExplainOcclusion, model):
    """Every EXPLAIN OCCLUSION option but FOR CLASS and BASELINE's value: (window, strides,
    fill) with defaults; fill is None when BASELINE replaces it."""
    window, strides = check_window(b, s, model)
    check_int(b, s, "batch", "BATCH", MAX_BATCH)
    check_int(b, s, "memory_mb", "MEMORY", MAX_MEMORY_MB, " (1 TiB)", unit=" MB")
    if s.fill is not None and s.baseline is not None:
        later = max(("fill", "baseline"), key=lambda k: where(s, k).start)
        raise b.fail("FILL and BASELINE exclude each other: FILL is a pixel value (or GRAY, "
                     "MEAN ...) normalised like the image, BASELINE a value in the model's "
                     "input space", where(s, later))
    fill = check_fill(b, s) if s.baseline is None else None
    if s.approximate is not None:
        check_approximate(b, s, model, window, strides)
    return window, strides, fill


def check_top(b, s, model) -> int:
    """TOP k: at most the model's number of classes; the default is min(5, classes)."""
    classes = math.prod(model.graph[model.graph.output].shape)
    check_int(b, s, "top", "TOP", classes, f" ({model.name} has {classes} classes)")
    return s.top or min(DEFAULT_TOP, classes)


MAX_FEATURE_SCALE = 100.0  # x a layer's standard deviation: past it every change is ignored
BOX_ONLY = ("threshold", "approximate", "keyframe_area", "max_boxes")  # the pixel-box plan's


def check_feature_scale(b, s: ast.RecognizeObjects) -> None:
    """FEATURE THRESHOLD: a scale in [0, MAX_FEATURE_SCALE], without the pixel-box plan's
    options (it replaces that plan)."""
    if s.feature_scale is None:
        return
    if not 0 <= s.feature_scale <= MAX_FEATURE_SCALE:
        raise b.fail(f"FEATURE THRESHOLD scales each layer's standard deviation; it must be in "
                     f"[0, {MAX_FEATURE_SCALE:g}], got {s.feature_scale:g}",
                     where(s, "feature_scale"))
    words = {"threshold": "THRESHOLD", "approximate": "APPROXIMATE TAU",
             "keyframe_area": "KEYFRAME AREA", "max_boxes": "BOXES"}
    for key in BOX_ONLY:
        if getattr(s, key) is not None and key in s.spans and not (
                key == "approximate" and s.approximate is None):
            raise b.fail(f"FEATURE THRESHOLD and {words[key]} exclude each other: {words[key]} "
                         "belongs to the plan over boxes of changed pixels, which FEATURE "
                         "THRESHOLD replaces", where(s, key))


TUNE_FRAMES = 128  # TUNE ... ON VIDEO's frames when FRAMES is not given
TUNE_TARGET = 0.99  # and its agreement target


def check_tune_video(b, s: ast.TuneVideo) -> None:
    """TUNE ... ON VIDEO: a frame range, a key frame period and an agreement target in
    [0.5, 1] (a target below half a near-tie's flips, or above 1, cannot mean anything)."""
    if s.frames is not None and s.frames[1] < s.frames[0]:
        raise b.fail(f"FRAMES {s.frames[0]} TO {s.frames[1]}: the range is empty",
                     where(s, "frames"))
    check_int(b, s, "keyframe_every", "KEYFRAME EVERY")
    if s.agreement is not None and not 0.5 <= s.agreement <= 1:
        raise b.fail(f"FOR AGREEMENT is a share of frames whose top-1 label equals full "
                     f"inference's, in [0.5, 1] (e.g. 0.99), got {s.agreement:g}",
                     where(s, "agreement"))


def check_tau(b, a: ast.Approximate) -> None:
    if a.tau is not None and not 0 < a.tau <= 1:
        raise b.fail(f"TAU must be in (0, 1], got {a.tau:g}", a.spans.get("tau"))


def check_approximate(b, s: ast.ExplainOcclusion, model, window: tuple[int, int],
                      strides: tuple[int, int]) -> None:
    """Valid ranges for every approximate setting, and a tuning to read for accuracy targets.
    Drill-down's first stage takes one stride (both axes), tunings one square window and one
    stride."""
    a = s.approximate
    at = a.spans.get
    if s.incremental is False:
        raise b.fail("NAIVE and APPROXIMATE exclude each other (approximate plans are "
                     "incremental)", a.span)
    check_tau(b, a)
    if a.drilldown is not None:
        if not 0 < a.drilldown < 1:
            raise b.fail(f"DRILLDOWN fraction must be in (0, 1), got {a.drilldown:g}",
                         at("drilldown"))
        bound = 1 / a.drilldown
        if a.target is not None and not 1 <= a.target < bound:
            raise b.fail(f"TARGET speedup must be in [1, {bound:g}) for DRILLDOWN "
                         f"{a.drilldown:g} (drill-down speedup stays below 1/r), got "
                         f"{a.target:g}", at("drilldown"))
        check_drilldown(b, s, model, window, strides)
    if a.ssim is not None and not 0 < a.ssim <= 1:
        raise b.fail(f"SSIM target must be in (0, 1], got {a.ssim:g}", at("ssim"))
    if a.within is not None and a.within <= 0:
        raise b.fail(f"WITHIN needs a positive number of seconds, got {a.within:g}",
                     at("within"))
    if a.tau is not None and (a.ssim is not None or a.within is not None):
        raise b.fail("give either TAU or an accuracy/time target (WITH SSIM, WITHIN), not both: "
                     "the planner picks tau for a target", at("tau"))
    if a.ssim is not None and a.within is not None:
        raise b.fail("give either WITH SSIM or WITHIN, not both", at("within"))
    if a.wants_target and (window[0] != window[1] or strides[0] != strides[1]):
        raise b.fail("an SSIM target or WITHIN reads a tuning made for a square PATCH and one "
                     "STRIDE; give APPROXIMATE TAU for other windows", a.span)
    patch, stride = window[0], strides[0]
    if a.wants_target and lookup(b.db, model, patch, stride) is None:
        goal = "WITHIN" if a.within is not None else "an SSIM target"
        raise b.fail(f"{goal} needs a tuning of {model.name} at PATCH {patch} STRIDE {stride} "
                     f"for its current weights, and there is none: run TUNE MODEL {model.name} "
                     f"PATCH {patch} STRIDE {stride} ON IMAGES '<image files>' first, or give "
                     "TAU", a.span)


def check_drilldown(b, s: ast.ExplainOcclusion, model, window, strides) -> None:
    """The first stage's grid: one coarse stride for both axes, leaving more than one
    position, and (GRID COVER) no larger than the window."""
    a = s.approximate
    if strides[0] != strides[1]:
        raise b.fail(f"DRILLDOWN takes one stride for both axes, got STRIDE {strides[0]} "
                     f"{strides[1]}", a.spans.get("drilldown"))
    coarse = D.coarse_stride(strides[0], a.drilldown, a.target or D.default_target(a.drilldown))
    _, h, w = model.input_shape
    if coarse > min(h - window[0], w - window[1]):
        raise b.fail("DRILLDOWN: the first stage's stride leaves a single position; use a "
                     "smaller TARGET or a smaller PATCH", a.spans.get("drilldown"))
    if s.grid == "cover" and coarse > min(window):
        raise b.fail(f"DRILLDOWN with GRID COVER: the first stage's stride {coarse} exceeds the "
                     f"window, so it would leave pixels uncovered; use GRID FIT or a smaller "
                     "TARGET", a.spans.get("drilldown"))


def check_video(b, s: ast.RecognizeObjects) -> None:
    """RECOGNIZE's frame selection and incremental settings (TOP is check_top's)."""
    check_int(b, s, "every", "EVERY")
    if s.frames is not None and s.frames[1] < s.frames[0]:
        raise b.fail(f"FRAMES {s.frames[0]} TO {s.frames[1]}: the range is empty",
                     where(s, "frames"))
    a = s.approximate
    if a is not None and (a.drilldown, a.ssim, a.within) != (None, None, None):
        raise b.fail("video recognition takes APPROXIMATE TAU only", a.span)
    if a is not None:
        check_tau(b, a)
    if s.threshold is not None and not 0 <= s.threshold <= 1:
        raise b.fail(f"THRESHOLD is a pixel difference in [0, 1] (e.g. 0.03 for 8 grey levels), "
                     f"got {s.threshold:g}", where(s, "threshold"))
    check_feature_scale(b, s)
    if s.keyframe_area is not None and not 0 < s.keyframe_area <= 1:
        raise b.fail(f"KEYFRAME AREA must be a share of the frame in (0, 1], got "
                     f"{s.keyframe_area:g}", where(s, "keyframe_area"))
    check_int(b, s, "keyframe_every", "KEYFRAME EVERY")
    check_int(b, s, "max_boxes", "BOXES", MAX_BOXES, " boxes per frame")
    given = {k: getattr(s, k) for k in INCREMENTAL_ONLY} | {"agreement": s.agreement or None}
    used = [k for k, v in given.items() if v is not None]
    if s.incremental is False and used:
        raise b.fail("NAIVE runs full inference per frame: THRESHOLD, FEATURE THRESHOLD, "
                     "APPROXIMATE, KEYFRAME, BOXES and WITH AGREEMENT need the incremental plan",
                     where(s, used[0]))
    exact = s.approximate is None and "approximate" in s.spans  # EXACT was written
    if exact and s.feature_scale:
        raise b.fail(f"EXACT and FEATURE THRESHOLD {s.feature_scale:g} exclude each other: "
                     "feature changes below a threshold are not propagated",
                     where(s, "feature_scale"))
    if exact and s.threshold:
        raise b.fail(f"EXACT and THRESHOLD {s.threshold:g} exclude each other: changes below a "
                     "threshold are not recomputed", where(s, "threshold"))

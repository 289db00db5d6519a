"""The plan's vocabulary: every operator kind, and the typed arguments each may carry.

A plan node's arguments are values, never text to parse back: ints, floats, tuples, a ``Fill``,
a ``Grid`` of window positions (computed once, by the binder), a bound ``ModelRef``, and for
occlusion a ``Tensor`` (an input or a baseline, by digest), an ``ImageSet``, ``Classes``
(kryptondb/plan/values.py). ``SCHEMA``
says which arguments an operator takes and of which types; ``PlanNode`` checks its arguments
against it when it is made, so a rule that writes a wrong value fails where it writes it.
"""

from __future__ import annotations

from enum import Enum
from numbers import Integral, Real

from kryptondb.lang.ast import Fill
from kryptondb.media.images import Preprocess
from kryptondb.model.binding import ModelRef
from kryptondb.obe.grid import Grid
from kryptondb.plan.values import Classes, ImageSet, Tensor, VideoSet


class Op(str, Enum):
    """Operator kinds. Logical ones come from the binder, the rewrite rules make the fused and
    incremental ones, and lowering (plan/physical.py) names the physical ones. A kind equals its
    name as EXPLAIN prints it (``Op.DRILL_DOWN == "DrillDown"``)."""

    # logical (binder)
    IMAGE_SCAN = "ImageScan"
    TENSOR_SCAN = "TensorScan"
    VIDEO_SCAN = "VideoScan"
    PREPROCESS = "Preprocess"
    INFERENCE = "Inference"
    CHOOSE_CLASS = "ChooseClass"
    OCCLUDE = "Occlude"
    CLASS_PROBABILITY = "ClassProbability"
    HEATMAP = "Heatmap"
    TOP_K = "TopK"
    FRAME_LABELS = "FrameLabels"
    STORE = "Store"
    TUNE = "Tune"
    TUNE_VIDEO = "TuneVideo"
    CREATE_MODEL = "CreateModel"
    LOAD_MEDIA = "LoadMedia"
    SHOW_CATALOG = "ShowCatalog"
    DESCRIBE_MODEL = "DescribeModel"
    DROP = "Drop"
    SQL = "Sql"
    TABLE_SCAN = "TableScan"
    COPY = "Copy"
    # made by rewrite rules
    OCCLUSION_SCAN = "OcclusionScan"
    MATERIALIZE_VIEWS = "MaterializeViews"
    VIDEO_IVM = "VideoIVM"
    # physical only (lowering)
    LOAD_IMAGE = "LoadImage"
    FULL_INFERENCE = "FullInference"
    PICK_CLASS = "PickClass"
    STORE_TABLE = "StoreTable"
    INCREMENTAL_VIDEO_INFERENCE = "IncrementalVideoInference"
    NAIVE_OCCLUSION_SCAN = "NaiveOcclusionScan"
    INCREMENTAL_OCCLUSION_SCAN = "IncrementalOcclusionScan"
    DRILL_DOWN = "DrillDown"
    # a set statement's inputs, one after another through one per-input function
    PREDICT_IMAGES = "PredictImages"
    RECOGNIZE_VIDEOS = "RecognizeVideos"

    def __str__(self) -> str:
        return self.value


# the physical kinds of an occlusion scan, one per plan the rewrite can choose
OCCLUSION_SCANS = frozenset({Op.NAIVE_OCCLUSION_SCAN, Op.INCREMENTAL_OCCLUSION_SCAN,
                             Op.DRILL_DOWN})

# -- argument types ------------------------------------------------------------------------------


class _Kind:
    """A named check of an argument value; ``name`` is what an error says was expected."""

    def __init__(self, name: str, check):
        self.name, self.check = name, check

    def __call__(self, value) -> bool:
        return self.check(value)


INT = _Kind("an int", lambda v: isinstance(v, Integral) and not isinstance(v, bool))
NUMBER = _Kind("a number", lambda v: isinstance(v, Real) and not isinstance(v, bool))
TEXT = _Kind("a str", lambda v: isinstance(v, str))
FLAG = _Kind("a bool", lambda v: isinstance(v, bool))
NAMES = _Kind("a tuple of str", lambda v: isinstance(v, tuple) and all(isinstance(x, str)
                                                                       for x in v))
SHAPE = _Kind("a tuple of int", lambda v: isinstance(v, tuple) and all(INT(x) for x in v))
MODEL = _Kind("a bound ModelRef", lambda v: isinstance(v, ModelRef))
GRID = _Kind("a Grid", lambda v: isinstance(v, Grid))
FILL = _Kind("a Fill", lambda v: isinstance(v, Fill))
PREPROCESS = _Kind("a Preprocess", lambda v: isinstance(v, Preprocess))
BACKEND = _Kind("a backend name", lambda v: v in ("onnxruntime", "numpy", "cupy"))
MODE = _Kind("'naive' or 'incremental'", lambda v: v in ("naive", "incremental"))
CLASS = _Kind("a class id, Classes, 'top1' or 'all'",
              lambda v: v in ("top1", "all") or INT(v) or isinstance(v, Classes))
TENSOR = _Kind("a Tensor", lambda v: isinstance(v, Tensor))
IMAGES = _Kind("an ImageSet", lambda v: isinstance(v, ImageSet))
VIDEOS = _Kind("a VideoSet", lambda v: isinstance(v, VideoSet))
BASELINE = _Kind("a number or a Tensor", lambda v: NUMBER(v) or TENSOR(v))
OPTIONAL_INT = _Kind("an int or None", lambda v: v is None or INT(v))


def one_of(*values: str) -> _Kind:
    return _Kind(" or ".join(map(repr, values)), lambda v: v in values)


MEDIA = {"source": TEXT, "catalog": FLAG}
FRAMES = {"first": INT, "last": OPTIONAL_INT, "every": INT}
SCORE = one_of("probability", "logit")  # softmax of the output, or the output itself
VIDEO_SETTINGS = {"threshold": NUMBER, "feature_scale": NUMBER, "tau": NUMBER, "keyframe_every": INT,
                  "keyframe_area": NUMBER, "max_boxes": INT, "agreement": FLAG}
INFERENCE = {"model": MODEL, "backend": BACKEND, "batch": INT, "score": SCORE}
# an occlusion scan as the rules grow it: the query, the cost model's reasons and estimates,
# the approximate settings, the memory planner's batch. ``fill`` (pixel space) or ``baseline``
# (the model's input space); ``inputs``: how many are scanned (absent: one image)
OCCLUDE = {"grid": GRID, "fill": FILL, "baseline": BASELINE, "inputs": INT}
SCAN_QUERY = OCCLUDE | {"model": MODEL, "backend": BACKEND, "score": SCORE}
# cost_naive, cost_incremental: the whole scan's predicted FLOPs each way (incremental: with its
# setup, the views and the sessions to build); seconds_naive, seconds_incremental: the same in
# wall seconds by the calibrated cost model, which maintain_views compared (``why``)
SCAN_COST = {"why": TEXT, "theoretical_speedup": NUMBER, "flops_full": INT,
             "flops_incremental": INT, "frontier": NAMES, "segments": INT,
             "cost_naive": INT, "cost_incremental": INT, "seconds_naive": NUMBER,
             "seconds_incremental": NUMBER}
SCAN_APPROXIMATE = {"tau": NUMBER, "drilldown": NUMBER, "target": NUMBER, "coarse_stride": INT,
                    "drilldown_speedup": NUMBER, "predicted_ssim": NUMBER,
                    "predicted_seconds": NUMBER, "predicted_speedup_vs_exact": NUMBER}
# winograd: False where the budget holds the plan only without Winograd's weights (absent: on)
SCAN_MEMORY = {"batch": INT, "block": INT, "memory_mb": INT, "memory_estimate_mb": INT,
               "limited_by": TEXT, "winograd": FLAG}
SCAN = SCAN_QUERY | SCAN_COST | SCAN_APPROXIMATE | SCAN_MEMORY
PHYSICAL_SCAN = {k: v for k, v in SCAN.items() if k not in ("drilldown", "coarse_stride")}

SCHEMA: dict[Op, dict[str, _Kind]] = {
    Op.IMAGE_SCAN: MEDIA | {"images": IMAGES},
    Op.LOAD_IMAGE: MEDIA | {"images": IMAGES},
    Op.TENSOR_SCAN: {"tensor": TENSOR},
    Op.VIDEO_SCAN: MEDIA | FRAMES | {"videos": VIDEOS},
    Op.PREPROCESS: {"model": MODEL, "shape": SHAPE},
    Op.INFERENCE: INFERENCE | VIDEO_SETTINGS,
    Op.FULL_INFERENCE: INFERENCE,
    Op.VIDEO_IVM: INFERENCE | VIDEO_SETTINGS,
    Op.INCREMENTAL_VIDEO_INFERENCE: INFERENCE | VIDEO_SETTINGS,
    Op.CHOOSE_CLASS: {"target": CLASS},
    Op.PICK_CLASS: {"target": CLASS},
    Op.OCCLUDE: OCCLUDE,
    Op.CLASS_PROBABILITY: {"score": SCORE},
    # keys: the result's columns that say which map a row is of ('image', 'class'); images:
    # the names of the image column
    Op.HEATMAP: {"rows": INT, "cols": INT, "keys": NAMES, "images": IMAGES,
                 "layout": one_of("windows", "pixels")},
    Op.TOP_K: {"k": INT, "model": MODEL},
    Op.FRAME_LABELS: MEDIA | {"videos": VIDEOS},
    # or_replace: INTO OR REPLACE (without it, a table of that name is an error)
    Op.STORE: {"table": TEXT, "or_replace": FLAG},
    Op.STORE_TABLE: {"table": TEXT, "or_replace": FLAG},
    Op.TUNE: {"model": MODEL, "grid": GRID, "fill": FILL, "images": NAMES},
    Op.TUNE_VIDEO: {"model": MODEL, "agreement": NUMBER, "keyframe_every": INT},
    Op.CREATE_MODEL: {"name": TEXT, "path": TEXT, "preprocess": PREPROCESS},
    Op.LOAD_MEDIA: {"kind": one_of("image", "video"), "path": TEXT, "name": TEXT},
    Op.SHOW_CATALOG: {"what": TEXT},
    Op.DESCRIBE_MODEL: {"model": MODEL},
    Op.DROP: {"kind": TEXT, "name": TEXT, "if_exists": FLAG},
    Op.SQL: {"sql": TEXT, "tables": NAMES},
    Op.TABLE_SCAN: {"table": TEXT},  # a table, view or catalog relation, read whole
    # path: as written (the executor expands ~); format: from its extension or FORMAT
    Op.COPY: {"path": TEXT, "format": one_of("parquet", "csv", "json")},
    Op.OCCLUSION_SCAN: SCAN | {"mode": MODE},
    Op.MATERIALIZE_VIEWS: {"model": MODEL, "backend": BACKEND},
    Op.NAIVE_OCCLUSION_SCAN: PHYSICAL_SCAN,
    Op.INCREMENTAL_OCCLUSION_SCAN: PHYSICAL_SCAN,
    Op.DRILL_DOWN: PHYSICAL_SCAN | {"stage1": GRID, "ratio": NUMBER},
    # PREDICT IMAGES, RECOGNIZE ... IN VIDEOS: the single-input chain's arguments, per input
    Op.PREDICT_IMAGES: INFERENCE | {"images": IMAGES, "k": INT},
    Op.RECOGNIZE_VIDEOS: INFERENCE | VIDEO_SETTINGS | FRAMES | {"videos": VIDEOS, "k": INT,
                                                                  "mode": MODE},
}


def check_args(op: Op, args: tuple[tuple[str, object], ...]) -> None:
    """Raise TypeError naming the operator and argument when ``args`` break ``SCHEMA[op]``
    (a planner bug, not a user error: user values were checked by the binder)."""
    if not isinstance(op, Op):
        raise TypeError(f"a plan node's op is an Op, got {op!r}")
    schema = SCHEMA[op]
    for key, value in args:
        if key not in schema:
            raise TypeError(f"{op} takes no argument {key!r} (it takes: "
                            f"{', '.join(sorted(schema)) or 'none'})")
        if value is not None and not schema[key](value):
            raise TypeError(f"{op} argument {key}={value!r} is not {schema[key].name}")

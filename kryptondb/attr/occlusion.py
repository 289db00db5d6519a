"""``Occlusion``: Captum's ``captum.attr.Occlusion`` (0.9) on KryptonDB's engine.

``attribute`` takes Captum's arguments and returns Captum's attribution: for each example and
each output its target selects, every window of Captum's grid (the last ones cut off at the
border, kryptondb/obe/grid.py ``border="cut"``) scored as the raw output before minus the output
with the window showing the baseline, each input element the mean over the windows covering it
(kryptondb/obe/layout.py). The windows run through the occlusion driver (kryptondb/obe/scan.py),
naive or incremental as the cost model decides (kryptondb/attr/planning.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kryptondb.attr import arguments as A
from kryptondb.attr.fallback import captum_attribute, check_fallback
from kryptondb.attr.forward import Forward
from kryptondb.attr.planning import approximate_of, decide
from kryptondb.attr.tensors import like, to_numpy
from kryptondb.errors import ModelImportError
from kryptondb.obe.grid import Grid
from kryptondb.obe.layout import pixels, window_sizes
from kryptondb.obe.scan import scan
from kryptondb.obe.spec import ScanSpec
from kryptondb.obe.strategy import Runtime
from kryptondb.progress import ProgressBar, silent
from kryptondb.runtime.backends import get_backend

BASE_BATCH = 16  # unoccluded examples per forward pass


@dataclass(frozen=True)
class _Job:
    """One call, checked: the scan, how it runs, and which outputs each attribution row
    explains (``rows``: (N, ...) flat output indices, Captum's selected outputs)."""

    model: object
    spec: ScanSpec
    how: object
    info: dict
    rows: np.ndarray


class Occlusion:
    """Captum's ``Occlusion(forward_func)`` with the same ``attribute``; the windows run on
    KryptonDB's engine.

    ``forward_func``: a ``torch.nn.Module`` in eval mode (exported to ONNX for the input's
    shape), a ``kryptondb.Model``, or an ONNX path. One N x C x H x W input per call, windows
    ``(C, h, w)`` over all channels. Anything else raises a KryptonError naming the argument,
    or, with ``fallback="captum"``, goes to Captum. Options: ``backend`` ('onnxruntime' or
    'numpy'), ``plan`` ('naive', 'incremental'; None: the cost model decides), ``approximate``
    (e.g. ``{"tau": 0.5, "drilldown": 0.25}``: projective-field threshold and drill-down).

    After a call, ``windows`` is an Arrow table of every window's difference (example, target,
    y, x, h, w, difference) and ``stats`` says how it ran.

    >>> import numpy as np, kryptondb
    >>> occ = Occlusion(kryptondb.load_model("resnet18"), plan="naive")
    >>> x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    >>> a = occ.attribute(x, sliding_window_shapes=(3, 112, 112), strides=(3, 112, 112),
    ...                   target=7)
    >>> a.shape, a.dtype, occ.windows.num_rows
    ((1, 3, 224, 224), dtype('float32'), 4)
    """

    def __init__(self, forward_func, fallback=None, *, backend: str = "onnxruntime",
                 plan: str | None = None, approximate: dict | None = None):
        check_fallback(fallback)
        get_backend(backend)  # an unknown name fails here, with the known ones
        self.forward_func, self.fallback = forward_func, fallback
        self.backend, self.plan = backend, plan
        self.approximate = approximate_of(approximate)
        self._forward = Forward(forward_func)
        self.windows: pa.Table | None = None
        self.stats: dict = {}

    def attribute(self, inputs, sliding_window_shapes, strides=None, baselines=None,
                  target=None, additional_forward_args=None, perturbations_per_eval=1,
                  show_progress=False):
        """Captum's ``Occlusion.attribute``: the attribution of each input element, of the
        input's shape (N x C x H x W; N x T rows when the target selects T outputs per
        example), a torch tensor for a tensor input, a NumPy array for an array."""
        call = dict(inputs=inputs, sliding_window_shapes=sliding_window_shapes,
                    strides=strides, baselines=baselines, target=target,
                    additional_forward_args=additional_forward_args,
                    perturbations_per_eval=perturbations_per_eval, show_progress=show_progress)
        try:
            job = self._job(call)
        except (A.UnsupportedArgumentError, ModelImportError) as exc:
            if self.fallback != "captum":
                raise
            self.windows, self.stats = None, {"plan": "captum", "why": str(exc)}
            return captum_attribute(self.forward_func, call, exc)
        out = like(self._run(job, show_progress), _one(inputs))
        return (out,) if isinstance(inputs, tuple) else out

    def attribute_future(self):
        raise NotImplementedError("attribute_future is not implemented for Occlusion")

    def has_convergence_delta(self) -> bool:
        return False

    def _job(self, call: dict) -> _Job:
        if call["additional_forward_args"] is not None:
            raise A.UnsupportedArgumentError("additional_forward_args", "the engine runs models "
                                             "of one input tensor")
        x = to_numpy(_one(call["inputs"]))
        strides = A.strides_of(call["strides"], x.shape)
        window = A.window_of(call["sliding_window_shapes"], x.shape)
        A.check_window(window, strides, x.shape, A.given_strides(call["strides"]))
        A.check_perturbations(call["perturbations_per_eval"])
        _runs_on_engine(x.shape, window)
        model = self._forward.model(x.shape[1:])
        graph = model.graph
        rows = A.select_targets(call["target"], len(x), tuple(graph[graph.output].shape))
        grid = Grid(x.shape[2], x.shape[3], window[1:], strides[1:], "cut")
        spec = ScanSpec(x.astype(np.float32), grid, tuple(np.unique(rows).tolist()),
                        A.baselines_of(call["baselines"], x.shape), "logit")
        how, info = decide(graph, grid, self.backend, self.plan, self.approximate)
        return _Job(model, spec, how, info, rows)

    def _run(self, job: _Job, show_progress: bool) -> np.ndarray:
        """(rows, C, H, W) float64 attributions; ``windows`` and ``stats`` recorded."""
        spec, backend = job.spec, get_backend(self.backend)
        stats: dict = {}
        rt = Runtime(job.model, backend, ProgressBar if show_progress else silent, stats)
        occluded = scan(spec, job.how, rt)  # (N, K, rows, cols)
        base = _outputs(job.model, backend, spec.inputs)[:, list(spec.targets)]
        example = np.repeat(np.arange(len(spec)), job.rows[0].size)
        which = np.searchsorted(spec.targets, job.rows.reshape(len(spec), -1)).ravel()
        diff = base[example, which][:, None, None] - occluded[example, which]
        self.windows = _windows(spec.grid, example, job.rows.ravel(), diff)
        self.stats = {**job.info, **stats}
        attribution = pixels(diff, spec.grid)[:, None]
        return np.broadcast_to(attribution, (len(diff), *spec.inputs.shape[1:]))


def _one(inputs):
    """The one input tensor of a call (alone, or alone in a tuple)."""
    if isinstance(inputs, tuple):
        if len(inputs) != 1:
            raise A.UnsupportedArgumentError("inputs", f"{len(inputs)} input tensors; the engine "
                                             f"explains models of one input tensor")
        return inputs[0]
    return inputs


def _runs_on_engine(shape: tuple[int, ...], window: tuple[int, ...]) -> None:
    if len(shape) != 4:
        raise A.UnsupportedArgumentError("inputs", f"shape {tuple(shape)}: the engine explains "
                                         f"N x C x H x W images")
    if window[0] != shape[1]:
        raise A.UnsupportedArgumentError(
            "sliding_window_shapes", f"window {window} covers {window[0]} of the input's "
            f"{shape[1]} channels; the engine's windows span all channels: ({shape[1]}, h, w)")


def _outputs(model, backend, x: np.ndarray) -> np.ndarray:
    """(N, outputs) raw outputs of the unoccluded inputs."""
    g = model.graph
    parts = [backend.run(g, {g.inputs[0]: x[i:i + BASE_BATCH]})[g.output]
             for i in range(0, len(x), BASE_BATCH)]
    return np.concatenate(parts).reshape(len(x), -1)


def _windows(grid: Grid, example: np.ndarray, target: np.ndarray, diff: np.ndarray) -> pa.Table:
    """One row per attribution row and window: its corner, size (cut off) and difference."""
    corners = grid.corners()
    sizes = window_sizes(grid, corners)
    n, count = len(diff), grid.count
    return pa.table({
        "example": pa.array(np.repeat(example, count).astype(np.int32)),
        "target": pa.array(np.repeat(target, count).astype(np.int64)),
        "y": pa.array(np.tile(corners[:, 0], n).astype(np.int32)),
        "x": pa.array(np.tile(corners[:, 1], n).astype(np.int32)),
        "h": pa.array(np.tile(sizes[:, 0], n).astype(np.int32)),
        "w": pa.array(np.tile(sizes[:, 1], n).astype(np.int32)),
        "difference": pa.array(diff.reshape(-1).astype(np.float32)),
    })

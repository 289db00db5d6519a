"""What ``Occlusion(forward_func)`` explains, as a kryptondb Model: a ``kryptondb.Model``, an ONNX
path (or a zoo name), or a ``torch.nn.Module``, exported to ONNX for the input's C x H x W
(batch axis free) with torch's TorchScript exporter and read by kryptondb's ONNX import.

A module is exported again when its parameters or buffers changed (torch counts in-place
writes in each tensor's version), so a call always explains the module as it is.
"""

from __future__ import annotations

import os
import tempfile
import warnings

from kryptondb.attr.arguments import UnsupportedArgumentError
from kryptondb.attr.tensors import is_module
from kryptondb.errors import KryptonError, ModelImportError, ShapeError
from kryptondb.model.model import Model, load_model


def describe(forward_func) -> str:
    return type(forward_func).__name__


class Forward:
    """``forward_func`` once it is known what it is; ``model(shape)`` gives the Model for
    inputs of ``shape`` (C, H, W)."""

    def __init__(self, forward_func):
        self.func = forward_func
        self._exports: dict = {}  # (C, H, W) -> (the module's fingerprint, Model)
        if not (isinstance(forward_func, (Model, str, os.PathLike)) or is_module(forward_func)):
            self.refusal = UnsupportedArgumentError(
                "forward_func", f"the engine runs a torch.nn.Module, a kryptondb.Model or an "
                f"ONNX path, not a {describe(forward_func)} (fallback='captum' hands other "
                f"callables to Captum)")
        else:
            self.refusal = None

    def model(self, shape: tuple[int, int, int]) -> Model:
        if self.refusal is not None:
            raise self.refusal
        if isinstance(self.func, Model):
            return _fits(self.func, shape)
        if not is_module(self.func):
            return _fits(load_model(self.func), shape)
        training = _training_layer(self.func)
        if training is not None:
            raise UnsupportedArgumentError(
                "forward_func", f"the {describe(self.func)}'s {training} is in training mode "
                f"(batch statistics, random dropout); call .eval() first: the engine explains "
                f"the module in eval mode")
        key, mark = tuple(shape), _fingerprint(self.func)
        if key not in self._exports or self._exports[key][0] != mark:
            self._exports[key] = (mark, export(self.func, shape))
        return self._exports[key][1]


def _training_layer(module) -> str | None:
    """The first layer that computes differently in training mode (BatchNorm and the other
    normalisations with running statistics, dropout) and is in it, or None. Other modules in
    training mode compute as in eval mode (Captum's test models, for one)."""
    import torch  # optional: here only for a torch.nn.Module, so already imported

    def differs(m) -> bool:
        if isinstance(m, torch.nn.modules.batchnorm._NormBase):
            return m.track_running_stats
        return isinstance(m, torch.nn.modules.dropout._DropoutNd)

    return next((f"{name or 'module'} ({type(m).__name__})" for name, m in module.named_modules()
                 if m.training and differs(m)), None)


def _fits(model: Model, shape: tuple[int, int, int]) -> Model:
    if tuple(model.input_shape) != tuple(shape):
        raise ShapeError(f"inputs: model {model.name} takes N x "
                         f"{' x '.join(map(str, model.input_shape))} inputs, got N x "
                         f"{' x '.join(map(str, shape))}")
    return model


def _fingerprint(module) -> tuple:
    """Which tensors the module holds and how often each was written in place."""
    return tuple((id(t), t.data_ptr(), t._version)
                 for t in (*module.parameters(), *module.buffers()))


def export(module, shape: tuple[int, int, int]) -> Model:
    """The module as a kryptondb Model for N x C x H x W inputs (through an ONNX file in a
    temporary folder, removed after the import)."""
    import torch  # optional: only a torch.nn.Module forward_func needs it, and then it is loaded

    name = describe(module)
    dummy = torch.zeros((1, *shape), dtype=_dtype(module, torch))
    with tempfile.TemporaryDirectory(prefix="kryptondb-attr-") as folder:
        path = os.path.join(folder, f"{name}.onnx")
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                torch.onnx.export(module, (dummy,), path, dynamo=False, input_names=["input"],
                                  output_names=["output"],
                                  dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
        except Exception as exc:  # torch raises many kinds; all mean "cannot export"
            raise ModelImportError(f"forward_func: torch.onnx.export of the {name} failed: "
                                   f"{type(exc).__name__}: {exc}") from None
        try:
            return load_model(path)
        except KryptonError as exc:
            raise ModelImportError(f"forward_func: the {name} exported to ONNX does not "
                                   f"import: {exc}") from None


def _dtype(module, torch):
    first = next(iter(module.parameters()), None)
    return first.dtype if first is not None and first.dtype.is_floating_point else torch.float32

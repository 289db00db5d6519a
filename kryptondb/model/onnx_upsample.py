"""The ops of a UNet decoder: ConvTranspose and Resize (PyTorch's ``nn.ConvTranspose2d`` and
``nn.Upsample`` / ``F.interpolate``), checked and converted to their IR nodes."""

from __future__ import annotations

import numpy as np

from kryptondb.errors import UnsupportedOpError
from kryptondb.graph.ir import Op, make_node
from kryptondb.graph.resample import COORDS, MODES, NEAREST
from kryptondb.model import onnx_checks as check
from kryptondb.model import onnx_converters as basic
from kryptondb.model.onnx_checks import label


def _conv_transpose(ctx, n, a):
    w = check.kernel(ctx, n, a)
    auto = check.auto_pad(n, a)
    if "output_shape" in a or auto.startswith("SAME"):
        raise UnsupportedOpError(f"ConvTranspose {label(n)!r}: output_shape and SAME padding "
                                 "are not supported; give pads and output_padding")
    x = basic._x(ctx, n)
    groups = check.ints(n, a, "group", 1, 1, 1)[0]
    if w.shape[0] != ctx.shapes[x][0] or w.shape[0] % groups:
        raise check.malformed(n, f"weight {list(w.shape)} with group {groups} does not fit "
                              f"{ctx.shapes[x][0]} input channels")
    stride = check.ints(n, a, "strides", 2, 1, default=(1, 1))
    extra = check.ints(n, a, "output_padding", 2, 0, default=(0, 0))
    if any(e >= s for e, s in zip(extra, stride)):  # onnxruntime refuses the graph otherwise
        raise check.malformed(n, f"output_padding {list(extra)} must be smaller than the "
                              f"stride {list(stride)}")
    pads = (0, 0, 0, 0) if auto == "VALID" else check.ints(n, a, "pads", 4, 0, (0, 0, 0, 0))
    cout = w.shape[1] * groups
    b = check.optional(ctx, n, 2, "bias")
    b = np.zeros(cout) if b is None else check.sized(n, b, cout, "the bias")
    out = n.output[0]
    params = (ctx.weight(f"{out}.weight", w), ctx.weight(f"{out}.bias", b))
    ctx.add(make_node(out, Op.CONV_TRANSPOSE, [x], params, kernel=tuple(w.shape[2:]),
                      stride=stride, pads=pads, groups=groups, output_padding=extra,
                      dilation=check.ints(n, a, "dilations", 2, 1, default=(1, 1))))


def _text(a: dict, key: str, default: str) -> str:
    value = a.get(key, default)
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _modes(n, a: dict) -> dict:
    """mode, coordinate rule and nearest rounding, each one the IR computes."""
    got = dict(mode=_text(a, "mode", "nearest"),
               coord=_text(a, "coordinate_transformation_mode", "half_pixel"),
               nearest=_text(a, "nearest_mode", "round_prefer_floor"))
    for key, known in (("mode", MODES), ("coord", COORDS), ("nearest", NEAREST)):
        if got[key] not in known:
            raise UnsupportedOpError(f"Resize {label(n)!r}: {key} {got[key]!r} is not supported "
                                     f"(supported: {', '.join(known)})")
    if a.get("antialias", 0) or a.get("exclude_outside", 0) or \
            _text(a, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise UnsupportedOpError(f"Resize {label(n)!r}: antialias, exclude_outside and "
                                 "keep_aspect_ratio_policy are not supported")
    return got


def _spatial(n, values, axes, what: str) -> list:
    """The height and width entries of a per-axis ``scales`` or ``sizes``."""
    values = list(np.asarray(values).reshape(-1))
    if axes is not None:
        if sorted(check.axis(n, v, 4, "axes") for v in axes) != [2, 3] or len(values) != 2:
            raise UnsupportedOpError(f"Resize {label(n)!r}: only the spatial axes can be "
                                     "resized")
        return values
    if len(values) != 4:
        raise check.malformed(n, f"{what} has {len(values)} values for a 4-D input")
    return values


def _resize(ctx, n, a):
    if ctx.opset < 11:
        raise UnsupportedOpError(f"Resize {label(n)!r} of opset {ctx.opset} is not supported; "
                                 "export with opset 11 or later")
    x = basic._x(ctx, n)
    modes = _modes(n, a)
    c, h, w = ctx.shapes[x]
    scales, sizes = check.optional(ctx, n, 2, "scales"), check.optional(ctx, n, 3, "sizes")
    if sizes is not None and np.size(sizes):
        sizes = _spatial(n, check.int_vector(n, sizes, "sizes"), a.get("axes"), "sizes")
        if len(sizes) == 4 and sizes[1] != c:
            raise UnsupportedOpError(f"Resize {label(n)!r}: only the spatial axes can be resized")
        size = (int(sizes[-2]), int(sizes[-1]))
        scale = (np.float32(size[0]) / np.float32(h), np.float32(size[1]) / np.float32(w))
    elif scales is not None and np.size(scales):
        values = _spatial(n, np.asarray(scales, np.float32), a.get("axes"), "scales")
        if len(values) == 4 and (values[0] != 1 or values[1] != 1):
            raise UnsupportedOpError(f"Resize {label(n)!r}: only the spatial axes can be resized")
        scale = (np.float32(values[-2]), np.float32(values[-1]))
        size = (int(np.float32(h) * scale[0]), int(np.float32(w) * scale[1]))
    else:
        raise check.malformed(n, "needs scales or sizes")
    if min(size) < 1 or min(scale) <= 0:
        raise check.malformed(n, f"resizes {h} x {w} to {size[0]} x {size[1]}")
    ctx.add(make_node(n.output[0], Op.RESIZE, [x], size=size,
                      scale=(float(scale[0]), float(scale[1])), **modes))


CONVERTERS = {"ConvTranspose": _conv_transpose, "Resize": _resize}

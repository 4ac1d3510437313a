"""ONNX Resize (mode "nearest", opset 11+) on quantized tensors: on codes in QOperator form
(quantize_static leaves Resize on the 8-bit tensor), and DequantizeLinear -> Resize ->
QuantizeLinear with the same parameters in QDQ form (ONNX Runtime drops that Q/DQ pair). It
moves codes, so it is exact whatever the engine: a `resize_nearest` node."""

from __future__ import annotations

import numpy as np

from hwsim.kernels import nearest_indices
from hwsim.onnx._model import attributes
from hwsim.onnx._values import Dequantized, FloatOp, QTensor

_DEFAULTS = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
             "nearest_mode": "round_prefer_floor", "antialias": 0,
             "keep_aspect_ratio_policy": "stretch"}


def resize(imp, node, ins):
    """QOperator handler: Resize on codes (on a dequantized tensor it waits for its Q)."""
    if isinstance(ins[0], Dequantized):
        return [FloatOp(node, tuple(ins))]
    return [emit_resize(imp, node, imp.activation(node, ins[0], "X"), ins[1:], node.output[0])]


def _opset(imp) -> int:
    return next((int(o.version) for o in imp.model.proto.opset_import
                 if o.domain in ("", "ai.onnx")), 11)


def emit_resize(imp, node, x: QTensor, params: list, out_name: str) -> QTensor:
    """The resize_nearest node of Resize(x, roi, scales, sizes)."""
    if _opset(imp) < 11:
        raise imp.model.fail(node, "Resize before opset 11 is not supported")
    attrs = {**_DEFAULTS, **attributes(node)}
    for key in ("mode", "antialias", "keep_aspect_ratio_policy"):
        if attrs[key] != _DEFAULTS[key]:
            raise imp.model.fail(node, f"only {key}={_DEFAULTS[key]!r} is supported; got "
                                 f"{attrs[key]!r}")
    if "axes" in attrs:
        raise imp.model.fail(node, "the 'axes' attribute is not supported")
    if len(x.shape) != 4:
        raise imp.model.fail(node, f"only (N, C, H, W) inputs are supported; got {x.shape}")
    _, scales, sizes = (list(params) + [None, None, None])[:3]
    n, c, h, w = x.shape
    if sizes is not None and np.asarray(imp.constant(node, sizes, "sizes")).size:
        sizes = [int(v) for v in np.asarray(imp.constant(node, sizes, "sizes")).reshape(-1)]
        if len(sizes) != 4:
            raise imp.model.fail(node, f"sizes must have 4 entries; got {sizes}")
        s = [np.float32(o) / np.float32(i) for o, i in zip(sizes, x.shape)]
        out = sizes
    elif scales is not None:
        s = [np.float32(v) for v in np.asarray(imp.constant(node, scales, "scales")).reshape(-1)]
        if len(s) != 4:
            raise imp.model.fail(node, f"scales must have 4 entries; got {s}")
        out = [int(np.floor(np.float32(d) * v)) for d, v in zip(x.shape, s)]
    else:
        raise imp.model.fail(node, "either scales or sizes must be given")
    if s[0] != 1 and sizes is None or out[1] != c or min(out[2:]) < 1:  # sizes fix N: not read
        raise imp.model.fail(node, f"only H and W may be resized, to at least 1; {x.shape} -> "
                             f"{tuple(out)}")
    mode, nearest = attrs["coordinate_transformation_mode"], attrs["nearest_mode"]
    try:
        rows = nearest_indices(h, out[2], s[2], mode, nearest)
        cols = nearest_indices(w, out[3], s[3], mode, nearest)
    except Exception as exc:  # an unknown mode: the kernel's message names it
        raise imp.model.fail(node, str(exc).replace("resize: ", "")) from None
    node_attrs = {"scales": [float(s[2]), float(s[3])], "coordinate_transformation_mode": mode,
                  "nearest_mode": nearest}
    return imp.builder._emit(node, out_name, "resize_nearest", (x.node,), (n, c, out[2], out[3]),
                             x.quant, node_attrs, {"rows": rows, "cols": cols})


HANDLERS = {("", "Resize"): (resize, 1, 4)}

"""Run a ``LayerGraph`` with torch: the float graph, or the fake-quant graph via hooks.

All ops compute in float32 (torch CPU kernels).  One table maps each op to its float
implementation; the fake-quant model reuses it by substituting weights/biases and quantizing
each record's output (see ``quant.model``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from quant.errors import QuantError
from quant.graph import LayerGraph, LayerRecord

# (record, input tensors, weight, bias) -> output tensor (before the fused activation).
OpFn = Callable[[LayerRecord, list[torch.Tensor], torch.Tensor | None, torch.Tensor | None],
                torch.Tensor]


def _symmetric_padding(rec: LayerRecord) -> tuple[int, int] | None:
    top, left, bottom, right = rec.attrs["padding"]
    return (top, left) if (top, left) == (bottom, right) else None


def _conv2d(rec, xs, w, b):
    a = rec.attrs
    pad = _symmetric_padding(rec)
    x = xs[0]
    if pad is None:
        top, left, bottom, right = a["padding"]
        x, pad = F.pad(x, (left, right, top, bottom)), (0, 0)
    return F.conv2d(x, w, b, stride=a["stride"], padding=pad, dilation=a["dilation"],
                    groups=a["groups"])


def _conv_transpose2d(rec, xs, w, b):
    """torch's conv_transpose2d; ``w`` output-channel major (LayerRecord.weight)."""
    from quant._capture_args import output_major_to_transposed

    a = rec.attrs
    g = a["groups"]
    wt = output_major_to_transposed(w, g)
    pad = _symmetric_padding(rec)
    if pad is not None:
        return F.conv_transpose2d(xs[0], wt, b, stride=a["stride"], padding=pad,
                                  output_padding=a["output_padding"], groups=g,
                                  dilation=a["dilation"])
    # asymmetric padding: the full output, extended by output_padding, then cropped
    top, left, bottom, right = a["padding"]
    y = F.conv_transpose2d(xs[0], wt, None, stride=a["stride"], groups=g, dilation=a["dilation"])
    oph, opw = a["output_padding"]
    y = F.pad(y, (0, opw, 0, oph))
    y = y[:, :, top:y.shape[2] - bottom, left:y.shape[3] - right]
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def _linear(rec, xs, w, b):
    return F.linear(xs[0], w, b)


def _add(rec, xs, w, b):
    return xs[0] + xs[1]


def _sub(rec, xs, w, b):
    return xs[0] - xs[1]


def _constant(rec, xs, w, b):
    """The record's constant (1, ...) repeated over the batch of its input (the graph input)."""
    return w.expand(xs[0].shape[0], *w.shape[1:])


def _pool_padding(rec: LayerRecord) -> tuple[int, int]:
    pad = _symmetric_padding(rec)
    if pad is None:
        raise QuantError(f"layer {rec.name!r}: asymmetric pooling padding {rec.attrs['padding']} "
                         "is not supported by the torch executor")
    return pad


def _maxpool2d(rec, xs, w, b):
    a = rec.attrs
    return F.max_pool2d(xs[0], a["kernel"], a["stride"], _pool_padding(rec),
                        ceil_mode=a["ceil_mode"])


def _avgpool2d(rec, xs, w, b):
    a = rec.attrs
    if a.get("global"):
        return xs[0].mean(dim=(2, 3), keepdim=True)
    return F.avg_pool2d(xs[0], a["kernel"], a["stride"], _pool_padding(rec),
                        ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"])


def _flatten(rec, xs, w, b):
    return torch.flatten(xs[0], rec.attrs["start_dim"])


def _concat(rec, xs, w, b):
    return torch.cat(xs, dim=rec.attrs["axis"])


def _clamp(rec, xs, w, b):
    return torch.clamp(xs[0], rec.attrs["min"], rec.attrs["max"])


def _matmul(rec, xs, w, b):
    return torch.matmul(xs[0], xs[1])


def _layernorm(rec, xs, w, b):
    return F.layer_norm(xs[0], (xs[0].shape[-1],), w, b, rec.attrs["eps"])


def _gelu(rec, xs, w, b):
    return F.gelu(xs[0], approximate=rec.attrs["approximate"])


def _softmax(rec, xs, w, b):
    return torch.softmax(xs[0], dim=rec.attrs["dim"])


def _reshape(rec, xs, w, b):
    return xs[0].reshape(rec.attrs["shape"])


def _transpose(rec, xs, w, b):
    return xs[0].permute(rec.attrs["perm"])


def _hardsigmoid(x: torch.Tensor) -> torch.Tensor:
    """F.hardsigmoid's arithmetic (equal results), in ops that have second derivatives (torch's
    hardsigmoid_backward has none; Hessian-based sensitivity differentiates twice)."""
    return torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


def _hardswish(x: torch.Tensor) -> torch.Tensor:
    """F.hardswish's arithmetic, x · relu6(x + 3) / 6 in that order (equal results)."""
    return x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


POINTWISE_TORCH: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid, "hardsigmoid": _hardsigmoid, "hardswish": _hardswish,
    "silu": F.silu, "tanh": torch.tanh,
}


def _pointwise(rec, xs, w, b):
    return POINTWISE_TORCH[rec.attrs["fn"]](xs[0])


def _mul(rec, xs, w, b):
    return xs[0] * xs[1]


def _resize(rec, xs, w, b):
    """Nearest resize as the gather torch's interpolate performs (indices from capture);
    bilinear as torch's interpolate with the captured arguments."""
    x = xs[0]
    a = rec.attrs
    if a["mode"] == "bilinear":
        if a["scale_factor"] is not None:
            return F.interpolate(x, scale_factor=a["scale_factor"], mode="bilinear",
                                 align_corners=a["align_corners"],
                                 recompute_scale_factor=a["recompute_scale_factor"])
        return F.interpolate(x, size=a["size"], mode="bilinear", align_corners=a["align_corners"])
    rows = torch.as_tensor(rec.attrs["rows"], dtype=torch.long)
    cols = torch.as_tensor(rec.attrs["cols"], dtype=torch.long)
    return x.index_select(2, rows).index_select(3, cols)


def _slice(rec, xs, w, b):
    a = rec.attrs
    return xs[0].narrow(a["axis"], a["start"], a["stop"] - a["start"])


def _lrn(rec, xs, w, b):
    a = rec.attrs
    return F.local_response_norm(xs[0], a["size"], a["alpha"], a["beta"], a["k"])


OP_TABLE: dict[str, OpFn] = {
    "conv2d": _conv2d, "linear": _linear, "add": _add, "maxpool2d": _maxpool2d,
    "avgpool2d": _avgpool2d, "flatten": _flatten, "concat": _concat, "clamp": _clamp,
    "matmul": _matmul, "layernorm": _layernorm, "gelu": _gelu, "softmax": _softmax,
    "reshape": _reshape, "transpose": _transpose, "pointwise": _pointwise, "mul": _mul,
    "resize": _resize, "conv_transpose2d": _conv_transpose2d, "slice": _slice, "lrn": _lrn,
    "sub": _sub, "constant": _constant,
}


def apply_activation(rec: LayerRecord, y: torch.Tensor) -> torch.Tensor:
    """Apply the record's fused activation clamp (if any)."""
    if rec.activation is None:
        return y
    lo, hi = rec.activation
    return torch.clamp(y, lo, hi)


def run_graph(graph: LayerGraph, x: torch.Tensor,
              params: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
              post: Callable[[LayerRecord, torch.Tensor], torch.Tensor] | None = None,
              keep: bool = True,
              pre: Callable[[LayerRecord, list[torch.Tensor]], list[torch.Tensor]] | None = None,
              ops: Mapping[str, OpFn] | None = None) -> dict[str, torch.Tensor]:
    """Evaluate every record of ``graph`` on input ``x`` (float32, shape of the input record).

    Args:
        params: per conv2d/linear record name, its (weight, bias) float32 tensors.
        post: applied to each record's output after the fused activation (fake quantization);
            also applied to the input record.  None: identity.
        keep: keep every record's output (else only the graph output is returned).
        pre: applied to each record's input tensors before its op (e.g. an input binarizer).
        ops: op -> function used instead of ``OP_TABLE``'s (the fake-quant model's table
            lookups of ``pointwise`` records).
    Returns: record name -> float32 output tensor.
    """
    expected = graph[graph.input_name].out_shape
    if x.dim() != len(expected) or tuple(x.shape[1:]) != tuple(expected[1:]):
        raise QuantError(f"input of shape {tuple(x.shape)} does not match the captured input "
                         f"shape (N, {', '.join(map(str, expected[1:]))})")
    values: dict[str, torch.Tensor] = {}
    remaining: dict[str, int] = {}
    for rec in graph:
        for s in rec.inputs:
            remaining[s] = remaining.get(s, 0) + 1
    with torch.no_grad():
        for rec in graph:
            if rec.op == "input":
                y = x.to(torch.float32)
            else:
                w, b = params.get(rec.name, (None, None))
                xs = [values[s] for s in rec.inputs]
                if pre is not None:
                    xs = pre(rec, xs)
                fn = ops.get(rec.op) if ops else None
                y = (fn or OP_TABLE[rec.op])(rec, xs, w, b)
                y = apply_activation(rec, y)
            values[rec.name] = post(rec, y) if post is not None else y
            if not keep:
                for s in rec.inputs:
                    remaining[s] -= 1
                    if remaining[s] == 0 and s != graph.output_name:
                        del values[s]
    return values if keep else {graph.output_name: values[graph.output_name]}


def float_params(graph: LayerGraph) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """The BN-folded float32 weights and biases of every conv2d / linear record as tensors."""
    out = {}
    for rec in graph:
        if rec.weight is not None:
            b = torch.from_numpy(rec.bias.copy()) if rec.bias is not None else None
            out[rec.name] = (torch.from_numpy(rec.weight.copy()), b)
    return out

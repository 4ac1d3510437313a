"""The captured layer graph: plain, torch-free dataclasses.

A ``LayerGraph`` is a dict of ``LayerRecord`` in topological order, with the name of the input
record and of the record whose output is the model output.  Tensors are NCHW with the batch
dimension; weights are float32 with BatchNorm already folded in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from quant.errors import QuantError

OPS = ("input", "conv2d", "linear", "add", "maxpool2d", "avgpool2d", "flatten", "concat", "clamp",
       "matmul", "layernorm", "gelu", "softmax", "reshape", "transpose", "pointwise", "mul",
       "resize", "conv_transpose2d", "slice", "lrn", "sub", "constant")
WEIGHTED_OPS = ("conv2d", "linear")
# Transposed convolutions: weighted like conv2d, but kept out of WEIGHTED_OPS so calibration
# steps written for conv2d / linear leave them at their fitted weights. Their weight is stored
# output-channel major, (K, C/groups, R, S) (see LayerRecord.weight).
CONV_TRANSPOSE_OPS = ("conv_transpose2d",)
QUANTIZED_WEIGHT_OPS = WEIGHTED_OPS + CONV_TRANSPOSE_OPS
# Ops computed in float on a vector unit (dequantize, fn, quantize), not as integer products.
FLOAT_OPS = ("layernorm", "gelu", "softmax", "lrn")
# Ops that only move codes (output quantization = input quantization).
MOVE_OPS = ("maxpool2d", "flatten", "reshape", "transpose", "resize", "slice")
# Ops whose output gets its own activation parameters (every op but the ones that move codes).
REQUANTIZING_OPS = tuple(op for op in OPS if op not in MOVE_OPS)
# Ops whose output may carry a fused activation clamp.
FUSABLE_OPS = ("conv2d", "linear", "add", "mul", "conv_transpose2d")
# Element-wise nonlinearities of a ``pointwise`` record (attrs["fn"]); in the fake-quant model
# and the integer program each is a lookup table over the input codes (``quant.pointwise``).
POINTWISE_FNS = ("sigmoid", "hardsigmoid", "hardswish", "silu", "tanh")


@dataclass(frozen=True, eq=False)
class LayerRecord:
    """One layer of the captured graph.

    Attributes:
        name: unique record name (module path, or ``<module path>.<op>`` for functional ops).
        op: one of ``OPS``.
        inputs: producer record names, in argument order.
        module_path: dotted path of the nn.Module that performs (or contains) the op; "" = root.
        attrs: op attributes.  conv2d: ``stride`` (sh, sw), ``padding`` (top, left, bottom,
            right), ``dilation`` (dh, dw), ``groups``.  maxpool2d / avgpool2d: ``kernel`` (kh, kw),
            ``stride``, ``padding`` (top, left, bottom, right), ``ceil_mode``,
            ``count_include_pad`` (always False for maxpool2d, where it has no meaning),
            ``global`` (avgpool2d over the whole H×W).  flatten: ``start_dim``.  concat: ``axis``
            (non-negative, batch dim = 0).  clamp: ``min``, ``max`` (floats, may be +-inf).
            matmul: none (``a @ b`` over the last two dims, equal leading dims).  layernorm:
            ``eps`` (over the last dim).  gelu: ``approximate`` ("none" | "tanh").  softmax:
            ``dim`` (non-negative).  reshape: ``shape`` (the output shape with its first dim
            -1, so the leading dim may vary).  transpose: ``perm`` (a permutation of all dims).
            pointwise: ``fn`` (one of ``POINTWISE_FNS``).  mul: none (``a * b`` with numpy
            broadcasting, equal batch dims).  resize: ``mode`` ("nearest" | "nearest-exact" |
            "bilinear"), ``scales`` (s_h, s_w), ``coordinate_transformation_mode``; nearest:
            ``rows`` / ``cols`` (the source row / column of every output row / column, as
            torch computes them) and ``nearest_mode`` (the same indices in ONNX Resize's
            terms); bilinear: ``align_corners``, ``size``, ``scale_factor``,
            ``recompute_scale_factor`` (the interpolate call).
            conv_transpose2d: ``stride``, ``padding`` (top, left, bottom, right: rows / columns
            cropped from the full output), ``output_padding`` (oh, ow), ``dilation``, ``groups``.
            slice: ``axis`` (>= 1), ``start``, ``stop`` (0 <= start < stop <= size; step 1; one
            output of torch.split / chunk, or a basic-slicing getitem). lrn (local response
            norm across channels, torch's F.local_response_norm): ``size``, ``alpha``,
            ``beta``, ``k``.  sub: none (``a - b``, equal shapes).  constant: none (a constant
            operand of an element-wise op, quantized like an activation; its input is the graph
            input, read only for the batch size).
        weight: float32, conv (K, C/groups, R, S), linear (out, in), layernorm gamma (C,);
            conv_transpose2d (K, C/groups, R, S) output-channel major: torch's (C, K/groups, R,
            S) with ``w[g*K/groups + o, i] = w_torch[g*C/groups + i, o]``, so axis 0 is the
            output channel (per-channel quantization, BatchNorm folding) as for conv2d;
            constant: the float32 value (1, ...), broadcast over the batch; None for other ops.
        bias: float32 (K,) or None (no bias and no folded BatchNorm); layernorm beta (C,).
        activation: (lo, hi) clamp fused into the output of a conv2d / linear / add / mul, e.g. ReLU
            (0, inf), ReLU6 (0, 6); None if no activation was fused.
        out_shape: output shape with the batch dimension, from the example input.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    module_path: str = ""
    attrs: dict = field(default_factory=dict)
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    activation: tuple[float, float] | None = None
    out_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise QuantError(f"layer {self.name!r}: op must be one of {OPS}; got {self.op!r}")

    def __repr__(self) -> str:
        act = f", activation={self.activation}" if self.activation else ""
        return (f"LayerRecord({self.name!r}, op={self.op!r}, inputs={self.inputs}, "
                f"out_shape={self.out_shape}{act})")


@dataclass(eq=False)
class LayerGraph:
    """Records in topological order plus the names of the input and output records."""

    records: dict[str, LayerRecord]
    input_name: str
    output_name: str

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name, rec in self.records.items():
            if name != rec.name:
                raise QuantError(f"LayerGraph key {name!r} differs from record name {rec.name!r}")
            for src in rec.inputs:
                if src not in seen:
                    raise QuantError(
                        f"layer {name!r}: input {src!r} is not an earlier record "
                        "(records must be in topological order)"
                    )
            seen.add(name)
        for which, name in (("input_name", self.input_name), ("output_name", self.output_name)):
            if name not in self.records:
                raise QuantError(f"LayerGraph.{which} {name!r} is not a record")
        if self.records[self.input_name].op != "input":
            raise QuantError(f"LayerGraph.input_name {self.input_name!r} is not an input record")

    def __getitem__(self, name: str) -> LayerRecord:
        try:
            return self.records[name]
        except KeyError:
            names = list(self.records)
            raise QuantError(
                f"no layer named {name!r}; the graph has {len(names)} layers, e.g. {names[:5]}"
            ) from None

    def __iter__(self):
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)

    def consumers(self, name: str) -> tuple[str, ...]:
        """Names of the records that read the output of ``name``."""
        return tuple(r.name for r in self.records.values() if name in r.inputs)

    def count(self, op: str) -> int:
        """Number of records with this op."""
        return sum(1 for r in self.records.values() if r.op == op)

    def names(self, op: str | None = None) -> list[str]:
        """Record names (of one op if given), in topological order."""
        return [r.name for r in self.records.values() if op is None or r.op == op]

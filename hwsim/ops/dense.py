"""conv2d and linear on uniform integer codes: exact accumulation, then requantization.

Fast: each node is prepared once (weights centred and cast, constants validated) and runs as a
BLAS GEMM planned exact plus a fused numba requantization pass; ``int16_pairs`` accumulators
and PyTorch engine modes run their own models. Reference: ``hwsim.kernels.reference``.
"""
from __future__ import annotations

import math

import numpy as np

from hwsim.engines.table import ENGINES, is_pytorch_engine
from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ops._common import (CONV_ATTRS, accumulator, conv_geometry, integer_weight_errors,
                               layer_shape, prepared, requant_constants, requantize)

DENSE_ATTRS = ("accumulator", "requant", "input_zero_point", "weight_bits")
DENSE_OPTIONAL_ATTRS = ("input_scale", "output_scale", "input_bits", "engine",
                        "engine_int16_pairs", "accumulator_reason")
DENSE_ARRAYS = ("weight", "weight_zero_point")
DENSE_OPTIONAL_ARRAYS = ("bias", "weight_scale", "bias_f32")


def _operands(node: Node, x: np.ndarray) -> tuple:
    return (x, int(node.attrs["input_zero_point"]), node.arrays["weight"],
            node.arrays["weight_zero_point"], node.arrays.get("bias"))


def _torch_engine(node: Node, x: np.ndarray) -> np.ndarray:
    """The node computed as PyTorch's quantized engine attrs["engine"] does
    (hwsim.engines.pytorch), then clamped to the node's requantization range."""
    from hwsim.engines.pytorch import torch_quantized_conv2d, torch_quantized_linear

    a, arr = node.attrs, node.arrays
    common = dict(x_scale=float(a["input_scale"]), x_zp=int(a["input_zero_point"]),
                  w=arr["weight"], w_scale=arr["weight_scale"], w_zp=arr["weight_zero_point"],
                  bias_f32=arr.get("bias_f32"), y_scale=float(node.out.scale),
                  y_zp=int(node.out.zero_point))
    flags = dict(engine=a["engine"], int16_pairs=bool(a["engine_int16_pairs"]))
    if node.op == "conv2d":
        top, left, _, _ = a["padding"]
        y = torch_quantized_conv2d(x, **common, stride=tuple(a["stride"]), padding=(top, left),
                                   dilation=tuple(a["dilation"]), groups=int(a["groups"]), **flags)
    else:
        y = torch_quantized_linear(x, **common, **flags)
    lo, hi = a["requant"]["clamp"]
    return np.clip(y, lo, hi)


def _prepare(node: Node):
    from hwsim import kernels as k

    common = requant_constants(node)
    w, w_zp, bias = node.arrays["weight"], node.arrays["weight_zero_point"], node.arrays.get("bias")
    acc = accumulator(node)
    pairs = isinstance(acc, k.Int16PairsAccumulator)  # no one-pass fused kernel for this mode
    if node.op == "conv2d":
        prepare = k.prepare_conv2d_pairs if pairs else k.prepare_conv2d
        return prepare(w, w_zp, bias, *conv_geometry(node), acc, **common)
    prepare = k.prepare_linear_pairs if pairs else k.prepare_linear
    return prepare(w, w_zp, bias, acc, **common)


def run_dense(node: Node, args: list) -> tuple:
    """Fast conv2d / linear: the prepared layer (accumulate + requantize in one pass)."""
    if is_pytorch_engine(node.attrs.get("engine")):
        return _torch_engine(node, args[0]), None
    res = prepared(node, _prepare)(args[0], int(node.attrs["input_zero_point"]))
    return res.codes, res.overflow_count


def run_dense_reference(node: Node, args: list) -> tuple:
    """The definition: int64 accumulation (``hwsim.kernels.reference``), then requantization."""
    from hwsim import kernels as k

    if is_pytorch_engine(node.attrs.get("engine")):
        return _torch_engine(node, args[0]), None
    acc = accumulator(node)
    pairs = isinstance(acc, k.Int16PairsAccumulator)
    if node.op == "conv2d":
        fn = k.conv2d_int_pairs_reference if pairs else k.conv2d_int_reference
        res = fn(*_operands(node, args[0]), *conv_geometry(node), acc=acc)
    else:
        fn = k.linear_int_pairs_reference if pairs else k.linear_int_reference
        res = fn(*_operands(node, args[0]), acc=acc)
    return requantize(node, res.values, axis=1, reference=True), res.overflow_count


def _check(node: Node) -> list[str]:
    errs = integer_weight_errors(node)
    engine = node.attrs.get("engine")
    if engine is not None and engine not in ENGINES:
        errs.append(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    elif is_pytorch_engine(engine) and "engine_int16_pairs" not in node.attrs:
        errs.append(f"engine {engine!r} needs attribute 'engine_int16_pairs'")
    return errs


def _workload(program, node: Node, batch: int):
    w = node.arrays["weight"]
    src = program.node(node.inputs[0])
    common = dict(out_channels=w.shape[0], weight_bits=node.attrs["weight_bits"],
                  act_bits=src.out.bits, weight_format="int")
    if node.op == "conv2d":
        return layer_shape(program, node, batch, kernel=w.shape[2:], **common)
    rows = math.prod(src.out_shape[1:-1])  # token rows of a linear on (N, T, C)
    return layer_shape(program, node, batch * rows, kernel=None, **common)


register_op(OpDef(
    "conv2d", 1, CONV_ATTRS + DENSE_ATTRS, DENSE_ARRAYS,
    "acc = bias + sum (x - zp_x)(w - zp_w) over (c, r, s); padding (top, left, bottom, right) "
    "is zero in the real domain; then requantize per output channel. An engine mode computes "
    "the layer exactly as that engine does (hwsim.engines.table).",
    run_dense, run_dense_reference, optional_attrs=DENSE_OPTIONAL_ATTRS,
    optional_arrays=DENSE_OPTIONAL_ARRAYS, requantizes=True, accumulates=True, check=_check,
    workload=_workload))
register_op(OpDef(
    "linear", 1, DENSE_ATTRS, DENSE_ARRAYS,
    "acc = bias + (x - zp_x) @ (w - zp_w)^T over the last dim; then requantize per output "
    "feature.",
    run_dense, run_dense_reference, optional_attrs=DENSE_OPTIONAL_ATTRS,
    optional_arrays=DENSE_OPTIONAL_ARRAYS, requantizes=True, accumulates=True, check=_check,
    workload=_workload))

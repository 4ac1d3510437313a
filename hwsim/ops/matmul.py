"""matmul of two activation tensors (attention's Q·K^T and P·V) and vector_op (LayerNorm,
GELU, softmax in float32 on a vector unit)."""
from __future__ import annotations

import math

import numpy as np

from hwsim.ir.check import clamp_errors
from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ir.specs import AccumulatorConfig, AccumulatorMode
from hwsim.workloads.layer import LayerShape


def _matmul(node: Node, args: list, reference: bool) -> tuple:
    from hwsim.kernels.matmul import matmul_int, matmul_int_reference
    from hwsim.ops._common import requantize

    zp_a, zp_b = node.attrs["input_zero_points"]
    acc = (matmul_int_reference if reference else matmul_int)(args[0], zp_a, args[1], zp_b)
    spec = AccumulatorConfig.from_attrs(node.attrs)  # the exact sum, wrapped or clipped once
    lo, hi = -(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1
    overflows = int(np.count_nonzero((acc < lo) | (acc > hi)))
    if overflows and spec.mode is AccumulatorMode.WRAP:
        acc = (acc - lo) % (1 << spec.bits) + lo
    elif overflows:
        acc = np.clip(acc, lo, hi)
    return requantize(node, acc, axis=-1, reference=reference), overflows


def _matmul_check(node: Node) -> list[str]:
    if AccumulatorConfig.from_attrs(node.attrs).mode is AccumulatorMode.INT16_PAIRS:
        return ["matmul accumulates exactly, wrapped or clipped once: mode 'int16_pairs' does "
                "not apply"]
    return []


def _matmul_workload(program, node: Node, batch: int) -> LayerShape:
    """(..., M, K) @ (..., K, N) as M x leading-dims rows of a K -> N linear layer whose
    "weights" (the second operand) are activation codes."""
    a, b = (program.node(src) for src in node.inputs)
    rows = math.prod(a.out_shape[1:-1])
    return LayerShape(name=node.name, kind="linear", in_h=1, in_w=1,
                      in_channels=int(a.out_shape[-1]), out_channels=int(b.out_shape[-1]),
                      kernel_h=1, kernel_w=1, batch=int(batch) * rows,
                      act_bits=a.out.bits, weight_bits=b.out.bits, weight_format="int",
                      act_format="int")


def _vector_op(node: Node, args: list) -> tuple:
    from hwsim.kernels.vector import vector_op

    a = node.attrs
    return vector_op(args[0], a["fn"], input_zero_point=int(a["input_zero_point"]),
                     input_scale=float(a["input_scale"]), output_scale=float(node.out.scale),
                     output_zero_point=int(node.out.zero_point),
                     clamp=tuple(a["output_clamp"]), params=a["params"],
                     gamma=node.arrays.get("gamma"), beta=node.arrays.get("beta")), None


register_op(OpDef(
    "matmul", 2, ("accumulator", "requant", "input_zero_points"), (),
    "acc = (a - zp_a) @ (b - zp_b) over the last two dims (equal leading dims): the exact "
    "sum, wrapped (wrap) or clipped once (saturate) to the accumulator width; then "
    "requantize per tensor with M = s_a s_b / s_y.",
    lambda node, args: _matmul(node, args, False), lambda node, args: _matmul(node, args, True),
    optional_attrs=("input_scales",), requantizes=True, accumulates=True, check=_matmul_check,
    workload=_matmul_workload))
register_op(OpDef(
    "vector_op", 1, ("fn", "params", "input_zero_point", "input_scale", "output_clamp"), (),
    "A float op of the vector unit (fn: layernorm with arrays gamma, beta; gelu; softmax): "
    "dequantize to float32, fn in float32, round to the output codes (hwsim.kernels.vector).",
    _vector_op, _vector_op, optional_arrays=("gamma", "beta"),
    check=lambda node: clamp_errors(node, node.attrs["output_clamp"], "output_clamp"),
    not_costed="runs in float32 on a vector unit the accelerator models do not describe yet"))

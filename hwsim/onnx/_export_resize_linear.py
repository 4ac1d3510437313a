"""resize_linear (hwsim's integer bilinear resize) as ONNX float64 ops that are exact.

hwsim computes, per output (i, j) with two taps and integer weights per row and column
(hwsim.ops.resize, hwsim.kernels.resize):

    y = clamp(round_half_even(sum_ab rw[i, a] cw[j, b] (x[rows[i, a], cols[j, b]] - zp)
                              / 2^(2 frac_bits)) + zp, qmin, qmax)

ONNX Runtime's own Resize (mode linear) interpolates in float and rounds otherwise, so the
export writes the node's arithmetic in float64, where every step is exact: codes of at most
8 bits (|x - zp| <= 255) and weights summing to 2^frac_bits (frac_bits <= 20) keep every
partial sum an integer below 255 · 2^41 < 2^53, multiplying by 2^-2F only moves the exponent,
ONNX Round rounds halves to even, and the clamped result is an integer the final Cast keeps:

    Cast(double) - zp -> Gather rows (2 taps) · row weights, summed
                      -> Gather cols (2 taps) · col weights, summed
                      -> · 2^-2F -> Round -> + zp -> Clip(qmin, qmax) -> Cast(code type)
"""
from __future__ import annotations

import numpy as np

from hwsim.ir import Node

MAX_EXACT_ABS = 2.0 ** 53  # float64 integers are exact below this


def resize_linear_errors(node: Node, x: Node) -> list[str]:
    """Why the float64 construction would not be exact ([] when it is)."""
    zp = node.out.zero_point  # hwsim centres the input codes on it
    spread = max(abs(x.out.qmin - zp), abs(x.out.qmax - zp))
    bound = float(spread) * 2.0 ** (2 * int(node.attrs["frac_bits"]))
    if bound >= MAX_EXACT_ABS:
        return [f"|x - zp| · 2^(2 frac_bits) = {bound:.3g} reaches 2^53: the float64 "
                "interpolation would not be exact"]
    return []


def emit_resize_linear(g, node: Node) -> None:
    """Append the ops writing the node's codes to graph builder `g`."""
    x = node.inputs[0]
    n, arr, out = node.name, node.arrays, node.out
    f64 = np.float64
    t = g.onnx.TensorProto
    xc = g.op("Sub", [g.op("Cast", [x], f"{n}.f64", node, to=t.DOUBLE),
                      g.const(f"{n}.zp_f64", f64(out.zero_point))], f"{n}.centred", node)

    def taps(src: str, key: str, axis: int, weight_shape) -> str:
        idx, w = arr[key], arr[key[:3] + "_weights"]
        parts = []
        for tap in (0, 1):
            gathered = g.op("Gather", [src, g.const(f"{n}.{key}{tap}",
                                                    idx[:, tap].astype(np.int64))],
                            f"{n}.{key}_tap{tap}", node, axis=axis)
            weight = g.const(f"{n}.{key}_w{tap}", w[:, tap].astype(f64).reshape(weight_shape))
            parts.append(g.op("Mul", [gathered, weight], f"{n}.{key}_weighted{tap}", node))
        return g.op("Add", parts, f"{n}.{key}_sum", node)

    acc = taps(taps(xc, "rows", 2, (-1, 1)), "cols", 3, (-1,))
    unit = g.const(f"{n}.unit", f64(2.0 ** (-2 * int(node.attrs["frac_bits"]))))
    scaled = g.op("Mul", [acc, unit], f"{n}.scaled", node)
    y = g.op("Add", [g.op("Round", [scaled], f"{n}.rounded", node),
                     g.const(f"{n}.zp_f64", f64(out.zero_point))], f"{n}.shifted", node)
    y = g.op("Clip", [y, g.const(f"{n}.qmin_f64", f64(out.qmin)),
                      g.const(f"{n}.qmax_f64", f64(out.qmax))], f"{n}.clamped", node)
    g.op("Cast", [y], n, node, to=g.onnx.helper.np_dtype_to_tensor_dtype(out.dtype))

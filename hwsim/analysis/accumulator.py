"""Accumulator widths of conv/linear layers: the width that can never overflow, and the width
the data actually needs.

Notation, per output channel k of a layer with centred weights c_i = w[k, i] - w_zp[k] and
centred inputs x_i - x_zp in [lo, hi] with lo = qmin - x_zp <= 0 <= hi = qmax - x_zp (qmin, qmax:
the producer's TensorQuant storage range; padding contributes 0, which lies in [lo, hi]):

    P_k = sum_i max(c_i, 0)        N_k = sum_i max(-c_i, 0)        (so P_k + N_k = sum_i |c_i|)
    acc_max[k] = b_k + hi * P_k - lo * N_k
    acc_min[k] = b_k + lo * P_k - hi * N_k

Every accumulator value lies in [acc_min[k], acc_max[k]], and both ends are reached (each term
of the sum is maximised independently by x_i = hi where c_i > 0 and x_i = lo where c_i < 0), so
the never-overflow width is exact: the smallest two's-complement width B with
-2^(B-1) <= min_k acc_min[k] and max_k acc_max[k] <= 2^(B-1) - 1.
The looser textbook bound max(|lo|, hi) * max_k sum_i |c_i| + max_k |b_k| is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hwsim.analysis.errors import AnalysisError
from hwsim.ir import IntProgram, Node


def _has_integer_weights(node: Node) -> bool:
    """An accumulating op with integer weight codes (conv2d / linear, APoT's shift-add layers:
    their term-by-term partial sums stay between consecutive product partial sums, so the
    same bounds hold)."""
    from hwsim.ir.ops import OPS

    spec = OPS.get(node.op)
    return spec is not None and spec.accumulates and "weight" in node.arrays


def _weight_zero_point(node: Node) -> np.ndarray:
    zp = node.arrays.get("weight_zero_point")
    return np.zeros(node.arrays["weight"].shape[0], np.int64) if zp is None else zp


def _blocks(node: Node) -> tuple[np.ndarray, np.ndarray]:
    """The accumulators' weights and zero points: for group-wise ops (``group_size``), one
    accumulator per (output channel k, group g), as rows (K·G, group_size, ...) with zero points
    (K·G,), row k·G + g; otherwise the node's weight and zero points."""
    w = node.arrays["weight"]
    if "group_size" not in node.attrs:
        return w, _weight_zero_point(node)
    k, gs = w.shape[0], int(node.attrs["group_size"])
    zp = node.arrays.get("weight_zero_point")
    rows = w.reshape(k * (w.shape[1] // gs), gs, *w.shape[2:])
    return rows, (np.zeros(rows.shape[0], np.int64) if zp is None else zp.reshape(-1))


_SAFE_MAGNITUDE = 1 << 62  # int64 sums of the bound stay exact below this


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width (bits, >= 1) holding every integer in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise AnalysisError(f"signed_bits: empty range [{lo}, {hi}]")
    return max(_bits_one(lo), _bits_one(hi))


def _bits_one(v: int) -> int:
    # v >= 0 needs bit_length(v) + 1 bits; v < 0 needs bit_length(-v - 1) + 1, and ~v = -v - 1.
    return (v if v >= 0 else ~v).bit_length() + 1


@dataclass(frozen=True)
class AccumulatorBound:
    """Reachable accumulator range of one layer, per output channel (int64 arrays (K,)).

    reduction_length: products summed per output (C/groups * R * S, or in_features).
    input_lo, input_hi: centred input range [qmin - x_zp, qmax - x_zp].
    """

    acc_min: np.ndarray
    acc_max: np.ndarray
    reduction_length: int
    input_lo: int
    input_hi: int
    weight_abs_sum_max: int
    bias_abs_max: int

    @property
    def bits(self) -> int:
        """Width (bits) that can never overflow on any input in range."""
        return signed_bits(int(self.acc_min.min()), int(self.acc_max.max()))

    @property
    def simple_bits(self) -> int:
        """Width from the looser bound max(|lo|, hi) * max_k sum|c| + max|b| (>= bits)."""
        m = max(-self.input_lo, self.input_hi) * self.weight_abs_sum_max + self.bias_abs_max
        return signed_bits(-m, m)


def accumulator_bound(weight: np.ndarray, weight_zero_point: Any, bias: np.ndarray | None,
                      input_lo: int, input_hi: int, *, layer: str = "layer") -> AccumulatorBound:
    """Tight accumulator range (module docstring) of a conv/linear layer.

    weight: integer codes (K, ...) — (K, C/groups, R, S) or (out, in); weight_zero_point: scalar
    or (K,); bias: None or integer (K,); input_lo <= 0 <= input_hi: the centred input range.
    """
    w = np.asarray(weight)
    if w.ndim < 2 or not np.issubdtype(w.dtype, np.integer):
        raise AnalysisError(f"{layer}: weight must be an integer array (K, ...); got {w.dtype} {w.shape}")
    k = w.shape[0]
    zp = np.asarray(weight_zero_point, dtype=np.int64).reshape(-1)
    if zp.size not in (1, k):
        raise AnalysisError(f"{layer}: weight_zero_point must be a scalar or have {k} entries; got {zp.size}")
    if not input_lo <= 0 <= input_hi:
        raise AnalysisError(f"{layer}: the centred input range [{input_lo}, {input_hi}] must contain 0 "
                            "(the zero point must lie in [qmin, qmax])")
    b = np.zeros(k, dtype=np.int64) if bias is None else np.asarray(bias).astype(np.int64).reshape(-1)
    if b.size != k:
        raise AnalysisError(f"{layer}: bias must have {k} entries; got {b.size}")
    c = w.reshape(k, -1).astype(np.int64) - zp[:, None]
    pos = np.maximum(c, 0).sum(axis=1)
    neg = np.maximum(-c, 0).sum(axis=1)
    worst = float(max(-input_lo, input_hi)) * float((pos + neg).max()) + float(np.abs(b).max())
    if worst >= _SAFE_MAGNITUDE:
        raise AnalysisError(f"{layer}: the accumulator bound ({worst:.3g}) exceeds the int64 range")
    return AccumulatorBound(
        acc_min=b + input_lo * pos - input_hi * neg,
        acc_max=b + input_hi * pos - input_lo * neg,
        reduction_length=int(c.shape[1]),
        input_lo=int(input_lo),
        input_hi=int(input_hi),
        weight_abs_sum_max=int((pos + neg).max()),
        bias_abs_max=int(np.abs(b).max()),
    )


def node_accumulator_bound(program: IntProgram, node: Node) -> AccumulatorBound:
    """accumulator_bound of a conv2d/linear node, its input range from the producer's TensorQuant."""
    if not _has_integer_weights(node):
        raise AnalysisError(f"node {node.name!r}: op {node.op!r} has no accumulator over integer "
                            "weights (conv2d, linear, apot_conv2d, apot_linear)")
    src = program.node(node.inputs[0]).out
    x_zp = int(node.attrs["input_zero_point"])
    weight, zero_point = _blocks(node)
    return accumulator_bound(weight, zero_point, node.arrays.get("bias"), src.qmin - x_zp,
                             src.qmax - x_zp, layer=f"node {node.name!r}")


def exact_accumulators(node: Node, x: np.ndarray) -> np.ndarray:
    """The exact (64-bit, wrap, bias included) accumulators of a conv2d/linear node on input
    codes x: (N, K, OH, OW) for conv2d, (N, out) for linear, int64."""
    from hwsim.kernels import AccumulatorSpec, conv2d_int, linear_int

    wide = AccumulatorSpec(bits=64, mode="wrap")
    if not _has_integer_weights(node):
        raise AnalysisError(f"node {node.name!r}: op {node.op!r} has no accumulator over integer "
                            "weights (conv2d, linear, apot_conv2d, apot_linear)")
    if "group_size" in node.attrs:  # one accumulator per (channel, group): (N, G·K, ...)
        from hwsim.kernels.group import group_conv2d_rows, group_linear_rows, group_rows

        rows = group_rows(node.arrays["weight"], node.arrays.get("weight_zero_point"),
                          int(node.attrs["group_size"]))
        x_zp = int(node.attrs["input_zero_point"])
        if "stride" in node.attrs:
            a = node.attrs
            return group_conv2d_rows(x, x_zp, rows, tuple(a["stride"]), tuple(a["padding"]),
                                     tuple(a["dilation"]), acc=wide).values
        return group_linear_rows(x.reshape(-1, x.shape[-1]), x_zp, rows, acc=wide).values
    args = (x, int(node.attrs["input_zero_point"]), node.arrays["weight"],
            _weight_zero_point(node), node.arrays.get("bias"))
    if "stride" in node.attrs:
        a = node.attrs
        res = conv2d_int(*args, tuple(a["stride"]), tuple(a["padding"]), tuple(a["dilation"]),
                         int(a["groups"]), acc=wide)
    else:
        res = linear_int(*args, acc=wide)
    return res.values


REPORT_COLUMNS = (
    "node", "op", "reduction_length", "input_lo", "input_hi", "bound_min", "bound_max",
    "never_overflow_bits", "simple_bound_bits", "observed_min", "observed_max", "needed_bits",
    "headroom_bits", "configured_bits", "configured_overflows",
)


def accumulator_report(program: IntProgram, input_codes: np.ndarray) -> pd.DataFrame:
    """One row per node accumulating over integer weights (conv2d / linear, APoT layers), in
    program order.

    input_codes: program input codes (N, ...). Columns (widths in bits, two's complement):
    reduction_length (products per output); input_lo/hi (centred input range); bound_min/max
    (reachable accumulator range, module docstring); never_overflow_bits (width of that range);
    simple_bound_bits (the looser max|x| * sum|w| + |b| bound); observed_min/max (exact int64
    accumulators, bias included, on this data); needed_bits (width of the observed range: no
    overflow at this width, overflow at one bit less); headroom_bits = never_overflow - needed;
    configured_bits and configured_overflows: the node's accumulator setting and the overflows
    the program itself counted on this data.
    """
    from hwsim.executor import execute

    run = execute(program, input_codes, record=True)
    rows = []
    for node in program.nodes():
        if not _has_integer_weights(node):
            continue
        bound = node_accumulator_bound(program, node)
        acc = exact_accumulators(node, run.tensors[node.inputs[0]])
        obs_min, obs_max = (int(acc.min()), int(acc.max())) if acc.size else (0, 0)
        needed = signed_bits(obs_min, obs_max)
        rows.append({
            "node": node.name, "op": node.op, "reduction_length": bound.reduction_length,
            "input_lo": bound.input_lo, "input_hi": bound.input_hi,
            "bound_min": int(bound.acc_min.min()), "bound_max": int(bound.acc_max.max()),
            "never_overflow_bits": bound.bits, "simple_bound_bits": bound.simple_bits,
            "observed_min": obs_min, "observed_max": obs_max, "needed_bits": needed,
            "headroom_bits": bound.bits - needed,
            "configured_bits": int(node.attrs["accumulator"]["bits"]),
            "configured_overflows": int(run.overflow_counts.get(node.name, 0)),
        })
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))

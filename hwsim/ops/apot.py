"""apot_conv2d / apot_linear: additive powers-of-two weights on a shift-add datapath.

A weight code is an integer level ``w = ±L`` whose magnitude has at most ``terms`` set bits
(APoT, "Additive Powers-of-Two Quantization", ICLR 2020), so ``x · w = ±Σ_t (x << s_t)``: the
datapath adds one shifted input per set bit into an adder of ``accumulator.bits`` bits, most
significant term first, in the order bias, then c, r, s (``hwsim.kernels.shift_add``). Wrap
mode gives the exact sum wrapped; saturate clips after every term. (The terms of one product
share its sign, so clipping them one by one equals clipping the product once: in this order
the datapath saturates exactly like a multiplier's accumulator; a bit-plane-major schedule
would not.) Then requantization per output channel, as for conv2d (the clipping threshold
alpha / L_max is the weight scale).

Fast: when the adder wraps, or when a bound proves it can never saturate (``|bias| + max|x -
zp_x| · Σ|w|`` within range for every output channel), the exact sum is one prepared integer
GEMM with a fused requantization (the same as conv2d); otherwise the numba datapath kernel.
Reference: the term-by-term int64 definition (``hwsim.kernels.reference.shift_add``).
"""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ir.specs import AccumulatorConfig, AccumulatorMode
from hwsim.ops._common import (CONV_ATTRS, conv_geometry, integer_weight_errors, layer_shape,
                               prepared, requant_constants, requantize)

APOT_ATTRS = ("accumulator", "requant", "input_zero_point", "weight_bits", "terms")
APOT_OPTIONAL_ATTRS = ("input_scale", "output_scale", "input_bits", "weight_format")


def _never_saturates(node: Node, x_range: tuple[int, int]) -> bool:
    """Whether no partial sum can leave the adder's range for inputs in `x_range`."""
    acc = AccumulatorConfig.from_attrs(node.attrs)
    zp = int(node.attrs["input_zero_point"])
    x_max = max(abs(x_range[0] - zp), abs(x_range[1] - zp))
    w = node.arrays["weight"].astype(np.int64)
    per_channel = np.abs(w.reshape(w.shape[0], -1)).sum(axis=1) * x_max
    bias = node.arrays.get("bias")
    if bias is not None:
        per_channel = per_channel + np.abs(bias.astype(np.int64))
    return bool(per_channel.max(initial=0) < (1 << (acc.bits - 1)))


def _prepare_exact(node: Node):
    """The node as a prepared integer GEMM layer (exact sum, wrapped to the adder width)."""
    from hwsim import kernels as k

    w = node.arrays["weight"]
    zeros = np.zeros(w.shape[0], dtype=np.int64)
    acc = k.AccumulatorSpec(bits=AccumulatorConfig.from_attrs(node.attrs).bits, mode="wrap")
    if node.op == "apot_conv2d":
        return k.prepare_conv2d(w, zeros, node.arrays.get("bias"), *conv_geometry(node), acc,
                                **requant_constants(node))
    return k.prepare_linear(w, zeros, node.arrays.get("bias"), acc, **requant_constants(node))


def _shift_add(node: Node, x: np.ndarray, reference: bool):
    from hwsim.kernels import AccumulatorSpec
    from hwsim.kernels import shift_add as fast
    from hwsim.kernels.reference import shift_add as ref

    cfg = AccumulatorConfig.from_attrs(node.attrs)
    acc = AccumulatorSpec(bits=cfg.bits, mode=cfg.mode.value)
    args = (x, int(node.attrs["input_zero_point"]), node.arrays["weight"], node.arrays.get("bias"))
    if node.op == "apot_conv2d":
        fn = ref.conv2d_shift_add_reference if reference else fast.conv2d_shift_add
        return fn(*args, *conv_geometry(node), acc=acc)
    fn = ref.linear_shift_add_reference if reference else fast.linear_shift_add
    return fn(*args, acc=acc)


def run_apot(node: Node, args: list) -> tuple:
    x = args[0]
    mode = AccumulatorConfig.from_attrs(node.attrs).mode
    info = np.iinfo(x.dtype)
    if mode is AccumulatorMode.WRAP or _never_saturates(node, (info.min, info.max)):
        res = prepared(node, _prepare_exact)(x, int(node.attrs["input_zero_point"]))
        return res.codes, res.overflow_count
    res = _shift_add(node, x, reference=False)
    return requantize(node, res.values, axis=1, reference=False), res.overflow_count


def run_apot_reference(node: Node, args: list) -> tuple:
    res = _shift_add(node, args[0], reference=True)
    return requantize(node, res.values, axis=1, reference=True), res.overflow_count


def _check(node: Node) -> list[str]:
    errs = integer_weight_errors(node, conv=node.op == "apot_conv2d")
    if errs:
        return errs
    if AccumulatorConfig.from_attrs(node.attrs).mode is AccumulatorMode.INT16_PAIRS:
        errs.append("a shift-add adder wraps or saturates; mode 'int16_pairs' does not apply")
    terms = node.attrs["terms"]
    w = np.abs(node.arrays["weight"].astype(np.int64))
    if w.size and int(w.max()) >= 1 << 15:
        errs.append(f"weight levels must be below 2^15 in magnitude, got {int(w.max())}")
    elif isinstance(terms, bool) or not isinstance(terms, int) or terms < 1:
        errs.append(f"terms must be a positive int (set bits per weight), got {terms!r}")
    elif w.size:
        most = int(np.max(np.unpackbits(w.astype(">u2").view(np.uint8).reshape(-1, 2),
                                        axis=1).sum(axis=1)))
        if most > terms:
            errs.append(f"a weight level has {most} set bits; the datapath adds at most "
                        f"terms={terms} per weight")
    return errs


def _workload(program, node: Node, batch: int):
    w = node.arrays["weight"]
    common = dict(out_channels=w.shape[0], weight_bits=node.attrs["weight_bits"],
                  act_bits=program.node(node.inputs[0]).out.bits, weight_format="apot")
    kernel = w.shape[2:] if node.op == "apot_conv2d" else None
    return layer_shape(program, node, batch, kernel=kernel, **common)


_DOC = ("{what} with APoT weight levels w (at most `terms` set bits each) on a shift-add "
        "datapath: acc = bias, then for (c, r, s) and each set bit s_t of |w| (most significant "
        "first) acc += sign(w) (x - zp_x) << s_t in an adder of accumulator.bits bits (wrap: the "
        "exact sum wrapped; saturate: clipped after every term); then requantize per output "
        "channel.")
for _name, _attrs, _what in (("apot_conv2d", CONV_ATTRS + APOT_ATTRS, "conv2d"),
                             ("apot_linear", APOT_ATTRS, "linear")):
    register_op(OpDef(
        _name, 1, _attrs, ("weight",), _DOC.format(what=_what), run_apot, run_apot_reference,
        optional_attrs=APOT_OPTIONAL_ATTRS, optional_arrays=("bias", "weight_scale"),
        requantizes=True, accumulates=True, check=_check, workload=_workload))

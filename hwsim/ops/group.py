"""group_linear / group_conv2d: group-wise (block) weights, one scale per (output channel,
group of ``group_size`` consecutive input features).

A node carries the weight codes ``weight`` as the layer has them ((K, C) or (K, C, R, S),
signed ``weight_bits``-bit codes), optional zero points ``weight_zero_point`` (K, G) (absent:
symmetric, 0), and the requantization constants: ``rq_multiplier`` (K, G), one integer
multiplier per block, ``rq_shift`` (K,) and the float bias as ``requant_bias`` (K,) on the same
shift.  Each block (k, g) is an ordinary accumulator of ``accumulator.bits`` bits (wrap or
saturate, no bias) over its group's input features; the requantization stage sums a channel's
blocks, each times its multiplier, adds the bias and rounds once, half up
(``hwsim.kernels.group``, which reuses the multipoint requantization).  Requantization is dyadic
only.  ``group_conv2d`` takes ``groups = 1`` (a conv group spans its input channels' R x S
kernel).

Fast: the blocks on the exact integer kernels (a linear layer's as one batched GEMM where a
bound proves float32 exact), then one numba pass; reference: the int64 definitions
(``hwsim.kernels.reference.group``).  The cost model prices a node as the same layer at
``weight_bits`` in the "int" family plus its per-block constants in the weight traffic
(``hwsim.workloads.group``).
"""
from __future__ import annotations

import math

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ir.specs import RequantSpec
from hwsim.ops._common import CONV_ATTRS, conv_geometry, layer_shape, prepared
from hwsim.ops.multipoint import _acc, _int_vector, summed_rows_checks

GROUP_ATTRS = ("accumulator", "requant", "input_zero_point", "weight_bits", "group_size")
GROUP_OPTIONAL_ATTRS = ("input_scale", "output_scale", "input_bits", "weight_format")
GROUP_ARRAYS = ("weight",)
GROUP_OPTIONAL_ARRAYS = ("weight_zero_point", "weight_scale", "requant_bias")


def _layout(node: Node):
    from hwsim.kernels.group import group_rows

    return group_rows(node.arrays["weight"], node.arrays.get("weight_zero_point"),
                      node.attrs["group_size"])


def _run(node: Node, args: list, reference: bool) -> tuple:
    from hwsim.kernels import group as fast
    from hwsim.kernels.reference import group as ref

    x, zp = args[0], int(node.attrs["input_zero_point"])
    w, w_zp = node.arrays["weight"], node.arrays.get("weight_zero_point")
    gs = node.attrs["group_size"]
    conv = node.op == "group_conv2d"
    if conv:
        stride, padding, dilation, _ = conv_geometry(node)
        if reference:
            res = ref.group_conv2d_rows_reference(x, zp, w, w_zp, gs, stride, padding, dilation,
                                                  _acc(node))
        else:
            res = fast.group_conv2d_rows(x, zp, prepared(node, _layout), stride, padding,
                                         dilation, _acc(node))
    elif reference:
        res = ref.group_linear_rows_reference(x.reshape(-1, x.shape[-1]), zp, w, w_zp, gs,
                                              _acc(node))
    else:  # the blocks first, the batch last: (1, G·K, N), requantized to (1, K, N)
        res = fast.linear_blocks(x.reshape(-1, x.shape[-1]), zp, prepared(node, _layout),
                                 _acc(node))
    lo, hi = RequantSpec.from_attrs(node.attrs).clamp
    fn = ref.requantize_groups_reference if reference else fast.requantize_groups
    values = res.values if conv or reference else res.values[None]
    codes = fn(values, node.arrays["rq_multiplier"], node.arrays["rq_shift"],
               node.arrays.get("requant_bias"), node.out.zero_point, lo, hi)
    if not conv:
        codes = codes if reference else codes[0].T
        codes = codes.reshape(*x.shape[:-1], codes.shape[-1])
    return codes, res.overflow_count


def _check(node: Node) -> list[str]:
    conv = node.op == "group_conv2d"
    errs, bits = summed_rows_checks(node, conv, "group-wise layers", "blocks",
                                    "a group-wise block accumulator")
    if bits is None:
        return errs
    if conv and not errs and node.attrs["groups"] != 1:
        errs.append(f"group_conv2d takes groups = 1, got groups={node.attrs['groups']}")
    gs = node.attrs["group_size"]
    w = node.arrays["weight"]
    ndim = 4 if conv else 2
    if w.dtype.kind not in "iu" or w.ndim != ndim or min(w.shape) < 1:
        return errs + [f"weight must be integer codes of {ndim} dims (non-empty), got "
                       f"{w.dtype} of shape {w.shape}"]
    if isinstance(gs, bool) or not isinstance(gs, int) or gs < 1 or w.shape[1] % gs:
        return errs + [f"group_size must be an int >= 1 dividing the weight's {w.shape[1]} "
                       f"input features, got {gs!r}"]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if int(w.min()) < lo or int(w.max()) > hi:
        errs.append(f"weight must be signed {bits}-bit codes in [{lo}, {hi}], got values in "
                    f"[{int(w.min())}, {int(w.max())}]")
    k, groups = w.shape[0], w.shape[1] // gs
    errs += _int_vector(node, "weight_zero_point", (k, groups), lo, hi)
    errs += _int_vector(node, "rq_multiplier", (k, groups), 0, (1 << 31) - 1)
    errs += _int_vector(node, "rq_shift", k, 0, 63)
    errs += _int_vector(node, "requant_bias", k, -(1 << 62) + 1, (1 << 62) - 1)
    scale = node.arrays.get("weight_scale")
    if scale is not None and scale.shape != (k, groups):
        errs.append(f"weight_scale must have shape ({k}, {groups}), got {scale.shape}")
    return errs


def _workload(program, node: Node, batch: int):
    from hwsim.workloads.group import group_layer_shape

    w = node.arrays["weight"]
    src = program.node(node.inputs[0])
    common = dict(out_channels=int(w.shape[0]), weight_bits=node.attrs["weight_bits"],
                  act_bits=src.out.bits, weight_format="int")
    if node.op == "group_conv2d":
        base = layer_shape(program, node, batch, kernel=w.shape[2:], **common)
    else:
        tokens = math.prod(src.out_shape[1:-1])
        base = layer_shape(program, node, batch * tokens, kernel=None, **common)
    return group_layer_shape(base, int(node.attrs["group_size"]),
                             asymmetric="weight_zero_point" in node.arrays)


_DOC = ("Group-wise {what}: block (k, g), the input features of group g (group_size of them, "
        "{over}), accumulates acc_kg = sum (x - zp_x)(w_k - weight_zero_point_kg) in an "
        "accumulator of accumulator.bits bits (wrap or saturate, no bias); output channel k = "
        "clamp(floor((requant_bias_k + sum_g rq_multiplier_kg acc_kg + 2^(rq_shift_k - 1)) / "
        "2^rq_shift_k) + zp_y, clamp), exact.")
register_op(OpDef(
    "group_linear", 1, GROUP_ATTRS, GROUP_ARRAYS,
    _DOC.format(what="linear layer", over="consecutive along the last dim"),
    lambda node, args: _run(node, args, False), lambda node, args: _run(node, args, True),
    optional_attrs=GROUP_OPTIONAL_ATTRS, optional_arrays=GROUP_OPTIONAL_ARRAYS,
    requantizes=True, accumulates=True, check=_check, workload=_workload))
register_op(OpDef(
    "group_conv2d", 1, CONV_ATTRS + GROUP_ATTRS, GROUP_ARRAYS,
    _DOC.format(what="conv2d (groups = 1)", over="consecutive input channels, each with its "
                "whole kernel (r, s); zero padding"),
    lambda node, args: _run(node, args, False), lambda node, args: _run(node, args, True),
    optional_attrs=GROUP_OPTIONAL_ATTRS, optional_arrays=GROUP_OPTIONAL_ARRAYS,
    requantizes=True, accumulates=True, check=_check, workload=_workload))

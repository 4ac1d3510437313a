"""multipoint_conv2d / multipoint_linear: multipoint weights as extra rows of one b-bit layer.

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021.  A node carries the weight rows ``weight_rows`` (R, ...) of signed
b-bit codes (zero point 0) and ``row_channel`` (R,), the output channel each row adds to (rows
0..K-1 are the channels' first points, as ``quant``'s ``MultipointParams.as_rows`` lays them
out; any map is accepted).  Every row is an ordinary accumulator of ``accumulator.bits`` bits
(wrap or saturate, no bias); the requantization stage sums each channel's rows, each times its
own integer multiplier ``rq_multiplier`` (R,) on the channel's shift ``rq_shift`` (K,), adds
the bias ``requant_bias`` (K,) on the same shift, and rounds once, half up
(``hwsim.kernels.multipoint``).  Requantization is dyadic only.

Separate ops rather than attributes of conv2d / linear: a node's weight has R rows for K
outputs, its multipliers are per row and its bias sits in the requantization stage, and the
engine modes and float32 requantization of the uniform ops do not apply; the uniform ops stay
as they are.

Fast: the rows on the exact integer conv / GEMM kernels, then one numba pass; reference: the
int64 definitions (``hwsim.kernels.reference.multipoint``).  The cost model prices a node as
the same layer with R output channels at ``weight_bits`` (``hwsim.workloads.multipoint``), in
the "int" family: its integer form runs on any integer datapath.
"""
from __future__ import annotations

import math

import numpy as np

from hwsim.errors import ProgramError
from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ir.specs import AccumulatorConfig, AccumulatorMode, RequantMode, RequantSpec
from hwsim.ops._common import CONV_ATTRS, conv_geometry, conv_geometry_errors, layer_shape, prepared

MULTIPOINT_ATTRS = ("accumulator", "requant", "input_zero_point", "weight_bits")
MULTIPOINT_OPTIONAL_ATTRS = ("input_scale", "output_scale", "input_bits", "weight_format",
                             "max_points")
MULTIPOINT_ARRAYS = ("weight_rows", "row_channel")
MULTIPOINT_OPTIONAL_ARRAYS = ("requant_bias", "row_scale")


def _acc(node: Node):
    from hwsim.kernels import AccumulatorSpec

    cfg = AccumulatorConfig.from_attrs(node.attrs)
    return AccumulatorSpec(bits=cfg.bits, mode=cfg.mode.value)


def _channels(node: Node) -> int:
    return int(node.out_shape[1]) if node.op == "multipoint_conv2d" else int(node.out_shape[-1])


def _prepare(node: Node):
    from hwsim.kernels.multipoint import prepare_conv2d_rows

    return prepare_conv2d_rows(node.arrays["weight_rows"], node.arrays["row_channel"],
                               _channels(node), *conv_geometry(node), acc=_acc(node))


def _rows(node: Node, x: np.ndarray, reference: bool):
    """Row accumulators: (N, R, OH, OW) for a conv, (..., R) flattened to (M, R) for a linear."""
    from hwsim.kernels import multipoint as fast
    from hwsim.kernels.reference import multipoint as ref

    zp = int(node.attrs["input_zero_point"])
    w = node.arrays["weight_rows"]
    if node.op == "multipoint_conv2d":
        if reference:
            return ref.conv2d_rows_reference(x, zp, w, node.arrays["row_channel"],
                                             _channels(node), *conv_geometry(node), acc=_acc(node))
        return prepared(node, _prepare)(x, zp)
    flat = x.reshape(-1, x.shape[-1])
    fn = ref.linear_rows_reference if reference else fast.linear_rows
    return fn(flat, zp, w, acc=_acc(node))


def _run(node: Node, args: list, reference: bool) -> tuple:
    from hwsim.kernels import multipoint as fast
    from hwsim.kernels.reference import multipoint as ref

    x = args[0]
    res = _rows(node, x, reference)
    lo, hi = RequantSpec.from_attrs(node.attrs).clamp
    fn = ref.requantize_rows_reference if reference else fast.requantize_rows
    codes = fn(res.values, node.arrays["row_channel"], node.arrays["rq_multiplier"],
               node.arrays["rq_shift"], node.arrays.get("requant_bias"), node.out.zero_point,
               lo, hi)
    if node.op == "multipoint_linear":
        codes = codes.reshape(*x.shape[:-1], codes.shape[1])
    return codes, res.overflow_count


def _int_vector(node: Node, name: str, length: int | tuple[int, ...], lo: int,
                hi: int) -> list[str]:
    """Problems of optional integer array ``name``: shape ``(length,)`` (or ``length`` when it
    is a shape), values in [lo, hi]."""
    shape = (length,) if isinstance(length, int) else tuple(length)
    a = node.arrays.get(name)
    if a is None:
        return []
    if a.dtype.kind not in "iu" or a.shape != shape:
        return [f"{name} must be integers of shape {shape}, got {a.dtype} of shape {a.shape}"]
    if a.size and (int(a.min()) < lo or int(a.max()) > hi):
        return [f"{name} must lie in [{lo}, {hi}], got values in [{int(a.min())}, "
                f"{int(a.max())}]"]
    return []


def summed_rows_mode_errors(node: Node, layers: str, parts: str,
                            accumulator: str) -> list[str] | None:
    """Layers whose accumulators (``parts``: "rows", "blocks") are summed in the
    requantization stage requantize dyadically and wrap or saturate; None when the requant or
    accumulator attrs cannot be read (the verifier's own checks report those)."""
    try:
        rq_mode = RequantSpec.from_attrs(node.attrs).mode
        acc_mode = AccumulatorConfig.from_attrs(node.attrs).mode
    except (ProgramError, AttributeError, TypeError, ValueError, KeyError):
        return None
    errs = []
    if rq_mode is not RequantMode.DYADIC:
        errs.append(f"{layers} requantize dyadically ({parts} summed in integers, rounded "
                    "once); requant mode must be 'dyadic'")
    if acc_mode is AccumulatorMode.INT16_PAIRS:
        errs.append(f"{accumulator} wraps or saturates; mode 'int16_pairs' does not apply")
    return errs


def summed_rows_checks(node: Node, conv: bool, layers: str, parts: str,
                       accumulator: str) -> tuple[list[str], int | None]:
    """The checks such layers share: conv geometry, ``summed_rows_mode_errors``, and
    ``weight_bits`` an int in [2, 16].  Returns (problems, weight_bits), weight_bits None when
    the op's own checks cannot go on."""
    errs = conv_geometry_errors(node) if conv else []
    modes = summed_rows_mode_errors(node, layers, parts, accumulator)
    if modes is None:
        return errs, None
    errs += modes
    bits = node.attrs["weight_bits"]
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        return errs + [f"weight_bits must be an int in [2, 16], got {bits!r}"], None
    return errs, bits


def _check(node: Node) -> list[str]:
    conv = node.op == "multipoint_conv2d"
    errs, bits = summed_rows_checks(node, conv, "multipoint layers", "rows",
                                    "a multipoint row accumulator")
    if bits is None:
        return errs
    w = node.arrays["weight_rows"]
    ndim = 4 if conv else 2
    if w.dtype.kind not in "iu" or w.ndim != ndim or w.shape[0] < 1:
        return errs + [f"weight_rows must be integer codes of {ndim} dims (R >= 1, ...), got "
                       f"{w.dtype} of shape {w.shape}"]
    top = (1 << (bits - 1)) - 1
    if w.size and (int(w.min()) < -top or int(w.max()) > top):
        errs.append(f"weight_rows must be signed {bits}-bit codes in [-{top}, {top}], got "
                    f"values in [{int(w.min())}, {int(w.max())}]")
    rows, k = w.shape[0], _channels(node)
    errs += _int_vector(node, "row_channel", rows, 0, k - 1)
    errs += _int_vector(node, "rq_multiplier", rows, 0, (1 << 31) - 1)
    errs += _int_vector(node, "rq_shift", k, 0, 63)
    errs += _int_vector(node, "requant_bias", k, -(1 << 62) + 1, (1 << 62) - 1)
    scale = node.arrays.get("row_scale")
    if scale is not None and scale.shape != (rows,):
        errs.append(f"row_scale must have shape ({rows},), got {scale.shape}")
    if conv and not errs and k % node.attrs["groups"]:
        errs.append(f"{k} output channels are not divisible by groups={node.attrs['groups']}")
    return errs


def _workload(program, node: Node, batch: int):
    from hwsim.workloads.multipoint import rows_layer_shape

    w = node.arrays["weight_rows"]
    src = program.node(node.inputs[0])
    k = _channels(node)
    common = dict(out_channels=k, weight_bits=node.attrs["weight_bits"], act_bits=src.out.bits,
                  weight_format="int")
    if node.op == "multipoint_conv2d":
        base = layer_shape(program, node, batch, kernel=w.shape[2:], **common)
        group = node.arrays["row_channel"] // (k // int(node.attrs["groups"]))
        busiest = int(np.bincount(group).max())
        return rows_layer_shape(base, int(w.shape[0]), busiest)
    tokens = math.prod(src.out_shape[1:-1])
    base = layer_shape(program, node, batch * tokens, kernel=None, **common)
    return rows_layer_shape(base, int(w.shape[0]))


_DOC = ("Multipoint {what}: weight row p (signed codes, zero point 0) accumulates acc_p = "
        "sum (x - zp_x) w_p over {over} in an accumulator of accumulator.bits bits (wrap or "
        "saturate, no bias); output channel k = clamp(floor((requant_bias_k + sum over rows p "
        "with row_channel[p] = k of rq_multiplier[p] acc_p + 2^(rq_shift_k - 1)) / "
        "2^rq_shift_k) + zp_y, clamp), exact.")
register_op(OpDef(
    "multipoint_conv2d", 1, CONV_ATTRS + MULTIPOINT_ATTRS, MULTIPOINT_ARRAYS,
    _DOC.format(what="conv2d", over="(c, r, s) of its channel's group (zero padding)"),
    lambda node, args: _run(node, args, False), lambda node, args: _run(node, args, True),
    optional_attrs=MULTIPOINT_OPTIONAL_ATTRS, optional_arrays=MULTIPOINT_OPTIONAL_ARRAYS,
    requantizes=True, accumulates=True, check=_check, workload=_workload))
register_op(OpDef(
    "multipoint_linear", 1, MULTIPOINT_ATTRS, MULTIPOINT_ARRAYS,
    _DOC.format(what="linear layer", over="the last dim"),
    lambda node, args: _run(node, args, False), lambda node, args: _run(node, args, True),
    optional_attrs=MULTIPOINT_OPTIONAL_ATTRS, optional_arrays=MULTIPOINT_OPTIONAL_ARRAYS,
    requantizes=True, accumulates=True, check=_check, workload=_workload))

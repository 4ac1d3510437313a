"""conv_transpose2d on uniform integer codes: exact accumulation, then requantization.

Weights output-channel major ``(K, C/groups, R, S)`` (see ``hwsim.kernels.conv_transpose``);
attrs as conv2d's plus ``output_padding`` (2 ints, each < max(stride, dilation)). The
accumulator (wrap / saturate) and the per-channel requantization are conv2d's; the int16-pairs
accumulator and engine modes are not defined for this op.

Cost model: a transposed conv is priced as the GEMM of its scatter (col2im) form, counting only
the real products: every input pixel times every weight of its group,
``MACs = N * C * H * W * (K/groups) * R * S``. As a `LayerShape` that is a 1x1 conv over the
input ``(N, C, H, W)`` with ``K*R*S`` output channels and ``groups`` groups: its weights
(K*C/groups*R*S) and input traffic are the layer's; its "output" is the column buffer of
partial products (N*K*R*S*H*W) before the overlap-add into (N, K, OH, OW), which is what a
col2im accelerator writes (more than the final output when taps overlap, i.e. R > stride).
The zero-inserted view (what a systolic array running it as a plain stride-1 conv pays) would
count about stride_h*stride_w times the MACs, most of them multiplications by inserted zeros.
"""
from __future__ import annotations

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ir.specs import AccumulatorConfig, AccumulatorMode
from hwsim.ops._common import (accumulator, integer_weight_errors, prepared, requant_constants,
                               requantize)
from hwsim.ops.dense import DENSE_ARRAYS, DENSE_ATTRS
from hwsim.workloads.conv_transpose import conv_transpose_layer
from hwsim.workloads.layer import LayerShape

CONV_TRANSPOSE_ATTRS = ("stride", "padding", "output_padding", "dilation", "groups")
OPTIONAL_ATTRS = ("input_scale", "output_scale", "input_bits", "accumulator_reason")
OPTIONAL_ARRAYS = ("bias", "weight_scale")


def _geometry(node: Node) -> tuple:
    a = node.attrs
    return (tuple(a["stride"]), tuple(a["padding"]), tuple(a["output_padding"]),
            tuple(a["dilation"]), int(a["groups"]))


def _operands(node: Node, x: np.ndarray) -> tuple:
    return (x, int(node.attrs["input_zero_point"]), node.arrays["weight"],
            node.arrays["weight_zero_point"], node.arrays.get("bias"))


def _prepare(node: Node):
    from hwsim.kernels import prepare_conv_transpose2d

    a = node.arrays
    return prepare_conv_transpose2d(a["weight"], a["weight_zero_point"], a.get("bias"),
                                    *_geometry(node), accumulator(node), **requant_constants(node))


def run_conv_transpose(node: Node, args: list) -> tuple:
    """Fast: a stride-1 conv2d on the zero-inserted input, fused with requantization."""
    res = prepared(node, _prepare)(args[0], int(node.attrs["input_zero_point"]))
    return res.codes, res.overflow_count


def run_conv_transpose_reference(node: Node, args: list) -> tuple:
    """Definition: the int64 scatter loop, then conv2d's requantization reference."""
    from hwsim.kernels import conv_transpose2d_int_reference

    res = conv_transpose2d_int_reference(*_operands(node, args[0]), *_geometry(node),
                                         acc=accumulator(node))
    return requantize(node, res.values, axis=1, reference=True), res.overflow_count


def _check(node: Node) -> list[str]:
    errs = integer_weight_errors(node, conv=True)
    a = node.attrs
    op = a["output_padding"]
    if not (isinstance(op, (list, tuple)) and len(op) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in op)):
        errs.append(f"output_padding must be 2 ints >= 0, got {op!r}")
    elif not errs:
        for v, s, d, axis in zip(op, a["stride"], a["dilation"], ("height", "width")):
            if v >= max(s, d):
                errs.append(f"output_padding {list(op)} must be smaller than max(stride, "
                            f"dilation) = {max(s, d)} along the {axis} (torch's rule)")
    mode = AccumulatorConfig.from_attrs(a).mode
    if mode is AccumulatorMode.INT16_PAIRS:
        errs.append("the int16_pairs accumulator is not defined for conv_transpose2d; use wrap "
                    "or saturate")
    return errs


def _workload(program, node: Node, batch: int) -> LayerShape:
    w = node.arrays["weight"]
    src = program.node(node.inputs[0])
    _, c, h, wd = src.out_shape
    return conv_transpose_layer(node.name, batch=batch, in_h=h, in_w=wd, in_channels=c,
                                out_channels=w.shape[0], kernel=w.shape[2:],
                                groups=int(node.attrs["groups"]),
                                act_bits=int(src.out.bits), weight_bits=node.attrs["weight_bits"])


register_op(OpDef(
    "conv_transpose2d", 1, CONV_TRANSPOSE_ATTRS + DENSE_ATTRS, DENSE_ARRAYS,
    "acc[n, k, oh, ow] = bias[k] + sum of (x[n, c, ih, iw] - zp_x)(w[k, c', r, s] - zp_w[k]) "
    "over c in k's group and the taps with oh = ih*sh - pad_top + r*dh, ow = iw*sw - pad_left "
    "+ s*dw; weights (K, C/groups, R, S) output-channel major; saturation in the order bias, "
    "c, ih, iw; then requantize per output channel as conv2d.",
    run_conv_transpose, run_conv_transpose_reference, optional_attrs=OPTIONAL_ATTRS,
    optional_arrays=OPTIONAL_ARRAYS, requantizes=True, accumulates=True, check=_check,
    workload=_workload))

"""conv_transpose2d as ONNX ops ONNX Runtime computes exactly: zero insertion on the codes, then
QLinearConv.

ONNX Runtime 1.32's CPU execution provider has no kernel for com.microsoft QLinearConvTranspose
(a session refuses the node: "not a registered function/op"), so the export writes the layer as
hwsim executes it (hwsim.kernels.conv_transpose): a stride-1 conv of the input with stride - 1
real zeros (code x_zp) inserted between pixels, padded with real zeros by
dilation·(kernel - 1) - pad_lo before and dilation·(kernel - 1) - pad_hi + output_padding after
(cropped where negative), with the kernel flipped in both spatial axes. On the uint8/int8 codes
(N, C, H, W), with stride (sh, sw):

    Unsqueeze(axes 3, 5)                     (N, C, H, 1, W, 1)
    Pad(constant x_zp, after: sh-1, sw-1)    (N, C, H, sh, W, sw)
    Reshape(0, 0, H·sh, W·sw)                 rows i·sh hold input row i, the rest x_zp
    Slice / Pad(constant x_zp)               crop or pad to the equivalent conv's input
    QLinearConv(flipped weights, stride 1, no padding, the layer's dilation and groups)

Every step before QLinearConv moves codes or writes x_zp (exact), and QLinearConv's
accumulation and float32 requantization are conv2d's, so ONNX Runtime's codes are hwsim's when
QLinearConv's are (the checks in hwsim.onnx.export: int32 accumulators, weight scales that give
the node's rq_scale_f32, no int16 pair saturation that the node does not have).
"""
from __future__ import annotations

import numpy as np

from hwsim.ir import Node


def equivalent_pads(node: Node) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) padding of the equivalent stride-1 conv's input, counted from
    the zero-inserted input of (H-1)·sh + 1 rows; negative = crop."""
    a = node.attrs
    r, s = node.arrays["weight"].shape[2:]
    (dh, dw), (pt, pl, pb, pr), (oh, ow) = a["dilation"], a["padding"], a["output_padding"]
    return (dh * (r - 1) - pt, dw * (s - 1) - pl, dh * (r - 1) - pb + oh, dw * (s - 1) - pr + ow)


def emit_zero_inserted(g, node: Node) -> str:
    """Append the ops giving the equivalent conv's input codes; return that tensor's name."""
    x = node.inputs[0]
    src = g.program.node(x)
    _, _, h, w = src.out_shape
    sh, sw = (int(v) for v in node.attrs["stride"])
    zp = g.const(f"{node.name}.pad_value", np.asarray(src.out.zero_point, dtype=src.out.dtype))
    rows, cols = h, w
    if (sh, sw) != (1, 1):
        t = g.op("Unsqueeze", [x, g.const(f"{node.name}.unsqueeze_axes",
                                          np.array([3, 5], np.int64))],
                 f"{node.name}.spread", node)
        pads = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1], np.int64)
        t = g.op("Pad", [t, g.const(f"{node.name}.insert_pads", pads), zp],
                 f"{node.name}.inserted", node, mode="constant")
        shape = np.array([0, 0, h * sh, w * sw], np.int64)
        x = g.op("Reshape", [t, g.const(f"{node.name}.insert_shape", shape)],
                 f"{node.name}.zero_inserted", node)
        rows, cols = h * sh, w * sw
    # pads relative to what x holds now: (rows - ((h-1)·sh + 1)) trailing zero rows already there
    top, left, bottom, right = equivalent_pads(node)
    bottom -= rows - ((h - 1) * sh + 1)
    right -= cols - ((w - 1) * sw + 1)
    lo = [max(-top, 0), max(-left, 0)]
    hi = [rows - max(-bottom, 0), cols - max(-right, 0)]
    if lo != [0, 0] or hi != [rows, cols]:
        x = g.op("Slice", [x, g.const(f"{node.name}.crop_starts", np.array(lo, np.int64)),
                           g.const(f"{node.name}.crop_ends", np.array(hi, np.int64)),
                           g.const(f"{node.name}.crop_axes", np.array([2, 3], np.int64))],
                 f"{node.name}.cropped", node)
    pad = [max(top, 0), max(left, 0), max(bottom, 0), max(right, 0)]
    if any(pad):
        pads = np.array([0, 0, pad[0], pad[1], 0, 0, pad[2], pad[3]], np.int64)
        x = g.op("Pad", [x, g.const(f"{node.name}.conv_pads", pads), zp],
                 f"{node.name}.conv_input", node, mode="constant")
    return x


def flipped_weight(node: Node) -> np.ndarray:
    """The equivalent conv's weights (K, C/groups, R, S): the node's, flipped in R and S."""
    return np.ascontiguousarray(node.arrays["weight"][:, :, ::-1, ::-1])

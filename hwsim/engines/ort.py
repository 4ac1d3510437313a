"""What ONNX Runtime's CPU integer ops compute, from hwsim's exact kernels (no onnxruntime import).

Semantics (ONNX Runtime's CPU arithmetic, as measured against it in tests/test_engine_ort.py):
accumulators acc = bias + sum (x - x_zp)(w - w_zp) in int32; QLinear* ops requantize with
scale = f32(f32(s_x s_w) / s_y), v = f32(acc) * scale, clamp v to [qmin - y_zp, qmax - y_zp]
in float32, round half to even, + y_zp.

One deviation from exact math is modelled: on CPUs without VNNI, ONNX Runtime's u8 x s8 GEMM
adds the raw products of adjacent reduction elements into int16 with saturation
(``int16_pairs=True``; see `_pairs`). It affects QLinearMatMul, MatMulInteger and the
non-depthwise QLinearConv; ConvInteger and depthwise QLinearConv compute exactly.
"""

from __future__ import annotations

import numpy as np

from hwsim.engines import _args
from hwsim.engines._pairs import pair_saturation_excess
from hwsim.kernels import conv2d_int, linear_int, ort_output_scale, requantize_float32

_INT32_SPAN = 1 << 32


def _wrap_int32(v: np.ndarray) -> np.ndarray:
    return ((v + (1 << 31)) % _INT32_SPAN - (1 << 31)).astype(np.int32)


def _conv_pair_excess(x, xzp, w, stride, pads, dilation, group, out_shape) -> np.ndarray:
    """int16 pair saturation excess of a conv run as an NHWC GEMM per group, reduction ordered
    (r, s, c) over the raw codes, padding filled with x_zp. Returns int64 (N, K, OH, OW)."""
    n, k, oh, ow = out_shape
    _, cg, r_n, s_n = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    pt, pl, pb, pr = pads
    xp = np.full((n, x.shape[1], x.shape[2] + pt + pb, x.shape[3] + pl + pr), xzp, dtype=x.dtype)
    xp[:, :, pt : pt + x.shape[2], pl : pl + x.shape[3]] = x
    cols = np.empty((n, oh, ow, r_n, s_n, x.shape[1]), dtype=x.dtype)
    for r in range(r_n):
        for s in range(s_n):
            win = xp[:, :, r * dh : r * dh + (oh - 1) * sh + 1 : sh, s * dw : s * dw + (ow - 1) * sw + 1 : sw]
            cols[:, :, :, r, s, :] = win.transpose(0, 2, 3, 1)
    kg = k // group
    out = np.empty((n, k, oh * ow), dtype=np.int64)
    for g in range(group):
        a = cols[..., g * cg : (g + 1) * cg].reshape(n * oh * ow, r_n * s_n * cg)
        b = w[g * kg : (g + 1) * kg].transpose(2, 3, 1, 0).reshape(r_n * s_n * cg, kg)
        ex = pair_saturation_excess(a, b).reshape(n, oh * ow, kg)
        out[:, g * kg : (g + 1) * kg] = ex.transpose(0, 2, 1)
    return out.reshape(out_shape)


def _conv_acc(x, xzp, w, wzp, bias, strides, pads, dilations, group, int16_pairs, depthwise_exact):
    res = conv2d_int(x, xzp, w, wzp, bias, stride=strides, padding=pads, dilation=dilations, groups=group)
    values = res.values
    depthwise = group > 1 and group == w.shape[0] and w.shape[1] == 1
    if int16_pairs and x.dtype == np.uint8 and w.dtype == np.int8 and not (depthwise and depthwise_exact):
        values = values + _conv_pair_excess(x, xzp, w, _pair(strides), _quad(pads), _pair(dilations), group, values.shape)
    return values


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.ndim(v) == 0 else tuple(int(e) for e in v)  # type: ignore[return-value]


def _quad(v) -> tuple[int, int, int, int]:
    if np.ndim(v) == 0:
        return (int(v),) * 4  # type: ignore[return-value]
    v = tuple(int(e) for e in v)
    return v * 2 if len(v) == 2 else v  # type: ignore[return-value]


def conv_integer(
    x: np.ndarray,
    w: np.ndarray,
    x_zero_point=None,
    w_zero_point=None,
    *,
    strides: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilations: tuple[int, int] = (1, 1),
    group: int = 1,
) -> np.ndarray:
    """ONNX ConvInteger: int32 (N, K, OH, OW) = sum (x - x_zp)(w - w_zp[k]), wrapped to int32.

    x: u8/s8 codes (N, C, H, W); w: u8/s8 codes (K, C/group, R, S); x_zero_point: scalar of x's
    dtype (default 0); w_zero_point: scalar or (K,) of w's dtype (default 0). pads: (top, left,
    bottom, right), ONNX's order. ONNX Runtime computes this exactly (no int16 pair saturation).
    """
    op = "ConvInteger"
    x, w = _args.codes(op, "x", x, 4), _args.codes(op, "w", w, 4)
    xzp = _args.zero_point(op, "x_zero_point", x_zero_point, x.dtype, 1)
    wzp = _args.zero_point(op, "w_zero_point", w_zero_point, w.dtype, w.shape[0])
    values = conv2d_int(x, int(xzp[0]), w, wzp, None, stride=strides, padding=pads, dilation=dilations, groups=group).values
    return _wrap_int32(values)


def matmul_integer(a: np.ndarray, b: np.ndarray, a_zero_point=None, b_zero_point=None, *, int16_pairs: bool = False) -> np.ndarray:
    """ONNX MatMulInteger: int32 (..., M, N) = sum_k (a[..., m, k] - a_zp)(b[k, n] - b_zp[n]).

    a: u8/s8 codes (..., M, K); b: u8/s8 codes (K, N); a_zero_point: scalar (ONNX Runtime
    rejects per-row ones); b_zero_point: scalar or per column (N,). int16_pairs: emulate the
    int16 pair saturation of u8 x s8 on CPUs without VNNI.
    """
    op = "MatMulInteger"
    a, b = _args.matmul_operands(op, a, b)
    azp = _args.zero_point(op, "a_zero_point", a_zero_point, a.dtype, 1)
    bzp = _args.zero_point(op, "b_zero_point", b_zero_point, b.dtype, b.shape[1])
    return _wrap_int32(_matmul_acc(a, int(azp[0]), b, bzp, int16_pairs))


def _matmul_acc(a, azp, b, bzp, int16_pairs) -> np.ndarray:
    a2 = a.reshape(-1, a.shape[-1])
    values = linear_int(a2, azp, np.ascontiguousarray(b.T), bzp).values
    if int16_pairs and a.dtype == np.uint8 and b.dtype == np.int8:
        values = values + pair_saturation_excess(a2, b)
    return values.reshape(a.shape[:-1] + (b.shape[1],))


def qlinear_conv(
    x: np.ndarray,
    x_scale,
    x_zero_point,
    w: np.ndarray,
    w_scale,
    w_zero_point,
    y_scale,
    y_zero_point,
    bias: np.ndarray | None = None,
    *,
    strides: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilations: tuple[int, int] = (1, 1),
    group: int = 1,
    int16_pairs: bool = False,
) -> np.ndarray:
    """ONNX QLinearConv as ONNX Runtime computes it; returns codes (N, K, OH, OW) in y_zero_point's
    dtype (u8 or s8).

    x: u8/s8 (N, C, H, W); w: u8/s8 (K, C/group, R, S); scales float32 scalars except w_scale,
    scalar or per output channel (K,); zero points in their tensor's dtype, w_zero_point scalar
    or (K,); bias: None or int32 (K,) in units of s_x * s_w[k]. int16_pairs: emulate u8 x s8
    int16 pair saturation (non-VNNI CPUs; not in depthwise convs, which ORT computes exactly).
    """
    op = "QLinearConv"
    x, w = _args.codes(op, "x", x, 4), _args.codes(op, "w", w, 4)
    k = w.shape[0]
    xzp = int(_args.zero_point(op, "x_zero_point", x_zero_point, x.dtype, 1)[0])
    wzp = _args.zero_point(op, "w_zero_point", w_zero_point, w.dtype, k)
    yzp, ydtype = _args.output_zero_point(op, y_zero_point)
    sx, sy = _args.scale(op, "x_scale", x_scale, 1), _args.scale(op, "y_scale", y_scale, 1)
    sw = _args.scale(op, "w_scale", w_scale, k)
    b = _args.bias(op, bias, k)
    acc = _conv_acc(x, xzp, w, wzp, b, strides, pads, dilations, group, int16_pairs, True)
    scale = ort_output_scale(sx[0], sw if sw.shape[0] > 1 else sw[0], sy[0])
    info = np.iinfo(ydtype)
    return requantize_float32(_wrap_int32(acc), scale, yzp, int(info.min), int(info.max), axis=1).astype(ydtype)


def qlinear_matmul(a: np.ndarray, a_scale, a_zero_point, b: np.ndarray, b_scale, b_zero_point, y_scale, y_zero_point, *, int16_pairs: bool = False) -> np.ndarray:
    """ONNX QLinearMatMul as ONNX Runtime computes it; returns codes (..., M, N) in
    y_zero_point's dtype.

    a: u8/s8 (..., M, K); b: u8/s8 (K, N); a_scale, y_scale: float32 scalars; b_scale, b_zero_point:
    scalar or per column (N,). int16_pairs: emulate u8 x s8 int16 pair saturation (non-VNNI CPUs).
    """
    op = "QLinearMatMul"
    a, b = _args.matmul_operands(op, a, b)
    n = b.shape[1]
    azp = int(_args.zero_point(op, "a_zero_point", a_zero_point, a.dtype, 1)[0])
    bzp = _args.zero_point(op, "b_zero_point", b_zero_point, b.dtype, n)
    yzp, ydtype = _args.output_zero_point(op, y_zero_point)
    sa, sy = _args.scale(op, "a_scale", a_scale, 1), _args.scale(op, "y_scale", y_scale, 1)
    sb = _args.scale(op, "b_scale", b_scale, n)
    acc = _wrap_int32(_matmul_acc(a, azp, b, bzp, int16_pairs))
    scale = ort_output_scale(sa[0], sb if sb.shape[0] > 1 else sb[0], sy[0])
    info = np.iinfo(ydtype)
    codes = requantize_float32(acc.reshape(-1, n), scale, yzp, int(info.min), int(info.max), axis=1)
    return codes.astype(ydtype).reshape(acc.shape)

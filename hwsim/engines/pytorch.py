"""What PyTorch's quantized engines output for quantized::linear and quantized::conv2d, bit for
bit, from integer codes and quantization parameters (numpy only; no torch import).

Operands are torch's standard configuration: quint8 activations x and outputs y (codes 0..255,
zero points 0..255), qint8 weights w (per-tensor, or per output channel along axis 0), a float32
bias in real units. Scales are taken as torch stores them (doubles).

Established against torch 2.13 (CPU build, oneDNN v3.12) on an AVX2 CPU without AVX512/VNNI, one
intra-op thread (tests/test_engine_pytorch.py; 0 mismatches over millions of outputs per engine,
tie-heavy scales included). All three engines compute in float32 and round half to even; what
differs is where the int32 accumulator saturates and the order of the float32 operations:

qnnpack (its x86 kernels; both ops, depthwise included)
    acc = sum (x - x_zp)(w - w_zp[k]) exactly (no saturation, even with full-range codes) + b_int,
    wrapped to int32, where the float bias is quantized as torch's
    quantize_per_tensor/per_channel to qint32 does: b_int = clamp_int32(rint(f32(b) * f32(1 /
    f32(s_w[k] * s_x)))), the product in double. m[k] = f32(f32(f32(s_w[k]) f32(s_x)) f32(1/f32(s_y)));
    q = cvtps(f32(acc) m) (half to even; |v| >= 2^31 gives INT32_MIN, hence code 0, even for huge
    positive values); y = clamp(sat_int16(q) + y_zp, 0, 255). Any weight zero point is accepted.
fbgemm
    The GEMM runs on the raw codes; without VNNI, `vpmaddubsw` adds the u8 x s8 products of two
    adjacent reduction elements into int16 with saturation; zero points are corrected afterwards
    in int32, so acc = exact + pair excess (mod 2^32). Pairs are (2j, 2j+1) along K for linear;
    for conv the reduction of each group is im2col-ordered (r, s, c) with padded pixels holding
    the raw code x_zp (pairs straddle taps when C/groups is odd), and depthwise convs pair
    adjacent taps (r, s) of a channel, the same layout. Requantization (float bias):
    s = f32(f32(s_x) f32(s_w[k])); per-tensor xf = fma(b, f32(1/s), f32(acc)), per-channel
    xf = f32(acc) + f32(b / s); q = cvtps(f32(xf f32(s / f32(s_y)))) (INT32_MIN on overflow);
    y = clamp(sat_int16(q) + y_zp, 0, 255).
    8-bit depthwise is reproduced exactly with the tap pairs above (exact int32 math is what
    mismatches there).
onednn (weights must be symmetric: w_zp = 0, as torch requires)
    linear runs oneDNN's gemm-based matmul (s8u8s32 GEMM, AVX2 without VNNI): int16 pairs as
    fbgemm's, but restarting at every K block of the GEMM driver: one block for K <= 256, two
    blocks of ceil(K/2) for 256 < K < 768, blocks of 384 for K >= 768 (an odd block pairs its
    last element with 0). conv runs jit_uni_int8 (AVX2): pairs of adjacent input channels
    (c, c+1) within a tap, channels zero-padded to even, taps on padding skipped; depthwise
    convs (one in / one out channel per group) run an exact int32 kernel, and grouped convs with
    C/groups or K/groups not a multiple of 4 fall back to oneDNN's exact reference kernel.
    Scales: PyTorch passes ideep reciprocals and ideep passes oneDNN their float32 reciprocals:
    s_x' = f32(1/f32(1/s_x)); linear weights s_w' = f32(1/f32(1/s_w)) (per-tensor, 1/s_w in
    double) or f32(1/f32(1/f32(s_w))) (per-channel); conv weights s_w' = f32(s_w);
    s_y' = f32(1/f32(1/s_y)). Then v = f32(f32(acc) f32(s_x' s_w'[k])) + f32 bias;
    v = f32(f32(v f32(1/s_y')) + y_zp); clamp to [0, 255] in float32, round half to even.

Details easy to miss: qnnpack quantizes the bias and overflows in cvtps as above; onednn
multiplies acc once by the combined f32(s_x' s_w') (not by s_x then s_w), handles conv weight
scales without the round trip, and saturates int16 pairs as above; fbgemm's 8-bit depthwise
follows the same int16 pair model (adjacent taps).

``int16_pairs=False`` replaces the pair saturation of fbgemm and onednn by exact int32 sums
(what VNNI CPUs compute in principle; not established here). qnnpack is always exact. torch's
"x86" engine (its default on x86, which picks fbgemm or onednn per layer) is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.engines import _pytorch_acc as acc_mod
from hwsim.engines import _pytorch_args as args
from hwsim.engines import _pytorch_requant as rq
from hwsim.engines.errors import EngineError

PYTORCH_ENGINES = args.ENGINES


@dataclass(frozen=True)
class _QuantParams:
    """Checked quantization parameters of one op: scales as doubles, per output channel (K,)."""

    engine: str
    x_scale: float
    x_zp: int
    w_scales: np.ndarray  # float64 (K,)
    per_channel: bool
    w_zps: np.ndarray  # int64 (K,)
    bias: np.ndarray | None  # float32 (K,)
    y_scale: float
    y_zp: int


def _quant_params(op, engine, x_scale, x_zp, w_scale, w_zp, bias_f32, y_scale, y_zp, k: int) -> _QuantParams:
    engine = args.engine(op, engine)
    w_scales, per_channel = args.weight_scales(op, w_scale, k)
    w_zps = args.weight_zero_points(op, w_zp, k, per_channel)
    if engine == "onednn" and np.any(w_zps != 0):
        raise EngineError(f"{op}: engine 'onednn' supports only symmetric weights ('w_zp' = 0), as torch's "
                          f"onednn prepack requires; got {w_zps.tolist()[:4]}.")
    p = _QuantParams(engine, args.scale(op, "x_scale", x_scale), args.zero_point(op, "x_zp", x_zp, *args.QUINT8_RANGE),
                     w_scales, per_channel, w_zps, args.bias(op, bias_f32, k), args.scale(op, "y_scale", y_scale),
                     args.zero_point(op, "y_zp", y_zp, *args.QUINT8_RANGE))
    if engine == "qnnpack":
        m = rq.qnnpack_multipliers(p.x_scale, p.w_scales, p.y_scale)
        if not np.all(np.isfinite(m)) or np.any(m < np.finfo(np.float32).tiny):
            raise EngineError(f"{op}: engine 'qnnpack' needs a normal positive float32 requantization scale "
                              f"s_x s_w / s_y; 'y_scale'={y_scale!r} gives {m.min()!r}..{m.max()!r}.")
    return p


def _requantize(p: _QuantParams, op: str, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, values) from int64 accumulators with output channels on axis 1."""
    if p.engine == "qnnpack":
        return rq.qnnpack(acc, p.bias, p.x_scale, p.w_scales, p.y_scale, p.y_zp, axis=1)
    if p.engine == "fbgemm":
        return rq.fbgemm(acc, p.bias, p.x_scale, p.w_scales, p.per_channel, p.y_scale, p.y_zp, axis=1)
    return rq.onednn(acc, p.bias, p.x_scale, p.w_scales, p.per_channel, p.y_scale, p.y_zp, axis=1, op=op)


def torch_quantized_linear(
    x: np.ndarray,
    x_scale: float,
    x_zp: int,
    w: np.ndarray,
    w_scale,
    w_zp,
    bias_f32: np.ndarray | None,
    y_scale: float,
    y_zp: int,
    *,
    engine: str,
    int16_pairs: bool = True,
) -> np.ndarray:
    """Output codes of torch.ops.quantized.linear on ``engine``: uint8 (..., N).

    x: uint8 codes (..., K) (at least 2-D); x_scale > 0; x_zp in [0, 255].
    w: int8 codes (N, K); w_scale: a scalar (per-tensor) or float (N,) (per-channel); w_zp: an
    integer in [-128, 127], or int (N,) with per-channel scales (onednn: all 0).
    bias_f32: None or float (N,) in real units (rounded to float32 as torch stores it).
    y_scale > 0; y_zp in [0, 255]. engine: "qnnpack", "onednn" or "fbgemm".
    int16_pairs: model the int16 pair saturation of fbgemm/onednn on CPUs without VNNI (True) or
    accumulate exactly (False). Semantics per engine: see the module docstring.
    """
    return linear_outputs(x, x_scale, x_zp, w, w_scale, w_zp, bias_f32, y_scale, y_zp,
                          engine=engine, int16_pairs=int16_pairs)[0]


def linear_outputs(x, x_scale, x_zp, w, w_scale, w_zp, bias_f32, y_scale, y_zp, *, engine: str,
                   int16_pairs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`torch_quantized_linear` with the float32 values the engine rounds: (codes uint8 (..., N),
    values float32 (..., N)); values are taken before adding y_zp for qnnpack/fbgemm, after
    adding it (before clamping) for onednn."""
    op = "torch_quantized_linear"
    x = args.codes(op, "x", x, np.uint8, min_ndim=2)
    w = args.codes(op, "w", w, np.int8, ndim=2)
    if x.shape[-1] != w.shape[1]:
        raise EngineError(f"{op}: 'x' has K={x.shape[-1]} input features but 'w' has {w.shape[1]}; "
                          f"shapes {x.shape} and {w.shape}.")
    n = w.shape[0]
    p = _quant_params(op, engine, x_scale, x_zp, w_scale, w_zp, bias_f32, y_scale, y_zp, n)
    x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
    pairing = {"qnnpack": "none", "fbgemm": "natural", "onednn": "onednn_gemm"}[p.engine] if int16_pairs else "none"
    acc = acc_mod.linear_accumulators(x2, p.x_zp, w, p.w_zps, pairing)
    codes, values = _requantize(p, "linear", acc)
    shape = x.shape[:-1] + (n,)
    return codes.reshape(shape), values.reshape(shape)


def torch_quantized_conv2d(
    x: np.ndarray,
    x_scale: float,
    x_zp: int,
    w: np.ndarray,
    w_scale,
    w_zp,
    bias_f32: np.ndarray | None,
    y_scale: float,
    y_zp: int,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    *,
    engine: str,
    int16_pairs: bool = True,
) -> np.ndarray:
    """Output codes of torch.ops.quantized.conv2d on ``engine``: uint8 (N, K, OH, OW).

    x: uint8 codes (N, C, H, W); w: int8 codes (K, C/groups, R, S); stride, dilation >= 1 and
    padding >= 0 (torch's symmetric (h, w) padding; padded pixels hold x_zp, i.e. real 0), each an
    int or an (h, w) pair. Scales, zero points, bias (K,) and int16_pairs as in
    `torch_quantized_linear`, with K output channels.
    """
    return conv2d_outputs(x, x_scale, x_zp, w, w_scale, w_zp, bias_f32, y_scale, y_zp, stride, padding,
                          dilation, groups, engine=engine, int16_pairs=int16_pairs)[0]


def conv2d_outputs(x, x_scale, x_zp, w, w_scale, w_zp, bias_f32, y_scale, y_zp, stride=1, padding=0,
                   dilation=1, groups=1, *, engine: str, int16_pairs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`torch_quantized_conv2d` with the float32 values the engine rounds (see `linear_outputs`):
    (codes uint8 (N, K, OH, OW), values float32 (N, K, OH, OW))."""
    op = "torch_quantized_conv2d"
    x = args.codes(op, "x", x, np.uint8, ndim=4)
    w = args.codes(op, "w", w, np.int8, ndim=4)
    st, pd, dl, g, out_hw = args.conv_geometry(op, x, w, stride, padding, dilation, groups)
    k, c_g = w.shape[0], w.shape[1]
    p = _quant_params(op, engine, x_scale, x_zp, w_scale, w_zp, bias_f32, y_scale, y_zp, k)
    pairing = "none"
    if int16_pairs and p.engine == "fbgemm":
        pairing = "fbgemm"
    elif int16_pairs and p.engine == "onednn" and acc_mod.onednn_conv_pairs_saturate(c_g, k // g, g):
        pairing = "onednn"
    acc = acc_mod.conv_accumulators(x, p.x_zp, w, p.w_zps, st, pd, dl, g, out_hw, pairing)
    return _requantize(p, "conv", acc)

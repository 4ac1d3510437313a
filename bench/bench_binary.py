"""Benchmark: XNOR/popcount binary layers vs hwsim's exact int8 linear on the same layer shape.

Layer: out (M, N) = W (M, K) @ X (K, N), default M=512 output channels, K=4608 (3x3x512),
N=196 pixels (a 14x14 ResNet conv as a GEMM). All figures come from one run.

How operations are counted:
- one 1-bit MAC = one ±1 product accumulated = one XNOR bit plus one popcount/accumulate bit,
  so binary operations (binops) = 2 * M*K*N, and 1-bit MAC = M*K*N;
- int8 MAC = M*K*N multiply-accumulates of int8 codes.
The headline ratio compares 1-bit MAC/s with int8 MAC/s (the stricter one; binops/s is 2x that).
Weights are packed / prepared once (as an executor would); activation packing is timed both
excluded ("kernel") and included ("+pack").

Run: PYTHONPATH=. python3 bench/bench_binary.py [--m 512 --k 4608 --n 196] [--repeat 5]
"""

from __future__ import annotations

import argparse

import numpy as np

from hwsim.kernels import (
    AccumulatorSpec,
    binary_linear,
    bitplane_matmul,
    bitplane_matmul_reference,
    linear_int,
    pack_signs,
    prepare_linear,
    xnor_popcount_matmul,
    xnor_popcount_matmul_reference,
)
from hwsim.kernels import _nb_binary, prepare_conv2d
from hwsim.kernels.binary_layer import BinaryLayer, binary_layer_forward

from _timing import timed  # bench/_timing.py (the scripts run from bench/)


def best_s(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls after one warm-up call, in seconds."""
    return timed(fn, repeat)[0]


def popcount_variants(repeat: int) -> None:
    """ctpop intrinsic vs SWAR popcount on a cache-resident array (32 KiB), summed 256 times."""
    words = np.random.default_rng(1).integers(0, 2**63, size=4096, dtype=np.uint64)
    rounds = 256

    def run(fn):
        def go():
            for _ in range(rounds):
                fn(words)
        return go

    t_ct = best_s(run(_nb_binary.popcount_total_ctpop), repeat)
    t_sw = best_s(run(_nb_binary.popcount_total_swar), repeat)
    n = words.size * rounds
    print(f"popcount of {n} uint64 words (in L1):  ctpop intrinsic {n / t_ct / 1e9:6.2f} Gword/s   "
          f"SWAR {n / t_sw / 1e9:6.2f} Gword/s   ctpop/SWAR speed {t_sw / t_ct:.2f}x")


def whole_layers(repeat: int, channels: int = 512, hw: int = 14) -> None:
    """A whole 3x3 conv layer as the executor runs it, input codes in, output codes out:
    int8 (prepared exact conv + requantization) vs binary_conv2d (per-sample LS binarization of
    the input codes, XNOR/popcount products, float64 scale combination, rounding)."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(1, channels, hw, hw), dtype=np.uint8)
    macs = channels * channels * 9 * hw * hw
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    w8 = rng.integers(-127, 128, size=(channels, channels, 3, 3), dtype=np.int8)
    w8.flags.writeable = False
    conv8 = prepare_conv2d(w8, np.zeros(channels, np.int64), None, *geometry,
                           AccumulatorSpec(32, "wrap"), out_zero_point=0, qmin=0, qmax=255,
                           requant="float32", scale_f32=np.full(channels, 1e-4, np.float32))
    t8 = best_s(lambda: conv8(x, 128), repeat)
    print(f"whole 3x3 conv layer {channels}->{channels} on {hw}x{hw} ({macs / 1e6:.0f} M MAC), "
          f"codes in -> codes out:")
    print(f"  int8 conv (prepared, exact)             {t8 * 1e3:8.2f} ms  {macs / t8 / 1e9:6.1f} GMAC/s")
    planes = np.where(rng.random((1, channels, channels, 3, 3)) < 0.5, -1, 1).astype(np.int8)
    planes.flags.writeable = False  # as in an IntProgram: the packed weights are cached
    for method, k in (("ls1", 1), ("ls2", 2)):
        layer = BinaryLayer(
            weight_planes=planes,
            weight_scales=rng.uniform(0.1, 1.0, size=(channels, 1)), bias=None,
            binarizer={"method": method, "k": k, "scaling": "per_sample"}, input_scales=None,
            input_zero_point=128, input_scale=0.02, output_scale=0.1, output_zero_point=0,
            output_clamp=(0, 255), conv=geometry)
        t = best_s(lambda: binary_layer_forward(layer, x), repeat)
        print(f"  binary_conv2d {method} acts x LS-1 weights   {t * 1e3:8.2f} ms  "
              f"{macs / t / 1e9:6.1f} G {k}x1-bit MAC/s   vs int8: {t8 / t:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--k", type=int, default=4608)
    ap.add_argument("--n", type=int, default=196)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    m, k, n, rep = args.m, args.k, args.n, args.repeat
    macs = m * k * n
    rng = np.random.default_rng(0)
    print(f"layer W ({m}, {k}) @ X ({k}, {n}): {macs / 1e6:.1f} M MAC per call; best of {rep}")
    popcount_variants(rep)

    # int8: hwsim's exact integer linear, x (N, in) uint8 codes, w (out, in) int8.
    w8 = rng.integers(-127, 128, size=(m, k), dtype=np.int8)
    w8.flags.writeable = False  # as in an IntProgram: lets hwsim cache the prepared weights
    x8 = rng.integers(0, 256, size=(n, k), dtype=np.uint8)
    acc = AccumulatorSpec(32, "wrap")
    prepared = prepare_linear(w8, 0, None, acc, out_zero_point=0, qmin=-128, qmax=127,
                              requant="float32", scale_f32=np.float32(1e-4))
    t_lin = best_s(lambda: linear_int(x8, 128, w8, 0, None, acc), rep)
    t_prep = best_s(lambda: prepared(x8, 128), rep)
    t_int8 = min(t_lin, t_prep)
    print(f"int8 linear_int (accumulators)         {t_lin * 1e3:8.2f} ms  {macs / t_lin / 1e9:7.1f} GMAC/s")
    print(f"int8 prepare_linear (+requantize)      {t_prep * 1e3:8.2f} ms  {macs / t_prep / 1e9:7.1f} GMAC/s")

    # 1-bit: weights packed once; activations packed per call in the "+pack" figure.
    wb = np.where(rng.random((m, k)) < 0.5, -1, 1).astype(np.int8)
    xb = np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)
    wp, _ = pack_signs(wb)
    xp, _ = pack_signs(xb)
    t_bin = best_s(lambda: xnor_popcount_matmul(wp, xp, k), rep)
    t_bin_pack = best_s(lambda: xnor_popcount_matmul(wp, pack_signs(xb)[0], k), rep)
    for label, t in (("kernel", t_bin), ("+pack", t_bin_pack)):
        print(f"1-bit xnor_popcount_matmul {label:7s}     {t * 1e3:8.2f} ms  {macs / t / 1e9:7.1f} G 1-bit MAC/s"
              f"  {2 * macs / t / 1e9:7.1f} Gbinop/s   vs int8 MAC/s: {t_int8 / t:5.1f}x")

    # Multi-bit forms on the same shape.
    t_bl = best_s(lambda: binary_linear(xb[None].repeat(2, 0), np.ones((2, n)), wb[None].repeat(2, 0),
                                        np.ones((2, m))), max(1, rep // 2))
    print(f"binary_linear 2x2-bit (4 xnor products, incl. packing + float64 combine)  "
          f"{t_bl * 1e3:8.2f} ms  {macs / t_bl / 1e9:7.1f} G 2x2-bit MAC/s  vs int8: {t_int8 / t_bl:5.2f}x")
    x4 = rng.integers(0, 16, size=(n, k), dtype=np.uint8)
    t_bp = best_s(lambda: bitplane_matmul(x4, wb, 4), max(1, rep // 2))
    print(f"bitplane_matmul 4-bit x 1-bit (incl. packing)                          "
          f"{t_bp * 1e3:8.2f} ms  {macs / t_bp / 1e9:7.1f} G 4x1-bit MAC/s  vs int8: {t_int8 / t_bp:5.2f}x")

    # References on a small shape (they are definitions, not fast paths).
    ws, xs = wb[:64, :300], xb[:49, :300]
    wsp, xsp = pack_signs(ws)[0], pack_signs(xs)[0]
    t_rf = best_s(lambda: xnor_popcount_matmul_reference(wsp, xsp, 300), 3)
    t_fs = best_s(lambda: xnor_popcount_matmul(wsp, xsp, 300), 3)
    t_bref = best_s(lambda: bitplane_matmul_reference(x4[:49, :300], ws, 4), 3)
    print(f"small 64x300 @ 300x49: xnor reference {t_rf * 1e3:.3f} ms vs fast {t_fs * 1e3:.3f} ms "
          f"({t_rf / t_fs:.0f}x); bitplane 4-bit reference {t_bref * 1e3:.3f} ms")
    whole_layers(rep)
    print(f"HEADLINE 1-bit MAC/s / int8 MAC/s = {t_int8 / t_bin:.1f}x (kernel), "
          f"{t_int8 / t_bin_pack:.1f}x (+pack); issue target >= 4x")


if __name__ == "__main__":
    main()

"""Benchmark: exact integer conv/linear + requantization vs torch float32 on MobileNetV2 shapes.

Prints, per distinct layer shape, the time of hwsim's fused kernel as the executor runs it (a
layer prepared once with prepare_conv2d / prepare_linear, then called), of the unfused pair
conv2d_int + requantize_float32 (one-shot public calls), and of
torch.nn.functional.conv2d / linear in float32, their ratio, and the whole-network totals
(every layer counted with its multiplicity) at batch 1 and 8; then the int64 reference on one
small shape. Run: PYTHONPATH=. python3 bench/bench_kernels.py [--batches 1 8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hwsim.kernels import (
    AccumulatorSpec,
    conv2d_int,
    prepare_conv2d,
    prepare_linear,
    conv2d_int_reference,
    linear_int,
    ort_output_scale,
    requantize_float32,
)

# (t, c, n, s) inverted-residual settings of MobileNetV2.
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2_layers(size: int = 224) -> list[tuple]:
    """(kind, c_in, c_out, h_in, kernel, stride, groups) for every conv/linear of MobileNetV2."""
    layers = [("conv", 3, 32, size, 3, 2, 1)]
    c_in, h = 32, size // 2
    for t, c, n, s in _SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c_in * t
            if t != 1:
                layers.append(("conv", c_in, hidden, h, 1, 1, 1))
            layers.append(("conv", hidden, hidden, h, 3, stride, hidden))
            h = (h + 2 - 3) // stride + 1
            layers.append(("conv", hidden, c, h, 1, 1, 1))
            c_in = c
    layers.append(("conv", 320, 1280, h, 1, 1, 1))
    layers.append(("linear", 1280, 1000, 1, 1, 1, 1))
    return layers


def _time(fn, repeat: int) -> float:
    fn()  # warm-up (numba compilation is cached on disk after the first run)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _operands(layer, batch, rng):
    kind, c_in, c_out, h, k, stride, groups = layer
    w = np.clip(np.round(rng.normal(0, 32, (c_out, c_in // groups, k, k))), -127, 127).astype(np.int8)
    bias = rng.integers(-20000, 20000, c_out).astype(np.int32)
    shape = (batch, c_in) if kind == "linear" else (batch, c_in, h, h)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    scale = ort_output_scale(np.float32(0.02), rng.uniform(1e-3, 1e-2, c_out).astype(np.float32), np.float32(0.05))
    return x, w, bias, scale


def _fused_fn(layer, x, w, bias, scale):
    kind, _, _, _, k, stride, groups = layer
    acc = AccumulatorSpec()
    rq = dict(out_zero_point=0, qmin=0, qmax=255, requant="float32", scale_f32=scale)
    if kind == "linear":
        prepared = prepare_linear(np.ascontiguousarray(w[:, :, 0, 0]), None, bias, acc, **rq)
    else:
        prepared = prepare_conv2d(w, None, bias, stride, k // 2, 1, groups, acc, **rq)
    return lambda: prepared(x, 3)


def _int_fn(layer, x, w, bias, scale):
    kind, _, _, _, k, stride, groups = layer
    if kind == "linear":
        return lambda: requantize_float32(linear_int(x, 3, w[:, :, 0, 0], None, bias).values, scale, 0, 0, 255, axis=1)
    return lambda: requantize_float32(
        conv2d_int(x, 3, w, None, bias, stride=stride, padding=k // 2, groups=groups).values, scale, 0, 0, 255, axis=1
    )


def _torch_fn(layer, x, w, bias):
    kind, _, _, _, k, stride, groups = layer
    xf, wf, bf = (torch.from_numpy(a.astype(np.float32)) for a in (x, w, bias))
    if kind == "linear":
        wf = wf[:, :, 0, 0].contiguous()
        return lambda: torch.nn.functional.linear(xf, wf, bf)
    return lambda: torch.nn.functional.conv2d(xf, wf, bf, stride=stride, padding=k // 2, groups=groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    layers = mobilenet_v2_layers()
    distinct: dict[tuple, int] = {}
    for layer in layers:
        distinct[layer] = distinct.get(layer, 0) + 1
    for batch in args.batches:
        print(f"\n=== MobileNetV2 224x224, batch {batch}: {len(layers)} layers, {len(distinct)} distinct shapes ===")
        print(f"{'layer (kind cin->cout @h k s g)':40s} {'count':>5s} {'fused ms':>9s} {'unfused':>9s} {'torch ms':>9s} {'ratio':>6s}")
        tot_int = tot_unfused = tot_torch = 0.0
        for layer, count in distinct.items():
            x, w, bias, scale = _operands(layer, batch, rng)
            t_int = _time(_fused_fn(layer, x, w, bias, scale), args.repeat)
            t_unfused = _time(_int_fn(layer, x, w, bias, scale), args.repeat)
            t_torch = _time(_torch_fn(layer, x, w, bias), args.repeat)
            tot_int += count * t_int
            tot_unfused += count * t_unfused
            tot_torch += count * t_torch
            kind, c_in, c_out, h, k, s, g = layer
            name = f"{kind} {c_in}->{c_out} @{h} k{k} s{s} g{g}"
            print(f"{name:40s} {count:5d} {t_int * 1e3:9.3f} {t_unfused * 1e3:9.3f} {t_torch * 1e3:9.3f} {t_int / t_torch:6.2f}")
        print(f"{'TOTAL (conv/linear + requant)':40s} {'':5s} {tot_int * 1e3:9.2f} {tot_unfused * 1e3:9.2f} {tot_torch * 1e3:9.2f} {tot_int / tot_torch:6.2f}")
        print(f"ratio fused / torch float32: {tot_int / tot_torch:.2f}; unfused (conv2d_int + requantize_float32) / torch: {tot_unfused / tot_torch:.2f}")
    layer = ("conv", 16, 8, 8, 3, 1, 1)
    x, w, bias, _ = _operands(layer, 1, rng)
    t_ref = _time(lambda: conv2d_int_reference(x, 3, w, None, bias, padding=1), 1)
    t_fast = _time(lambda: conv2d_int(x, 3, w, None, bias, padding=1), args.repeat)
    print(f"\nint64 reference, conv 16->8 @8x8 3x3: {t_ref * 1e3:.1f} ms (fast kernel {t_fast * 1e3:.3f} ms, {t_ref / t_fast:.0f}x)")


if __name__ == "__main__":
    main()

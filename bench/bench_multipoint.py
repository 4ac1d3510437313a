"""Benchmark: multipoint weights for every conv/linear layer of MobileNetV2 (ImageNet weights).

Per layer (BatchNorm folded) and per width (4-bit and 3-bit points): one point per output
channel, then adaptive extra points with a budget of 10% extra rows (``round(0.1 K)`` extra
points for a layer of K output channels), chosen by the output error on calibration inputs
(Liu et al., "Post-training Quantization with Multiple Points: Mixed Precision without Mixed
Precision", AAAI 2021).  Calibration inputs: each layer's float inputs on the 28 built-in
calibration images, up to ``--rows`` sampled patches (conv: unfolded (C/g)·R·S patches at random
output positions; linear: the input rows).

Printed: the time (wall and CPU: the machine may be shared) of the multipoint fit with the
default search ("best": per channel the exact or the grid ladder of ``max_points`` points,
whichever is better at ``max_points``, so every point of every channel is fitted with both),
with the exact scale search alone (numba kernel; compile excluded; its points are fitted only
for the channels that get them) and with the paper's 400-point grid search, and their ratios;
per width the overall weight relative error ``sqrt(sum ||W - W_hat||^2 / sum ||W||^2)`` over
all layers with one point and with the extra points; per layer the output SQNR
``10 log10(sum_k E[(w_k·x)^2] / sum_k E[(r_k·x)^2])`` (bias excluded, r = w - w_hat) before
and after the extra points (default search).

Run: PYTHONPATH=. python3 bench/bench_multipoint.py [--rows 4096] [--budget 0.1]
     [--max-points 4] [--no-grid] [--numpy-kernel]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

import quant
from quant.execute import float_params, run_graph
from quant.formats.multipoint import MultipointFormat
from quant.formats.multipoint_points import CalibrationStats, allocate_points
from hwsim.zoo import mobilenet_v2
from hwsim.zoo.images import sample_images


@dataclass
class Layer:
    name: str
    weight: np.ndarray        # float64 (K, C/g, R, S) or (out, in)
    groups: int
    stats: CalibrationStats | None = None


def _sample_conv_patches(x: np.ndarray, attrs: dict, kernel: tuple[int, int], rows: int,
                         rng: np.random.Generator) -> np.ndarray:
    """Unfolded patches (P, C·R·S) in (c, r, s) order at ``rows`` random output positions of a
    conv with ``attrs`` on input x (N, C, H, W) (all positions if there are fewer)."""
    top, left, bottom, right = attrs["padding"]
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    r_n, s_n = kernel
    oh = (xp.shape[2] - dh * (r_n - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (s_n - 1) - 1) // sw + 1
    total = x.shape[0] * oh * ow
    flat = np.sort(rng.choice(total, size=rows, replace=False)) if total > rows else np.arange(total)
    n, rest = np.divmod(flat, oh * ow)
    i, j = np.divmod(rest, ow)
    hh = i[:, None] * sh + np.arange(r_n)[None, :] * dh                  # (P, R)
    ww = j[:, None] * sw + np.arange(s_n)[None, :] * dw                  # (P, S)
    patches = xp[n[:, None, None], :, hh[:, :, None], ww[:, None, :]]   # (P, R, S, C)
    return patches.transpose(0, 3, 1, 2).reshape(len(flat), -1)


def collect_layers(rows: int, seed: int = 0) -> list[Layer]:
    """MobileNetV2's conv/linear layers with the statistics of their calibration inputs."""
    model = mobilenet_v2()
    images = sample_images("calib")
    graph = quant.capture(model, images[:1])
    layers = {rec.name: Layer(rec.name, rec.weight.astype(np.float64),
                              rec.attrs.get("groups", 1) if rec.op == "conv2d" else 1)
              for rec in graph if rec.op in ("conv2d", "linear")}
    readers: dict[str, list[str]] = {}
    for rec in graph:
        if rec.name in layers:
            readers.setdefault(rec.inputs[0], []).append(rec.name)
    rng = np.random.default_rng(seed)

    def post(rec, y: torch.Tensor) -> torch.Tensor:
        for name in readers.get(rec.name, ()):
            reader = graph[name]
            x = y.detach().numpy()
            if reader.op == "linear":
                patches = x.reshape(-1, x.shape[-1])
            else:
                kernel = reader.weight.shape[2:]
                patches = _sample_conv_patches(x, reader.attrs, kernel, rows, rng)
            layers[name].stats = CalibrationStats.from_inputs(patches, layers[name].groups)
        return y

    run_graph(graph, images, float_params(graph), post=post, keep=False)
    return list(layers.values())


def fit_all(layers: list[Layer], fmt: MultipointFormat, budget: float
            ) -> tuple[list, float, float]:
    """(allocation per layer, wall seconds, CPU seconds) for ``round(budget · K)`` extra
    points per layer."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = [allocate_points(layer.weight, fmt, layer.stats,
                           budget=int(round(budget * layer.weight.shape[0])))
           for layer in layers]
    return out, time.perf_counter() - t0, time.process_time() - c0


def weight_error(layers: list[Layer], params: list) -> float:
    """Overall relative weight error of per-layer ``MultipointParams``."""
    num = den = 0.0
    for layer, p in zip(layers, params):
        num += float(np.sum((layer.weight - p.dequantize()) ** 2))
        den += float(np.sum(layer.weight ** 2))
    return float(np.sqrt(num / den))


def sqnr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    total = float(np.sum(noise))
    return float("inf") if total == 0 else 10.0 * np.log10(float(np.sum(signal)) / total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=4096, help="calibration patches per layer")
    ap.add_argument("--budget", type=float, default=0.1, help="extra rows per layer, fraction of K")
    ap.add_argument("--max-points", type=int, default=4)
    ap.add_argument("--no-grid", action="store_true", help="skip the 400-point grid comparison")
    ap.add_argument("--numpy-kernel", action="store_true",
                    help="also time the exact search's numpy reference (the numba kernel's speed-up)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    layers = collect_layers(args.rows)
    n_weights = sum(layer.weight.size for layer in layers)
    print(f"MobileNetV2: {len(layers)} conv/linear layers, {n_weights} weights; calibration "
          f"statistics from 28 images (<= {args.rows} patches per layer) in "
          f"{time.perf_counter() - t0:.1f} s")
    warm = np.random.default_rng(0).standard_normal((2, 9))
    allocate_points(warm, MultipointFormat(4, 2), CalibrationStats.from_inputs(np.eye(9)),
                    budget=1)                                         # numba compile / cache load

    results = {}
    for bits in (4, 3):
        fmt = MultipointFormat(bits, args.max_points)
        allocs, t_best, c_best = fit_all(layers, fmt, args.budget)
        print(f"{bits}-bit points, {args.budget:.0%} extra rows, up to {args.max_points} points "
              f"per channel: multipoint fit + adaptive points")
        print(f"    default search (best)      {t_best:6.2f} s wall  {c_best:6.2f} s CPU")
        exact = replace(fmt, search="exact")
        exact_allocs, t_exact, c_exact = fit_all(layers, exact, args.budget)
        print(f"    exact search (numba)       {t_exact:6.2f} s wall  {c_exact:6.2f} s CPU   "
              f"best / exact = {t_best / t_exact:.1f}x wall, {c_best / c_exact:.1f}x CPU")
        if args.numpy_kernel:
            _, t_np, c_np = fit_all(layers, replace(exact, kernel="numpy"), args.budget)
            print(f"    exact search (numpy ref.)  {t_np:6.2f} s wall  {c_np:6.2f} s CPU   "
                  f"numpy / numba = {c_np / c_exact:.1f}x CPU")
        grid_allocs = None
        if not args.no_grid:
            grid_allocs, t_grid, c_grid = fit_all(layers, replace(fmt, search="grid"),
                                                  args.budget)
            print(f"    400-point grid search      {t_grid:6.2f} s wall  {c_grid:6.2f} s CPU   "
                  f"grid / exact = {t_grid / t_exact:.1f}x wall, {c_grid / c_exact:.1f}x CPU")
        results[bits] = {"best": allocs, "exact": exact_allocs, "grid": grid_allocs}

    print("\noverall weight relative error sqrt(sum ||W - W_hat||^2 / sum ||W||^2), 1 point -> "
          "with points:")
    for bits, by_search in results.items():
        cells = [f"{search} {weight_error(layers, [a.base_params for a in allocs]):.4f} -> "
                 f"{weight_error(layers, [a.params for a in allocs]):.4f}"
                 for search, allocs in by_search.items() if allocs is not None]
        print(f"  {bits}-bit  " + "   | ".join(cells))

    print("\nper-layer output SQNR (dB), 1 point -> with extra points (default search):")
    print(f"  {'layer':24s} {'K':>5s} {'d':>5s} {'g':>4s} " + "".join(
        f"{f'{b}-bit':>8s} {'->':>2s} {'':6s} {'+pts':>5s}   " for b in results))
    for i, layer in enumerate(layers):
        k, d = layer.weight.shape[0], layer.weight[0].size
        w = layer.weight.reshape(k, -1)
        signal = layer.stats.mean_square(w)
        cells = ""
        for by_search in results.values():
            alloc = by_search["best"][i]
            cells += (f"{sqnr_db(signal, alloc.base_errors):8.2f} -> "
                      f"{sqnr_db(signal, alloc.errors):6.2f} {alloc.params.extra_points:5d}   ")
        print(f"  {layer.name:24s} {k:5d} {d:5d} {layer.groups:4d} {cells}")


if __name__ == "__main__":
    main()

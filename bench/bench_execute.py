"""Bit-accurate int8 MobileNetV2 (224x224) vs the torch float32 forward of the same model.

Prints the median and the minimum wall time over repeated runs, and their ratios (issue target:
int8 batch 1 <= 2x the float forward). Both run in this process on the same machine, in blocks
(torch, hwsim, torch, hwsim: alternating single runs would let each library's spinning worker
threads slow the other), with the same repeat count; torch uses its default threads. On a shared
machine the minimum is the steadier figure (the run least disturbed by other load).

    python bench/bench_execute.py [--repeats 10] [--batches 1 8]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from hwsim.executor import execute
from hwsim.flows import quantize_zoo_model


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paired_seconds(fn_a, fn_b, repeats: int) -> tuple[list[float], list[float]]:
    """Wall times of fn_a and fn_b in two rounds of blocks (a, b, a, b), `repeats` runs each."""
    a, b = [], []
    for _ in range(2):
        for fn, times in ((fn_a, a), (fn_b, b)):
            fn()  # warm-up (numba compilation, allocator, thread pools)
            times.extend(timed(fn) for _ in range(max(repeats // 2, 1)))
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--requant", choices=["dyadic", "float32"], default="dyadic")
    args = ap.parse_args()

    flow = quantize_zoo_model("mobilenet_v2", requant=args.requant)
    from hwsim import zoo

    model = zoo.mobilenet_v2().eval()
    images = flow.eval_images
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, requant {args.requant}")
    print(f"{'batch':>5} {'stat':>6} {'torch f32 ms':>13} {'hwsim int8 ms':>14} {'ratio':>7}")
    for batch in args.batches:
        x = images[np.arange(batch) % images.shape[0]]
        codes = flow.qm.quantize_input(x)

        def float_forward():
            with torch.inference_mode():
                model(x)

        t_float, t_int = paired_seconds(float_forward,
                                        lambda: execute(flow.program, codes, check=False),
                                        args.repeats)
        for stat, fn in (("median", statistics.median), ("min", min)):
            f, i = fn(t_float), fn(t_int)
            print(f"{batch:>5} {stat:>6} {f * 1e3:>13.2f} {i * 1e3:>14.2f} {i / f:>7.2f}")


if __name__ == "__main__":
    main()

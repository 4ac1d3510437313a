"""Benchmark: the shift-add (APoT) conv kernels vs hwsim's exact int8 conv on the same shapes.

Layers (batch 1, all figures from one run): a 3x3 conv 256->256 on 14x14 (padding 1) and a
1x1 conv 768->768 on 14x14; both are 115.6 M products. Inputs are uint8 codes (zero point 128).

- shift-add datapath: `conv2d_shift_add` with a saturating 16-bit adder, so the no-clip bound
  fails and the numba datapath kernel walks every term (the call includes building the term
  table and the padded input; the table build is also timed on its own);
- shift-add fast path: `conv2d_shift_add` with a wrapping 32-bit adder (exact sums, BLAS);
- int8: `conv2d_int` with int8 weights (32-bit wrap), and the fused prepared layer
  `prepare_conv2d` (float32 requantization, codes out) as the executor runs it; and
  `conv2d_int` with BLAS limited to one thread (threadpoolctl), since the numba datapath
  kernel is single-threaded;
- for reference, `conv2d_int` saturating at 16 bits (multiply-then-add, its own numba kernel),
  which gives bit-identical results to the shift-add datapath (see reference/shift_add.py).

Weights are 4-bit APoT levels with random signs (1.5 terms per product on average) and
read-only, as in an IntProgram, so hwsim caches prepared weights for every path alike.
Throughput is G products/s (= GMAC/s). Ratios are speeds: > 1 means faster than int8.

Run: .venv/bin/python bench/bench_shift_add.py [--repeat 7]
"""

from __future__ import annotations

import argparse

import numpy as np

from hwsim.kernels import AccumulatorSpec, conv2d_int, prepare_conv2d
from hwsim.kernels import _nb_shift_add
from hwsim.kernels import shift_add as shift_add_module
from hwsim.kernels.shift_add import conv2d_shift_add, shift_add_terms

from _timing import timed  # bench/_timing.py (the scripts run from bench/)

APOT4 = np.array([0, 1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 33, 36, 48])


def one_thread(fn):
    """fn() with BLAS limited to one thread (the numba kernels are single-threaded), when
    threadpoolctl is installed; else fn() as is."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return fn()
    with threadpool_limits(1):
        return fn()


def layer(name: str, c: int, k: int, r: int, hw: int, repeat: int, rng) -> dict:
    pad = r // 2
    x = rng.integers(0, 256, size=(1, c, hw, hw), dtype=np.uint8)
    w_apot = (APOT4[rng.integers(0, 16, size=(k, c, r, r))]
              * np.where(rng.random((k, c, r, r)) < 0.5, -1, 1)).astype(np.int8)
    w_int8 = rng.integers(-127, 128, size=(k, c, r, r), dtype=np.int8)
    w_apot.flags.writeable = False
    w_int8.flags.writeable = False
    products = k * c * r * r * hw * hw
    sat16, wrap32 = AccumulatorSpec(16, "saturate"), AccumulatorSpec(32, "wrap")

    datapath = shift_add_module._plan(x, 128, w_apot, np.zeros(k, np.int64), sat16)[0]
    assert datapath, "the bound must fail so that the datapath kernel runs"
    res = conv2d_shift_add(x, 128, w_apot, padding=pad, acc=sat16)
    same = conv2d_int(x, 128, w_apot, padding=pad, acc=sat16)
    assert np.array_equal(res.values, same.values) and res.overflow_count == same.overflow_count
    table = _nb_shift_add.term_table(w_apot.reshape(k, -1), 6)
    terms = int(table[0][-1]) * hw * hw  # term additions per call (padded taps included)

    prepared = prepare_conv2d(w_int8, 0, None, 1, pad, 1, 1, wrap32, out_zero_point=0, qmin=0,
                              qmax=255, requant="float32",
                              scale_f32=np.full(k, 1e-4, np.float32))
    runs = {
        "shift-add datapath (saturate 16-bit, numba)":
            lambda: conv2d_shift_add(x, 128, w_apot, padding=pad, acc=sat16),
        "  of which: term table build":
            lambda: _nb_shift_add.term_table(w_apot.reshape(k, -1), 6),
        "shift-add fast path (wrap 32-bit, exact sums)":
            lambda: conv2d_shift_add(x, 128, w_apot, padding=pad, acc=wrap32),
        "int8 conv2d_int (wrap 32-bit)":
            lambda: conv2d_int(x, 128, w_int8, padding=pad, acc=wrap32),
        "int8 prepare_conv2d (+float32 requant)":
            lambda: prepared(x, 128),
        "int8 conv2d_int (wrap 32-bit), BLAS on 1 thread like the datapath":
            lambda: one_thread(lambda: conv2d_int(x, 128, w_int8, padding=pad, acc=wrap32)),
        "int8-path conv2d_int saturate 16-bit (same values as the datapath)":
            lambda: conv2d_int(x, 128, w_apot, padding=pad, acc=sat16),
    }
    print(f"\n{name}: {products / 1e6:.1f} M products, 4-bit APoT weights "
          f"(<= {shift_add_terms(w_apot)} terms, {table[0][-1] / w_apot.size:.2f} per weight), "
          f"{terms / 1e6:.1f} M term additions; datapath overflowed {res.overflow_count} of "
          f"{res.values.size} outputs; min / median of {repeat}")
    times = {}
    for label, fn in runs.items():
        t_min, t_med = timed(fn, repeat)
        times[label] = (t_min, t_med)
        rate = "" if "table" in label else (f"{products / t_min / 1e9:7.2f} G products/s")
        if label.startswith("shift-add datapath"):
            rate += f"  {terms / t_min / 1e9:6.2f} G terms/s"
        print(f"  {label:67s} {t_min * 1e3:8.2f} ms  {t_med * 1e3:8.2f} ms  {rate}")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    results = {
        "3x3 conv 256->256 on 14x14": layer("3x3 conv 256->256 on 14x14", 256, 256, 3, 14,
                                            args.repeat, rng),
        "1x1 conv 768->768 on 14x14": layer("1x1 conv 768->768 on 14x14", 768, 768, 1, 14,
                                            args.repeat, rng),
    }
    print("\nspeed ratios (int8 time / shift-add time, from the min times; > 1: shift-add faster)")
    for name, t in results.items():
        int8 = t["int8 conv2d_int (wrap 32-bit)"][0]
        fused = t["int8 prepare_conv2d (+float32 requant)"][0]
        dp = t["shift-add datapath (saturate 16-bit, numba)"][0]
        fast = t["shift-add fast path (wrap 32-bit, exact sums)"][0]
        int8_1t = t["int8 conv2d_int (wrap 32-bit), BLAS on 1 thread like the datapath"][0]
        sat_int = t["int8-path conv2d_int saturate 16-bit (same values as the datapath)"][0]
        print(f"  {name}: datapath / int8 conv2d_int = {int8 / dp:.3f}x, "
              f"datapath / int8 prepared = {fused / dp:.3f}x, "
              f"datapath / int8 conv2d_int on 1 thread = {int8_1t / dp:.3f}x, "
              f"fast path / int8 conv2d_int = {int8 / fast:.2f}x, "
              f"datapath / conv2d_int saturate = {sat_int / dp:.2f}x")


if __name__ == "__main__":
    main()

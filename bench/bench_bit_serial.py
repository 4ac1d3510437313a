"""Benchmark: ResNet-18 on the bit-serial configs (Stripes, Loom) against the bit-parallel
baseline of the same lanes, at uniform widths, plus the wall time of costing it.

Workload: `builtin_workload("resnet18")` (224 x 224, batch 1: 20 conv layers and the FC layer),
every layer at a = w = b bits for b in 8, 6, 4, 2. Configs: hw_configs/stripes.yaml and
hw_configs/loom.yaml; the baseline is the same file with ``compute.mode=bit_parallel`` (P x
P-bit MAC lanes, as many as the serial array's equivalent; same memories): see
hwsim/arch/bit_serial.py. Ratios are baseline / bit-serial: > 1 means the bit-serial design is
faster (speedup) or spends less energy. "compute" columns use compute cycles / compute energy
only; "total" ones include memory stalls / memory energy. Ideal compute speedups: Stripes 16/b,
Loom 256/b^2 (the folds of layers with few filters, few channels or one output pixel lower
them).

Run: PYTHONPATH=. python bench/bench_bit_serial.py [--repeat 7]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from hwsim.arch import load_accelerator
from hwsim.cost import cost_network
from hwsim.workloads import builtin_workload

from _timing import timed  # bench/_timing.py (the scripts run from bench/)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"stripes": REPO / "hw_configs" / "stripes.yaml",
           "loom": REPO / "hw_configs" / "loom.yaml"}
BITS = (8, 6, 4, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    layers = builtin_workload("resnet18")
    print(f"ResNet-18 (224x224, batch 1): {len(layers)} layers, "
          f"{sum(l.macs() for l in layers) / 1e9:.3f} G MACs; ratios = baseline / bit-serial")
    header = (f"{'config':8s} {'bits':>4s} {'cycles':>11s} {'base cycles':>12s} "
              f"{'speedup':>8s} {'compute':>8s} {'ideal':>6s} {'energy uJ':>10s} "
              f"{'base uJ':>10s} {'E ratio':>8s} {'compute':>8s} {'util':>6s} {'base util':>9s}")
    print(header)
    print("-" * len(header))
    timings = []
    for kind, path in CONFIGS.items():
        serial = load_accelerator(path)
        base = load_accelerator(path, ["compute.mode=bit_parallel"])
        for bits in BITS:
            at = [replace(l, act_bits=bits, weight_bits=bits) for l in layers]
            s, b = cost_network(serial, at), cost_network(base, at)
            ideal = 16 / bits if kind == "stripes" else 256 / bits**2
            print(f"{kind:8s} {bits:4d} {s.total_cycles:11,d} {b.total_cycles:12,d} "
                  f"{b.total_cycles / s.total_cycles:8.2f} "
                  f"{b.compute_cycles / s.compute_cycles:8.2f} {ideal:6.2f} "
                  f"{s.energy_total_pj / 1e6:10.1f} {b.energy_total_pj / 1e6:10.1f} "
                  f"{b.energy_total_pj / s.energy_total_pj:8.2f} "
                  f"{b.energy_compute_pj / s.energy_compute_pj:8.2f} "
                  f"{s.utilization:6.3f} {b.utilization:9.3f}")
        eight = [replace(l, act_bits=8, weight_bits=8) for l in layers]
        timings.append((kind, timed(lambda: cost_network(serial, eight), args.repeat)))
    print(f"\nwall time of cost_network(ResNet-18) at 8 bits, min / median of {args.repeat}:")
    for kind, (t_min, t_med) in timings:
        print(f"  {kind:8s} {t_min * 1e3:7.2f} ms  {t_med * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()

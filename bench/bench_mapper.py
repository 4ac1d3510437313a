"""Benchmark the default loop-nest mapper (prints figures; asserts nothing).

    PYTHONPATH=. python3 bench/bench_mapper.py

Maps all 54 layers of ResNet-50 on an Eyeriss-like hierarchy (config B of
tests/data/zigzag/README.md: 14x12 PEs, per-PE RFs, one shared 108 KiB GB, DRAM), objective
energy. Target: <= 50 ms for the whole network, cold (the mapper's per-shape cache cleared
before each run). Also prints the cold times of the two other objectives (latency, edp).

The mapper's results are pinned by tests/data/loopnest_mapper_golden.json (regenerate with
``python tests/test_loopnest.py --regen``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import timed  # noqa: E402

from hwsim.mapping import ConvDims, clear_mapper_cache, NestLevel, Precisions, map_layer, mapper_candidates  # noqa: E402
from hwsim.workloads import builtin_workload  # noqa: E402

ROWS, COLS = 12, 14
HIER = (
    NestLevel("dram", ("ifmap", "filter", "ofmap"), None, False, 64, 200.0, 200.0, 64.0, 1),
    NestLevel("gb", ("ifmap", "filter", "ofmap"), 108 * 8192, False, 64, 6.0, 6.0, 256.0, 2),
    NestLevel("rf_o", ("ofmap",), 24 * 32, True, 32, 1.0, 1.0, 32.0, 4),
    NestLevel("rf_i", ("ifmap",), 12 * 8, True, 8, 1.0, 1.0, 8.0, 2),
    NestLevel("rf_w", ("filter",), 224 * 8, True, 8, 1.0, 1.0, 8.0, 2),
)
PREC = Precisions(ifmap=8, filter=8, psum=32, ofmap=8)


def main() -> None:
    layers = builtin_workload("resnet50")
    dims = [ConvDims.from_layer(layer) for layer in layers]
    n_cand = sum(len(mapper_candidates(d, ROWS, COLS)) for d in set(dims))

    def run(objective: str = "energy"):
        clear_mapper_cache()  # cold: each timed run searches every distinct layer shape once
        return [map_layer(d, HIER, PREC, ROWS, COLS, 1.0, objective) for d in dims]

    t_min, t_med = timed(run, 5)
    results = run()
    energy = sum(c.energy_pj * layer.groups for layer, (_n, c) in zip(layers, results))
    cycles = sum(c.latency_cycles * layer.groups for layer, (_n, c) in zip(layers, results))
    fits = sum(c.fits for _n, c in results)
    print(f"ResNet-50: {len(layers)} layers ({len(set(dims))} distinct shapes), {n_cand} candidates, map_layer on all: "
          f"min {t_min * 1e3:.1f} ms, median {t_med * 1e3:.1f} ms (target <= 50 ms); "
          f"{t_min / n_cand * 1e6:.0f} us per candidate")
    print(f"  all fit: {fits}/{len(layers)}; energy {energy / 1e6:.1f} uJ, latency {cycles / 1e6:.2f} Mcycles")
    others = {obj: timed(lambda: run(obj), 5)[0] for obj in ("latency", "edp")}
    print("  other objectives (cold, min): " + ", ".join(f"{obj} {t * 1e3:.1f} ms" for obj, t in others.items()))
    for layer, (nest, cost) in list(zip(layers, results))[:3]:
        print(f"  {layer.name}: {nest.to_dict()['spatial']} {nest.temporal} E={cost.energy_pj:.3g} pJ "
              f"L={cost.latency_cycles:.0f}")


if __name__ == "__main__":
    main()

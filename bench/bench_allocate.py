"""Benchmark the bit allocator on a ResNet-50-sized instance (prints figures; asserts nothing).

    PYTHONPATH=. python3 bench/bench_allocate.py

The 54 layers of ResNet-50 (``hwsim.workloads.builtin_workload("resnet50")``) x 16 options
(weight bits {2, 3, 4, 8} x activation bits {4, 6, 8, 16}), priced by hwsim's accelerator model
(``hwsim.cost.price_options``) on a bit-serial accelerator, hw_configs/loom.yaml (Loom: latency
and energy fall with both widths):

* latency_cycles, energy_pj, size_bits: per layer and option, from the accelerator model (the
  pricing time is printed too);
* omega: SYNTHETIC, s_l x (4**-wb + 4**-ab) x (1 + 0.2 u), with s_l log-normal and u uniform (the
  usual quantization-noise model, seeded: the instance is the same on every run). The built-in
  ResNet-50 has random weights, so a measured sensitivity would mean nothing here; the solvers'
  time does not depend on where omega comes from.

Budget: latency at 50% between its minimum and maximum achievable totals. Targets: greedy
<= 5 ms, MILP <= 1 s. Also: MILP with two budgets (latency, and energy at 50%) and the DP.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import timed  # noqa: E402

from hwsim.arch import load_accelerator  # noqa: E402
from hwsim.cost import price_options  # noqa: E402
from hwsim.workloads import builtin_workload  # noqa: E402
from quant.allocate import Option, solve_allocation  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "hw_configs" / "loom.yaml"

SEED = 2021
W_BITS = (2, 3, 4, 8)
A_BITS = (4, 6, 8, 16)


def instance() -> tuple[list[str], list[Option], np.ndarray, dict[str, np.ndarray], float]:
    """(layer names, options, omega, costs, pricing time in s)."""
    layers = builtin_workload("resnet50")
    accel = load_accelerator(CONFIG)
    rng = np.random.default_rng(SEED)
    opts = [Option(wb, ab) for wb in W_BITS for ab in A_BITS]
    wb = np.array([o.weight_bits for o in opts], dtype=np.float64)
    ab = np.array([o.act_bits for o in opts], dtype=np.float64)
    price = timed(lambda: price_options(accel, layers, opts), 5)
    priced = price_options(accel, layers, opts)
    costs = {r: np.asarray(priced.resources[r], dtype=np.float64)
             for r in ("latency_cycles", "energy_pj", "size_bits")}
    L, K = len(layers), len(opts)
    sens = rng.lognormal(mean=0.0, sigma=1.5, size=(L, 1))
    omega = sens * (4.0 ** -wb + 4.0 ** -ab) * (1.0 + 0.2 * rng.random((L, K)))
    return [l.name for l in layers], opts, omega, costs, price[0]


def at_half(a: np.ndarray) -> float:
    lo, hi = a.min(axis=1).sum(), a.max(axis=1).sum()
    return float(lo + 0.5 * (hi - lo))


def main() -> None:
    names, opts, omega, costs, t_price = instance()
    L, K = omega.shape
    lat = {"latency_cycles": at_half(costs["latency_cycles"])}
    both = {**lat, "energy_pj": at_half(costs["energy_pj"])}
    print(f"ResNet-50, L={L} layers x K={K} options; latency, energy and size priced on "
          f"{CONFIG.name} by hwsim's accelerator model in {t_price * 1e3:.2f} ms (min of 5); "
          f"omega SYNTHETIC (seeded noise model)")
    print(f"budget latency_cycles <= {lat['latency_cycles']:.6g} (50% between min and max)")

    def run(budgets, method):
        return solve_allocation(omega, costs, budgets, method, layer_names=names, option_labels=opts)

    g = run(lat, "greedy")
    m = run(lat, "milp")
    d = run(lat, "dp")
    m2 = run(both, "milp")
    t_g = timed(lambda: run(lat, "greedy"), 50)
    t_m = timed(lambda: run(lat, "milp"), 5)
    t_d = timed(lambda: run(lat, "dp"), 3)
    t_m2 = timed(lambda: run(both, "milp"), 5)

    def row(label, a, t, target=""):
        print(f"  {label:<22} min {t[0] * 1e3:8.2f} ms  median {t[1] * 1e3:8.2f} ms{target:>17}  "
              f"objective {a.objective:.9g}  status {a.status}  gap_bound {a.gap_bound:.3g}")

    row("greedy", g, t_g, "(target <= 5)")
    row("milp", m, t_m, "(target <= 1000)")
    row("dp (discretized)", d, t_d)
    row("milp, 2 budgets", m2, t_m2)
    gap = g.objective - m.objective
    print(f"greedy vs MILP optimum: gap {gap:.3g} ({gap / abs(m.objective):.2%}); greedy's reported "
          f"bound {g.gap_bound:.3g} (LP bound {g.lp_bound:.9g}); bound holds: {gap <= g.gap_bound + 1e-12}")
    print(f"dp vs MILP optimum: gap {d.objective - m.objective:.3g}")
    print(f"totals at the MILP optimum: latency {m.totals['latency_cycles']:.6g} cycles, energy "
          f"{m.totals['energy_pj']:.6g} pJ; with both budgets: {m2.totals['latency_cycles']:.6g}, "
          f"{m2.totals['energy_pj']:.6g} (energy budget {both['energy_pj']:.6g})")


if __name__ == "__main__":
    main()

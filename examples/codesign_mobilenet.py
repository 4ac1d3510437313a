"""Hardware-aware mixed precision for MobileNetV2 on Bit Fusion: the co-design loop end to end.

MobileNetV2 (real ImageNet weights, the built-in calibration and evaluation images) on
hw_configs/bitfusion.yaml (Sharma et al., ISCA 2018). Per layer one of the int options W8A8,
W4A8, W8A4, W4A4, W2A8, W2A2; sensitivity by the empirical Fisher; the allocator's cost tables
from the accelerator model; every plan quantized, lowered to a bit-accurate integer program,
verified against the float model and simulated. One table compares:

* uniform W8A8 and uniform W4A8;
* a size-constrained plan: the model size of uniform W4A8 (``size_bits`` <= 0.5x W8A8), chosen
  by sensitivity alone (what a hardware-blind allocator does);
* the hardware-aware plan: latency and energy each <= 0.5x of W8A8 if feasible, else the
  tightest feasible budgets (the minimum achievable ratios are printed);
* a hardware-aware plan at uniform W4A8's latency and energy: the same hardware cost as W4A8,
  with the precision spent where the sensitivity says.

Columns: simulated latency (ms at the accelerator clock), energy (uJ), model size (weight codes,
Mbit), output SQNR of the integer program vs float (dB), top-1 agreement with float over the
evaluation images, and whether the allocator's predicted latency and energy equal the simulated
ones (they must: same analytical model).

    python examples/codesign_mobilenet.py        # a few minutes on 2 cores
"""
import time

from hwsim.arch import load_accelerator
from hwsim.codesign import prepare
from quant.allocate import AllocationError, Option

CONFIG = "hw_configs/bitfusion.yaml"
OPTIONS = [Option(8, 8), Option(4, 8), Option(8, 4), Option(4, 4), Option(2, 8), Option(2, 2)]
W8A8, W4A8 = Option(8, 8), Option(4, 8)

t0 = time.perf_counter()
accel = load_accelerator(CONFIG)
problem = prepare("mobilenet_v2", accel, OPTIONS, sensitivity="empirical_fisher")
base = problem.base_totals
print(f"MobileNetV2 on {accel.name}: {len(problem.layers)} conv/linear layers, "
      f"{len(OPTIONS)} options, {len(problem.ties)} act_bits ties; prepared in "
      f"{time.perf_counter() - t0:.0f} s")

# what the hardware allows at all: every layer at its cheapest option (under the ties)
mins = {r: problem.min_total(r) / base[r] for r in ("latency_cycles", "energy_pj")}
dw = [l for l, shape in zip(problem.layers, problem.base_realization.workload) if shape.groups > 1]
dw_share = sum(problem.base_costs["latency_cycles"][problem.layers.index(n)] for n in dw) \
    / base["latency_cycles"]
print(f"minimum achievable latency {mins['latency_cycles']:.3f}x and energy "
      f"{mins['energy_pj']:.3f}x of uniform W8A8; the {len(dw)} depthwise layers take "
      f"{100 * dw_share:.1f}% of W8A8's cycles and are no faster at lower widths")


def hardware_aware(target: float):
    """Latency and energy each <= target x W8A8, or the tightest feasible budgets."""
    floor = {r: problem.min_total(r) for r in mins}
    for slack in (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3):
        budgets = {r: max(target * base[r], floor[r] + slack * (base[r] - floor[r])) for r in mins}
        try:
            problem.allocate(budgets)
        except AllocationError:
            continue
        return budgets
    raise SystemExit("no feasible hardware-aware budget found")


rows = []
rows.append(("uniform W8A8", problem.uniform(W8A8)))
rows.append(("uniform W4A8", problem.uniform(W4A8)))
w4 = rows[-1][1]
rows.append(("size = W4A8 (size_bits 0.5x)", problem.solve({"size_bits": "0.5x"})))
hw = hardware_aware(0.5)
reached = {r: hw[r] / base[r] for r in hw}
label = ("HW-aware: lat & energy 0.5x" if all(abs(v - 0.5) < 1e-12 for v in reached.values())
         else f"HW-aware: tightest {reached['latency_cycles']:.3f}x lat, "
              f"{reached['energy_pj']:.3f}x en")
if label != "HW-aware: lat & energy 0.5x":
    print(f"0.5x latency is unreachable (minimum {mins['latency_cycles']:.3f}x): the hardware-aware "
          f"plan uses the tightest feasible budgets, {reached['latency_cycles']:.3f}x latency and "
          f"{reached['energy_pj']:.3f}x energy")
rows.append((label, problem.solve(hw)))
rows.append(("HW-aware: lat & energy = W4A8",
             problem.solve({"latency_cycles": w4.predicted["latency_cycles"],
                            "energy_pj": w4.predicted["energy_pj"]})))

print()
print(f"{'plan':<44}{'latency ms':>11}{'energy uJ':>11}{'size Mbit':>10}{'SQNR dB':>9}"
      f"{'top-1 agr':>10}{'lat x':>7}{'en x':>7}  predicted == simulated")
for name, r in rows:
    c = r.simulated
    size = r.realization.totals()["size_bits"]
    pvs = r.predicted_vs_simulated()
    same = all(pvs[k]["equal"] for k in ("latency_cycles", "energy_pj"))
    fid = r.fidelity
    print(f"{name:<44}{c.latency_s * 1e3:>11.3f}{c.energy_total_pj / 1e6:>11.1f}{size / 1e6:>10.3f}"
          f"{fid['sqnr_db']:>9.2f}{fid['top1_agreement']:>10.3f}"
          f"{c.total_cycles / base['latency_cycles']:>7.3f}"
          f"{pvs['energy_pj']['simulated'] / base['energy_pj']:>7.3f}  "
          f"{'yes' if same else 'NO'} (latency {pvs['latency_cycles']['predicted']:.0f} cycles)")

print()
for name, r in rows[2:]:
    counts: dict[str, int] = {}
    for o in r.chosen.values():
        counts[o.label] = counts.get(o.label, 0) + 1
    mix = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
    print(f"{name}: {mix}; solver {r.allocation.status} in {r.allocation.time_s:.2f} s")
cheap = [(name, r) for name, r in rows[1:]
         if r.simulated.total_cycles <= w4.simulated.total_cycles
         and r.realization.totals()["energy_pj"] <= w4.realization.totals()["energy_pj"]]
name, best = max(cheap, key=lambda nr: nr[1].fidelity["top1_agreement"])
print(f"at or below uniform W4A8's latency and energy, the best top-1 agreement with float is "
      f"{best.fidelity['top1_agreement']:.3f} ({name}); uniform W8A8 has "
      f"{rows[0][1].fidelity['top1_agreement']:.3f}")
print(f"images: {rows[0][1].fidelity['images']} evaluation images; total "
      f"{time.perf_counter() - t0:.0f} s")

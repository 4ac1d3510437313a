"""Joint format choice on a heterogeneous accelerator: int, APoT and binary weights for MobileNetV2.

hw_configs/hetero_int8_xnor_apot.yaml has three units: an int8 MAC array (the first and last
layers, and uniform "int" weights), a shift-add unit for additive-powers-of-two weights (Li et
al., ICLR 2020) and an XNOR/popcount unit for least-squares binary weights (Pouransari et al.,
CVPR Workshops 2020) fed 4-bit activations as bit planes. The format an option gives a layer
decides the unit it runs on, so choosing formats per layer is choosing units: the allocator
prices every (layer, option) on the unit it would run on and picks, per layer, among

    int W8A8, int W4A8, int W4A4, APoT W4A8, APoT W5A8, binary W1A4, binary W2A4

under an energy budget (and, second, a latency budget). Each plan is quantized, lowered to a
bit-accurate integer program, verified against the float model and simulated; every layer the
plan moves off int W8A8 is also run by the int64 reference kernels on the fast run's own inputs
(two images) and compared bit for bit (the whole network by the reference kernels takes minutes
per image; the int8 layers' kernels are checked against their references in the test suite).
The per-layer plan shows each layer's option and unit.

    python examples/codesign_hetero.py        # a few minutes on 2 cores
"""
import time

import numpy as np

from hwsim import execute
from hwsim.executor import execute_node
from hwsim.arch import load_accelerator
from hwsim.codesign import prepare
from quant.allocate import Option

CONFIG = "hw_configs/hetero_int8_xnor_apot.yaml"
OPTIONS = [Option(8, 8), Option(4, 8), Option(4, 4), Option(4, 8, "apot"), Option(5, 8, "apot"),
           Option(1, 4, "binary"), Option(2, 4, "binary")]
BUDGETS = {"energy 0.9x": {"energy_pj": "0.9x"}, "latency 0.9x": {"latency_cycles": "0.9x"}}

t0 = time.perf_counter()
accel = load_accelerator(CONFIG)
problem = prepare("mobilenet_v2", accel, OPTIONS, sensitivity="empirical_fisher")
base = problem.base_totals
print(f"MobileNetV2 on {accel.name}: {len(problem.layers)} conv/linear layers x {len(OPTIONS)} "
      f"options ({', '.join(o.label for o in OPTIONS)}); prepared in "
      f"{time.perf_counter() - t0:.0f} s")
for r in ("latency_cycles", "energy_pj"):
    print(f"  minimum achievable {r}: {problem.min_total(r) / base[r]:.3f}x of uniform int W8A8")



def fast_equals_reference(r, images) -> str:
    """Every layer not at int W8A8, by the reference kernels on the fast run's inputs."""
    run = execute(r.program, r.realization.quantized.quantize_input(images), record=True)
    moved = [n for n in r.layers if r.chosen[n] != Option(8, 8)]
    for name in moved:
        node = r.program.node(name)
        ref, _ = execute_node(node, [run.tensors[s] for s in node.inputs], backend="reference")
        if not np.array_equal(ref, run.tensors[name]):
            return f"NO ({name})"
    return f"yes ({len(moved)} layers)"


rows = [("uniform int W8A8", problem.uniform(Option(8, 8)))]
rows += [(f"plan, {name}", problem.solve(b)) for name, b in BUDGETS.items()]

print(f"\n{'network':<22}{'latency ms':>11}{'energy uJ':>11}{'SQNR dB':>9}{'top-1 agr':>10}"
      f"  predicted == simulated  fast == reference")
for name, r in rows:
    pvs = r.predicted_vs_simulated()
    same = all(pvs[k]["equal"] for k in ("latency_cycles", "energy_pj"))
    fid = r.fidelity
    print(f"{name:<22}{r.simulated.latency_s * 1e3:>11.3f}{r.simulated.energy_total_pj / 1e6:>11.1f}"
          f"{fid['sqnr_db']:>9.2f}{fid['top1_agreement']:>10.3f}  {'yes' if same else 'NO':<23}"
          f"{fast_equals_reference(r, problem.eval_images[:2])}")

for name, r in rows[1:]:
    print(f"\n{name}: per layer (option -> unit)")
    counts: dict[str, int] = {}
    for layer in r.layers:
        key = f"{r.chosen[layer].label} -> {r.units[layer]}"
        counts[key] = counts.get(key, 0) + 1
    print("  " + "; ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    cost = r.simulated.per_layer.set_index("name")
    for layer in r.layers:
        if r.chosen[layer] != Option(8, 8):
            print(f"  {layer:<24}{r.chosen[layer].label:<22}{r.units[layer]:<12}"
                  f"{int(cost.loc[layer, 'total_cycles']):>10} cycles"
                  f"{cost.loc[layer, 'energy_total_pj'] / 1e6:>9.2f} uJ")
print(f"\nimages: {rows[0][1].fidelity['images']} evaluation images; total "
      f"{time.perf_counter() - t0:.0f} s")

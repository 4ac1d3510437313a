"""Multipoint options beside uniform mixed precision in the allocator: which does an accelerator
prefer for the same fidelity?

Multipoint: Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed
Precision without Mixed Precision" (AAAI 2021). A layer of K output channels at the option
"multipoint W4 x p" has K + round((p - 1) K) rows of 4-bit weights (its extra points go to the
channels with the largest output error on the calibration images); the accelerator runs those
rows as an ordinary 4-bit int layer, and the allocator prices exactly that.

MobileNetV2 (ImageNet weights), A8 everywhere; per-layer options int W8 / W6 / W4 (signed
symmetric per channel, min-max) and multipoint W4 x1 / x1.25 / x1.5; empirical-Fisher
sensitivity on the 28 built-in calibration images (one table for both accelerators); an exact
allocation (MILP) under each budget, once with all six options and once with the int options
only; each plan quantized, lowered, run bit-accurately on the built-in evaluation images (SQNR of
its logits and top-1 agreement with the float model) and simulated (predicted == simulated is
checked per layer). Accelerators: hw_configs/loom.yaml (bit-serial: cycles fall with the weight
width) under latency budgets, and hw_configs/int8_systolic.yaml (an int8 MAC array: every width
runs in the same cycles, narrow weights save DRAM traffic and energy) under its latency floor and
energy budgets. Plans that come out equal are run once.

    python examples/multipoint_codesign.py           # ~7.5 min wall (4 CPU-min) on 2 shared cores
    python examples/multipoint_codesign.py --quick   # loom, one budget, 10 images: ~2 min
"""
import argparse
import time

import numpy as np
import torch

from hwsim import execute, zoo
from hwsim.codesign import prepare
from hwsim.verify import sqnr_db
from quant.allocate import AllocationError, Option

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--quick", action="store_true",
                    help="loom only, one latency budget, 10 evaluation images")
args = parser.parse_args()

INT = [Option(8, 8), Option(6, 8), Option(4, 8)]
MULTIPOINT = [Option(4, 8, "multipoint", weight_points=p) for p in (1.0, 1.25, 1.5)]
OPTIONS = INT + MULTIPOINT
NAMES = ["W8", "W6", "W4", "mpW4x1", "mpW4x1.25", "mpW4x1.5"]
RUNS = {   # accelerator -> (config, [(resource, ratio of uniform W8), ...])
    "loom": ("hw_configs/loom.yaml", [("latency_cycles", r) for r in (0.8, 0.65, 0.55)]),
    "int8_systolic": ("hw_configs/int8_systolic.yaml",
                      [("latency_cycles", 1.0), ("energy_pj", 0.95), ("energy_pj", 0.92)]),
}
if args.quick:
    RUNS = {"loom": ("hw_configs/loom.yaml", [("latency_cycles", 0.6)])}
SHORT = {"latency_cycles": "latency", "energy_pj": "energy"}

t0 = time.perf_counter()
model = zoo.mobilenet_v2().eval()
calib, evals = zoo.sample_images("calib"), zoo.sample_images("eval")
if args.quick:
    evals = evals[:10]
with torch.no_grad():
    float_logits = model(evals).numpy().astype(np.float64)
float_top1 = float_logits.argmax(axis=1)
first_config = next(iter(RUNS.values()))[0]
problem = prepare(model, first_config, OPTIONS, base=INT[0], calib=calib, eval_images=evals)
t_prepare = time.perf_counter() - t0
fidelities: dict[tuple, tuple[float, float]] = {}   # plan -> (SQNR dB, top-1 agreement)


def fidelity(result) -> tuple[float, float]:
    """(SQNR of the integer program's logits vs float in dB, top-1 agreement with float); a
    plan is run once, whichever accelerator it was allocated for."""
    key = tuple(result.chosen[n] for n in result.layers)
    if key not in fidelities:
        qm, program = result.realization.quantized, result.program
        out = program.node(program.output_name).out
        codes = np.concatenate([execute(program, qm.quantize_input(chunk)).output
                                for chunk in evals.split(10)])
        logits = (codes.astype(np.float64) - out.zero_point) * out.scale
        fidelities[key] = (sqnr_db(float_logits, logits),
                           float(np.mean(logits.argmax(axis=1) == float_top1)))
    return fidelities[key]


def offer(offered) -> str:
    return "int + multipoint" if len(offered) > len(INT) else "int only"


def row(accel, budget, offered, result, base) -> str:
    counts = {o: 0 for o in OPTIONS}
    for o in result.chosen.values():
        counts[o] += 1
    picks = " ".join(f"{counts[o]:>2}" if o in offered else " -" for o in OPTIONS)
    pvs = result.predicted_vs_simulated()
    same = all(pvs[r]["equal"] and pvs[r]["max_layer_diff"] == 0.0
               for r in ("latency_cycles", "energy_pj")) and not result.short_rows
    sqnr, top1 = fidelity(result)
    lat = result.predicted["latency_cycles"] / base["latency_cycles"]
    energy = result.predicted["energy_pj"] / base["energy_pj"]
    return (f"| {accel} | {budget} | {offer(offered)} | {picks} | {lat:.3f} | {energy:.3f} "
            f"| {result.allocation.objective:.3f} "
            f"| {sqnr:.2f} | {top1:.2f} | {'yes' if same else 'NO'} |")


lines = []
for accel_name, (config, budgets) in RUNS.items():
    p = problem if config == first_config else problem.retarget(config)
    base = p.base_totals
    lines.append(row(accel_name, "none (uniform W8)", INT, p.uniform(INT[0], verify=False),
                     base))
    for resource, ratio in budgets:
        for offered in (OPTIONS, INT):
            label = f"{SHORT[resource]} {ratio:g}x"
            try:
                result = p.subset(offered).solve({resource: ("x", ratio)}, verify=False)
            except AllocationError:
                least = p.subset(offered).min_total(resource) / base[resource]
                lines.append(f"| {accel_name} | {label} | {offer(offered)} | infeasible "
                             f"(minimum {least:.3f}x) | | | | | | |")
                continue
            lines.append(row(accel_name, label, offered, result, base))
t_all = time.perf_counter() - t0

print(f"MobileNetV2 (ImageNet weights), A8, {len(evals)} evaluation images; latency and energy "
      "as predicted by the allocator, relative to uniform int W8 on the same accelerator (the "
      "simulated figures are equal); predicted loss = sum of the chosen options' empirical-Fisher "
      "sensitivities; SQNR and top-1 agreement of the integer program's logits with float")
print(f"| accelerator | budget | options | layers at {' / '.join(NAMES)} | latency | energy "
      f"| predicted loss | SQNR (dB) | top-1 agr. | predicted == simulated |")
print("|---|---|---|---|---|---|---|---|---|---|")
print("\n".join(lines))
print(f"\nprepare (sensitivity of {len(OPTIONS)} options x {len(problem.layers)} layers, "
      f"multipoint fits) {t_prepare:.0f} s; {len(fidelities)} distinct plans run; total "
      f"{t_all:.0f} s")

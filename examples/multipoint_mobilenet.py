"""MobileNetV2 with multipoint weights: output fidelity and hardware cost vs the extra-points
budget, beside per-layer mixed precision at the same cycles.

Multipoint: Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed
Precision without Mixed Precision" (AAAI 2021). Every output channel is a sum of b-bit points;
the budget is the fraction of extra points (extra rows of each layer's b-bit GEMM) over the
multipoint layers' channels, given to the channels with the largest output error on the 28
built-in calibration images. Weights at 4 and 3 bits (first and last layers int8), uint8
per-tensor activations; every network is lowered to a bit-accurate integer program and run on
the 50 built-in evaluation images (SQNR of its logits and top-1 agreement with the float
model), and costed on hw_configs/int8_systolic.yaml (the extra rows run on the same int8 array:
no mixed-precision datapath).

Beside each multipoint network: per-layer mixed precision from the allocator (`hwsim.codesign`:
empirical-Fisher sensitivity, options W3/W4/W5/W6/W8 uniform int per channel with min-max
ranges, A8) under a latency budget equal to the multipoint network's cycles (and, in a second
row, an energy budget equal to its energy), realized and run the same way; plans that come out
equal are run once.

On this array a layer's cycles do not depend on its weight width (an int8 MAC array runs 3-bit
and 8-bit weights alike; narrower weights save DRAM traffic and energy only), so extra rows cost
cycles and energy that buy nothing else: at equal cycles the allocator can afford W8 almost
everywhere. The trade differs where narrow weights run faster (e.g. the bit-serial
hw_configs/loom.yaml); any of these programs is priced there with
`cost_network(load_accelerator(path), program_workload(program))`.

    python examples/multipoint_mobilenet.py   # ~7 CPU-minutes (10 min wall on 2 shared cores):
                                              # 15 integer programs run on 50 images each
"""
import time

import numpy as np
import torch

import quant
from hwsim import execute, zoo
from hwsim.arch import load_accelerator
from hwsim.codesign import prepare
from hwsim.cost import cost_network
from hwsim.lower import lower
from hwsim.verify import sqnr_db
from hwsim.workloads import program_workload
from quant.allocate import AllocationError, Option
from quant.calibrate.multipoint import plan_points
from quant.model import initial_state

CONFIG = "hw_configs/int8_systolic.yaml"
BITS = (4, 3)
BUDGETS = (0.0, 0.05, 0.1, 0.2, 0.4)
OPTIONS = [Option(w, 8) for w in (3, 4, 5, 6, 8)]

t0 = time.perf_counter()
accel = load_accelerator(CONFIG)
model = zoo.mobilenet_v2().eval()
calib, evals = zoo.sample_images("calib"), zoo.sample_images("eval")
with torch.no_grad():
    float_logits = model(evals).numpy().astype(np.float64)
float_top1 = float_logits.argmax(axis=1)


def fidelity(qm, program) -> tuple[float, float]:
    """(SQNR of the integer program's logits vs float in dB, top-1 agreement with float)."""
    out = program.node(program.output_name).out
    codes = np.concatenate([execute(program, qm.quantize_input(chunk)).output
                            for chunk in evals.split(10)])
    logits = (codes.astype(np.float64) - out.zero_point) * out.scale
    return sqnr_db(float_logits, logits), float(np.mean(logits.argmax(axis=1) == float_top1))


def costed(program) -> dict[str, float]:
    layers = program_workload(program)
    cost = cost_network(accel, layers)
    return {"cycles": cost.total_cycles, "energy_uj": cost.energy_total_pj / 1e6,
            "weights_mbit": sum(l.weight_count * l.weight_bits for l in layers) / 1e6}


records = [r for r in quant.capture(model, calib[:1]) if r.op in ("conv2d", "linear")]
int8 = quant.IntFormat(bits=8, signed=True, symmetric=True, per_channel=True)
multipoint = {}
for bits in BITS:
    config = quant.QuantConfig(weight=quant.MultipointFormat(bits, max_points=2),
                               layer_weight={records[0].name: int8, records[-1].name: int8})
    planner = plan_points(initial_state(model, config, [calib], example_input=calib[:1]),
                          [calib])
    for budget in BUDGETS:
        qm = planner.assign(budget).model()
        program = lower(qm, name=f"mobilenet_v2_mp{bits}_{budget}")
        multipoint[bits, budget] = (*fidelity(qm, program), costed(program))
t_mp = time.perf_counter() - t0

problem = prepare(model, accel, OPTIONS, base=Option(8, 8), calib=calib, eval_images=evals)
base = problem.base_realization
uniform8 = (*fidelity(base.quantized, base.program), costed(base.program))
realized = {}   # plan -> (SQNR, top-1, cost, layers per option): equal plans run once


def mixed_at(resource: str, limit: float):
    try:
        result = problem.solve({resource: limit}, verify=False)
    except AllocationError:
        return None
    plan = tuple(result.allocation.choice)
    if plan not in realized:
        real = result.realization
        counts = np.bincount(plan, minlength=len(OPTIONS))
        realized[plan] = (*fidelity(real.quantized, real.program), costed(real.program), counts)
    return realized[plan]


mixed = {key: {"cycles": mixed_at("latency_cycles", cost["cycles"]),
               "energy": mixed_at("energy_pj", cost["energy_uj"] * 1e6)}
         for key, (_, _, cost) in multipoint.items()}
t_all = time.perf_counter() - t0


def cells(sqnr, top1, cost) -> str:
    return (f"{sqnr:.2f} | {top1:.2f} | {cost['cycles']:,} | {cost['energy_uj']:.1f} "
            f"| {cost['weights_mbit']:.2f}")


print(f"MobileNetV2 (ImageNet weights), A8, first/last layers int8, on {accel.name}; "
      f"{len(evals)} evaluation images; SQNR and top-1 agreement of the integer program's "
      "logits with float")
print("| weights | extra rows | SQNR (dB) | top-1 agr. | cycles | energy (uJ) | weights (Mbit) |")
print("|---|---|---|---|---|---|---|")
for (bits, budget), (sqnr, top1, cost) in multipoint.items():
    print(f"| multipoint W{bits} | {100 * budget:.0f}% | {cells(sqnr, top1, cost)} |")
print(f"| uniform int W8 (all layers) | | {cells(*uniform8)} |")

labels = "/".join(f"W{o.weight_bits}" for o in OPTIONS)
print(f"\nPer-layer mixed precision (allocator, options {labels}, A8) at the multipoint "
      "network's cycles, and at its energy")
print(f"| as multipoint | budget | SQNR (dB) | top-1 agr. | cycles | energy (uJ) | weights (Mbit) "
      f"| layers at {labels} |")
print("|---|---|---|---|---|---|---|---|")
for (bits, budget), by in mixed.items():
    for resource, got in by.items():
        row = f"| W{bits} {100 * budget:.0f}% | {resource} | "
        if got is None:
            print(row + "infeasible | | | | | |")
            continue
        *fid, counts = got
        print(row + f"{cells(*fid)} | {'/'.join(map(str, counts))} |")
print(f"\nmultipoint rows in {t_mp:.0f} s; with the mixed-precision baselines {t_all:.0f} s")

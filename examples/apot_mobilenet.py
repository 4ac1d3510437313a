"""MobileNetV2 (ImageNet weights) with 4-bit APoT weights vs 4-bit uniform weights, both run
bit-accurately and priced on a shift-add accelerator and on an int8 systolic array.

APoT: "Additive Powers-of-Two Quantization: An Efficient Non-uniform Discretization for Neural
Networks" (Li, Dong, Wang; ICLR 2020). Both rows: per-channel weights at 4 bits with the
clipping threshold searched for the least weight MSE, uint8 per-tensor activations (min-max
ranges from the 28 built-in calibration images), the first and last layers at int8 (and, in
two more rows, the depthwise convs too); compared on the 50 built-in evaluation images. No
fine-tuning: post-training quantization only. The costs are of the first APoT network.

    python examples/apot_mobilenet.py            # a few minutes on 2 cores; the README's tables
"""
import numpy as np

from hwsim.arch import load_accelerator
from hwsim.cost import cost_network
from hwsim.flows import quantize_zoo_model
from hwsim.verify import verify
from hwsim.workloads import program_workload

HETERO = "hw_configs/hetero_int8_apot.yaml"      # first/last on an int8 array, APoT on shift-add
SHIFT_ADD = "hw_configs/shift_add_apot.yaml"     # the shift-add unit alone (runs int weights too)
SYSTOLIC = "hw_configs/int8_systolic.yaml"


def quantize(family: str, depthwise_int8: bool):
    flow = quantize_zoo_model("mobilenet_v2", bits=4, act_bits=8, weight_family=family,
                              first_last_int8=True, weight_clipping="mse",
                              depthwise_int8=depthwise_int8)
    return flow.program, verify(flow.qm, flow.program, flow.eval_images)


def measured_adds(program, names) -> int:
    """Adds a shift-add datapath really performs on these weights: per product with n > 0 set
    bits in |w|, n - 1 term adds and one accumulate (zero weights skipped), summed over every
    output position."""
    total = 0
    for name in names:
        node = program.node(name)
        w = np.abs(node.arrays["weight"].astype(np.int64)).reshape(node.arrays["weight"].shape[0], -1)
        bits = np.unpackbits(w.astype(">u2").view(np.uint8).reshape(*w.shape, 2), axis=-1).sum(-1)
        positions = int(np.prod(node.out_shape[2:])) if len(node.out_shape) == 4 else 1
        total += int(bits.sum()) * positions  # (n - 1) adds + 1 accumulate = n per product
    return total


programs, rows = {}, []
for depthwise_int8 in (False, True):
    for family, label in (("int", "uniform W4"), ("apot", "APoT W4")):
        program, report = quantize(family, depthwise_int8)
        if not depthwise_int8:
            programs[family] = program
        s = report.summary
        label += ", depthwise int8" if depthwise_int8 else ""
        rows.append(f"| {label} | {s['output_sqnr_db_int_vs_float']:.2f} "
                    f"| {s['top1_agreement_int_vs_float']:.2f} | {s['output_sqnr_db_fake_vs_float']:.2f} "
                    f"| {s['top1_agreement_fake_vs_float']:.2f} "
                    f"| {int(report.per_layer['max_lsb_diff'].max())} | {s['layers_bit_exact']} |")

print("MobileNetV2, W4 per channel (MSE clipping), A8, first/last layers int8, 50 evaluation images")
print("| weights | SQNR vs float, integer (dB) | top-1 agreement with float, integer "
      "| SQNR, fake-quant (dB) | top-1, fake-quant | max LSB per layer, integer vs fake-quant "
      "| layers bit-exact |")
print("|---|---|---|---|---|---|---|")
print("\n".join(rows))

apot_layers = program_workload(programs["apot"])
hetero, systolic = load_accelerator(HETERO), load_accelerator(SYSTOLIC)
on_hetero, on_systolic = cost_network(hetero, apot_layers), cost_network(systolic, apot_layers)
print(f"\nThe APoT network per layer: {HETERO} vs {SYSTOLIC}")
table = on_hetero.per_layer[["name", "weight_format", "unit", "total_cycles", "energy_total_pj"]].merge(
    on_systolic.per_layer[["name", "total_cycles", "energy_total_pj"]], on="name",
    suffixes=("_hetero", "_systolic"))
print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
print("\n| APoT W4 network on | total cycles | stall cycles | compute energy (uJ) | total energy (uJ) |")
print("|---|---|---|---|---|")
for accel, cost in ((hetero, on_hetero), (systolic, on_systolic)):
    print(f"| {accel.name} | {cost.total_cycles:,} | {cost.stall_cycles:,} "
          f"| {cost.energy_compute_pj / 1e6:.2f} | {cost.energy_total_pj / 1e6:.2f} |")

# Adds saved vs a multiplier datapath: both networks' 4-bit layers on the same shift-add lanes,
# where a uniform 4-bit weight is up to 3 terms (its magnitude bits) and an APoT one up to 2.
shift_add = load_accelerator(SHIFT_ADD)
w4 = [layer.name for layer in apot_layers if layer.weight_format == "apot"]
model = {}
for family in ("int", "apot"):
    cost = cost_network(shift_add, [l for l in program_workload(programs[family]) if l.name in w4])
    model[family] = (int(cost.per_layer["add_actions"].sum() + cost.per_layer["accumulate_actions"].sum()),
                     cost.energy_compute_pj, cost.compute_cycles)
measured = {family: measured_adds(programs[family], w4) for family in ("int", "apot")}
print(f"\nThe {len(w4)} W4 layers on {shift_add.name} (adds = term adds + accumulates):")
print("| weights | adds, worst case (all terms) | adds, these weights (zero terms skipped) "
      "| compute energy (uJ) | compute cycles |")
print("|---|---|---|---|---|")
for family, label in (("int", "uniform W4"), ("apot", "APoT W4")):
    adds, energy, cycles = model[family]
    print(f"| {label} | {adds:,} | {measured[family]:,} | {energy / 1e6:.2f} | {cycles:,} |")
def change(new: float, old: float, fewer: str = "fewer") -> str:
    pct = 100 * (1 - new / old)
    return f"{abs(pct):.1f}% {fewer if pct >= 0 else 'more'}"


print(f"APoT vs uniform: {change(model['apot'][0], model['int'][0])} adds worst case, "
      f"{change(measured['apot'], measured['int'])} on these weights, "
      f"{change(model['apot'][1], model['int'][1], 'less')} compute energy, "
      f"{change(model['apot'][2], model['int'][2])} compute cycles")

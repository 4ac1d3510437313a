"""MobileNetV2 (ImageNet weights) with 4-bit APoT weights vs 4-bit uniform weights, both run
bit-accurately and priced on a shift-add accelerator and on an int8 systolic array.

APoT: "Additive Powers-of-Two Quantization: An Efficient Non-uniform Discretization for Neural
Networks" (Li, Dong, Wang; ICLR 2020). Both rows: per-channel weights at 4 bits, uint8
per-tensor activations, the first and last layers at int8, min-max activation ranges from the
28 built-in calibration images, the clipping threshold of APoT by MSE search; compared on the
50 built-in evaluation images.

    python examples/apot_mobilenet.py            # ~6 min on 2 cores; the README's table
"""
import numpy as np

from hwsim.arch import load_accelerator
from hwsim.cost import cost_network
from hwsim.flows import quantize_zoo_model
from hwsim.verify import verify
from hwsim.workloads import program_workload

SHIFT_ADD = "hw_configs/hetero_int8_apot.yaml"
SYSTOLIC = "hw_configs/int8_systolic.yaml"


def run(family: str):
    flow = quantize_zoo_model("mobilenet_v2", bits=4, act_bits=8, weight_family=family,
                              first_last_int8=True)
    report = verify(flow.qm, flow.program, flow.eval_images)
    return flow.program, report


def action_total(cost, action: str) -> int:
    column = f"{action}_actions"
    return int(cost.per_layer[column].sum()) if column in cost.per_layer else 0


rows, programs = [], {}
for family, label in (("int", "uniform W4 (per channel)"), ("apot", "APoT W4 (per channel)")):
    program, report = run(family)
    programs[family] = program
    s, layers = report.summary, report.per_layer
    rows.append((label, s["output_sqnr_db_int_vs_float"], s["top1_agreement_int_vs_float"],
                 s["output_sqnr_db_fake_vs_float"], s["top1_agreement_fake_vs_float"],
                 int(layers["max_lsb_diff"].max()), s["layers_bit_exact"]))

print("MobileNetV2, A8 both rows, first/last layers int8, 50 evaluation images")
print("| weights | SQNR vs float, integer (dB) | top-1 agreement with float, integer "
      "| SQNR, fake-quant (dB) | top-1, fake-quant | max LSB per layer, integer vs fake-quant "
      "| layers bit-exact |")
print("|---|---|---|---|---|---|---|")
for label, sqnr, top1, sqnr_fq, top1_fq, lsb, exact in rows:
    print(f"| {label} | {sqnr:.2f} | {top1:.2f} | {sqnr_fq:.2f} | {top1_fq:.2f} | {lsb} | {exact} |")

shift_add, systolic = load_accelerator(SHIFT_ADD), load_accelerator(SYSTOLIC)
apot_layers = program_workload(programs["apot"])
on_shift_add = cost_network(shift_add, apot_layers)
on_systolic = cost_network(systolic, apot_layers)
uniform_on_shift_add = cost_network(shift_add, program_workload(programs["int"]))

print(f"\nThe APoT network, per layer: {SHIFT_ADD} vs {SYSTOLIC}")
left = on_shift_add.per_layer[["name", "weight_format", "unit", "total_cycles", "energy_total_pj"]]
right = on_systolic.per_layer[["name", "total_cycles", "energy_total_pj"]]
table = left.merge(right, on="name", suffixes=("_shift_add", "_systolic"))
print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

print("\n| APoT W4 network on | total cycles | compute energy (uJ) | total energy (uJ) |")
print("|---|---|---|---|")
for name, cost in ((shift_add.name, on_shift_add), (systolic.name, on_systolic)):
    print(f"| {name} | {cost.total_cycles:,} | {cost.energy_compute_pj / 1e6:.2f} "
          f"| {cost.energy_total_pj / 1e6:.2f} |")

adds = {fam: action_total(c, "add") + action_total(c, "accumulate")
        for fam, c in (("apot", on_shift_add), ("int", uniform_on_shift_add))}
shift_add_rows = on_shift_add.per_layer["unit"] != on_shift_add.per_layer["unit"].iloc[0]
print(f"\nAdds on the shift-add unit (term adds + accumulates, worst case: every weight uses all "
      f"its terms): APoT W4 {adds['apot']:,} vs uniform W4 {adds['int']:,} "
      f"({100 * (1 - adds['apot'] / adds['int']):.1f}% fewer); shift-add compute energy "
      f"{on_shift_add.energy_compute_pj / 1e6:.2f} uJ vs "
      f"{uniform_on_shift_add.energy_compute_pj / 1e6:.2f} uJ "
      f"({100 * (1 - on_shift_add.energy_compute_pj / uniform_on_shift_add.energy_compute_pj):.1f}"
      f"% less); layers on the shift-add unit: {int(np.count_nonzero(shift_add_rows))}")

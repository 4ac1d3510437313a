"""MobileNetV2 (224x224, batch 1) at uniform W8A8, W4A4 and W2A2 on a Bit Fusion accelerator.

Bit Fusion: Sharma et al., "Bit Fusion: Bit-Level Dynamically Composable Architecture for
Accelerating Deep Neural Networks", ISCA 2018. The config (hw_configs/bitfusion.yaml) is the
paper's 512-Fusion-Unit, 112 KB, 500 MHz, 45 nm design as a 16 x 32 array; the unit model is in
hwsim/arch/bit_fusion.py. Shapes only (no weights): every conv/linear layer is priced at the
given widths, analytically. Prints one line per layer (total cycles incl. memory stalls and
total energy incl. DRAM/SRAM at each precision), the totals, and the gains over W8A8.

    python examples/bitfusion_mobilenet.py       # about a second, deterministic
"""
from dataclasses import replace

from hwsim.arch import load_accelerator
from hwsim.cost import cost_network
from hwsim.workloads import builtin_workload

CONFIG = "hw_configs/bitfusion.yaml"
FIXED8 = "hw_configs/bitfusion_fixed8.yaml"   # same array with fixed 8-bit units
PRECISIONS = (8, 4, 2)

accel = load_accelerator(CONFIG)
layers = builtin_workload("mobilenet_v2")
costs = {b: cost_network(accel, [replace(l, act_bits=b, weight_bits=b) for l in layers])
         for b in PRECISIONS}
frames = {b: c.per_layer for b, c in costs.items()}


def kind(layer) -> str:
    if layer.kind == "linear":
        return "fc"
    if layer.groups > 1:
        return "dw"
    return "pw" if layer.kernel_h * layer.kernel_w == 1 else "conv"


unit = accel.compute
print(f"MobileNetV2 on {accel.name}: {unit.rows}x{unit.cols} {unit.variant} units, "
      f"{accel.clock_mhz:g} MHz, {unit.cycle_energy_pj:.4f} pJ per busy unit-cycle")
heads = "".join(f"{f'W{b}A{b}':>10}" for b in PRECISIONS)
print(f"{'':<27} | {'total cycles':>{len(heads)}} | {'total energy (uJ)':>{len(heads)}}")
print(f"{'layer':<22}{'type':>5} | {heads} | {heads}")
for i, layer in enumerate(layers):
    cycles = "".join(f"{int(frames[b]['total_cycles'].iloc[i]):>10,}" for b in PRECISIONS)
    energy = "".join(f"{frames[b]['energy_total_pj'].iloc[i] / 1e6:>10.3f}" for b in PRECISIONS)
    print(f"{layer.name:<22}{kind(layer):>5} | {cycles} | {energy}")

print()
print(f"{'precision':<10}{'latency ms':>11}{'energy uJ':>11}{'compute uJ':>11}{'DRAM uJ':>10}"
      f"{'utilization':>12}{'speedup':>9}{'energy saving':>15}")
base = costs[8]
for b in PRECISIONS:
    c = costs[b]
    dram = c.energy_by_level_pj()["dram"]
    speedup, saving = base.latency_s / c.latency_s, base.energy_total_pj / c.energy_total_pj
    print(f"{f'W{b}A{b}':<10}{c.latency_s * 1e3:>11.3f}{c.energy_total_pj / 1e6:>11.1f}"
          f"{c.energy_compute_pj / 1e6:>11.2f}{dram / 1e6:>10.1f}{c.utilization:>12.4f}"
          f"{speedup:>8.2f}x{saving:>14.2f}x")

dw = [i for i, l in enumerate(layers) if l.groups > 1]
rest = [i for i in range(len(layers)) if i not in dw]
print(f"The {len(dw)} depthwise layers keep one unit of {unit.pe_count} busy at any width:")
for b in PRECISIONS:
    share = frames[b]["total_cycles"].iloc[dw].sum() / costs[b].total_cycles
    tail = ""
    if b != 8:
        sub = (frames[8]["total_cycles"].iloc[rest].sum()
               / frames[b]["total_cycles"].iloc[rest].sum())
        tail = f"; the other {len(rest)} layers alone run {sub:.2f}x faster than at W8A8"
    print(f"  W{b}A{b}: {100 * share:.1f}% of the cycles{tail}")

fixed = load_accelerator(FIXED8)
f8 = cost_network(fixed, layers)
print(f"Fixed 8-bit units, same array ({FIXED8}), W8A8: {f8.latency_s * 1e3:.3f} ms, "
      f"{f8.energy_total_pj / 1e6:.1f} uJ ({f8.energy_compute_pj / 1e6:.2f} uJ compute)")

# The paper compares Bit Fusion with Eyeriss (its Fig. 13: 3.9x speedup, 5.1x energy, at the
# networks' own mixed low widths against Eyeriss at 16 bits). hw_configs/eyeriss_like.yaml is an
# Eyeriss-like 12x14 array (200 MHz, per-PE register files, 108 KiB buffer) priced by the
# loop-nest model; it is not area- or technology-matched to the Bit Fusion config, so the ratios
# below compare these two configs, not the two papers' chips.
eyeriss = load_accelerator("hw_configs/eyeriss_like.yaml")
base = cost_network(eyeriss, [replace(l, act_bits=8, weight_bits=8) for l in layers])
print(f"Eyeriss-like ({eyeriss.name}), W8A8: {base.latency_s * 1e3:.3f} ms, "
      f"{base.energy_total_pj / 1e6:.1f} uJ; Bit Fusion over it:")
for b in PRECISIONS:
    c = costs[b]
    print(f"  W{b}A{b}: {base.latency_s / c.latency_s:.2f}x speedup, "
          f"{base.energy_total_pj / c.energy_total_pj:.2f}x energy saving")

# The same comparison on ResNet-18 (no depthwise layers, like the paper's networks).
r18 = builtin_workload("resnet18")
base18 = cost_network(eyeriss, r18)
print(f"ResNet-18: Eyeriss-like W8A8 {base18.latency_s * 1e3:.3f} ms, "
      f"{base18.energy_total_pj / 1e6:.1f} uJ; Bit Fusion over it:")
for b in PRECISIONS:
    c = cost_network(accel, [replace(l, act_bits=b, weight_bits=b) for l in r18])
    print(f"  W{b}A{b}: {c.latency_s * 1e3:.3f} ms, {c.energy_total_pj / 1e6:.1f} uJ: "
          f"{base18.latency_s / c.latency_s:.2f}x speedup, "
          f"{base18.energy_total_pj / c.energy_total_pj:.2f}x energy saving")

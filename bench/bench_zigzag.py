"""hwsim's loop-nest model against ZigZag 3.9.1 on 7 ResNet-18 layers x 2 accelerators.

    PYTHONPATH=. python bench/bench_zigzag.py

The reference (tests/data/zigzag/reference.json, generated in a separate venv by
scripts/zigzag_reference.py; its README documents ZigZag's counting) fixes the spatial mapping,
the loop order and the loops on each memory level. Here the same accelerators are written as
hwsim YAML configs (same per-access energies, sizes, ports; `zigzag_config`) and every layer is
priced by `hwsim.cost.cost_network` under the same loop nest. Prints per case: MAC energy,
memory energy and latency, hwsim / ZigZag. tests/test_hierarchy_cost.py asserts the bounds (MAC
energy equal, memory energy and latency within 10%).
"""

from __future__ import annotations

import json
from pathlib import Path

from hwsim.arch import accelerator_from_dict
from hwsim.cost import cost_network
from hwsim.mapping.loopnest import LoopNest
from hwsim.workloads import LayerShape

REPO = Path(__file__).resolve().parents[1]
REF = json.loads((REPO / "tests" / "data" / "zigzag" / "reference.json").read_text())
OPS = {"I1": "ifmap", "I2": "filter", "O": "ofmap", "I": "ifmap", "W": "filter"}


def zigzag_config(name: str) -> dict:
    """ZigZag's accelerator `name` ("A" or "B") written as an hwsim YAML config (a dict)."""
    cfg = REF["configs"][name]
    mems = cfg["memories_innermost_first"]
    # parents: each on-chip memory is filled from the next memory up any of its operands' chains
    chains: dict[str, list[str]] = {}
    result = next(r for r in REF["results"].values() if r["config"] == name)
    for op, od in result["operands"].items():
        chains[OPS[op]] = [lv["memory"] for lv in od["levels"]]  # innermost first
    parent = {}
    for chain in chains.values():
        for inner, outer in zip(chain, chain[1:]):
            parent[inner] = outer
    depth = {n: 0 for n in mems}
    for n in mems:
        m, d = n, 0
        while m in parent:
            m, d = parent[m], d + 1
        depth[n] = d
    levels = {}
    for mem in sorted(mems, key=lambda n: -depth[n] if n != "dram" else -99):
        m = mems[mem]
        (bw_min,) = {p["bandwidth_min"] for p in m["ports"]}
        (bw_max,) = {p["bandwidth_max"] for p in m["ports"]}
        level = {"bandwidth_bytes_per_cycle": bw_max // 8, "access_bits": bw_min,
                 "read_energy_pj": m["r_cost_pJ_per_bw_min_word"],
                 "write_energy_pj": m["w_cost_pJ_per_bw_min_word"], "ports": len(m["ports"])}
        if mem != "dram":
            level.update(holds=[OPS[o] for o in m["operands"]], size_bytes=m["size_bits"] // 8,
                         per_pe=not m["served_dimensions"], parent=parent[mem])
        levels[mem] = level
    return {"name": f"zigzag_{name}", "clock_mhz": 1000,
            "compute": {"kind": "spatial_array", "rows": cfg["array"]["D2"],
                        "cols": cfg["array"]["D1"], "act_bits": 8, "weight_bits": 8,
                        "acc_bits": 32, "mac_energy_pj": cfg["mac_energy_pJ"]},
            "memory": {"levels": levels}}


def zigzag_case(key: str) -> tuple[LayerShape, LoopNest]:
    r = REF["results"][key]
    ly = r["layer"]
    p = ly["padding"]
    layer = LayerShape(name=ly["name"], kind="conv", in_h=ly["input_IY"], in_w=ly["input_IX"],
                       in_channels=ly["C"], out_channels=ly["K"], kernel_h=ly["FY"],
                       kernel_w=ly["FX"], stride_h=ly["stride"], stride_w=ly["stride"],
                       pad_top=p, pad_left=p, pad_bottom=p, pad_right=p)
    nest = LoopNest.from_dict({
        "spatial": {("cols" if d == "D1" else "rows"): loops
                    for d, loops in r["mapping"]["spatial"].items()},
        "temporal": r["mapping"]["temporal_order_innermost_first"],
        "levels": {OPS[op]: [len(lv["temporal_loops_allocated"]) for lv in od["levels"]]
                   for op, od in r["operands"].items()}})
    return layer, nest


def compare(key: str) -> dict[str, float]:
    """hwsim's and ZigZag's figures for one case."""
    r = REF["results"][key]
    accel = accelerator_from_dict(zigzag_config(r["config"]), f"zigzag_{r['config']}")
    layer, nest = zigzag_case(key)
    row = cost_network(accel, [layer], mappings=[nest]).per_layer.iloc[0]
    return {"mac": row.energy_compute_pj, "zz_mac": r["energy_pJ"]["mac"],
            "memory": row.energy_total_pj - row.energy_compute_pj,
            "zz_memory": r["energy_pJ"]["memory_total"], "cycles": int(row.total_cycles),
            "zz_cycles": r["latency_cycles"]["total"]}


def main() -> None:
    print(f"ZigZag {REF['metadata']['zigzag_version']} vs hwsim, same mappings "
          f"(ratios hwsim / ZigZag)")
    print(f"{'case':<24}{'MAC pJ':>12}{'ratio':>7}{'memory pJ':>12}{'ratio':>7}"
          f"{'cycles':>11}{'ZigZag':>11}{'ratio':>7}")
    for key in sorted(REF["results"]):
        c = compare(key)
        print(f"{key:<24}{c['mac']:>12.4g}{c['mac'] / c['zz_mac']:>7.3f}{c['memory']:>12.4g}"
              f"{c['memory'] / c['zz_memory']:>7.3f}{c['cycles']:>11,}{c['zz_cycles']:>11,}"
              f"{c['cycles'] / c['zz_cycles']:>7.3f}")


if __name__ == "__main__":
    main()

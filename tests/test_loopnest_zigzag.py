"""hwsim's loop-nest engine (hwsim.mapping.loopnest) against ZigZag 3.9.1 on 7 ResNet-18 layers x
2 accelerators (tests/data/zigzag/reference.json; see the README there).

Same hierarchy (per-word energies, bw_min as the access word), same mapping and the same per-operand
level allocation. Asserted: MAC energy equal; memory energy within 10 %; latency within 10 %; and,
per (memory, operand, direction), hwsim's words equal ZigZag's accesses in bw_min words (up to
ZigZag's final int() truncation) when counted ZigZag's way (psum_reads="zigzag"), while hwsim's
default exact psum counts differ from them by exactly the fresh first pass (R periods).
Run with -s to print the comparison table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hwsim.mapping import ConvDims, LoopNest, NestLevel, Precisions, evaluate

REF = Path(__file__).parent / "data" / "zigzag" / "reference.json"
DOC = json.loads(REF.read_text())
KEYS = sorted(DOC["results"])
OPS = {"I": "ifmap", "W": "filter", "O": "ofmap"}
MEM_OPS = {"I1": "ifmap", "I2": "filter", "O": "ofmap"}
DIRS = {"rd_out_to_low": "read_down", "wr_in_by_low": "write_from_below",
        "rd_out_to_high": "read_up", "wr_in_by_high": "write_fill"}


def hierarchy(cfg: dict, result: dict) -> tuple[NestLevel, ...]:
    # reference.json stores memories by name; order them so that every operand's chain is
    # innermost first (rank = deepest position in any chain), then outermost first.
    rank: dict[str, int] = {}
    for od in result["operands"].values():
        for i, lv in enumerate(od["levels"]):
            rank[lv["memory"]] = max(rank.get(lv["memory"], 0), i)
    levels = []
    mems = cfg["memories_innermost_first"]
    for name in sorted(mems, key=lambda n: (rank[n], n)):
        m = mems[name]
        (bw_min,) = {p["bandwidth_min"] for p in m["ports"]}
        (bw_max,) = {p["bandwidth_max"] for p in m["ports"]}
        levels.append(NestLevel(
            name=name, holds=tuple(MEM_OPS[o] for o in m["operands"]),
            size_bits=None if name == "dram" else m["size_bits"],
            per_pe=not m["served_dimensions"], access_bits=bw_min,
            read_energy_pj=m["r_cost_pJ_per_bw_min_word"], write_energy_pj=m["w_cost_pJ_per_bw_min_word"],
            bandwidth_bits_per_cycle=float(bw_max), ports=len(m["ports"])))
    return tuple(reversed(levels))


def case(key: str):
    r = DOC["results"][key]
    cfg = DOC["configs"][r["config"]]
    ly = r["layer"]
    dims = ConvDims(B=1, K=ly["K"], C=ly["C"], OY=ly["OY"], OX=ly["OX"], FY=ly["FY"], FX=ly["FX"],
                    stride_y=ly["stride"], stride_x=ly["stride"], in_y=ly["input_IY"], in_x=ly["input_IX"])
    spatial = tuple((("cols" if d == "D1" else "rows"), tuple((a, f) for a, f in loops))
                    for d, loops in r["mapping"]["spatial"].items())
    temporal = tuple((d, f) for d, f in r["mapping"]["temporal_order_innermost_first"])
    levels = {OPS[op]: tuple(len(lv["temporal_loops_allocated"]) for lv in od["levels"])
              for op, od in r["operands"].items()}
    nest = LoopNest(spatial=spatial, temporal=temporal, levels=levels)
    pb = r["precision_bits"]
    prec = Precisions(ifmap=pb["I"], filter=pb["W"], psum=pb["O_partial"], ofmap=pb["O_final"])
    return r, cfg, dims, nest, hierarchy(cfg, r), prec


def run(key: str, psum_reads: str = "exact"):
    r, cfg, dims, nest, hier, prec = case(key)
    cost = evaluate(dims, nest, hier, prec, array_rows=cfg["array"]["D2"], array_cols=cfg["array"]["D1"],
                    mac_energy_pj=cfg["mac_energy_pJ"], psum_reads=psum_reads)
    return r, cfg, cost


ROWS: dict[str, tuple] = {}


@pytest.mark.parametrize("key", KEYS)
def test_against_zigzag(key: str) -> None:
    r, cfg, cost = run(key)
    zz_mem = r["energy_pJ"]["memory_total"]
    zz_lat = r["latency_cycles"]["total"]
    assert cost.mac_energy_pj == pytest.approx(r["energy_pJ"]["mac"], rel=1e-12)
    assert cost.temporal_cycles == r["latency_cycles"]["ideal_temporal"]
    e_ratio = cost.memory_energy_pj / zz_mem
    l_ratio = cost.latency_cycles / zz_lat
    per_level = {name: lc.energy_pj / r["energy_pJ"]["per_memory"][name] for name, lc in cost.levels.items()
                 if r["energy_pJ"]["per_memory"][name]}
    ROWS[key] = (e_ratio, l_ratio, cost.latency_cycles, zz_lat, per_level)
    assert abs(e_ratio - 1) <= 0.10, (key, e_ratio, per_level)
    assert abs(l_ratio - 1) <= 0.10, (key, l_ratio, cost.stall_cycles, cost.onload_cycles, cost.offload_cycles)


@pytest.mark.parametrize("key", KEYS)
def test_per_direction_counts(key: str) -> None:
    """Every (memory, operand, direction): ZigZag's accesses x bw_max/bw_min == hwsim's words
    counted ZigZag's way (within ZigZag's int() truncation of one bw_max access); hwsim's exact
    psum counts are those minus the fresh first pass."""
    r, cfg, zz_cost = run(key, "zigzag")
    _, _, ex_cost = run(key, "exact")
    for op, od in r["operands"].items():
        for lv in od["levels"]:
            zc = {t.direction: t for t in zz_cost.per_operand[(lv["memory"], OPS[op])].transfers}
            ec = {t.direction: t for t in ex_cost.per_operand[(lv["memory"], OPS[op])].transfers}
            for zd, d in lv["directions"].items():
                name = DIRS[zd]
                if d["period_count"] == 0 or d["accesses"] == 0 and name not in zc:
                    assert name not in zc or zc[name].accesses == 0, (key, op, lv["memory"], zd)
                    continue
                ratio = d["port_bw_max_bits"] / d["port_bw_min_bits"]
                t = zc[name]
                assert d["accesses"] * ratio <= t.accesses < (d["accesses"] + 1) * ratio, (key, op, lv["memory"], zd)
                assert t.elements_per_period == d["elements_per_period"], (key, op, lv["memory"], zd)
                assert t.bits_per_element == d["precision_bits"], (key, op, lv["memory"], zd)
                assert t.real_cycles == d["real_transfer_cycles_per_period"], (key, op, lv["memory"], zd)
                e = ec[name] if name in ec else None
                if op == "O" and name in ("read_down", "write_fill"):
                    # exact: the first pass of each tile position is not charged
                    fresh = t.periods - (e.periods if e else 0)
                    assert fresh >= 0
                    assert (e.accesses if e else 0) == t.accesses - fresh * t.accesses // t.periods
                else:
                    assert e is not None and e.accesses == t.accesses


def test_print_table() -> None:
    if len(ROWS) < len(KEYS):
        for key in KEYS:
            if key not in ROWS:
                r, cfg, cost = run(key)
                ROWS[key] = (cost.memory_energy_pj / r["energy_pJ"]["memory_total"],
                             cost.latency_cycles / r["latency_cycles"]["total"], cost.latency_cycles,
                             r["latency_cycles"]["total"], {})
    print()
    print(f"{'case':28s} {'mem energy hwsim/zz':>20s} {'latency hwsim/zz':>17s} {'hwsim cyc':>10s} {'zz cyc':>10s}")
    for key in KEYS:
        e, l, lh, lz, per_level = ROWS[key]
        lvls = " ".join(f"{k}={v:.3f}" for k, v in per_level.items())
        print(f"{key:28s} {e:20.4f} {l:17.4f} {lh:10.0f} {lz:10.0f}  {lvls}")

#!/usr/bin/env python3
"""Produce ZigZag reference numbers for the hwsim cost-model comparison.

Run with the separate ZigZag venv (never the project venv):

    /tmp/zigzag-venv/bin/python scripts/zigzag_reference.py

It writes the ZigZag inputs it uses (accelerator, workload and mapping YAML) to
``tests/data/zigzag/inputs/`` and the results to ``tests/data/zigzag/reference.json``.
Only zigzag, the standard library and yaml are imported; nothing from hwsim.

Every layer is given a complete spatial mapping and a complete temporal loop order
(``temporal_ordering`` in the mapping file), so ZigZag's LOMA search never runs: the
memory allocator places the fixed loop order on the memory levels and the cost
model evaluates exactly that one mapping.  See tests/data/zigzag/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import logging
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "tests" / "data" / "zigzag"
INPUT_DIR = DATA_DIR / "inputs"

# --------------------------------------------------------------------------------------
# Layers: ResNet-18, batch 1, 224x224 input.  Names are used as mapping keys.
# --------------------------------------------------------------------------------------
LAYERS: list[dict[str, Any]] = [
    # name, K, C, OX, OY, FX, FY, stride, padding, input IX/IY (unpadded)
    dict(name="conv1", K=64, C=3, OX=112, OY=112, FX=7, FY=7, stride=2, pad=3, IX=224, IY=224),
    dict(name="layer1_0_conv1", K=64, C=64, OX=56, OY=56, FX=3, FY=3, stride=1, pad=1, IX=56, IY=56),
    dict(name="layer2_0_conv1", K=128, C=64, OX=28, OY=28, FX=3, FY=3, stride=2, pad=1, IX=56, IY=56),
    dict(name="layer2_0_downsample", K=128, C=64, OX=28, OY=28, FX=1, FY=1, stride=2, pad=0, IX=56, IY=56),
    dict(name="layer3_1_conv1", K=256, C=256, OX=14, OY=14, FX=3, FY=3, stride=1, pad=1, IX=14, IY=14),
    dict(name="layer4_1_conv1", K=512, C=512, OX=7, OY=7, FX=3, FY=3, stride=1, pad=1, IX=7, IY=7),
    dict(name="fc", K=1000, C=512, OX=1, OY=1, FX=1, FY=1, stride=1, pad=0, IX=1, IY=1),
]

# --------------------------------------------------------------------------------------
# Hardware configurations.  All energies in pJ, sizes in bits, bandwidths in bits/cycle.
# r_cost / w_cost are per access of `bandwidth_max` bits (ZigZag's convention, see README).
# --------------------------------------------------------------------------------------


def _port(name: str, kind: str, bw_min: int, bw_max: int, alloc: list[str]) -> dict[str, Any]:
    return dict(name=name, type=kind, bandwidth_min=bw_min, bandwidth_max=bw_max, allocation=alloc)


def _mem(size_bits: int, r: float, w: float, operands: list[str], ports: list[dict], served: list[str]) -> dict:
    return dict(
        size=size_bits,
        r_cost=r,
        w_cost=w,
        area=0.0,
        latency=1,
        operands=operands,
        ports=ports,
        served_dimensions=served,
    )


KIB = 8 * 1024  # bits per KiB

# Config A: "TPU-like" weight-stationary 32x32 array.
#   64-bit access granularity everywhere (bandwidth_min = 64); wider ports where the array needs it.
#   Energy per 64-bit word: I/W GB 40 pJ, O GB 28.3 pJ, DRAM 1300 pJ; r_cost below = that x (bw_max/64).
A_MAC_PJ = 0.3
A_WREG_PJ = 0.02  # per 8-bit access of the per-PE weight register
A_OREG_PJ = 0.05  # per 32-bit access of the per-PE psum register
A_GB_I_PJ_64 = 40.0
A_GB_W_PJ_64 = 40.0
A_GB_O_PJ_64 = 28.3
A_DRAM_PJ_64 = 1300.0
A_I_PORT = 256  # I GB port width (32 rows x 8 bit)
A_W_PORT = 256  # W GB port width (32 weights x 8 bit per cycle)
A_O_PORT = 1024  # O GB port width (32 columns x 32-bit psum)
A_DRAM_PORT = 128  # 16 bytes/cycle

ACCEL_A = dict(
    name="tpu_like_32x32",
    memories=dict(
        w_reg=_mem(
            8, A_WREG_PJ, A_WREG_PJ, ["I2"],
            [_port("r_port_1", "read", 8, 8, ["I2, tl"]), _port("w_port_1", "write", 8, 8, ["I2, fh"])],
            [],
        ),
        o_reg=_mem(
            32, A_OREG_PJ, A_OREG_PJ, ["O"],
            [
                _port("r_port_1", "read", 32, 32, ["O, tl"]),
                _port("r_port_2", "read", 32, 32, ["O, th"]),
                _port("w_port_1", "write", 32, 32, ["O, fl"]),
                _port("w_port_2", "write", 32, 32, ["O, fh"]),
            ],
            [],
        ),
        gb_i=_mem(
            128 * KIB, A_GB_I_PJ_64 * A_I_PORT / 64, A_GB_I_PJ_64 * A_I_PORT / 64, ["I1"],
            [
                _port("r_port_1", "read", 64, A_I_PORT, ["I1, tl"]),
                _port("w_port_1", "write", 64, A_I_PORT, ["I1, fh"]),
            ],
            ["D1", "D2"],
        ),
        gb_w=_mem(
            128 * KIB, A_GB_W_PJ_64 * A_W_PORT / 64, A_GB_W_PJ_64 * A_W_PORT / 64, ["I2"],
            [
                _port("r_port_1", "read", 64, A_W_PORT, ["I2, tl"]),
                _port("w_port_1", "write", 64, A_W_PORT, ["I2, fh"]),
            ],
            ["D1", "D2"],
        ),
        gb_o=_mem(
            64 * KIB, A_GB_O_PJ_64 * A_O_PORT / 64, A_GB_O_PJ_64 * A_O_PORT / 64, ["O"],
            [
                _port("r_port_1", "read", 64, A_O_PORT, ["O, tl", "O, th"]),
                _port("w_port_1", "write", 64, A_O_PORT, ["O, fl", "O, fh"]),
            ],
            ["D1", "D2"],
        ),
        dram=_mem(
            8 * 1024**3 * 8, A_DRAM_PJ_64 * A_DRAM_PORT / 64, A_DRAM_PJ_64 * A_DRAM_PORT / 64, ["I1", "I2", "O"],
            [
                _port(
                    "rw_port_1", "read_write", 64, A_DRAM_PORT,
                    ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"],
                )
            ],
            ["D1", "D2"],
        ),
    ),
    operational_array=dict(unit_energy=A_MAC_PJ, unit_area=1.0, dimensions=["D1", "D2"], sizes=[32, 32]),
)

# Config B: "Eyeriss-like" 14 (D1, columns) x 12 (D2, rows) PE array, 3 levels.
#   MAC 1 pJ; every RF access (one element) 1 pJ; shared GB 6 pJ per 64-bit word; DRAM 200 pJ per 64-bit word.
B_MAC_PJ = 1.0
B_RF_PJ = 1.0
B_GB_PJ_64 = 6.0
B_DRAM_PJ_64 = 200.0
B_GB_PORT = 256  # GB read port and write port, each 256 bit/cycle (4 x 64-bit words)
B_DRAM_PORT = 64  # 8 bytes/cycle

ACCEL_B = dict(
    name="eyeriss_like_14x12",
    memories=dict(
        rf_w=_mem(
            224 * 8, B_RF_PJ, B_RF_PJ, ["I2"],
            [_port("r_port_1", "read", 8, 8, ["I2, tl"]), _port("w_port_1", "write", 8, 8, ["I2, fh"])],
            [],
        ),
        rf_i=_mem(
            12 * 8, B_RF_PJ, B_RF_PJ, ["I1"],
            [_port("r_port_1", "read", 8, 8, ["I1, tl"]), _port("w_port_1", "write", 8, 8, ["I1, fh"])],
            [],
        ),
        rf_o=_mem(
            24 * 32, B_RF_PJ, B_RF_PJ, ["O"],
            [
                _port("r_port_1", "read", 32, 32, ["O, tl"]),
                _port("r_port_2", "read", 32, 32, ["O, th"]),
                _port("w_port_1", "write", 32, 32, ["O, fl"]),
                _port("w_port_2", "write", 32, 32, ["O, fh"]),
            ],
            [],
        ),
        gb=_mem(
            108 * KIB, B_GB_PJ_64 * B_GB_PORT / 64, B_GB_PJ_64 * B_GB_PORT / 64, ["I1", "I2", "O"],
            [
                _port("r_port_1", "read", 64, B_GB_PORT, ["I1, tl", "I2, tl", "O, tl", "O, th"]),
                _port("w_port_1", "write", 64, B_GB_PORT, ["I1, fh", "I2, fh", "O, fl", "O, fh"]),
            ],
            ["D1", "D2"],
        ),
        dram=_mem(
            8 * 1024**3 * 8, B_DRAM_PJ_64 * B_DRAM_PORT / 64, B_DRAM_PJ_64 * B_DRAM_PORT / 64, ["I1", "I2", "O"],
            [
                _port(
                    "rw_port_1", "read_write", 64, B_DRAM_PORT,
                    ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"],
                )
            ],
            ["D1", "D2"],
        ),
    ),
    operational_array=dict(unit_energy=B_MAC_PJ, unit_area=1.0, dimensions=["D1", "D2"], sizes=[14, 12]),
)

PRECISION = {
    # bits: I, W, partial sum (O), final output written back (O_final)
    "A": dict(I=8, W=8, O=32, O_final=8),
    "B": dict(I=8, W=8, O=32, O_final=8),
}

# --------------------------------------------------------------------------------------
# Mappings.  spatial: {OA dim: [(layer dim, factor), ...]}; temporal: innermost loop first.
# --------------------------------------------------------------------------------------
MAPPINGS: dict[str, dict[str, dict[str, Any]]] = {
    # A: weight stationary. D1 (32 columns) = K, D2 (32 rows) = C.  Temporal: the output plane (OX, then part of OY)
    # innermost so each weight stays in its PE register; then the reduction loops FX, FY, C (psums accumulate in the
    # O buffer, whose tile OX*OY_in*32 psums is sized to fit 64 KiB); then the rest of OY; K outermost.
    "A": {
        "conv1": dict(
            spatial={"D1": [("K", 32)], "D2": [("C", 3)]},
            temporal=[("OX", 112), ("OY", 4), ("FX", 7), ("FY", 7), ("OY", 28), ("K", 2)],
        ),
        "layer1_0_conv1": dict(
            spatial={"D1": [("K", 32)], "D2": [("C", 32)]},
            temporal=[("OX", 56), ("OY", 8), ("FX", 3), ("FY", 3), ("C", 2), ("OY", 7), ("K", 2)],
        ),
        "layer2_0_conv1": dict(
            spatial={"D1": [("K", 32)], "D2": [("C", 32)]},
            temporal=[("OX", 28), ("OY", 14), ("FX", 3), ("FY", 3), ("C", 2), ("OY", 2), ("K", 4)],
        ),
        "layer2_0_downsample": dict(
            spatial={"D1": [("K", 32)], "D2": [("C", 32)]},
            temporal=[("OX", 28), ("OY", 14), ("C", 2), ("OY", 2), ("K", 4)],
        ),
        "layer3_1_conv1": dict(
            spatial={"D1": [("K", 32)], "D2": [("C", 32)]},
            temporal=[("OX", 14), ("OY", 14), ("FX", 3), ("FY", 3), ("C", 8), ("K", 8)],
        ),
        "layer4_1_conv1": dict(
            spatial={"D1": [("K", 32)], "D2": [("C", 32)]},
            temporal=[("OX", 7), ("OY", 7), ("FX", 3), ("FY", 3), ("C", 16), ("K", 16)],
        ),
        "fc": dict(
            spatial={"D1": [("K", 25)], "D2": [("C", 32)]},
            temporal=[("C", 16), ("K", 40)],
        ),
    },
    # B: row-stationary-like. D1 (14 columns) = output rows OY, D2 (12 rows) = filter rows FY (x K replicas).
    # Inside a PE: a 1-D convolution of one filter row (FX innermost), over C_in-PE channels and K_in-PE filters
    # (W-RF holds FX*C*K <= 224 weights, I-RF FX*C <= 12 inputs, O-RF K <= 24 psums), then OX; then GB/DRAM loops.
    "B": {
        "conv1": dict(
            spatial={"D1": [("OY", 14)], "D2": [("FY", 7)]},
            temporal=[("FX", 7), ("C", 3), ("K", 8), ("OX", 112), ("OY", 8), ("K", 8)],
        ),
        "layer1_0_conv1": dict(
            spatial={"D1": [("OY", 14)], "D2": [("FY", 3), ("K", 4)]},
            temporal=[("FX", 3), ("C", 4), ("K", 16), ("OX", 14), ("C", 16), ("OX", 4), ("OY", 4)],
        ),
        "layer2_0_conv1": dict(
            spatial={"D1": [("OY", 14)], "D2": [("FY", 3), ("K", 4)]},
            temporal=[("FX", 3), ("C", 4), ("K", 16), ("OX", 7), ("C", 16), ("OX", 4), ("OY", 2), ("K", 2)],
        ),
        "layer2_0_downsample": dict(
            spatial={"D1": [("OY", 14)], "D2": [("K", 8)]},
            temporal=[("C", 8), ("K", 16), ("OX", 7), ("C", 8), ("OX", 4), ("OY", 2)],
        ),
        "layer3_1_conv1": dict(
            spatial={"D1": [("OY", 14)], "D2": [("FY", 3), ("K", 4)]},
            temporal=[("FX", 3), ("C", 4), ("K", 16), ("OX", 14), ("C", 16), ("C", 4), ("K", 4)],
        ),
        "layer4_1_conv1": dict(
            spatial={"D1": [("OY", 7), ("C", 2)], "D2": [("FY", 3), ("K", 4)]},
            temporal=[("FX", 3), ("C", 4), ("K", 16), ("OX", 7), ("C", 16), ("C", 4), ("K", 8)],
        ),
        "fc": dict(
            spatial={"D1": [("K", 10)], "D2": [("C", 8)]},
            temporal=[("C", 8), ("K", 20), ("C", 8), ("K", 5)],
        ),
    },
}

CONFIGS = {"A": ACCEL_A, "B": ACCEL_B}
MEMORY_OPERAND_LINKS = {"O": "O", "W": "I2", "I": "I1"}
DIRECTIONS = ["rd_out_to_low", "wr_in_by_low", "rd_out_to_high", "wr_in_by_high"]


# --------------------------------------------------------------------------------------
# YAML writers
# --------------------------------------------------------------------------------------
def workload_yaml(config: str) -> list[dict[str, Any]]:
    prec = PRECISION[config]
    out = []
    for idx, layer in enumerate(LAYERS):
        s = layer["stride"]
        p = layer["pad"]
        out.append(
            {
                "id": idx,
                "name": layer["name"],
                "operator_type": "Conv",
                "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
                "dimension_relations": [f"ix={s}*ox+1*fx", f"iy={s}*oy+1*fy"],
                "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
                "loop_sizes": [1, layer["K"], layer["C"], layer["OY"], layer["OX"], layer["FY"], layer["FX"]],
                "operand_precision": dict(prec),
                # Both inputs come from outside this single-layer workload (no inter-layer graph).
                "operand_source": {"W": idx, "I": idx},
                "pr_loop_dims": ["IX", "IY"],
                "pr_loop_sizes": [layer["IX"], layer["IY"]],
                "padding": [[p, p], [p, p]],
            }
        )
    return out


def mapping_yaml(config: str) -> list[dict[str, Any]]:
    entries = []
    for layer in LAYERS:
        m = MAPPINGS[config][layer["name"]]
        entries.append(
            {
                "name": layer["name"],
                "spatial_mapping": {d: [f"{dim}, {f}" for dim, f in loops] for d, loops in m["spatial"].items()},
                "temporal_ordering": [[dim, f] for dim, f in m["temporal"]],
                "memory_operand_links": dict(MEMORY_OPERAND_LINKS),
            }
        )
    # ZigZag requires a "default" entry; it is never used (every layer has its own entry).
    first = entries[0]
    entries.append(
        {
            "name": "default",
            "spatial_mapping": {d: list(v) for d, v in first["spatial_mapping"].items()},
            "memory_operand_links": dict(MEMORY_OPERAND_LINKS),
        }
    )
    return entries


def write_yaml(path: Path, data: Any) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Generated by scripts/zigzag_reference.py -- do not edit by hand.\n")
        yaml.safe_dump(data, f, sort_keys=False, default_flow_style=None, width=120)


# --------------------------------------------------------------------------------------
# Running ZigZag
# --------------------------------------------------------------------------------------
def run_zigzag(accel_path: Path, workload_path: Path, mapping_path: Path) -> list[tuple[Any, Any]]:
    from zigzag.mapping.temporal_mapping import TemporalMappingType
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.main import MainStage
    from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
    from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage
    from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage
    from zigzag.stages.parser.workload_parser import WorkloadParserStage
    from zigzag.stages.workload_iterator import WorkloadStage

    # Same stages as zigzag.api.get_hardware_performance_zigzag minus the save/plot/reduce stages: with a complete
    # spatial mapping and a complete temporal ordering exactly one cost-model evaluation is produced per layer.
    stages = [
        WorkloadParserStage,
        AcceleratorParserStage,
        WorkloadStage,
        SpatialMappingGeneratorStage,
        TemporalMappingGeneratorStage,
        CostModelStage,
    ]
    main = MainStage(
        list_of_callables=stages,
        accelerator=str(accel_path),
        workload=str(workload_path),
        mapping=str(mapping_path),
        loma_lpf_limit=6,
        loma_show_progress_bar=False,
        nb_mappings_generated=1,
        enable_mix_spatial_mapping_generation=False,
        access_same_data_considered_as_no_access=True,  # the api's default
        temporal_mapping_type=TemporalMappingType.UNEVEN,  # the api's default
    )
    return main.run()


def _num(x: Any) -> Any:
    """JSON-friendly number: ints stay ints, integral floats become ints, others rounded to 12 significant digits."""
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x
    if hasattr(x, "item"):  # numpy scalar
        x = x.item()
    if isinstance(x, float):
        if math.isfinite(x) and x == int(x) and abs(x) < 2**53:
            return int(x)
        return float(f"{x:.12g}")
    return x


def _loops(levels: list[list[tuple[Any, Any]]]) -> list[list[list[Any]]]:
    return [[[str(d), _num(f)] for d, f in lvl] for lvl in levels]


def extract(cme: Any, layer_spec: dict[str, Any], mapping_spec: dict[str, Any], config: str) -> dict[str, Any]:
    from zigzag.datatypes import LayerOperand
    from zigzag.mapping.data_movement import DataDirection, DataMoveAttr

    layer = cme.layer
    acc = cme.accelerator
    mapping = cme.mapping
    sm = mapping.spatial_mapping
    tm = cme.temporal_mapping

    # The fixed loop order must have been used as-is (otherwise ZigZag silently falls back to a LOMA search),
    # and the spatial mapping must not have been clipped (SpatialMappingGeneratorStage may shrink unrollings).
    wanted = [(d, int(f)) for d, f in mapping_spec["temporal"]]
    wanted_spatial: dict[str, int] = {}
    for loops in mapping_spec["spatial"].values():
        for d, f in loops:
            wanted_spatial[d] = wanted_spatial.get(d, 1) * f
    for op in layer.layer_operands:
        flat = [(str(d), int(f)) for lvl in tm.mapping_dic_origin[op] for d, f in lvl]
        assert flat == wanted, f"{layer.name} {op}: ZigZag used temporal order {flat}, expected {wanted}"
        got_spatial: dict[str, float] = {}
        for lvl in sm.mapping_dict_origin[op]:
            for d, f in lvl:
                got_spatial[str(d)] = got_spatial.get(str(d), 1) * f
        assert got_spatial == wanted_spatial, f"{layer.name} {op}: spatial {got_spatial} != {wanted_spatial}"

    operands: dict[str, Any] = {}
    for op in layer.layer_operands:
        mem_op = layer.memory_operand_links.layer_to_mem_op(op)
        levels = []
        for lv in range(mapping.mem_level[op]):
            ml = acc.get_memory_level(mem_op, lv)
            umdm = mapping.unit_mem_data_movement[op][lv]
            cme_umdm = cme.mapping_int.unit_mem_data_movement[op][lv]
            access = cme.memory_word_access[op][lv]
            energy = cme.mem_energy_breakdown_further[op][lv]
            per_dir = {}
            for d in DataDirection:
                bw_max = ml.get_max_bandwidth(mem_op, d)
                bw_min = ml.get_min_bandwidth(mem_op, d)
                per_dir[str(d)] = {
                    "accesses": _num(access.get(d)),
                    "energy_pJ": _num(energy.get(d)),
                    "port_bw_max_bits": bw_max,
                    "port_bw_min_bits": bw_min,
                    "elements_per_period": _num(umdm.get_attribute(DataMoveAttr.DATA_TRANS_AMOUNT_PER_PERIOD).get(d)),
                    "precision_bits": _num(umdm.get_attribute(DataMoveAttr.DATA_PRECISION).get(d)),
                    "period_cycles": _num(umdm.get_attribute(DataMoveAttr.DATA_TRANS_PERIOD).get(d)),
                    "period_count": _num(umdm.get_attribute(DataMoveAttr.DATA_TRANS_PERIOD_COUNT).get(d)),
                    "element_move_count": _num(umdm.get_attribute(DataMoveAttr.DATA_ELEM_MOVE_COUNT).get(d)),
                    "real_transfer_cycles_per_period": _num(cme.real_data_trans_cycle[op][lv].get(d)),
                    "allowed_transfer_cycles_per_period": _num(cme.allowed_mem_update_cycle[op][lv].get(d)),
                    "req_bw_avg_bits_per_cycle": _num(cme_umdm.get_attribute(DataMoveAttr.REQ_MEM_BW_AVER).get(d)),
                }
            levels.append(
                {
                    "memory": ml.name,
                    "level": lv,
                    "instances_used": _num(sm.unit_count[op][lv + 1]),
                    "unique_instances": _num(sm.unit_unique[op][lv + 1]),
                    "instances_in_hw": ml.unroll_count,
                    "temporal_loops_allocated": _loops([tm.mapping_dic_origin[op][lv]])[0],
                    "temporal_loops_stationary": _loops([tm.mapping_dic_stationary[op][lv]])[0],
                    "spatial_loops_above": _loops([sm.mapping_dict_origin[op][lv + 1]])[0],
                    "tile_elements_per_instance": _num(mapping.data_elem_per_level_unrolled[op][lv + 1]),
                    "tile_bits_per_instance": _num(mapping.data_bit_per_level_unrolled[op][lv + 1]),
                    "tile_elements_all_instances": _num(mapping.data_elem_per_level[op][lv + 1]),
                    "stored_precision_bits": _num(mapping.data_precision_dict[op][lv + 1]),
                    "holds_partial_sums": bool(mapping.psum_flag[lv]) if op == layer.output_operand else False,
                    "utilization_individual": _num(cme.mem_utili_individual[op][lv]),
                    "double_buffered": bool(cme.double_buffer_true[op][lv + 1]),
                    "cycles_per_iteration_of_this_level": _num(tm.cycle_cabl_level[op][lv]),
                    "top_ir_loop_size": _num(tm.top_ir_loop_size[op][lv + 1]),
                    "energy_pJ": _num(cme.mem_energy_breakdown[op][lv]),
                    "directions": per_dir,
                    "reads": _num(access.get(DataDirection.RD_OUT_TO_LOW) + access.get(DataDirection.RD_OUT_TO_HIGH)),
                    "writes": _num(access.get(DataDirection.WR_IN_BY_LOW) + access.get(DataDirection.WR_IN_BY_HIGH)),
                }
            )
        operands[str(op)] = {
            "memory_operand": str(mem_op),
            "precision_bits": _num(layer.operand_precision[op]),
            "tensor_elements": _num(layer.operand_size_elem[op]),
            "mac_level_spatial_loops": _loops([sm.mapping_dict_origin[op][0]])[0],
            "mac_level_units": _num(sm.unit_count[op][0]),
            "mac_level_unique_units": _num(sm.unit_unique[op][0]),
            "mac_level_elements_all_units": _num(mapping.data_elem_per_level[op][0]),
            "mac_level_data_stationary_cycle": _num(tm.mac_level_data_stationary_cycle[op]),
            "levels": levels,
        }

    # energy per physical memory (summed over operands)
    per_memory: dict[str, float] = {}
    for op_name, od in operands.items():
        for lvl in od["levels"]:
            per_memory[lvl["memory"]] = per_memory.get(lvl["memory"], 0.0) + float(lvl["energy_pJ"])
    per_memory = {k: _num(v) for k, v in per_memory.items()}

    ports = {}
    for idx, ml in enumerate(cme.mem_level_list):
        ports[ml.name] = {p: _num(v) for p, v in cme.stall_slack_comb_collect[idx].items()}

    onload = {
        str(op): {k: _num(v[0]) for k, v in sorted(d.items())} for op, d in cme.data_loading_cc_per_op.items()
    }
    offload = {
        str(op): {k: _num(v[0]) for k, v in sorted(d.items())} for op, d in cme.data_offloading_cc_per_op.items()
    }

    return {
        "config": config,
        "layer": {
            "name": layer.name,
            "K": layer_spec["K"],
            "C": layer_spec["C"],
            "OX": layer_spec["OX"],
            "OY": layer_spec["OY"],
            "FX": layer_spec["FX"],
            "FY": layer_spec["FY"],
            "stride": layer_spec["stride"],
            "padding": layer_spec["pad"],
            "batch": 1,
            "input_IX": layer_spec["IX"],
            "input_IY": layer_spec["IY"],
            "macs": _num(layer.total_mac_count),
        },
        "precision_bits": {
            "I": _num(layer.operand_precision[LayerOperand("I")]),
            "W": _num(layer.operand_precision[LayerOperand("W")]),
            "O_partial": _num(layer.operand_precision[LayerOperand("O")]),
            "O_final": _num(layer.operand_precision[LayerOperand("O_final")]),
        },
        "mapping": {
            "spatial": {d: [[dim, f] for dim, f in loops] for d, loops in mapping_spec["spatial"].items()},
            "temporal_order_innermost_first": [[d, f] for d, f in mapping_spec["temporal"]],
        },
        "energy_pJ": {
            "mac": _num(cme.mac_energy),
            "memory_total": _num(cme.mem_energy),
            "total": _num(cme.energy_total),
            "per_memory": per_memory,
            "per_operand_per_level": {op: [_num(e) for e in cme.mem_energy_breakdown[LayerOperand(op)]]
                                      for op in operands},
        },
        "operands": operands,
        "latency_cycles": {
            "ideal": _num(cme.ideal_cycle),
            "ideal_temporal": _num(cme.ideal_temporal_cycle),
            "stall_slack_combined": _num(cme.stall_slack_comb),
            "data_onloading": _num(cme.data_onloading_cycle),
            "data_offloading": _num(cme.data_offloading_cycle),
            "systolic_drain": _num(cme.systolic_drain_cycle),
            "computation_with_stalls": _num(cme.latency_total0),
            "with_onloading": _num(cme.latency_total1),
            "total": _num(cme.latency_total2),
            "mac_spatial_utilization": _num(cme.mac_spatial_utilization),
            "mac_utilization_total": _num(cme.mac_utilization2),
            "stall_or_slack_per_port": ports,
            "onloading_cycles_per_link": onload,
            "offloading_cycles_per_link": offload,
        },
    }


def describe_config(config: str) -> dict[str, Any]:
    acc = CONFIGS[config]
    mems = {}
    for name, m in acc["memories"].items():
        mems[name] = {
            "size_bits": m["size"],
            "r_cost_pJ_per_access": m["r_cost"],
            "w_cost_pJ_per_access": m["w_cost"],
            "operands": m["operands"],
            "served_dimensions": m["served_dimensions"],
            "ports": m["ports"],
        }
        bw_min = {p["bandwidth_min"] for p in m["ports"]}
        bw_max = {p["bandwidth_max"] for p in m["ports"]}
        if len(bw_min) == 1 and len(bw_max) == 1:
            (mn,), (mx,) = bw_min, bw_max
            mems[name]["r_cost_pJ_per_bw_min_word"] = _num(m["r_cost"] * mn / mx)
            mems[name]["w_cost_pJ_per_bw_min_word"] = _num(m["w_cost"] * mn / mx)
    return {
        "name": acc["name"],
        "array": dict(zip(acc["operational_array"]["dimensions"], acc["operational_array"]["sizes"])),
        "mac_energy_pJ": acc["operational_array"]["unit_energy"],
        "memories_innermost_first": mems,
        "precision_bits": PRECISION[config],
        "memory_operand_links": MEMORY_OPERAND_LINKS,
    }



# --------------------------------------------------------------------------------------
# Self-check: recompute ZigZag's counts from the JSON alone with the rules in README.md.
# Needs only the standard library, so it can run with any python.
# --------------------------------------------------------------------------------------
def _close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def check_reference(doc: dict[str, Any]) -> int:
    """Verify every access count, energy and latency sum in `doc` against the documented counting model.
    Returns the number of checked quantities; raises AssertionError on the first mismatch."""
    n = 0
    for key, r in sorted(doc["results"].items()):
        cfg = doc["configs"][r["config"]]
        mems = cfg["memories_innermost_first"]
        lat = r["latency_cycles"]
        total_cycles = math.prod(f for _, f in r["mapping"]["temporal_order_innermost_first"])
        assert lat["ideal_temporal"] == total_cycles, key
        n_pe = math.prod(cfg["array"].values())
        assert lat["ideal"] == math.ceil(r["layer"]["macs"] / n_pe), key
        assert _close(r["energy_pJ"]["mac"], r["layer"]["macs"] * cfg["mac_energy_pJ"]), key
        mem_total = 0.0
        for op, od in r["operands"].items():
            levels = od["levels"]
            for m, lv in enumerate(levels):
                below_all = od["mac_level_elements_all_units"] if m == 0 else levels[m - 1]["tile_elements_all_instances"]
                below_period = (
                    (od["mac_level_data_stationary_cycle"] if op != "O" else 1)
                    if m == 0
                    else levels[m - 1]["cycles_per_iteration_of_this_level"]
                )
                own_period = lv["cycles_per_iteration_of_this_level"]
                top = m == len(levels) - 1
                lv_energy = 0.0
                for dname, d in lv["directions"].items():
                    if d["period_count"] == 0:
                        assert d["accesses"] == 0, (key, op, m, dname)
                        continue
                    # what is moved per period, and how often
                    if dname in ("rd_out_to_low", "wr_in_by_low"):
                        assert d["elements_per_period"] * lv["unique_instances"] == below_all, (key, op, m, dname)
                        assert d["period_cycles"] == below_period, (key, op, m, dname)
                    else:
                        assert not top, (key, op, m, dname)
                        assert d["elements_per_period"] == lv["tile_elements_per_instance"], (key, op, m, dname)
                        assert d["period_cycles"] == own_period, (key, op, m, dname)
                    assert d["period_count"] * d["period_cycles"] == total_cycles, (key, op, m, dname)
                    # word accesses: ceil per period to bw_min-bit words, expressed in bw_max-bit accesses
                    bw_min, bw_max = d["port_bw_min_bits"], d["port_bw_max_bits"]
                    bits = d["elements_per_period"] * d["precision_bits"]
                    acc = int(math.ceil(bits / bw_min) * (bw_min / bw_max) * d["period_count"] * lv["instances_used"])
                    assert acc == d["accesses"], (key, op, m, dname, acc, d["accesses"])
                    cost = mems[lv["memory"]]["r_cost_pJ_per_access" if dname.startswith("rd") else "w_cost_pJ_per_access"]
                    assert _close(d["energy_pJ"], d["accesses"] * cost), (key, op, m, dname)
                    # stall model inputs
                    assert d["real_transfer_cycles_per_period"] == math.ceil(bits / bw_max), (key, op, m, dname)
                    lv_energy += d["energy_pJ"]
                    n += 5
                assert _close(lv["energy_pJ"], lv_energy), (key, op, m)
                mem_total += lv_energy
        assert _close(r["energy_pJ"]["memory_total"], mem_total), key
        assert _close(r["energy_pJ"]["total"], mem_total + r["energy_pJ"]["mac"]), key
        ss = max([0] + [v for ports in lat["stall_or_slack_per_port"].values() for v in ports.values()])
        assert _close(lat["stall_slack_combined"], ss), key
        assert _close(
            lat["total"],
            lat["ideal_temporal"] + lat["stall_slack_combined"] + lat["data_onloading"] + lat["data_offloading"]
            + lat["systolic_drain"],
        ), key
        n += 8
    return n

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_DIR / "reference.json")
    ap.add_argument("--inputs", type=Path, default=INPUT_DIR)
    ap.add_argument("--check-only", action="store_true", help="only re-verify an existing reference.json")
    args = ap.parse_args()

    if args.check_only:
        with open(args.out, encoding="utf-8") as f:
            n = check_reference(json.load(f))
        print(f"{args.out}: {n} quantities consistent with the documented counting model")
        return 0

    logging.basicConfig(level=logging.WARNING)
    zz_version = importlib.metadata.version("zigzag-dse")

    results: dict[str, Any] = {}
    configs_out: dict[str, Any] = {}
    for config in sorted(CONFIGS):
        accel_path = args.inputs / f"{config}_accelerator.yaml"
        workload_path = args.inputs / f"{config}_workload.yaml"
        mapping_path = args.inputs / f"{config}_mapping.yaml"
        write_yaml(accel_path, CONFIGS[config])
        write_yaml(workload_path, workload_yaml(config))
        write_yaml(mapping_path, mapping_yaml(config))

        answers = run_zigzag(accel_path, workload_path, mapping_path)
        assert len(answers) == len(LAYERS), f"expected one evaluation per layer, got {len(answers)}"
        by_name = {spec["name"]: spec for spec in LAYERS}
        for cme, _extra in answers:
            name = cme.layer.name
            results[f"{config}/{name}"] = extract(cme, by_name[name], MAPPINGS[config][name], config)
        configs_out[config] = describe_config(config)

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        if epoch
        else datetime.datetime.now(datetime.timezone.utc)
    )
    doc = {
        "metadata": {
            "tool": "zigzag-dse",
            "zigzag_version": zz_version,
            "python_version": platform.python_version(),
            "generated_utc": when.strftime("%Y-%m-%d"),
            "generator": "scripts/zigzag_reference.py",
            "search": "none: complete spatial mapping and complete temporal_ordering per layer; LOMA not run",
            "cost_model_flags": {
                "access_same_data_considered_as_no_access": True,
                "temporal_mapping_type": "uneven",
                "cycles_per_op": 1,
            },
            "units": {"energy": "pJ", "latency": "cycles", "size": "bits", "bandwidth": "bits/cycle"},
        },
        "configs": configs_out,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")

    n = check_reference(json.loads(json.dumps(doc)))
    print(f"self-check: {n} quantities consistent with the documented counting model")

    # short summary on stdout
    print(f"zigzag-dse {zz_version}, python {platform.python_version()} -> {args.out}")
    hdr = f"{'cfg/layer':28s} {'MAC pJ':>12s} {'mem pJ':>14s} {'ideal':>9s} {'latency':>9s}"
    print(hdr)
    for key in sorted(results):
        r = results[key]
        print(
            f"{key:28s} {r['energy_pJ']['mac']:12.1f} {r['energy_pJ']['memory_total']:14.1f} "
            f"{r['latency_cycles']['ideal']:9d} {r['latency_cycles']['total']:9.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The xnor_popcount unit priced by the cost model: FINN folding, energy, packed traffic."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.arch import XnorPopcount, load_accelerator
from hwsim.cost import EnergyTable, LayerTable, cost_network, cost_table, memory_traffic
from hwsim.errors import ConfigError

from tests._cost_helpers import assert_memory_energy_exact, conv

REPO = Path(__file__).resolve().parents[1]
BINARY = load_accelerator(REPO / "hw_configs" / "binary_xnor.yaml")
BIN = dict(weight_format="binary", act_format="binary")  # what the XNOR unit runs


def binary_with(pe: int = 32, simd: int = 64, buffer_bytes: int | None = None):
    accel = replace(BINARY, compute=replace(BINARY.compute, pe=pe, simd=simd))
    if buffer_bytes is not None:
        accel = replace(accel, buffers=tuple(replace(b, size_bytes=buffer_bytes)
                                             for b in accel.buffers))
    return accel


def reference_cycles(layer, pe: int, simd: int) -> int:
    """Plain-integer FINN folding: pixels x groups x ceil(MW/SIMD) x ceil(MH/PE) x planes."""
    mw = layer.kernel_h * layer.kernel_w * layer.in_channels // layer.groups
    mh = layer.out_channels // layer.groups
    pixels = layer.out_h() * layer.out_w() * layer.batch
    planes = layer.act_bits * layer.weight_bits
    return pixels * layer.groups * math.ceil(mw / simd) * math.ceil(mh / pe) * planes


LAYER = st.fixed_dictionaries({
    "in_hw": st.integers(1, 12), "cin": st.integers(1, 40), "cout": st.integers(1, 40),
    "k": st.integers(1, 3), "groups": st.sampled_from([1, 2, 4]), "batch": st.integers(1, 2),
    "a": st.integers(1, 4), "w": st.integers(1, 4), "stride": st.integers(1, 2)})


def make_layer(p) -> object:
    return conv(in_h=p["in_hw"], in_w=p["in_hw"], in_channels=p["cin"] * p["groups"],
                out_channels=p["cout"] * p["groups"], groups=p["groups"], kernel_h=p["k"],
                kernel_w=p["k"], pad_top=p["k"] // 2, pad_left=p["k"] // 2,
                pad_bottom=p["k"] // 2, pad_right=p["k"] // 2, stride_h=p["stride"],
                stride_w=p["stride"], batch=p["batch"], act_bits=p["a"], weight_bits=p["w"], **BIN)


@settings(max_examples=200, deadline=None)
@given(p=LAYER, pe=st.integers(1, 64), simd=st.integers(1, 128))
def test_cycles_follow_the_folding_formula_exactly(p, pe, simd):
    layer = make_layer(p)
    row = cost_network(binary_with(pe, simd), [layer]).per_layer.iloc[0]
    assert row["compute_cycles"] == reference_cycles(layer, pe, simd)
    assert row["passes"] == p["a"] * p["w"] and row["unit"] == "xnor_popcount"
    assert 0 < row["utilization"] <= 1


def test_folding_by_hand_and_depthwise_uses_one_pe_row():
    layer = conv(in_channels=64, out_channels=96, act_bits=1, weight_bits=1, **BIN)  # 14x14 out, MW = 576, MH = 96
    got = cost_network(binary_with(32, 64), [layer]).compute_cycles
    assert got == 196 * 9 * 3
    dw = conv(in_channels=32, out_channels=32, groups=32, act_bits=1, weight_bits=1, **BIN)  # MW = 9, MH = 1 per group
    assert cost_network(binary_with(32, 64), [dw]).compute_cycles == 32 * 196 * 1 * 1
    assert cost_network(binary_with(1, 64), [dw]).compute_cycles == 32 * 196


@settings(max_examples=100, deadline=None)
@given(p=LAYER, pe=st.integers(1, 64), simd=st.integers(1, 128),
       energies=st.tuples(*[st.floats(0, 2, allow_nan=False)] * 3))
def test_compute_energy_is_counts_times_action_energies_exactly(p, pe, simd, energies):
    layer = make_layer(p)
    xe, pe_bit, acc_e = energies
    accel = binary_with(pe, simd)
    accel = replace(accel, compute=replace(accel.compute, xnor_energy_pj=xe,
                                           popcount_energy_pj_per_bit=pe_bit,
                                           accumulate_energy_pj=acc_e))
    row = cost_network(accel, [layer]).per_layer.iloc[0]
    planes = p["a"] * p["w"]
    products = layer.macs() * planes
    mw = layer.kernel_h * layer.kernel_w * layer.in_channels // layer.groups
    accumulates = (layer.out_h() * layer.out_w() * layer.batch * layer.out_channels
                   * math.ceil(mw / simd) * planes)
    assert row["xnor_actions"] == products and row["popcount_bit_actions"] == products
    assert row["accumulate_actions"] == accumulates
    assert "mac_actions" not in row.index
    assert row["energy_compute_pj"] == products * xe + products * pe_bit + accumulates * acc_e


def test_memory_energy_per_level_is_accesses_times_energies_exactly():
    accel = binary_with(16, 32, buffer_bytes=4096)
    layers = [conv(in_channels=128, out_channels=256, act_bits=2, weight_bits=1, **BIN),
              conv(name="d", in_channels=40, out_channels=40, groups=40, act_bits=1, weight_bits=3,
                   **BIN)]
    frame = cost_network(accel, layers).per_layer
    assert_memory_energy_exact(accel, frame)
    table = EnergyTable.for_accelerator(accel)
    assert table.mac_pj == 0.0 and set(table.action_pj) == {"xnor", "popcount_bit", "accumulate"}


@settings(max_examples=60, deadline=None)
@given(a=st.integers(1, 4), w=st.integers(1, 4), cin=st.integers(1, 16), cout=st.integers(1, 16),
       pe=st.integers(1, 32), simd=st.integers(1, 64))
def test_packed_traffic_scales_with_the_bits(a, w, cin, cout, pe, simd):
    # 8 x 8 input, 8-multiple channel counts: every operand is a whole number of bytes at 1 bit.
    layer = conv(in_h=8, in_w=8, in_channels=8 * cin, out_channels=8 * cout,
                 act_bits=a, weight_bits=w, **BIN)
    accel = binary_with(pe, simd, buffer_bytes=1 << 30)
    table = LayerTable.from_layers([layer])
    one = memory_traffic(accel, table.with_bits(1, 1))
    got = memory_traffic(accel, table)
    for op, bits in (("ifmap", a), ("filter", w), ("ofmap", a)):
        assert got.operand_bytes[op][0] == bits * one.operand_bytes[op][0]
    ifmap_b, filter_b = 8 * cin * 64 * a // 8, 8 * cout * 8 * cin * 9 * w // 8
    assert got.reads["dram"][0] == ifmap_b + filter_b
    assert got.writes["dram"][0] == 8 * cout * 64 * a // 8
    # Each of the a*w passes streams one bit per operand element into the array.
    assert got.reads["filter_sram"][0] == a * w * one.reads["filter_sram"][0]
    assert got.reads["ifmap_sram"][0] == a * w * one.reads["ifmap_sram"][0]
    sr, sc, t = 64, 8 * cout, 9 * 8 * cin
    assert one.reads["filter_sram"][0] == sr * sc * t // 8
    assert one.reads["ifmap_sram"][0] == math.ceil(sr * t * math.ceil(sc / pe) / 8)
    # Outputs are accumulated in the PEs and leave the array once, at acc_bits.
    assert got.writes["ofmap_sram"][0] == sr * sc * accel.compute.acc_bits // 8


def test_binary_layer_is_cheaper_than_int8_on_its_own_unit():
    layer = conv(in_channels=256, out_channels=256, **BIN)
    table = LayerTable.from_layers([layer])
    cols1 = cost_table(BINARY, table.with_bits(1, 1))
    cols2 = cost_table(BINARY, table.with_bits(2, 2))
    assert cols2.compute_cycles[0] == 4 * cols1.compute_cycles[0]
    assert cols2.energy_compute_pj[0] > cols1.energy_compute_pj[0]
    assert isinstance(BINARY.compute, XnorPopcount) and BINARY.compute.pe_count == 32 * 64


def test_the_unit_runs_binary_weights_only_with_binary_or_int_activations():
    """A uniform int weight is not a sum of +-1 planes (a 1-bit signed int is {-1, 0}): an int
    layer on the XNOR unit is refused, whatever its widths; int activations are bit planes."""
    layer = conv(in_channels=16, out_channels=16, act_bits=1, weight_bits=1)  # "int" formats
    with pytest.raises(ConfigError) as err:
        cost_network(BINARY, [layer])
    msg = str(err.value)
    assert "compute: layer 'c' (act_bits=1, weight_bits=1) with 'int' weights" in msg
    assert "weight formats ['binary'] and activation formats ['binary', 'int']" in msg
    table = LayerTable.from_layers([layer])
    as_binary = cost_table(BINARY, table.with_formats("binary", "binary"))
    int_acts = cost_table(BINARY, table.with_formats("binary"))
    assert as_binary.compute_cycles[0] == int_acts.compute_cycles[0] > 0
    frame = cost_network(BINARY, [replace(layer, **BIN)]).per_layer
    assert (frame.loc[0, "weight_format"], frame.loc[0, "act_format"]) == ("binary", "binary")

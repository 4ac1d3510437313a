"""The shift_add unit priced by the cost model: terms per weight, lane folding, actions, energy,
code-width traffic, format routing and format errors."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.arch import Operands, ShiftAdd, load_accelerator, terms_per_weight
from hwsim.cost import EnergyTable, LayerTable, cost_network, cost_table, memory_traffic
from hwsim.errors import ConfigError
from hwsim.workloads import builtin_workload, linear_layer
from tests._cost_helpers import assert_memory_energy_exact, conv, write_config_variant

REPO = Path(__file__).resolve().parents[1]
SHIFT_ADD = REPO / "hw_configs" / "shift_add_apot.yaml"
HETERO = REPO / "hw_configs" / "hetero_int8_apot.yaml"
HETERO_XNOR = REPO / "hw_configs" / "hetero_int8_xnor.yaml"
BINARY = REPO / "hw_configs" / "binary_xnor.yaml"
BASE = load_accelerator(SHIFT_ADD)

APOT_TERMS = {3: 1, 4: 2, 5: 2, 6: 3, 7: 3}  # the APoT table: b-bit weight -> terms


def unit_with(lanes: int = 1024, shifters: int = 2, buffer_bytes: int | None = None, **energies):
    accel = replace(BASE, compute=replace(BASE.compute, lanes=lanes, shifters_per_lane=shifters,
                                          **energies))
    if buffer_bytes is not None:
        accel = replace(accel, buffers=tuple(replace(b, size_bytes=buffer_bytes)
                                             for b in accel.buffers))
    return accel


def apot(name: str = "c", bits: int = 4, **kw):
    return conv(name, weight_format="apot", weight_bits=bits, **kw)


def test_config_loads_with_its_fields():
    unit = BASE.compute
    assert isinstance(unit, ShiftAdd) and BASE.default_unit == "shift_add"
    assert (unit.lanes, unit.shifters_per_lane, unit.adder_bits, unit.acc_bits) == (1024, 2, 24,
                                                                                     24)
    assert (unit.act_bits, unit.weight_bits, unit.pe_count) == (8, 8, 1024)
    assert (unit.shift_energy_pj, unit.add_energy_pj,
            unit.accumulate_energy_pj) == (0.03, 0.075, 0.075)
    assert BASE.clock_hz == 1e9
    tuned = load_accelerator(SHIFT_ADD, ["compute.lanes=512", "compute.adder_bits=32"]).compute
    assert (tuned.lanes, tuned.acc_bits) == (512, 32)
    table = EnergyTable.for_accelerator(BASE)
    assert table.mac_pj == 0.0 and table.action_pj == {"shift": 0.03, "add": 0.075,
                                                        "accumulate": 0.075}


def test_terms_per_weight_apot_table_and_int_magnitude_bits():
    bits = np.arange(1, 10)
    got_apot = terms_per_weight(["apot"] * len(bits), bits)
    assert list(got_apot) == [APOT_TERMS.get(int(b), 0) for b in bits]
    assert list(terms_per_weight("int", bits)) == [1, 1, 2, 3, 4, 5, 6, 7, 8]
    assert list(terms_per_weight(["apot", "apot", "int", "binary"], [4, 3, 4, 1])) == [2, 1, 3, 0]


def test_closed_form_by_hand():
    # 4x4 input, 3 -> 5 channels, 3x3 pad 1: sr = 16 pixels, sc = 5 filters, t = 27.
    # 16 lanes: F = min(5, 16) = 5 filter columns, P = 16 // 5 = 3 pixel rows -> ceil(16/3) = 6
    # pixel folds x 1 filter fold x 27 products; 2 shifters: ceil(n/2) cycles per product.
    accel = unit_with(lanes=16, shifters=2)
    layer = dict(in_h=4, in_w=4, in_channels=3, out_channels=5)
    cases = [(apot(bits=3, **layer), 162), (apot(bits=4, **layer), 162),
             (apot(bits=6, **layer), 324), (conv(weight_bits=4, **layer), 324),
             (conv(**layer), 648)]  # int8: 7 terms -> 4 cycles per product
    for l, cycles in cases:
        assert cost_network(accel, [l]).compute_cycles == cycles, l
    # Depthwise 8 channels: per group sr = 16, sc = 1, t = 9 -> F = 1, P = 16: 1 fold x 9.
    dw = apot(in_h=4, in_w=4, in_channels=8, out_channels=8, groups=8)
    assert cost_network(accel, [dw]).compute_cycles == 8 * 9
    # FC 100 -> 40, batch 1: sr = 1, sc = 40, t = 100 -> F = 16, P = 1: 3 filter folds x 100.
    fc = linear_layer("fc", 100, 40, weight_format="apot", weight_bits=5)
    assert cost_network(accel, [fc]).compute_cycles == 300
    # One shifter per lane: a 2-term product takes 2 cycles.
    assert cost_network(unit_with(lanes=16, shifters=1), [cases[1][0]]).compute_cycles == 324


def test_action_counts_by_hand():
    layer = apot(bits=4, in_h=4, in_w=4, in_channels=3, out_channels=5)
    row = cost_network(unit_with(lanes=16), [layer]).per_layer.iloc[0]
    products = 16 * 5 * 27
    assert row["macs"] == products and row["passes"] == 1
    assert (row["shift_actions"], row["add_actions"], row["accumulate_actions"]) == (
        2 * products, products, products)
    assert "mac_actions" not in row.index
    assert (row["weight_format"], row["act_format"], row["unit"]) == ("apot", "int", "shift_add")


@pytest.mark.parametrize("fmt, bits, terms", [("apot", 3, 1), ("apot", 4, 2), ("apot", 5, 2),
                                              ("apot", 6, 3), ("apot", 7, 3), ("int", 4, 3),
                                              ("int", 8, 7), ("int", 2, 1)])
def test_terms_per_layer_drive_shifts_and_adds(fmt, bits, terms):
    layer = conv(weight_format=fmt, weight_bits=bits)
    row = cost_network(BASE, [layer]).per_layer.iloc[0]
    products = layer.macs()
    assert row["shift_actions"] == terms * products
    assert row["add_actions"] == (terms - 1) * products
    assert row["accumulate_actions"] == products


def reference_cycles(layer, lanes: int, shifters: int) -> int:
    """Plain-Python schedule: per group, the lane grid (F filter columns x P pixel rows) walks the
    pixel folds x filter folds; a fold lasts as long as its busiest lane, which reduces t
    products of ceil(n / shifters) cycles each."""
    n = (APOT_TERMS[layer.weight_bits] if layer.weight_format == "apot"
         else max(layer.weight_bits - 1, 1))
    sr = layer.out_h() * layer.out_w() * layer.batch
    sc = layer.out_channels // layer.groups
    t = layer.kernel_h * layer.kernel_w * layer.in_channels // layer.groups
    cols = min(sc, lanes)
    rows = lanes // cols
    total = 0
    for _ in range(layer.groups):
        for p0 in range(0, sr, rows):
            for f0 in range(0, sc, cols):
                busiest = 0
                for lane in range(lanes):
                    p, f = p0 + lane // cols, f0 + lane % cols
                    if lane // cols < rows and p < sr and f < sc:
                        busy = sum(-(-n // shifters) for _ in range(t))
                        busiest = max(busiest, busy)
                total += busiest
    return total


LAYER = st.fixed_dictionaries({
    "in_hw": st.integers(1, 6), "cin": st.integers(1, 6), "cout": st.integers(1, 12),
    "k": st.integers(1, 3), "groups": st.sampled_from([1, 2, 3]), "batch": st.integers(1, 2),
    "stride": st.integers(1, 2),
    "fmt_bits": st.one_of(st.tuples(st.just("apot"), st.integers(3, 7)),
                          st.tuples(st.just("int"), st.integers(1, 8)))})


def make_layer(p):
    fmt, bits = p["fmt_bits"]
    return conv(in_h=p["in_hw"], in_w=p["in_hw"], in_channels=p["cin"] * p["groups"],
                out_channels=p["cout"] * p["groups"], groups=p["groups"], kernel_h=p["k"],
                kernel_w=p["k"], pad_top=p["k"] // 2, pad_left=p["k"] // 2,
                pad_bottom=p["k"] // 2, pad_right=p["k"] // 2, stride_h=p["stride"],
                stride_w=p["stride"], batch=p["batch"], weight_format=fmt, weight_bits=bits)


@settings(max_examples=150, deadline=None)
@given(p=LAYER, lanes=st.integers(1, 40), shifters=st.integers(1, 4))
def test_vectorized_cycles_equal_the_lane_by_lane_schedule(p, lanes, shifters):
    layer = make_layer(p)
    row = cost_network(unit_with(lanes, shifters), [layer]).per_layer.iloc[0]
    assert row["compute_cycles"] == reference_cycles(layer, lanes, shifters)
    n = int(terms_per_weight(layer.weight_format, layer.weight_bits))
    # Utilization is products per lane-cycle: at most one product per ceil(n/s) cycles.
    assert 0 < row["utilization"] <= 1 / math.ceil(n / shifters) + 1e-12


@settings(max_examples=100, deadline=None)
@given(p=LAYER, lanes=st.integers(1, 64), shifters=st.integers(1, 4),
       energies=st.tuples(*[st.floats(0, 2, allow_nan=False)] * 3))
def test_compute_energy_is_counts_times_action_energies_exactly(p, lanes, shifters, energies):
    layer = make_layer(p)
    se, ae, ce = energies
    accel = unit_with(lanes, shifters, shift_energy_pj=se, add_energy_pj=ae,
                      accumulate_energy_pj=ce)
    row = cost_network(accel, [layer]).per_layer.iloc[0]
    n = int(terms_per_weight(layer.weight_format, layer.weight_bits))
    products = layer.macs()
    shifts, adds = products * n, products * (n - 1)
    assert (row["shift_actions"], row["add_actions"], row["accumulate_actions"]) == (
        shifts, adds, products)
    assert row["energy_compute_pj"] == shifts * se + adds * ae + products * ce


def test_memory_energy_per_level_is_accesses_times_energies_exactly():
    accel = unit_with(64, 2, buffer_bytes=4096)
    layers = [apot("a", 4, in_channels=128, out_channels=256), apot("b", 6, in_channels=40,
                                                                  out_channels=40, groups=40),
              conv("c", weight_bits=5)]
    frame = cost_network(accel, layers).per_layer
    assert_memory_energy_exact(accel, frame)


def test_four_bit_weights_move_as_four_bits():
    # 3 -> 5 channels, 3x3: 135 weights -> ceil(135 * 4 / 8) = 68 bytes of 4-bit codes.
    layer = apot(bits=4, in_h=4, in_w=4, in_channels=3, out_channels=5)
    assert layer.weight_count == 135
    accel = unit_with(lanes=16)
    traffic = memory_traffic(accel, LayerTable.from_layers([layer]), accel.compute)
    assert traffic.operand_bytes["filter"][0] == math.ceil(135 * 4 / 8) == 68
    assert traffic.dram_reads_by_operand["filter"][0] == 68  # fits: read once
    ifmap_b = 3 * 4 * 4  # int8 activations
    row = cost_network(accel, [layer]).per_layer.iloc[0]
    assert row["dram_read_bytes"] == ifmap_b + 68
    assert row["dram_write_bytes"] == 5 * 16  # outputs at act_bits = 8
    # The array reads each filter's t = 27 codes once per pixel fold (ceil(16/3) = 6), 4 bits each,
    # and each pixel's 27 activations once per filter fold (1); outputs leave once at 24 bits.
    assert row["filter_sram_read_bytes"] == math.ceil(5 * 27 * 6 * 4 / 8)
    assert traffic.reads["ifmap_sram"][0] == 16 * 27 * 1
    assert traffic.writes["ofmap_sram"][0] == 16 * 5 * 24 // 8
    int8 = conv(in_h=4, in_w=4, in_channels=3, out_channels=5)
    assert memory_traffic(accel, LayerTable.from_layers([int8])).operand_bytes["filter"][0] == 135


def test_shift_add_is_cheaper_for_few_term_weights():
    layer = conv(in_channels=64, out_channels=64)
    table = LayerTable.from_layers([layer])
    four = cost_table(BASE, table.with_bits(8, 4).with_formats("apot"))
    four_int = cost_table(BASE, table.with_bits(8, 4))
    assert four.compute_cycles[0] * 2 == four_int.compute_cycles[0]
    assert four.energy_compute_pj[0] < four_int.energy_compute_pj[0]


def test_unit_refuses_what_it_cannot_run():
    layers = [conv("bin", weight_format="binary", act_format="binary", act_bits=1, weight_bits=1),
              apot("wide_act", 4, act_bits=16), apot("apot8", 8), apot("apot2", 2),
              conv("int16", weight_bits=16), apot("ok", 7)]
    with pytest.raises(ConfigError) as err:
        cost_network(BASE, layers)
    msg = str(err.value)
    assert "5 layers cannot run" in msg.splitlines()[0]
    assert msg.startswith(f"{SHIFT_ADD}: compute: layer 'bin'")  # the first line names the file
    for name in ("bin", "wide_act", "apot8", "apot2", "int16"):
        assert f"{SHIFT_ADD}: compute: layer '{name}'" in msg
    assert "'ok'" not in msg
    assert ("which supports weight formats ['apot', 'int'] and activation formats ['int', 'apot'] "
            "with act_bits <= 8 and weight_bits <= 8 (apot weights: 3 <= weight_bits <= 7)") in msg


def test_apot_layer_on_the_xnor_unit_names_the_layer():
    layers = builtin_workload("resnet18", input_hw=32)
    last = len(layers) - 1
    layers = [l if i in (0, last) else replace(l, act_bits=1, weight_bits=1,
                                               weight_format="binary", act_format="binary")
              for i, l in enumerate(layers)]
    layers[4] = replace(layers[4], act_bits=8, weight_bits=4, weight_format="apot",
                        act_format="int")
    with pytest.raises(ConfigError) as err:
        cost_network(load_accelerator(HETERO_XNOR), layers)
    msg = str(err.value)
    assert "1 layer cannot run" in msg
    assert (f"{HETERO_XNOR}: units.binary: layer '{layers[4].name}' (act_bits=8, weight_bits=4) "
            f"with 'apot' weights and 'int' activations runs on unit 'binary' (xnor_popcount), "
            f"which supports weight formats ['binary']") in msg
    with pytest.raises(ConfigError, match=rf"{BINARY}: compute: layer 'c' \(act_bits=8, "
                                          r"weight_bits=4\) with 'apot' weights"):
        cost_network(load_accelerator(BINARY), [apot()])


def test_hetero_routes_apot_layers_to_the_shift_add_unit():
    from quant.formats import registered_formats

    assert "apot" in registered_formats()
    accel = load_accelerator(HETERO)
    assert accel.default_unit == "int8_array" and list(accel.units) == ["int8_array", "shift_add"]
    assert accel.rules[-1].unit == "shift_add" and accel.rules[-1].format == "apot"
    layers = builtin_workload("resnet18", input_hw=32)
    last = len(layers) - 1
    kept_int = {0, 5, last}
    layers = [l if i in kept_int else replace(l, weight_bits=4, weight_format="apot")
              for i, l in enumerate(layers)]
    frame = cost_network(accel, layers).per_layer
    expected = ["int8_array" if i in kept_int else "shift_add" for i in range(len(layers))]
    assert list(frame["unit"]) == expected
    assert list(frame["weight_format"]) == [l.weight_format for l in layers]
    # An APoT first layer still runs on the array (rules are tried in order).
    first_apot = [replace(layers[0], weight_bits=4, weight_format="apot"), *layers[1:]]
    assert cost_network(accel, first_apot).per_layer["unit"].iloc[0] == "int8_array"
    # Each row is priced exactly as on a single-unit accelerator with that unit alone.
    alone = {"int8_array": replace(accel, other_units=(), rules=()),
             "shift_add": replace(accel, compute=accel.unit("shift_add"), compute_name="", other_units=(),
                             rules=())}
    for i in (0, 3, 5, last):
        ref = cost_network(alone[expected[i]], [layers[i]]).per_layer.iloc[0]
        for col in ("compute_cycles", "total_cycles", "energy_compute_pj", "energy_total_pj",
                    "dram_read_bytes", "utilization", "passes"):
            assert frame.iloc[i][col] == ref[col], (i, col)
    assert (frame.loc[frame["unit"] == "shift_add", "mac_actions"] == 0).all()
    assert (frame.loc[frame["unit"] == "int8_array", "shift_actions"] == 0).all()


def test_unknown_format_in_a_rule_names_the_field_and_lists_the_known_formats(tmp_path):
    from quant.formats import registered_formats

    def edit(raw):
        raw["assign"]["rules"] = [{"unit": "binary", "format": "posit"},
                                  {"unit": "binary", "act_format": "fp8"}]
    path = write_config_variant(tmp_path, HETERO_XNOR, edit)
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    msg = str(err.value)
    known = list(registered_formats())
    assert "(2 errors)" in msg and "'int'" in str(known) and "'binary'" in str(known)
    assert (f"{path}: assign.rules[0].format: expected a registered number format, one of "
            f"{known}, got 'posit'") in msg
    assert f"{path}: assign.rules[1].act_format: expected a registered number format" in msg


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["compute"].update(adder_bits=12),
     "compute.adder_bits: expected at least act_bits + weight_bits (16) to hold one product, "
     "got 12"),
    (lambda r: r["compute"].pop("lanes"), "compute.lanes: missing; expected a positive integer"),
    (lambda r: r["compute"].update(shifters_per_lane=0),
     "compute.shifters_per_lane: expected a positive integer, got 0"),
    (lambda r: r["compute"].update(acc_bits=24), "compute.acc_bits: unknown field"),
    (lambda r: r["compute"].update(mac_energy_pj=0.3), "compute.mac_energy_pj: unknown field"),
    (lambda r: r["compute"].update(shift_energy_pj=-1),
     "compute.shift_energy_pj: expected a non-negative number, got -1"),
])
def test_bad_shift_add_config_names_file_and_field(tmp_path, edit, expected):
    path = write_config_variant(tmp_path, SHIFT_ADD, edit)
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    msg = str(err.value)
    assert "(1 error)" in msg and f"{path}: {expected}" in msg, msg


def test_operands_broadcast_and_the_unit_hooks_take_them():
    ops = Operands.of([8, 8, 4], 4, ["apot", "int", "apot"])
    assert list(ops.weight_bits) == [4, 4, 4] and list(ops.act_format) == ["int"] * 3
    unit = BASE.compute
    assert list(unit.supports(ops)) == [True, True, True]
    assert list(unit.cycles_per_product(ops)) == [1, 2, 1]
    assert list(unit.bit_passes(ops)) == [1, 1, 1]
    bits = unit.array_operand_bits(ops)
    assert list(bits[0]) == [8, 8, 4] and list(bits[1]) == [4, 4, 4]

"""The bit_fusion unit priced by the cost model: precision factor, cycles (against formulas
written here independently), saturation, busy-unit actions and energy, buffer traffic, format
and width refusals, variants and config errors."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.arch import BitFusion, Operands, load_accelerator
from hwsim.arch.bit_fusion import VARIANTS, precision_factor
from hwsim.cost import EnergyTable, LayerTable, cost_network, memory_traffic
from hwsim.errors import ConfigError
from hwsim.workloads import builtin_workload, linear_layer
from tests._cost_helpers import assert_memory_energy_exact, conv, write_config_variant

REPO = Path(__file__).resolve().parents[1]
BITFUSION = REPO / "hw_configs" / "bitfusion.yaml"
FIXED8 = REPO / "hw_configs" / "bitfusion_fixed8.yaml"
BASE = load_accelerator(BITFUSION)

# The paper's 45 nm synthesis, one unit per design: (widest operand, narrowest brick, uW @ 500 MHz)
SYNTHESIS = {"fixed_8": (8, 8, 171.8), "fusible_8b_2b": (8, 2, 344.3), "fixed_4": (4, 4, 67.9),
             "fusible_4b_2b": (4, 2, 92.0), "fixed_2": (2, 2, 31.6), "fixed_16": (16, 16, 542.7)}
PJ_PER_CYCLE = {"fixed_8": 0.3436, "fusible_8b_2b": 0.6886, "fixed_4": 0.1358,
                "fusible_4b_2b": 0.184, "fixed_2": 0.0632, "fixed_16": 1.0854}


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def pf_of(variant: str, a: int, w: int) -> int:
    """Products per unit per cycle: bricks fuse in powers of two from the brick width up."""
    width, brick, _ = SYNTHESIS[variant]
    return (width // max(a, brick)) * (width // max(w, brick))


def accel_with(rows: int = 16, cols: int = 32, variant: str = "fusible_8b_2b", **unit):
    width = SYNTHESIS[variant][0]
    return replace(BASE, compute=replace(BASE.compute, rows=rows, cols=cols, variant=variant,
                                         act_bits=width, weight_bits=width, **unit))


def reference_cycles(layer, rows: int, cols: int, variant: str = "fusible_8b_2b") -> int:
    """The paper's loop nest in Python integers: per group ceil(K/M) * OH*OW*batch * KH*KW *
    ceil(C/(N*pf)), groups back to back."""
    pf = pf_of(variant, layer.act_bits, layer.weight_bits)
    k = layer.out_channels // layer.groups
    c = layer.in_channels // layer.groups
    pixels = layer.out_h() * layer.out_w() * layer.batch
    per_group = (ceil_div(k, cols) * pixels * layer.kernel_h * layer.kernel_w
                 * ceil_div(c, rows * pf))
    return layer.groups * per_group


def reference_busy_unit_cycles(layer, rows: int, cols: int, variant: str = "fusible_8b_2b") -> int:
    """Fold by fold: each (column fold, channel fold) step keeps busy the columns with a filter
    and the rows with at least one channel, for OH*OW*batch*KH*KW cycles."""
    pf = pf_of(variant, layer.act_bits, layer.weight_bits)
    k = layer.out_channels // layer.groups
    c = layer.in_channels // layer.groups
    steps = layer.out_h() * layer.out_w() * layer.batch * layer.kernel_h * layer.kernel_w
    total = 0
    for k0 in range(0, k, cols):
        used_cols = min(cols, k - k0)
        for c0 in range(0, c, rows * pf):
            used_rows = ceil_div(min(rows * pf, c - c0), pf)
            total += used_cols * used_rows * steps
    return layer.groups * total


BITS = st.sampled_from([1, 2, 4, 8])
CONV = st.fixed_dictionaries({
    "kind": st.just("conv"), "in_hw": st.integers(1, 7), "cin": st.integers(1, 70),
    "cout": st.integers(1, 40), "k": st.integers(1, 3), "groups": st.sampled_from([1, 2, 3]),
    "batch": st.integers(1, 2), "stride": st.integers(1, 2)})
LINEAR = st.fixed_dictionaries({
    "kind": st.just("linear"), "cin": st.integers(1, 300), "cout": st.integers(1, 100),
    "batch": st.integers(1, 3)})
DEPTHWISE = st.fixed_dictionaries({
    "kind": st.just("depthwise"), "in_hw": st.integers(1, 7), "groups": st.integers(1, 40),
    "k": st.integers(1, 3), "batch": st.integers(1, 2), "stride": st.integers(1, 2)})
SHAPE = st.one_of(CONV, LINEAR, DEPTHWISE)


def make_layer(p, a: int = 8, w: int = 8, **kw):
    if p["kind"] == "linear":
        return linear_layer("fc", p["cin"], p["cout"], batch=p["batch"], act_bits=a,
                            weight_bits=w, **kw)
    if p["kind"] == "depthwise":
        cin = cout = groups = p["groups"]
    else:
        groups = p["groups"]
        cin, cout = p["cin"] * groups, p["cout"] * groups
    pad = p["k"] // 2
    return conv(in_h=p["in_hw"], in_w=p["in_hw"], in_channels=cin, out_channels=cout,
                groups=groups, kernel_h=p["k"], kernel_w=p["k"], pad_top=pad, pad_left=pad,
                pad_bottom=pad, pad_right=pad, stride_h=p["stride"], stride_w=p["stride"],
                batch=p["batch"], act_bits=a, weight_bits=w, **kw)


# ---- config and variants ------------------------------------------------------------------
def test_config_loads_with_its_fields():
    unit = BASE.compute
    assert isinstance(unit, BitFusion) and BASE.default_unit == "bit_fusion"
    assert (unit.rows, unit.cols, unit.pe_count, unit.variant) == (16, 32, 512, "fusible_8b_2b")
    assert (unit.act_bits, unit.weight_bits, unit.acc_bits) == (8, 8, 32)
    assert unit.unit_cycle_energy_pj is None and unit.cycle_energy_pj == 344.3 / 500
    assert BASE.clock_hz == 500e6
    sizes = {b.name: b.size_bytes for b in BASE.buffers}
    assert sizes == {"ifmap_sram": 32768, "filter_sram": 65536, "ofmap_sram": 16384}
    assert sum(sizes.values()) == 112 * 1024
    table = EnergyTable.for_accelerator(BASE)
    assert table.mac_pj == 0.0 and table.action_pj == {"fusion_unit_cycle": 344.3 / 500}
    fixed = load_accelerator(FIXED8).compute
    assert (fixed.variant, fixed.rows, fixed.cols, fixed.cycle_energy_pj) == (
        "fixed_8", 16, 32, 171.8 / 500)


@pytest.mark.parametrize("variant", sorted(SYNTHESIS))
def test_each_variant_prices_a_unit_cycle_at_its_power_over_500_mhz(variant):
    width, _, power_uw = SYNTHESIS[variant]
    unit = accel_with(variant=variant).compute
    assert unit.cycle_energy_pj == power_uw / 500  # uW / MHz = pJ
    assert unit.cycle_energy_pj == pytest.approx(PJ_PER_CYCLE[variant], rel=1e-12)
    assert VARIANTS[variant].max_bits == width
    assert unit.action_energies_pj() == {"fusion_unit_cycle": power_uw / 500}


def test_config_may_override_the_unit_cycle_energy(tmp_path):
    path = write_config_variant(tmp_path, BITFUSION,
                                lambda r: r["compute"].update(unit_cycle_energy_pj=0.5))
    accel = load_accelerator(path)
    assert accel.compute.cycle_energy_pj == 0.5
    layer = conv()
    row = cost_network(accel, [layer]).per_layer.iloc[0]
    assert row["energy_compute_pj"] == row["fusion_unit_cycle_actions"] * 0.5
    other = load_accelerator(BITFUSION, ["compute.variant=fixed_8"]).compute
    assert other.cycle_energy_pj == 171.8 / 500


def test_precision_factor_table():
    a, w = np.meshgrid([1, 2, 3, 4, 5, 8], [1, 2, 3, 4, 5, 8])
    got = precision_factor("fusible_8b_2b", a.ravel(), w.ravel())
    assert list(got) == [pf_of("fusible_8b_2b", int(x), int(y))
                         for x, y in zip(a.ravel(), w.ravel())]
    assert list(precision_factor("fusible_8b_2b", [8, 4, 2, 1, 8, 2], [8, 4, 2, 1, 2, 8])) == [
        1, 4, 16, 16, 4, 4]
    assert list(precision_factor("fusible_4b_2b", [4, 2, 1, 3, 8], [4, 2, 2, 2, 4])) == [
        1, 4, 4, 2, 0]
    for fixed in ("fixed_2", "fixed_4", "fixed_8", "fixed_16"):
        width = SYNTHESIS[fixed][0]
        assert list(precision_factor(fixed, [1, width, width + 1], [1, width, 1])) == [1, 1, 0]


# ---- cycles ----------------------------------------------------------------------------------
def test_closed_form_by_hand():
    # 14x14, 64 -> 64, 3x3 pad 1 on 16 x 32: ceil(64/32) = 2 column folds x 196 pixels x 9 taps
    # x ceil(64 / (16 pf)) channel folds: 4 at W8A8 (pf 1), 1 at W4A4 (pf 4) and W2A2 (pf 16).
    layer = conv(in_channels=64, out_channels=64)
    cycles = {b: cost_network(BASE, [replace(layer, act_bits=b, weight_bits=b)]).compute_cycles
              for b in (8, 4, 2, 1)}
    assert cycles == {8: 2 * 196 * 9 * 4, 4: 2 * 196 * 9, 2: 2 * 196 * 9, 1: 2 * 196 * 9}
    # Mixed widths: W2A8 and W8A2 both pf 4.
    assert cost_network(BASE, [replace(layer, act_bits=8, weight_bits=2)]).compute_cycles == 3528
    # Depthwise 32 channels, 3x3: per group 1 filter, 1 channel -> 196 x 9 cycles at any width.
    dw = conv(in_channels=32, out_channels=32, groups=32)
    for b in (8, 2):
        assert cost_network(BASE, [replace(dw, act_bits=b, weight_bits=b)]).compute_cycles == (
            32 * 196 * 9)
    # Linear 1280 -> 1000, batch 1: ceil(1000/32) = 32 x 1 x 1 x ceil(1280 / (16 pf)).
    fc = linear_layer("fc", 1280, 1000)
    assert cost_network(BASE, [fc]).compute_cycles == 32 * 80
    assert cost_network(BASE, [replace(fc, act_bits=2, weight_bits=2)]).compute_cycles == 32 * 5


@settings(max_examples=200, deadline=None)
@given(p=SHAPE, a=BITS, w=BITS, rows=st.integers(1, 24), cols=st.integers(1, 40))
def test_cycles_and_utilization_equal_the_independent_formula(p, a, w, rows, cols):
    layer = make_layer(p, a, w)
    accel = accel_with(rows, cols)
    cost = cost_network(accel, [layer])
    row = cost.per_layer.iloc[0]
    cycles = reference_cycles(layer, rows, cols)
    pf = pf_of("fusible_8b_2b", a, w)
    assert cost.compute_cycles == row["compute_cycles"] == cycles
    assert row["passes"] == 1 and row["macs"] == layer.macs()
    assert row["peak_macs_per_cycle"] == rows * cols * pf
    assert row["utilization"] == pytest.approx(layer.macs() / (cycles * rows * cols * pf),
                                               rel=1e-12)
    assert 0 < row["utilization"] <= 1


@settings(max_examples=100, deadline=None)
@given(p=SHAPE, rows=st.integers(1, 24), cols=st.integers(1, 40),
       variant=st.sampled_from(sorted(SYNTHESIS)), data=st.data())
def test_every_variant_matches_the_formula(p, rows, cols, variant, data):
    width = SYNTHESIS[variant][0]
    a = data.draw(st.integers(1, width), label="a")
    w = data.draw(st.integers(1, width), label="w")
    layer = make_layer(p, a, w)
    row = cost_network(accel_with(rows, cols, variant), [layer]).per_layer.iloc[0]
    assert row["compute_cycles"] == reference_cycles(layer, rows, cols, variant)
    assert row["fusion_unit_cycle_actions"] == reference_busy_unit_cycles(layer, rows, cols,
                                                                           variant)


@settings(max_examples=150, deadline=None)
@given(p=SHAPE, rows=st.integers(1, 24), cols=st.integers(1, 40))
def test_fewer_bits_never_slower_and_saturate_once_one_channel_fold_is_left(p, rows, cols):
    accel = accel_with(rows, cols)
    widths = (8, 4, 2, 1)
    layers = [make_layer(p, b, b) for b in widths]
    cycles = list(cost_network(accel, layers).per_layer["compute_cycles"])
    assert cycles == sorted(cycles, reverse=True)  # non-increasing as the bits drop
    assert cycles[2] == cycles[3]  # 1-bit operands run at 2-bit speed
    channels = layers[0].in_channels // layers[0].groups
    for i, b in enumerate(widths):
        if ceil_div(channels, rows * pf_of("fusible_8b_2b", b, b)) == 1:
            # saturated: every narrower width takes exactly these cycles
            assert all(c == cycles[i] for c in cycles[i:]), (b, cycles)


def test_saturation_by_hand():
    # 16 channels on 16 rows: one channel fold already at W8A8 -> no gain from fewer bits.
    layer = conv(in_channels=16, out_channels=64)
    got = [cost_network(BASE, [replace(layer, act_bits=b, weight_bits=b)]).compute_cycles
           for b in (8, 4, 2)]
    assert got == [2 * 196 * 9] * 3


# ---- actions and energy -------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(p=SHAPE, a=BITS, w=BITS, rows=st.integers(1, 24), cols=st.integers(1, 40),
       energy=st.floats(0, 3, allow_nan=False))
def test_compute_energy_is_busy_unit_cycles_times_the_unit_cycle_energy_exactly(
        p, a, w, rows, cols, energy):
    layer = make_layer(p, a, w)
    row = cost_network(accel_with(rows, cols, unit_cycle_energy_pj=energy),
                       [layer]).per_layer.iloc[0]
    busy = reference_busy_unit_cycles(layer, rows, cols)
    assert row["fusion_unit_cycle_actions"] == busy
    assert row["energy_compute_pj"] == busy * energy
    # gated units never exceed every unit every cycle; each busy unit does at most pf MACs
    pf = pf_of("fusible_8b_2b", a, w)
    assert busy <= row["compute_cycles"] * rows * cols
    assert layer.macs() <= busy * pf
    assert [c for c in row.index if c.endswith("_actions")] == ["fusion_unit_cycle_actions"]


def test_default_energy_is_the_synthesis_figure():
    layer = conv(in_channels=64, out_channels=64, act_bits=4, weight_bits=4)
    row = cost_network(BASE, [layer]).per_layer.iloc[0]
    # 196 x 9 steps x 64 busy columns-in-folds x ceil(64 / 4) = 16 busy rows-in-folds
    assert row["fusion_unit_cycle_actions"] == 196 * 9 * 64 * 16
    assert row["energy_compute_pj"] == 196 * 9 * 64 * 16 * (344.3 / 500)


# ---- buffer traffic ----------------------------------------------------------------------
def test_buffer_traffic_follows_the_mapping():
    # 14x14, 2 groups of 24 -> 40 channels, 3x3, W4A2 on 16 x 32: per group sr = 196,
    # sc = 40 (2 column folds), t = 216.
    layer = conv(in_channels=48, out_channels=80, groups=2, act_bits=2, weight_bits=4)
    table = LayerTable.from_layers([layer])
    traffic = memory_traffic(BASE, table, BASE.compute)
    g, sr, sc, t = 2, 196, 40, 9 * 24
    assert traffic.reads["ifmap_sram"][0] == math.ceil(g * sr * t * 2 * 2 / 8)
    assert traffic.reads["filter_sram"][0] == math.ceil(g * sr * sc * t * 4 / 8)
    dram_out = math.ceil(g * sr * sc * 2 / 8)  # outputs leave at act_bits
    assert traffic.writes["ofmap_sram"][0] == g * sr * sc * 32 // 8  # final, at acc_bits
    assert traffic.reads["ofmap_sram"][0] == dram_out  # drained to DRAM; no partial sums
    assert traffic.psum_spill_bytes[0] == 0


def test_memory_energy_per_level_is_accesses_times_energies_exactly():
    layers = [conv("a", in_channels=128, out_channels=256, act_bits=4, weight_bits=4),
              conv("dw", in_channels=40, out_channels=40, groups=40, act_bits=2, weight_bits=2),
              linear_layer("fc", 512, 100, batch=3, act_bits=8, weight_bits=2)]
    frame = cost_network(BASE, layers).per_layer
    assert_memory_energy_exact(BASE, frame)


def test_hooks_take_float64_geometry():
    layers = [conv("a", in_channels=96, out_channels=40, act_bits=2, weight_bits=4),
              conv("dw", in_channels=8, out_channels=8, groups=8), linear_layer("fc", 70, 9)]
    table = LayerTable.from_layers(layers)
    unit, ops = BASE.compute, table.operands
    exact, est = table.gemm, table.as_float().gemm
    assert est.sr.dtype == np.float64
    np.testing.assert_array_equal(unit.compute_cycles(est, ops), unit.compute_cycles(exact, ops))
    passes = unit.bit_passes(ops)
    np.testing.assert_array_equal(unit.action_counts(est, passes, ops)["fusion_unit_cycle"],
                                  unit.action_counts(exact, passes, ops)["fusion_unit_cycle"])
    acc_f, acc_i = unit.array_accesses(est, ops), unit.array_accesses(exact, ops)
    for field in ("ifmap_reads", "filter_reads", "ofmap_writes"):
        np.testing.assert_array_equal(getattr(acc_f, field), getattr(acc_i, field))


# ---- refusals ----------------------------------------------------------------------------
def test_sixteen_bit_layer_is_refused_with_a_clear_error_naming_it():
    layers = [conv("ok"), conv("wide_w", weight_bits=16), conv("wide_a", act_bits=16),
              linear_layer("fc9", 10, 10, act_bits=9, weight_bits=8)]
    table = LayerTable.from_layers(layers)
    with pytest.raises(ConfigError) as err:
        BASE.layer_units(table.names, table.operands)
    msg = str(err.value)
    assert "3 layers cannot run" in msg and "'ok'" not in msg
    assert (f"{BITFUSION}: compute: layer 'wide_w' (act_bits=8, weight_bits=16) with 'int' "
            f"weights and 'int' activations runs on unit 'bit_fusion' (bit_fusion), which "
            f"supports weight formats ['int', 'binary'] and activation formats ['int', 'binary'] "
            f"with act_bits <= 8 and weight_bits <= 8 (variant 'fusible_8b_2b'; 'binary' "
            f"operands: 1 plane)") in msg
    assert f"{BITFUSION}: compute: layer 'wide_a' (act_bits=16, weight_bits=8)" in msg
    assert f"{BITFUSION}: compute: layer 'fc9' (act_bits=9, weight_bits=8)" in msg
    with pytest.raises(ConfigError, match="layer 'wide_w'"):
        cost_network(BASE, layers)


def test_formats_apot_and_multi_plane_binary_are_refused_one_plane_binary_runs():
    bin1 = conv("bin1", weight_format="binary", act_format="binary", act_bits=1, weight_bits=1,
                in_channels=64, out_channels=64)
    int2 = replace(bin1, name="int2", weight_format="int", act_format="int", act_bits=2,
                   weight_bits=2)
    costs = cost_network(BASE, [bin1, int2]).per_layer
    assert costs["compute_cycles"][0] == costs["compute_cycles"][1]  # 2-bit speed
    bin_w_int_a = conv("bw", weight_format="binary", weight_bits=1, act_bits=8)
    assert cost_network(BASE, [bin_w_int_a]).per_layer["peak_macs_per_cycle"][0] == 512 * 4
    refused = [conv("apot", weight_format="apot", weight_bits=4),
               conv("bin2", weight_format="binary", weight_bits=2, act_bits=8),
               conv("abin3", act_format="binary", act_bits=3, weight_bits=8),
               conv("toy", weight_format="tri3", weight_bits=3)]
    with pytest.raises(ConfigError) as err:
        cost_network(BASE, refused)
    msg = str(err.value)
    assert "4 layers cannot run" in msg
    for name in ("apot", "bin2", "abin3", "toy"):
        assert f"compute: layer '{name}'" in msg
    ops = Operands.of([1, 8, 1, 2], [1, 1, 2, 8], ["binary", "binary", "binary", "int"],
                      ["binary", "int", "binary", "int"])
    assert list(BASE.compute.supports(ops)) == [True, True, False, True]


def test_fixed_variants_gain_nothing_from_fewer_bits_and_refuse_wider_ones():
    layer = conv(in_channels=64, out_channels=64)
    fixed8 = load_accelerator(FIXED8)
    at = {b: cost_network(fixed8, [replace(layer, act_bits=b, weight_bits=b)]).compute_cycles
          for b in (8, 4, 2)}
    assert at[8] == at[4] == at[2] == cost_network(BASE, [layer]).compute_cycles
    fixed4 = accel_with(variant="fixed_4")
    assert cost_network(fixed4, [replace(layer, act_bits=4, weight_bits=4)]).compute_cycles == (
        at[8])
    with pytest.raises(ConfigError, match=r"layer 'c' \(act_bits=8, weight_bits=8\).*act_bits <= "
                                          r"4 and weight_bits <= 4 \(variant 'fixed_4'"):
        cost_network(fixed4, [layer])
    fusible4 = accel_with(variant="fusible_4b_2b")
    two = replace(layer, act_bits=2, weight_bits=2)
    assert cost_network(fusible4, [two]).compute_cycles == 2 * 196 * 9 * 1  # pf 4: 64/64
    with pytest.raises(ConfigError, match="variant 'fusible_4b_2b'"):
        cost_network(fusible4, [layer])


def test_mobilenet_v2_runs_and_depthwise_layers_use_one_unit():
    layers = builtin_workload("mobilenet_v2")
    frame = cost_network(BASE, layers).per_layer
    depthwise = [i for i, l in enumerate(layers) if l.groups > 1]
    assert len(depthwise) == 17
    for i in depthwise:
        assert frame["utilization"][i] == pytest.approx(1 / 512, rel=1e-12)


# ---- config errors ---------------------------------------------------------------------
@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["compute"].update(variant="fused_3b"),
     "compute.variant: expected one of ['fusible_8b_2b', 'fixed_8', 'fixed_4', "
     "'fusible_4b_2b', 'fixed_2', 'fixed_16'], got 'fused_3b'"),
    (lambda r: r["compute"].update(variant="fixed_4"),
     "compute.act_bits: expected 4 (the operand width of variant 'fixed_4'), got 8"),
    (lambda r: r["compute"].update(acc_bits=12),
     "compute.acc_bits: expected at least act_bits + weight_bits (16) so that an output holds "
     "one product, got 12"),
    (lambda r: r["compute"].update(rows=0), "compute.rows: expected a positive integer, got 0"),
    (lambda r: r["compute"].pop("cols"), "compute.cols: missing; expected a positive integer"),
    (lambda r: r["compute"].update(mac_energy_pj=0.3), "compute.mac_energy_pj: unknown field"),
    (lambda r: r["compute"].update(unit_cycle_energy_pj=-1),
     "compute.unit_cycle_energy_pj: expected a non-negative number, got -1"),
])
def test_bad_bit_fusion_config_names_file_and_field(tmp_path, edit, expected):
    path = write_config_variant(tmp_path, BITFUSION, edit)
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    msg = str(err.value)
    assert f"{path}: {expected}" in msg, msg
    if "variant: expected one of" in expected:
        assert "\n" not in msg and "(1 error)" in msg  # one line
    if "variant 'fixed_4'" in expected:
        assert "(2 errors)" in msg and "compute.weight_bits: expected 4" in msg


def test_variant_defaults_to_the_fusible_8b_2b_unit(tmp_path):
    path = write_config_variant(tmp_path, BITFUSION, lambda r: r["compute"].pop("variant"))
    assert load_accelerator(path).compute.variant == "fusible_8b_2b"


def test_direct_construction_checks_variant_and_widths():
    with pytest.raises(ConfigError, match="unknown variant 'fused'"):
        BitFusion(kind="bit_fusion", act_bits=8, weight_bits=8, acc_bits=32, variant="fused")
    with pytest.raises(ConfigError, match="act_bits and weight_bits must be 4"):
        BitFusion(kind="bit_fusion", act_bits=8, weight_bits=8, acc_bits=32, variant="fixed_4")

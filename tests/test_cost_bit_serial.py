"""The bit-serial units (stripes, loom) priced by the cost model: cycles exactly proportional to
the serial widths, the documented folding, the bit-parallel baseline of the same lanes, actions
and energy, bit-accurate traffic, refused widths and config validation."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.arch import Gemm, Loom, Operands, Stripes, load_accelerator
from hwsim.cost import EnergyTable, LayerTable, cost_network, memory_traffic
from hwsim.errors import ConfigError
from hwsim.workloads import linear_layer
from tests._cost_helpers import assert_memory_energy_exact, conv, write_config_variant

REPO = Path(__file__).resolve().parents[1]
STRIPES = REPO / "hw_configs" / "stripes.yaml"
LOOM = REPO / "hw_configs" / "loom.yaml"
CONFIGS = {"stripes": STRIPES, "loom": LOOM}
BASE = {kind: load_accelerator(path) for kind, path in CONFIGS.items()}


def accel(kind: str, *, tiles=None, filters=None, windows=None, terms=None, baseline_bits=None,
          mode="serial", **fields):
    """The shipped config of `kind` with another geometry / mode / energies."""
    base = BASE[kind]
    unit = base.compute
    geometry = dict(tiles=tiles, filters=filters, windows=windows, terms=terms,
                    baseline_bits=baseline_bits)
    changes = {k: v for k, v in geometry.items() if v is not None}
    return replace(base, compute=replace(unit, mode=mode, **changes, **fields))


def row(accelerator, layer):
    return cost_network(accelerator, [layer]).per_layer.iloc[0]


def gemm_of(layer):
    """(groups, sr, sc, taps, ch) of `layer` in plain Python integers."""
    sr = layer.out_h() * layer.out_w() * layer.batch
    return (layer.groups, sr, layer.out_channels // layer.groups, layer.kernel_h * layer.kernel_w,
            layer.in_channels // layer.groups)


def reference_cycles(layer, kind: str, tiles: int, filters: int, windows: int, terms: int,
                     p: int, mode: str) -> int:
    """Plain-Python schedule of the documented folding. serial: per group, walk the blocks of
    `windows` output pixels x blocks of tiles*filters filters x taps x bricks of `terms`
    channels; each step lasts one product's serial cycles (a, or a * w for loom). bit_parallel:
    one output pixel per step over blocks of F * W / p**k filters."""
    groups, sr, sc, taps, ch = gemm_of(layer)
    a, w = layer.act_bits, layer.weight_bits
    if mode == "serial":
        pixel_block, filter_block = windows, tiles * filters
        step = a if kind == "stripes" else a * w
    else:
        k = 1 if kind == "stripes" else 2
        pixel_block, filter_block, step = 1, tiles * filters * windows // p ** k, 1
    total = 0
    for _ in range(groups):
        for _p0 in range(0, sr, pixel_block):
            for _f0 in range(0, sc, filter_block):
                for _tap in range(taps):
                    for _c0 in range(0, ch, terms):
                        total += step
    return total


LAYER = st.fixed_dictionaries({
    "in_hw": st.integers(1, 9), "cin": st.integers(1, 20), "cout": st.integers(1, 40),
    "k": st.integers(1, 3), "groups": st.sampled_from([1, 2, 3]), "batch": st.integers(1, 2),
    "stride": st.integers(1, 2), "linear": st.booleans()})


def make_layer(p, act_bits: int = 8, weight_bits: int = 8, name: str = "c"):
    if p["linear"]:
        return linear_layer(name, p["cin"], p["cout"], batch=p["batch"], act_bits=act_bits,
                            weight_bits=weight_bits)
    k = p["k"]
    return conv(name, in_h=p["in_hw"], in_w=p["in_hw"], in_channels=p["cin"] * p["groups"],
                out_channels=p["cout"] * p["groups"], groups=p["groups"], kernel_h=k,
                kernel_w=k, pad_top=k // 2, pad_left=k // 2, pad_bottom=k // 2,
                pad_right=k // 2, stride_h=p["stride"], stride_w=p["stride"], batch=p["batch"],
                act_bits=act_bits, weight_bits=weight_bits)


GEOMETRY = st.fixed_dictionaries({
    "tiles": st.integers(1, 3), "filters": st.integers(1, 8), "windows": st.integers(1, 6),
    "terms": st.integers(1, 8)})


# ---- configs ------------------------------------------------------------------------------
def test_configs_load_with_their_fields():
    stripes, loom = BASE["stripes"].compute, BASE["loom"].compute
    assert isinstance(stripes, Stripes) and isinstance(loom, Loom)
    assert (stripes.tiles, stripes.filters, stripes.windows, stripes.terms,
            stripes.baseline_bits, stripes.mode) == (16, 16, 16, 16, 16, "serial")
    assert (stripes.act_bits, stripes.weight_bits, stripes.acc_bits) == (16, 16, 32)
    assert stripes.pe_count == 65536 and stripes.equivalent_lanes == 4096
    assert (loom.tiles, loom.filters, loom.windows, loom.terms, loom.baseline_bits) == (
        1, 128, 16, 16, 16)
    assert loom.pe_count == 32768 and loom.equivalent_lanes == 128
    assert BASE["stripes"].clock_hz == 980e6 and BASE["loom"].clock_hz == 1e9
    assert EnergyTable.for_accelerator(BASE["stripes"]).action_pj == {
        "serial_bit_mac": 0.05, "accumulate": 0.1}
    assert EnergyTable.for_accelerator(BASE["loom"]).action_pj == {
        "serial_bit_step": 0.006, "accumulate": 0.1}
    for kind, path in CONFIGS.items():
        base = load_accelerator(path, ["compute.mode=bit_parallel"])
        unit = base.compute
        assert unit.mode == "bit_parallel" and unit.kind == kind
        assert unit.pe_count == unit.equivalent_lanes == BASE[kind].compute.equivalent_lanes
        table = EnergyTable.for_accelerator(base)
        assert table.mac_pj == 0.9 and table.action_pj == {}
        assert base.levels == BASE[kind].levels  # the same memories


# ---- cycles -------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(p=LAYER, geo=GEOMETRY, a=st.integers(1, 16), w=st.integers(1, 16))
def test_stripes_cycles_scale_exactly_with_activation_bits_not_weight_bits(p, geo, a, w):
    unit = accel("stripes", **geo)
    one = row(unit, make_layer(p, 1, 1))["compute_cycles"]
    assert row(unit, make_layer(p, a, w))["compute_cycles"] == a * one
    assert row(unit, make_layer(p, a, 16))["compute_cycles"] == a * one


@settings(max_examples=80, deadline=None)
@given(p=LAYER, geo=GEOMETRY, a=st.integers(1, 16), w=st.integers(1, 16))
def test_loom_cycles_are_exactly_proportional_to_act_times_weight_bits(p, geo, a, w):
    unit = accel("loom", **geo)
    one = row(unit, make_layer(p, 1, 1))["compute_cycles"]
    assert row(unit, make_layer(p, a, w))["compute_cycles"] == a * w * one
    assert row(unit, make_layer(p, w, a))["compute_cycles"] == a * w * one


@settings(max_examples=120, deadline=None)
@given(p=LAYER, geo=GEOMETRY, kind=st.sampled_from(["stripes", "loom"]),
       a=st.integers(1, 16), w=st.integers(1, 16))
def test_serial_cycles_equal_the_documented_folding(p, geo, kind, a, w):
    layer = make_layer(p, a, w)
    r = row(accel(kind, **geo), layer)
    assert r["compute_cycles"] == reference_cycles(layer, kind, **geo, p=16, mode="serial")
    assert r["passes"] == 1
    # utilization: useful products per SIP-input-cycle over the serial steps, at most 1
    steps = a if kind == "stripes" else a * w
    lanes = geo["tiles"] * geo["filters"] * geo["windows"] * geo["terms"]
    assert r["peak_macs_per_cycle"] == lanes / steps
    assert 0 < r["utilization"] <= 1 + 1e-12


@settings(max_examples=80, deadline=None)
@given(p=LAYER, kind=st.sampled_from(["stripes", "loom"]), tiles=st.integers(1, 3),
       filters=st.integers(1, 4), windows=st.sampled_from([4, 8]),
       terms=st.integers(1, 8), a=st.integers(1, 4), w=st.integers(1, 4))
def test_bit_parallel_cycles_equal_the_documented_folding(p, kind, tiles, filters, windows,
                                                          terms, a, w):
    # baseline_bits p = windows >= 4 >= a, w (stripes: F_b = F; loom: filters a multiple of p)
    pbits = windows
    filters = filters * (pbits if kind == "loom" else 1)
    geo = dict(tiles=tiles, filters=filters, windows=windows, terms=terms)
    layer = make_layer(p, a, w)
    unit = accel(kind, **geo, baseline_bits=pbits, mode="bit_parallel")
    r = row(unit, layer)
    assert r["compute_cycles"] == reference_cycles(layer, kind, **geo, p=pbits,
                                                   mode="bit_parallel")
    fb = tiles * filters * windows // pbits ** (1 if kind == "stripes" else 2)
    assert r["peak_macs_per_cycle"] == fb * terms
    assert 0 < r["utilization"] <= 1 + 1e-12
    assert r["mac_actions"] == layer.macs()


def full_layer(a: int, w: int, name: str = "full"):
    """16 x 16 output pixels (sr = 256: whole blocks of 16 windows), 256 filters (whole folds of
    the 256 stripes / 128 loom filter lanes and of the baselines' 256 / 8), 32 channels."""
    return conv(name, in_h=16, in_w=16, in_channels=32, out_channels=256, act_bits=a,
                weight_bits=w)


@pytest.mark.parametrize("a", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16])
def test_stripes_ideal_speedup_over_the_same_lanes_is_p_over_a(a):
    layer = full_layer(a, 16)
    serial = row(BASE["stripes"], layer)
    base = row(load_accelerator(STRIPES, ["compute.mode=bit_parallel"]), layer)
    assert Fraction(int(base["compute_cycles"]), int(serial["compute_cycles"])) == Fraction(16, a)
    assert serial["utilization"] == 1.0 and base["utilization"] == 1.0


@pytest.mark.parametrize("a, w", [(1, 1), (2, 2), (4, 4), (8, 8), (16, 16), (3, 7), (16, 5)])
def test_loom_ideal_speedup_over_the_same_lanes_is_p2_over_aw(a, w):
    layer = full_layer(a, w)
    serial = row(BASE["loom"], layer)
    base = row(load_accelerator(LOOM, ["compute.mode=bit_parallel"]), layer)
    assert Fraction(int(base["compute_cycles"]), int(serial["compute_cycles"])) == Fraction(
        256, a * w)
    assert serial["utilization"] == 1.0 and base["utilization"] == 1.0


def test_folding_by_hand():
    # 4x4 input, 20 -> 5 channels, 3x3 pad 1: sr = 16, sc = 5, taps = 9, ch = 20.
    # 2 tiles x 2 filters = 4 filter lanes, 3 windows, 8 terms:
    # ceil(16/3) = 6 pixel blocks x ceil(5/4) = 2 filter folds x 9 taps x ceil(20/8) = 3 bricks
    # = 324 folds; stripes x a, loom x a x w.
    geo = dict(tiles=2, filters=2, windows=3, terms=8)
    layer = conv(in_h=4, in_w=4, in_channels=20, out_channels=5, act_bits=5, weight_bits=3)
    assert row(accel("stripes", **geo), layer)["compute_cycles"] == 324 * 5
    assert row(accel("loom", **geo), layer)["compute_cycles"] == 324 * 15
    # Depthwise 8 channels (ch = 1, sc = 1 per group): 6 x 1 x 9 x 1 per group, x 8 groups.
    dw = conv(in_h=4, in_w=4, in_channels=8, out_channels=8, groups=8, act_bits=4)
    assert row(accel("stripes", **geo), dw)["compute_cycles"] == 8 * 6 * 9 * 4
    # FC 100 -> 40 at batch 1: one output pixel uses 1 of the 3 windows: 10 x 13 bricks.
    fc = linear_layer("fc", 100, 40, act_bits=2, weight_bits=2)
    assert row(accel("stripes", **geo), fc)["compute_cycles"] == 10 * 13 * 2
    assert row(accel("loom", **geo), fc)["compute_cycles"] == 10 * 13 * 4
    # bit_parallel baseline of stripes with p = 3: F_b = 4 * 3 / 3 = 4 filter lanes
    base = accel("stripes", **geo, baseline_bits=3, mode="bit_parallel")
    assert row(base, replace(layer, act_bits=3))["compute_cycles"] == 16 * 2 * 9 * 3


def test_hooks_take_float64_geometry_like_the_overflow_check():
    ops = Operands.of([3, 8], [5, 2])
    ints = Gemm.of(sr=[49, 3136], sc=[512, 64], t=[4608, 576], taps=[9, 9], groups=[1, 2])
    floats = Gemm(*(getattr(ints, f).astype(np.float64)
                    for f in ("sr", "sc", "t", "taps", "channels", "groups")))
    for kind in ("stripes", "loom"):
        for mode in ("serial", "bit_parallel"):
            unit = accel(kind, mode=mode).compute
            assert unit.compute_cycles(floats, ops).dtype == np.float64
            np.testing.assert_array_equal(unit.compute_cycles(floats, ops),
                                          unit.compute_cycles(ints, ops))
            one = np.ones(2, dtype=np.int64)
            for key, count in unit.action_counts(ints, one, ops).items():
                np.testing.assert_array_equal(unit.action_counts(floats, one, ops)[key], count)
            fa, ia = unit.array_accesses(floats, ops), unit.array_accesses(ints, ops)
            for field in ("ifmap_reads", "filter_reads", "ofmap_writes"):
                np.testing.assert_array_equal(getattr(fa, field), getattr(ia, field))


# ---- actions and energy -------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(p=LAYER, geo=GEOMETRY, a=st.integers(1, 16), w=st.integers(1, 16),
       energies=st.tuples(*[st.floats(0, 2, allow_nan=False)] * 3))
def test_compute_energy_is_counts_times_action_energies_exactly(p, geo, a, w, energies):
    step_pj, acc_pj, mac_pj = energies
    layer = make_layer(p, a, w)
    groups, sr, sc, taps, ch = gemm_of(layer)
    products = layer.macs()
    sip_cycles = groups * sr * sc * taps * math.ceil(ch / geo["terms"])

    stripes = row(accel("stripes", **geo, serial_bit_mac_energy_pj=step_pj,
                        accumulate_energy_pj=acc_pj, mac_energy_pj=mac_pj), layer)
    bit_macs, accs = products * a, sip_cycles * a
    assert (stripes["serial_bit_mac_actions"], stripes["accumulate_actions"]) == (bit_macs, accs)
    assert "mac_actions" not in stripes.index
    assert stripes["energy_compute_pj"] == bit_macs * step_pj + accs * acc_pj

    loom = row(accel("loom", **geo, serial_bit_step_energy_pj=step_pj,
                     accumulate_energy_pj=acc_pj, mac_energy_pj=mac_pj), layer)
    steps, accs = products * a * w, sip_cycles * a * w
    assert (loom["serial_bit_step_actions"], loom["accumulate_actions"]) == (steps, accs)
    assert loom["energy_compute_pj"] == steps * step_pj + accs * acc_pj

    base = row(accel("stripes", tiles=1, filters=1, windows=16, terms=geo["terms"],
                     mode="bit_parallel", mac_energy_pj=mac_pj), layer)
    assert base["mac_actions"] == products and "serial_bit_mac_actions" not in base.index
    assert base["energy_compute_pj"] == products * mac_pj


def test_memory_energy_per_level_is_accesses_times_energies_exactly():
    layers = [conv("a", in_channels=128, out_channels=256, act_bits=4, weight_bits=8),
              conv("b", in_channels=40, out_channels=40, groups=40, act_bits=2, weight_bits=2),
              linear_layer("fc", 512, 1000, act_bits=6, weight_bits=5)]
    for kind in ("stripes", "loom"):
        for unit in (BASE[kind], load_accelerator(CONFIGS[kind], ["compute.mode=bit_parallel"])):
            assert_memory_energy_exact(unit, cost_network(unit, layers).per_layer)


def test_buffer_reads_count_the_bits_moved():
    # 4x4 input, 20 -> 5 channels, 3x3: sr = 16, sc = 5, t = 180; a = 3, w = 5.
    # Geometry 2 x 2 filter lanes, 3 windows, 8 terms: ifmap read once per filter fold
    # (ceil(5/4) = 2), weights once per block of 3 windows (ceil(16/3) = 6).
    layer = conv(in_h=4, in_w=4, in_channels=20, out_channels=5, act_bits=3, weight_bits=5)
    unit = accel("stripes", tiles=2, filters=2, windows=3, terms=8)
    traffic = memory_traffic(unit, LayerTable.from_layers([layer]), unit.compute)
    ifmap_bits, filter_bits = 16 * 180 * 2 * 3, 5 * 180 * 6 * 5
    ofmap_bytes = math.ceil(16 * 5 * 3 / 8)  # outputs drained to DRAM at act_bits
    assert traffic.reads["nm"][0] == math.ceil(ifmap_bits / 8) + ofmap_bytes
    assert traffic.reads["sb"][0] == math.ceil(filter_bits / 8)
    ifmap_dram = math.ceil(20 * 16 * 3 / 8)
    assert traffic.writes["nm"][0] == ifmap_dram + 16 * 5 * 32 // 8  # outputs once, at acc_bits
    # loom moves the same bits (every element's bits once per fold), not bit planes of full width
    loom = accel("loom", tiles=2, filters=2, windows=3, terms=8)
    lt = memory_traffic(loom, LayerTable.from_layers([layer]), loom.compute)
    assert lt.reads["am"][0] == traffic.reads["nm"][0]
    assert lt.reads["wm"][0] == traffic.reads["sb"][0]
    # the bit-parallel baseline of the same lanes (p = 3: F_b = 4) reads the same bytes here
    base = accel("stripes", tiles=2, filters=2, windows=3, terms=8, baseline_bits=3,
                 mode="bit_parallel")
    bt = memory_traffic(base, LayerTable.from_layers([layer]), base.compute)
    assert bt.reads["nm"][0] == traffic.reads["nm"][0]
    assert bt.reads["sb"][0] == traffic.reads["sb"][0]


def test_peak_and_units_by_hand():
    ops = Operands.of([1, 2, 8, 16], [16, 3, 8, 16])
    stripes, loom = BASE["stripes"].compute, BASE["loom"].compute
    assert list(stripes.peak_macs_per_cycle(ops)) == [65536.0, 32768.0, 8192.0, 4096.0]
    assert list(loom.peak_macs_per_cycle(ops)) == [2048.0, 32768 / 6, 512.0, 128.0]
    assert list(stripes.bit_passes(ops)) == [1, 1, 1, 1]
    assert list(loom.bit_passes(ops)) == [1, 1, 1, 1]
    base = replace(loom, mode="bit_parallel")
    assert list(base.peak_macs_per_cycle(ops)) == [128.0] * 4
    bits = stripes.array_operand_bits(ops)
    assert list(bits[0]) == [1, 2, 8, 16] and list(bits[1]) == [16, 3, 8, 16]


# ---- refused layers -----------------------------------------------------------------------
def test_widths_beyond_the_unit_are_refused_naming_the_layer():
    layers = [conv("ok", act_bits=16, weight_bits=16), conv("wide_w", weight_bits=17),
              conv("wide_a", act_bits=20), conv("apot4", weight_bits=4, weight_format="apot"),
              conv("bin", act_bits=1, weight_bits=1, weight_format="binary",
                   act_format="binary")]
    for kind, path in CONFIGS.items():
        with pytest.raises(ConfigError) as err:
            cost_network(BASE[kind], layers)
        msg = str(err.value)
        assert "4 layers cannot run" in msg and "'ok'" not in msg
        assert (f"{path}: compute: layer 'wide_w' (act_bits=8, weight_bits=17) with 'int' "
                f"weights and 'int' activations runs on unit '{kind}' ({kind}), which supports "
                f"weight formats ['int'] and activation formats ['int'] with act_bits <= 16 and "
                f"weight_bits <= 16") in msg
        for name in ("wide_a", "apot4", "bin"):
            assert f"{path}: compute: layer '{name}'" in msg


def test_bit_parallel_mode_refuses_layers_wider_than_its_lanes():
    base = load_accelerator(STRIPES, ["compute.mode=bit_parallel", "compute.baseline_bits=8"])
    assert base.compute.equivalent_lanes == 16 * 16 * 16 // 8 * 16
    layer = conv("twelve", act_bits=12, weight_bits=8)
    cost_network(BASE["stripes"], [layer])  # the serial array runs it
    with pytest.raises(ConfigError, match=r"layer 'twelve' \(act_bits=12, weight_bits=8\).*"
                                          r"act_bits <= 8 and weight_bits <= 8 \(mode "
                                          r"bit_parallel: 8-bit MAC lanes\)"):
        cost_network(base, [layer])


# ---- config validation --------------------------------------------------------------------
@pytest.mark.parametrize("kind, edit, expected", [
    ("stripes", lambda r: r["compute"].update(windows=0),
     "compute.windows: expected a positive integer, got 0"),
    ("stripes", lambda r: r["compute"].pop("terms"),
     "compute.terms: missing; expected a positive integer"),
    ("loom", lambda r: r["compute"].update(mode="parallel"),
     "compute.mode: expected one of ['serial', 'bit_parallel'], got 'parallel'"),
    ("stripes", lambda r: r["compute"].update(serial_bit_mac_energy_pj=-1),
     "compute.serial_bit_mac_energy_pj: expected a non-negative number, got -1"),
    ("loom", lambda r: r["compute"].update(accumulate_energy_pj="cheap"),
     "compute.accumulate_energy_pj: expected a non-negative number, got 'cheap'"),
    ("stripes", lambda r: r["compute"].update(baseline_bits=300),
     "compute.baseline_bits: expected at most 256, got 300"),
    ("stripes", lambda r: r["compute"].update(tiles=1, filters=1, windows=8),
     "compute.windows: expected tiles x filters x windows (8) to be a multiple of "
     "baseline_bits (16) so that the bit-parallel baseline of the same lanes has whole filter "
     "lanes, got windows 8"),
    ("loom", lambda r: r["compute"].update(windows=1),
     "compute.windows: expected tiles x filters x windows (128) to be a multiple of "
     "baseline_bits**2 (256)"),
    ("loom", lambda r: r["compute"].update(acc_bits=24),
     "compute.acc_bits: expected at least act_bits + weight_bits (32)"),
    ("loom", lambda r: r["compute"].update(serial_bit_mac_energy_pj=0.05),
     "compute.serial_bit_mac_energy_pj: unknown field"),
    ("stripes", lambda r: r["compute"].update(lanes=4096), "compute.lanes: unknown field"),
])
def test_bad_config_is_one_line_naming_file_and_field(tmp_path, kind, edit, expected):
    path = write_config_variant(tmp_path, CONFIGS[kind], edit)
    with pytest.raises(ConfigError) as err:
        load_accelerator(path)
    msg = str(err.value)
    assert "\n" not in msg and "(1 error)" in msg, msg
    assert msg.startswith(f"{path}: {expected}"), msg


def test_mode_defaults_to_serial_and_overrides_name_the_flag(tmp_path):
    path = write_config_variant(tmp_path, STRIPES, lambda r: r["compute"].pop("mode"))
    assert load_accelerator(path).compute.mode == "serial"
    with pytest.raises(ConfigError, match=r"^--set compute.mode=fast: expected one of "
                                          r"\['serial', 'bit_parallel'\], got 'fast'"):
        load_accelerator(STRIPES, ["compute.mode=fast"])

"""Cost model: cycles against a plain-integer reference, traffic, stalls, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.arch import Gemm, Operands
from hwsim.cost import LayerTable, cost_network, cost_table, memory_traffic
from hwsim.errors import WorkloadError
from hwsim.workloads import builtin_workload, linear_layer

from tests._cost_helpers import accel_with, conv, reference_cycles

DATAFLOW = st.sampled_from(["os", "ws", "is"])
DIM = st.integers(1, 300)


@settings(max_examples=300, deadline=None)
@given(df=DATAFLOW, rows=st.integers(1, 64), cols=st.integers(1, 64), in_hw=st.integers(1, 20),
       cin=st.integers(1, 96), cout=st.integers(1, 96), k=st.integers(1, 3), batch=st.integers(1, 3))
def test_compute_cycles_match_integer_reference(df, rows, cols, in_hw, cin, cout, k, batch):
    if k > in_hw:
        return
    layer = conv(in_h=in_hw, in_w=in_hw, in_channels=cin, out_channels=cout, kernel_h=k,
                 kernel_w=k, pad_top=0, pad_left=0, pad_bottom=0, pad_right=0, batch=batch)
    got = cost_network(accel_with(rows, cols, df), [layer]).compute_cycles
    sr = layer.out_h() * layer.out_w() * batch
    assert got == reference_cycles(df, rows, cols, sr, cout, k * k * cin)


def test_grouped_conv_runs_groups_back_to_back():
    accel = accel_with(16, 16, "ws")
    grouped = conv(in_channels=64, out_channels=128, groups=4)
    one_group = conv(in_channels=16, out_channels=32)
    assert cost_network(accel, [grouped]).compute_cycles == 4 * cost_network(accel, [one_group]).compute_cycles
    dw = conv(in_channels=32, out_channels=32, groups=32)
    sr = 14 * 14
    assert cost_network(accel, [dw]).compute_cycles == 32 * reference_cycles("ws", 16, 16, sr, 1, 9)


@settings(max_examples=200, deadline=None)
@given(df=DATAFLOW, rows=st.integers(1, 64), cols=st.integers(1, 64),
       sr=DIM, sc=DIM, t=DIM, which=st.sampled_from(["sr", "sc", "t"]), extra=st.integers(1, 100))
def test_cycles_monotone_in_layer_size(df, rows, cols, sr, sc, t, which, extra):
    unit = accel_with(rows, cols, df).compute
    ops = Operands.of(8, 8)
    base = unit.compute_cycles(Gemm.of(sr, sc, t), ops)
    grown = dict(sr=sr, sc=sc, t=t)
    grown[which] += extra
    bigger = unit.compute_cycles(Gemm.of(grown["sr"], grown["sc"], grown["t"]), ops)
    assert bigger[0] >= base[0]


@settings(max_examples=200, deadline=None)
@given(df=DATAFLOW, rows=st.integers(1, 64), cols=st.integers(1, 64), sr=DIM, sc=DIM, t=DIM)
def test_doubling_the_array_never_adds_folds_and_bounds_cycles(df, rows, cols, sr, sc, t):
    # Cycles are NOT monotone in array size (fill/drain grows with rows + cols; see below), but
    # the fold count is, and cycles x PEs always cover the MACs.
    def folds(r, c):
        if df == "os":
            return math.ceil(sr / r) * math.ceil(sc / c)
        if df == "ws":
            return math.ceil(t / r) * math.ceil(sc / c)
        return math.ceil(t / r) * math.ceil(sr / c)
    assert folds(2 * rows, cols) <= folds(rows, cols) and folds(rows, 2 * cols) <= folds(rows, cols)
    unit = accel_with(rows, cols, df).compute
    cycles = int(unit.compute_cycles(Gemm.of(sr, sc, t), Operands.of(8, 8))[0])
    if rows * cols > 1:
        assert cycles * rows * cols >= sr * sc * t


def test_cycles_are_not_monotone_in_array_size():
    layer = [conv(in_h=4, in_w=4, pad_top=0, pad_left=0, pad_bottom=0, pad_right=0,
                  in_channels=8, out_channels=8)]
    small = cost_network(accel_with(8, 8, "os"), layer).compute_cycles
    large = cost_network(accel_with(64, 64, "os"), layer).compute_cycles
    assert large > small  # one fold either way, but a longer pipeline to fill and drain


@settings(max_examples=150, deadline=None)
@given(df=DATAFLOW, rows=st.integers(1, 64), cols=st.integers(1, 64), in_hw=st.integers(3, 20),
       cin=st.integers(1, 64), cout=st.integers(1, 64), groups=st.sampled_from([1, 2, 4]))
def test_utilization_in_unit_interval(df, rows, cols, in_hw, cin, cout, groups):
    if rows * cols == 1:
        rows = 2
    layer = conv(in_h=in_hw, in_w=in_hw, in_channels=cin * groups, out_channels=cout * groups,
                 groups=groups)
    result = cost_network(accel_with(rows, cols, df), [layer])
    util = float(result.per_layer["utilization"].iloc[0])
    assert 0 < util <= 1
    assert 0 < result.utilization <= 1


def test_dram_traffic_when_everything_fits():
    layer = conv(in_channels=32, out_channels=48, batch=2)
    result = cost_network(accel_with(buffer_bytes=1 << 30), [layer]).per_layer.iloc[0]
    ifmap_b = 2 * 32 * 14 * 14
    filter_b = 48 * 32 * 9
    ofmap_b = 2 * 48 * 14 * 14
    assert result["dram_read_bytes"] == ifmap_b + filter_b
    assert result["dram_write_bytes"] == ofmap_b
    assert result["ifmap_sram_write_bytes"] == ifmap_b


def test_refetch_takes_the_cheaper_loop_order():
    layer = conv(in_h=28, in_w=28, in_channels=128, out_channels=256)
    ifmap_b, filter_b = 128 * 28 * 28, 256 * 128 * 9  # 100352, 294912
    cap = 16384
    accel = accel_with(buffer_bytes=cap)
    traffic = memory_traffic(accel, LayerTable.from_layers([layer]))
    expected = min(filter_b + math.ceil(filter_b / cap) * ifmap_b,
                   ifmap_b + math.ceil(ifmap_b / cap) * filter_b)
    assert int(traffic.reads["dram"][0]) == expected > ifmap_b + filter_b


@settings(max_examples=100, deadline=None)
@given(cap_kib=st.integers(1, 512), grow=st.integers(1, 8), cin=st.integers(1, 256),
       cout=st.integers(1, 256), hw=st.integers(3, 56))
def test_dram_traffic_non_increasing_in_buffer_size(cap_kib, grow, cin, cout, hw):
    layer = conv(in_h=hw, in_w=hw, in_channels=cin, out_channels=cout)
    table = LayerTable.from_layers([layer])
    small = memory_traffic(accel_with(buffer_bytes=cap_kib * 1024), table).reads["dram"][0]
    large = memory_traffic(accel_with(buffer_bytes=cap_kib * 1024 * grow), table).reads["dram"][0]
    lower_bound = layer.in_channels * hw * hw + layer.weight_count
    assert lower_bound <= large <= small


def test_psum_spill_only_for_ws_is_with_small_ofmap_buffer():
    layer = conv(in_h=56, in_w=56, in_channels=64, out_channels=64)
    table = LayerTable.from_layers([layer])
    for df in ("ws", "is"):
        big = memory_traffic(accel_with(16, 16, df, buffer_bytes=1 << 24), table)
        small = memory_traffic(accel_with(16, 16, df, buffer_bytes=2048), table)
        assert big.psum_spill_bytes[0] == 0 and small.psum_spill_bytes[0] > 0
        # t = 576 over 16 rows: 36 reduction folds, 35 of them read back
        assert small.psum_spill_bytes[0] == 56 * 56 * 64 * 35 * 4
    os_small = memory_traffic(accel_with(16, 16, "os", buffer_bytes=4096), table)
    assert os_small.psum_spill_bytes[0] == 0


def test_stalls_follow_the_slowest_transfer():
    layers = [conv(in_channels=64, out_channels=64)]
    fast = cost_network(accel_with(dram_bw=1e9, sram_bw=1e9), layers).per_layer.iloc[0]
    assert fast["stall_cycles"] == 0 and fast["total_cycles"] == fast["compute_cycles"]
    slow = cost_network(accel_with(dram_bw=0.5, sram_bw=1e9), layers).per_layer.iloc[0]
    dram_bytes = slow["dram_read_bytes"] + slow["dram_write_bytes"]
    assert slow["total_cycles"] == math.ceil(dram_bytes / 0.5) > slow["compute_cycles"]
    assert slow["stall_cycles"] == slow["total_cycles"] - slow["compute_cycles"]


def test_wider_operands_take_bit_passes_and_narrower_ones_less_traffic():
    accel = accel_with()
    layer = conv()
    table = LayerTable.from_layers([layer])
    base = cost_table(accel, table)
    wide = cost_table(accel, table.with_bits(16, 8))
    assert wide.passes[0] == 2 and wide.compute_cycles[0] == 2 * base.compute_cycles[0]
    assert wide.actions["mac"][0] == 2 * base.macs[0]
    narrow = cost_table(accel, table.with_bits(8, 4))
    assert narrow.compute_cycles[0] == base.compute_cycles[0]
    assert memory_traffic(accel, table.with_bits(8, 4)).operand_bytes["filter"][0] == layer.weight_count // 2


def test_network_totals_equal_column_sums_and_layers_are_independent():
    accel = accel_with(16, 64, "ws", buffer_bytes=32768)
    layers = builtin_workload("resnet18", input_hw=64)
    result = cost_network(accel, layers)
    frame = result.per_layer
    assert list(frame["name"]) == [l.name for l in layers]
    assert result.total_cycles == frame["total_cycles"].sum()
    assert result.energy_total_pj == pytest.approx(frame["energy_total_pj"].sum(), rel=1e-12)
    assert result.latency_s == pytest.approx(result.total_cycles / accel.clock_hz, rel=1e-12)
    assert result.macs == sum(l.macs() for l in layers)
    for i in (0, 7, len(layers) - 1):
        alone = cost_network(accel, [layers[i]]).per_layer.iloc[0]
        assert alone.drop(["name"]).equals(frame.iloc[i].drop(["name"]))
    again = cost_network(accel, layers)
    assert again.per_layer.equals(frame)
    for column in ("macs", "compute_cycles", "stall_cycles", "total_cycles", "latency_s",
                   "dram_read_bytes", "ofmap_sram_write_bytes", "energy_compute_pj",
                   "energy_dram_pj", "energy_total_pj", "utilization", "unit"):
        assert column in frame.columns


def test_layer_table_take_and_errors():
    layers = builtin_workload("mobilenet_v2", input_hw=32)
    table = LayerTable.from_layers(layers)
    picked = table.take([3, 3, 0])
    assert picked.names == (layers[3].name, layers[3].name, layers[0].name)
    assert list(picked.macs) == [layers[3].macs(), layers[3].macs(), layers[0].macs()]
    assert picked.weight_format == picked.act_format == ("int",) * 3
    with pytest.raises(WorkloadError, match="empty"):
        LayerTable.from_layers([])
    with pytest.raises(WorkloadError, match="output size"):
        LayerTable.from_layers([conv(in_h=2, in_w=2)], convention="scalesim")


def test_layer_table_carries_formats_through_take_bits_and_formats():
    layers = [conv(name="a"), conv(name="b", weight_format="apot", weight_bits=4),
              conv(name="c", weight_format="binary", act_format="binary", act_bits=1,
                   weight_bits=1)]
    table = LayerTable.from_layers(layers)
    assert table.weight_format == ("int", "apot", "binary")
    assert table.act_format == ("int", "int", "binary")
    picked = table.take([2, 1, 1]).with_bits(4, 4)
    assert picked.weight_format == ("binary", "apot", "apot")
    assert picked.act_format == ("binary", "int", "int")
    ops = picked.operands
    assert list(ops.weight_format) == ["binary", "apot", "apot"] and list(ops.act_bits) == [4] * 3
    assert list(ops.take([1]).weight_format) == ["apot"]
    swapped = table.with_formats("apot")
    assert swapped.weight_format == ("apot",) * 3 and swapped.act_format == table.act_format
    per_row = table.with_formats(["int", "int", "apot"], ["int", "apot", "int"])
    assert per_row.weight_format == ("int", "int", "apot")
    assert per_row.act_format == ("int", "apot", "int")
    assert list(per_row.operands.act_format) == ["int", "apot", "int"]
    assert table.weight_format == ("int", "apot", "binary")  # the original is unchanged
    for bad in (["int"], ""):
        with pytest.raises(WorkloadError, match="with_formats: weight_format"):
            table.with_formats(bad)
    frame = cost_network(accel_with(), layers[:2]).per_layer
    assert list(frame["weight_format"]) == ["int", "apot"]
    assert list(frame["act_format"]) == ["int", "int"]


def test_linear_layer_cost():
    accel = accel_with(32, 32, "os")
    fc = linear_layer("fc", 512, 1000, batch=4)
    result = cost_network(accel, [fc]).per_layer.iloc[0]
    assert result["macs"] == 4 * 512 * 1000
    assert result["compute_cycles"] == reference_cycles("os", 32, 32, 4, 1000, 512)


def test_core_modules_do_not_import_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, hwsim.arch, hwsim.cost, hwsim.workloads; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, env={"PYTHONPATH": str(repo)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr

"""Energy = counts x per-action energies, exactly; counts kept apart from the table."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.cost import EnergyTable, cost_network, energy_pj
from hwsim.workloads import builtin_workload

from tests._cost_helpers import accel_with, assert_memory_energy_exact, conv


def test_compute_energy_is_macs_times_mac_energy_exactly():
    accel = accel_with(16, 16, "os")
    layers = builtin_workload("mobilenet_v2", input_hw=96)
    frame = cost_network(accel, layers).per_layer
    mac_pj = accel.compute.mac_energy_pj
    for layer, energy in zip(layers, frame["energy_compute_pj"]):
        assert energy == layer.macs() * mac_pj


def test_memory_energy_is_accesses_times_energy_per_access_exactly():
    accel = accel_with(32, 32, "ws", buffer_bytes=8192)
    layers = [conv(in_channels=48, out_channels=80, batch=3), conv(name="d", in_channels=40, out_channels=40, groups=40)]
    frame = cost_network(accel, layers).per_layer
    assert_memory_energy_exact(accel, frame)


def test_dram_energy_by_hand():
    accel = accel_with(buffer_bytes=1 << 30)
    layer = conv(in_h=8, in_w=8, in_channels=16, out_channels=16, pad_top=0, pad_left=0,
                 pad_bottom=0, pad_right=0, kernel_h=1, kernel_w=1)
    row = cost_network(accel, [layer]).per_layer.iloc[0]
    read_bytes = 16 * 8 * 8 + 16 * 16  # ifmap + weights, int8
    write_bytes = 16 * 8 * 8
    expected = (read_bytes * 8 // 64) * accel.dram.read_energy_pj + (write_bytes * 8 // 64) * accel.dram.write_energy_pj
    assert row["energy_dram_pj"] == expected


def _random_counts(seed: int, levels: list[str], n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = {"mac": rng.integers(0, 10**9, n)}
    for lvl in levels:
        counts[f"{lvl}_read"] = rng.integers(0, 10**7, n)
        counts[f"{lvl}_write"] = rng.integers(0, 10**7, n)
    return counts


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 20), scale=st.integers(1, 64))
def test_energy_is_linear_in_counts_and_in_the_table(seed, n, scale):
    accel = accel_with()
    table = EnergyTable.for_accelerator(accel)
    levels = [lvl.name for lvl in accel.levels]
    a = _random_counts(seed, levels, n)
    b = _random_counts(seed + 1, levels, n)
    ea, eb = energy_pj(a, table), energy_pj(b, table)
    esum = energy_pj({k: a[k] + b[k] for k in a}, table)
    for key in esum:
        np.testing.assert_allclose(esum[key], ea[key] + eb[key], rtol=1e-12)
    scaled = energy_pj({k: v * scale for k, v in a.items()}, table)
    for key in scaled:
        np.testing.assert_allclose(scaled[key], ea[key] * scale, rtol=1e-12)
    doubled = replace(table, mac_pj=2 * table.mac_pj,
                      read_pj={k: 2 * v for k, v in table.read_pj.items()},
                      write_pj={k: 2 * v for k, v in table.write_pj.items()})
    for key, value in energy_pj(a, doubled).items():
        assert np.array_equal(value, 2 * ea[key])


def test_energy_by_level_sums_to_total():
    accel = accel_with(16, 16, "is", buffer_bytes=16384)
    result = cost_network(accel, builtin_workload("resnet18", input_hw=64))
    parts = result.energy_by_level_pj()
    assert set(parts) == {"compute", "dram", "ifmap_sram", "filter_sram", "ofmap_sram"}
    assert sum(parts.values()) == pytest.approx(result.energy_total_pj, rel=1e-12)
    assert parts["compute"] == pytest.approx(result.macs * accel.compute.mac_energy_pj, rel=1e-12)

"""Allocation plots: files written, the Pareto front is the non-dominated set."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.codesign.plots import pareto_front, plot_layer_bits, plot_pareto
from hwsim.errors import HwsimError


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=12))
def test_pareto_front_is_exactly_the_non_dominated_points(points):
    costs = [float(c) for c, _ in points]
    fids = [float(f) for _, f in points]
    front = pareto_front(costs, fids)

    def dominated(i):
        return any((costs[j] <= costs[i] and fids[j] >= fids[i])
                   and (costs[j] < costs[i] or fids[j] > fids[i]) for j in range(len(points)))

    kept = {(costs[i], fids[i]) for i in front}
    expected = {(costs[i], fids[i]) for i in range(len(points)) if not dominated(i)}
    assert kept == expected
    assert [costs[i] for i in front] == sorted(costs[i] for i in front)


def test_plots_are_written(tmp_path):
    # matplotlib comes with the "test" extra (it includes "plot"): no skip
    out = plot_pareto(["W8A8", "W4A8", "plan"], [10.0, 6.0, 4.0], [1.0, 0.9, 0.95],
                      tmp_path / "p" / "pareto.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = plot_layer_bits(["a", "b", "c"], [8, 4, 2], [8, 8, 4], tmp_path / "bits.png",
                          units=["int8_array", "shift_add", "shift_add"])
    assert out.stat().st_size > 1000
    with pytest.raises(HwsimError, match="expected as many labels"):
        plot_pareto(["a"], [1.0, 2.0], [1.0], tmp_path / "x.png")
    with pytest.raises(HwsimError, match="one weight width"):
        plot_layer_bits(["a"], [8, 4], [8], tmp_path / "y.png")

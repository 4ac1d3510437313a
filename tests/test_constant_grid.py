"""Constants on a grid are stored exactly: ``quant.calibrate.constant_grid`` and its use by the
calibration pass (a detection head's strides and anchor centres)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import quant
from hwsim.executor import execute
from hwsim.lower import lower
from quant.calibrate.constant_grid import exact_grid_params
from quant.formats import IntFormat

FORMATS = {
    "uint8": IntFormat(bits=8, signed=False, symmetric=False),
    "int8 asym": IntFormat(bits=8, signed=True, symmetric=False),
    "int8 sym": IntFormat(bits=8, signed=True, symmetric=True),
    "int4 asym": IntFormat(bits=4, signed=True, symmetric=False),
    "uint8 sym": IntFormat(bits=8, signed=False, symmetric=True),
}


def _dequantized(values: np.ndarray, params) -> np.ndarray:
    codes = params.quantize(values)
    assert codes.min() >= params.fmt.qmin and codes.max() <= params.fmt.qmax
    return ((codes.astype(np.float64) - int(params.zero_point)) * float(params.scale)).astype(
        np.float32)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(fmt=st.sampled_from(sorted(FORMATS)), exponent=st.integers(-6, 6),
       odd=st.sampled_from([1, 3, 5]), data=st.data())
def test_values_on_a_grid_that_fits_are_stored_exactly(fmt, exponent, odd, data):
    f = FORMATS[fmt]
    step = odd * 2.0 ** exponent
    span = f.qmax - f.qmin
    lo = data.draw(st.integers(-span if not f.symmetric else f.qmin, 0 if f.signed else 0))
    if not f.signed:
        lo = 0
    hi_max = (lo + span) if not f.symmetric else f.qmax
    ks = data.draw(st.lists(st.integers(lo, hi_max), min_size=1, max_size=40))
    values = (np.asarray(ks, dtype=np.float64) * step).astype(np.float32)
    if not np.any(values):
        assert exact_grid_params(values, f) is None  # all zeros: the observer's fit is used
        return
    params = exact_grid_params(values, f)
    assert params is not None, (ks, step)
    np.testing.assert_array_equal(_dequantized(values, params), values)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(fmt=st.sampled_from(sorted(FORMATS)),
       values=st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1,
                       max_size=30))
def test_whatever_the_values_a_returned_grid_is_exact(fmt, values):
    values = np.asarray(values, dtype=np.float32)
    params = exact_grid_params(values, FORMATS[fmt])
    if params is not None:
        np.testing.assert_array_equal(_dequantized(values, params), values)


@pytest.mark.parametrize("values, fmt", [
    (np.arange(300, dtype=np.float32), "uint8"),             # 300 codes > 256
    (np.array([1.0, 1.0 + 2.0**-20], dtype=np.float32), "uint8"),  # 2^20 codes
    (np.array([1.0, np.pi], dtype=np.float32), "uint8"),
    (np.array([-3.0, 5.0], dtype=np.float32), "uint8 sym"),  # negative, zero point fixed at 0
    (np.array([-200.0, 101.0], dtype=np.float32), "uint8"),  # 302 codes
    (np.array([np.inf, 1.0], dtype=np.float32), "int8 asym"),
])
def test_values_off_any_grid_that_fits_get_none(values, fmt):
    assert exact_grid_params(values, FORMATS[fmt]) is None


def test_a_decimal_grid_is_found_when_float32_rounding_allows():
    values = np.array([0.1, 0.2, 0.3, -0.4], dtype=np.float32)
    params = exact_grid_params(values, FORMATS["int8 asym"])
    assert params is not None and abs(float(params.scale) - 0.1) < 1e-8
    np.testing.assert_array_equal(_dequantized(values, params), values)


def test_per_channel_formats_are_left_to_the_observer():
    assert exact_grid_params(np.array([8.0, 16.0]), IntFormat(bits=8, per_channel=True)) is None


class _Decode(nn.Module):
    """A detection head's decoding: distances scaled by per-position strides (8, 16, 32) and
    shifted by anchor centres (0.5, 1.5, ...), as YOLOv8 exports it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        n = 84
        self.register_buffer("strides", torch.tensor(
            np.repeat([8.0, 16.0, 32.0], n // 3)[None, None], dtype=torch.float32))
        self.register_buffer("anchors", torch.tensor(
            (np.arange(n) % 80 + 0.5)[None, None], dtype=torch.float32))

    def forward(self, x):
        d = self.conv(x).reshape(-1, 2, 84)
        return (d + self.anchors) * self.strides


def test_strides_and_anchor_centres_survive_quantization_exactly():
    torch.manual_seed(0)
    model = _Decode().eval()
    calib = torch.randn(4, 3, 7, 12)
    qm = quant.quantize(model, quant.QuantConfig(), [calib])
    consts = {float(r.weight.max()): r for r in qm.graph if r.op == "constant"}
    assert set(consts) == {32.0, 79.5}
    program = lower(qm, requant="dyadic")
    nodes = {n.name: n for n in program.nodes()}
    for rec in consts.values():
        p = qm.act_params(rec.name)
        codes = nodes[rec.name].arrays["codes"]
        stored = nodes[rec.name].out.dequantize(codes.astype(np.int64)).astype(np.float32)
        np.testing.assert_array_equal(stored, rec.weight)     # integer program: exact
        np.testing.assert_array_equal(_dequantized(rec.weight, p), rec.weight)
    assert {float(qm.act_params(r.name).scale) for r in consts.values()} == {8.0, 0.5}
    x = torch.randn(2, 3, 7, 12)
    codes = qm.quantize_input(x)
    np.testing.assert_array_equal(execute(program, codes, backend="fast").output,
                                  execute(program, codes, backend="reference").output)

"""Degenerate weight channels (a BatchNorm channel with gamma ~ 0 folded into its conv, an
all-zero channel): per-channel int weights quantize with adjusted scales and a
DegenerateChannelWarning naming the layer and channels; the other channels are untouched, and
the integer program stays within 1 LSB of the fake-quant model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

import quant
from hwsim.lower import lower
from hwsim.verify import verify
from quant import DegenerateChannelWarning, IntFormat, QuantConfig, QuantError
from quant.formats.uniform_fit import (DEGENERATE_SCALE_RATIO, fit_int_params,
                                       settle_channel_scales, with_channel_scales)

K = 8
INT32 = (-(2**31), 2**31 - 1)


def _net(dead: dict[int, tuple[float, float]] | None = None, zero: tuple[int, ...] = (),
         seed: int = 0) -> nn.Module:
    """conv-BN (the layer under test, record '0') -> ReLU -> conv: `dead` maps a channel to the
    BatchNorm (gamma, beta) it gets; `zero` channels get all-zero conv weights."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, K, 3, padding=1), nn.BatchNorm2d(K), nn.ReLU(),
                        nn.Conv2d(K, 4, 3, padding=1)).eval()
    with torch.no_grad():
        for k, (gamma, beta) in (dead or {}).items():
            net[1].weight[k] = gamma
            net[1].bias[k] = beta
        for k in zero:
            net[0].weight[k] = 0.0
    return net


def _x(seed: int = 1, n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _quantize(net: nn.Module, config: QuantConfig | None = None):
    """(model, the DegenerateChannelWarning messages)."""
    x = _x()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qm = quant.quantize(net, config or QuantConfig(), [x], example_input=x[:1])
    return qm, [str(w.message) for w in caught if issubclass(w.category, DegenerateChannelWarning)]


def _check_unaffected(qm, ref, healthy: np.ndarray) -> None:
    """Channels `healthy` of layer '0' have the scales, weight codes and bias codes of `ref`."""
    np.testing.assert_array_equal(qm.weight_params("0").scale[healthy],
                                  ref.weight_params("0").scale[healthy])
    np.testing.assert_array_equal(qm.weight_codes("0")[healthy], ref.weight_codes("0")[healthy])
    np.testing.assert_array_equal(qm.bias_codes("0")[healthy], ref.bias_codes("0")[healthy])


def _check_float_output(qm, channels) -> None:
    """Fake-quant outputs of layer '0' channels `channels` equal the float outputs to within
    half an output LSB (the output rounding; the weights' and bias's errors are negligible)."""
    x = _x()
    fq, fl = qm.run(x)["0"], qm.run(x, mode="float")["0"]
    s_y = float(qm.act_params("0").scale)
    err = np.abs(fq[:, channels].astype(np.float64) - fl[:, channels]).max()
    assert err <= 0.5 * s_y * (1 + 1e-4), (err, s_y)


def _check_integer_program(qm) -> None:
    """Lowered (dyadic requantization, int32 accumulators) and run by hwsim: every layer alone
    within 1 LSB of the fake-quant model, and no accumulator overflow."""
    report = verify(qm, lower(qm), _x(seed=7))
    assert (report.per_layer["max_lsb_diff"] <= 1).all(), report.per_layer
    assert report.summary["total_overflows"] == 0


def _check_bias_codes(qm) -> None:
    for name in ("0", "3"):
        codes = qm.bias_codes(name)
        assert codes.min() >= INT32[0] and codes.max() <= INT32[1]


# ---- the issue's repro ----------------------------------------------------------------------

def test_issue_repro_quantizes_with_a_warning():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)).eval()
    with torch.no_grad():
        net[1].weight[0] = 1e-9
        net[1].bias[0] = 0.5
    x = torch.randn(4, 3, 16, 16)
    with pytest.warns(DegenerateChannelWarning, match=r"layer '0'.*channel 0\b"):
        qm = quant.quantize(net, QuantConfig(), [x], example_input=x[:1])
    codes = qm.bias_codes("0")
    assert codes.min() >= INT32[0] and codes.max() <= INT32[1]
    fq, fl = qm.run(x)["0"], qm.run(x, mode="float")["0"]
    assert np.abs(fq[:, 0] - 0.5).max() <= 0.5 * float(qm.act_params("0").scale) + 1e-6
    assert np.abs(fl[:, 0] - 0.5).max() < 1e-6


@pytest.mark.parametrize("beta, case", [(0.5, "floor"), (0.0, "floor"), (5.0, "bias")])
def test_dead_channel(beta, case):
    """gamma = 1e-9: beta 0.5 or 0 is settled by the 2^-16 floor alone, beta 5 needs its scale
    raised further to keep the bias codes in int32 (their weights then round to 0)."""
    ref, _ = _quantize(_net())
    qm, messages = _quantize(_net({0: (1e-9, beta)}))
    assert len(messages) == 1
    assert messages[0].startswith("layer '0': degenerate weight channels: channel 0: ")
    scale = qm.weight_params("0").scale
    largest = float(scale[1:].max())
    if case == "floor":
        assert "below 2^-16 of the layer's largest" in messages[0]
        assert scale[0] == largest * DEGENERATE_SCALE_RATIO
    else:
        assert "bias codes beyond int32" in messages[0]
        assert DEGENERATE_SCALE_RATIO * largest < scale[0] < largest
        assert abs(int(qm.bias_codes("0")[0])) <= 2**30
        assert not qm.weight_codes("0")[0].any()
    _check_bias_codes(qm)
    _check_unaffected(qm, ref, np.arange(1, K))
    _check_float_output(qm, [0])
    _check_integer_program(qm)


def test_all_zero_channel_gets_the_layers_largest_scale():
    ref, _ = _quantize(_net())
    qm, messages = _quantize(_net(zero=(2, 5)))
    assert len(messages) == 1 and "channels [2, 5] (2 of 8): all-zero weights" in messages[0]
    scale = qm.weight_params("0").scale
    healthy = np.array([k for k in range(K) if k not in (2, 5)])
    assert scale[2] == scale[5] == scale[healthy].max()
    assert not qm.weight_codes("0")[[2, 5]].any()
    _check_unaffected(qm, ref, healthy)
    _check_float_output(qm, [2, 5])
    _check_integer_program(qm)


def test_a_healthy_model_does_not_warn():
    qm, messages = _quantize(_net())
    assert messages == []
    qm, messages = _quantize(_net({0: (1e-9, 5.0)}), QuantConfig(weight=IntFormat(8)))
    assert messages == []  # per-tensor weights: the dead channel shares the layer's scale


def test_asymmetric_per_channel_weights():
    fmt = IntFormat(8, signed=True, symmetric=False, per_channel=True)
    qm, messages = _quantize(_net({0: (1e-9, 5.0), 3: (1e-9, 0.0)}), QuantConfig(weight=fmt))
    assert len(messages) == 1 and "channel 0: bias codes" in messages[0]
    assert "channel 3: scale below 2^-16" in messages[0]
    _check_bias_codes(qm)
    _check_float_output(qm, [0, 3])
    _check_integer_program(qm)


def test_too_narrow_bias_bits_names_the_width_to_use():
    with pytest.raises(QuantError, match=r"layer '0': bias codes reach .* outside the int8 "
                                         r"range .*set QuantConfig.bias_bits to at least \d+"):
        _quantize(_net(), QuantConfig(bias_bits=8))


def test_warning_can_be_made_an_error():
    x = _x()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateChannelWarning)
        with pytest.raises(DegenerateChannelWarning, match="channel 0"):
            quant.quantize(_net({0: (1e-9, 0.5)}), QuantConfig(), [x], example_input=x[:1])


# ---- the number-format helpers --------------------------------------------------------------

def test_settle_and_with_channel_scales():
    w = np.random.default_rng(0).normal(0, 0.1, (4, 6))
    w[1] *= 1e-9
    w[2] = 0.0
    fitted = fit_int_params(w, IntFormat(8, per_channel=True))
    settled, zero, floored = settle_channel_scales(w, fitted)
    assert zero.tolist() == [False, False, True, False]
    assert floored.tolist() == [False, True, False, False]
    largest = fitted.scale[[0, 3]].max()
    assert settled.scale[2] == largest and settled.scale[1] == largest * DEGENERATE_SCALE_RATIO
    np.testing.assert_array_equal(settled.scale[[0, 3]], fitted.scale[[0, 3]])
    # all zero: nothing to settle against
    empty = fit_int_params(np.zeros((3, 4)), IntFormat(8, per_channel=True))
    assert settle_channel_scales(np.zeros((3, 4)), empty)[0] is empty
    # scales rounded up to float32; asymmetric zero points refitted to cover the former grid
    fmt = IntFormat(8, signed=False, symmetric=False, per_channel=True)
    a = np.array([[-1.0, 3.0], [-0.2, 0.1]])
    p = fit_int_params(a, fmt)
    q = with_channel_scales(p, np.array([0.1 / 3, 0.01]))
    assert np.all(q.scale >= [0.1 / 3, 0.01]) and np.all(q.scale.astype(np.float32) == q.scale)
    lo, hi = q.representable_range()
    assert np.all(lo <= a.min(axis=1) + q.scale / 2) and np.all(hi >= a.max(axis=1))


# ---- random dead channels -------------------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(channels=st.lists(st.integers(0, K - 1), min_size=1, max_size=3, unique=True),
       log_gamma=st.floats(-14.0, -4.0), beta=st.floats(-20.0, 20.0),
       zero_beta=st.booleans(), seed=st.integers(0, 3))
@example(channels=[6, 2], log_gamma=-9.0, beta=-6.0, zero_beta=False, seed=1)
@example(channels=[7], log_gamma=-12.5, beta=15.0, zero_beta=False, seed=2)
def test_random_dead_channels(channels, log_gamma, beta, zero_beta, seed):
    """Dead channels anywhere, gamma from 1e-14 to 1e-4, beta up to +-20 (or 0): the model
    quantizes, a channel whose scale changed is named in the warning, the others are those
    of the model without dead channels, bias codes fit int32, the dead channels' fake-quant
    outputs are their float outputs, and the integer program is within 1 LSB per layer."""
    beta = 0.0 if zero_beta else beta
    dead = {k: (10.0 ** log_gamma * (1 + 0.1 * i), beta * (1 - 0.2 * i))
            for i, k in enumerate(channels)}
    ref, _ = _quantize(_net(seed=seed))
    qm, messages = _quantize(_net(dead, seed=seed))
    fitted = fit_int_params(qm.graph["0"].weight, IntFormat(8, per_channel=True))
    changed = np.flatnonzero(qm.weight_params("0").scale != fitted.scale)
    assert set(changed) <= set(channels)
    if len(changed):
        assert len(messages) == 1 and messages[0].startswith("layer '0'")
        for k in changed:
            assert (f"channel {k}:" in messages[0] or f"[{k}," in messages[0]
                    or f", {k}," in messages[0] or f", {k}]" in messages[0]), messages
    else:
        assert messages == []
    _check_bias_codes(qm)
    healthy = np.array([k for k in range(K) if k not in channels])
    _check_unaffected(qm, ref, healthy)
    _check_float_output(qm, sorted(channels))
    _check_integer_program(qm)

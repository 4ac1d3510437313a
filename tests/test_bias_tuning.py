"""Bias tuning (quant.calibrate.bias_tuning) and the straight-through fake-quant forward it
trains through (quant.calibrate.ste)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import quant
from quant import IntFormat, QuantConfig, QuantError
from quant.calibrate import with_layer
from quant.calibrate import bias_tuning
from quant.calibrate.bias_tuning import tune_biases, tune_biases_with_report
from quant.calibrate.samples import held_out_samples
from quant.calibrate.ste import (bias_code_limit, bias_in_range, fake_quant_act, model_tensors,
                                 ste_forward)
from quant.model import initial_state
from tests._calib_nets import images, seeded_with_bn_stats

W4 = IntFormat(bits=4, signed=True, symmetric=True, per_channel=True)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6())
        self.pw = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10, bias=False)

    def forward(self, x):
        y = self.c1(x)
        y = self.pool(self.pw(self.dw(y)) + y)
        return self.fc(torch.flatten(y, 1))


def _model() -> nn.Module:
    return seeded_with_bn_stats(Net)


def _data(n: int = 16) -> torch.Tensor:
    return images(n)


@pytest.fixture(scope="module")
def state():
    return initial_state(_model(), QuantConfig(weight=W4), [_data()])


def test_ste_forward_equals_the_fake_quant_model(state):
    model, x = state.model(), _data()
    torch.testing.assert_close(ste_forward(model, x), model.forward(x), rtol=0, atol=0)


def test_ste_gradients_reach_every_bias(state):
    model, x = state.model(), _data(4)
    params = model_tensors(model)
    biases = {n: b.clone().requires_grad_(True) for n, (w, b) in params.items() if b is not None}
    for n, b in biases.items():
        params[n] = (params[n][0], b)
    ste_forward(model, x, params).square().sum().backward()
    for n, b in biases.items():
        assert b.grad is not None and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0, n


def test_fake_quant_act_gradient_is_zero_where_clamped(state):
    model = state.model()
    p = model.act_params("c1.0")
    lo, hi = (float(v) for v in p.representable_range())
    t = torch.tensor([lo - 1.0, 0.3 * hi, 0.9 * hi, hi + 1.0], requires_grad=True)
    fake_quant_act(t, p).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [0.0, 1.0, 1.0, 0.0])


def test_lowers_the_kl_and_changes_only_biases(state):
    x = _data()
    result = tune_biases_with_report(state, x, iters=40, lr=0.1, batch_size=8)
    report = result.report
    assert report.kept and report.kl_after < 0.95 * report.kl_before
    assert "fc" in report.skipped and "no bias" in report.skipped["fc"]
    before, after = state.model(), result.state.model()
    for name in ("c1.0", "dw.0", "pw", "fc"):
        np.testing.assert_array_equal(after.weight_codes(name), before.weight_codes(name))
        np.testing.assert_array_equal(after.weight_params(name).scale,
                                      before.weight_params(name).scale)
    changed = [n for n in report.layers
               if not np.array_equal(after.bias_codes(n), before.bias_codes(n))]
    assert changed
    assert result.state.act_params is state.act_params
    # the report's KL is the one of the returned model on the data
    f = torch.log_softmax(before.float_forward(x).double(), 1)
    q = torch.log_softmax(after.forward(x).double(), 1)
    kl = float((f.exp() * (f - q)).sum(1).mean())
    assert report.kl_after == pytest.approx(kl, rel=1e-9)
    # the held-out score is that of the returned model on the held-out samples as one batch
    held = held_out_samples(len(x), 0)
    q = torch.log_softmax(after.forward(x[held]).double(), 1)
    kl = float((f[held].exp() * (f[held] - q)).sum(1).mean())
    assert report.held_out_after == pytest.approx(kl, rel=1e-9)
    assert report.held_out_after < report.held_out_before


def test_deterministic_given_the_seed(state):
    x = _data()
    a, b, c = (tune_biases(state, x, iters=6, batch_size=4, seed=s) for s in (1, 1, 2))
    for name in ("c1.0", "dw.0", "pw"):
        np.testing.assert_array_equal(a.graph[name].bias, b.graph[name].bias)
    assert any(not np.array_equal(a.graph[n].bias, c.graph[n].bias) for n in ("c1.0", "pw"))


def test_reference_graph_is_the_target(state):
    """The default reference is the state's own graph; another graph changes the target."""
    x = _data()
    default = tune_biases_with_report(state, x, iters=4, batch_size=8).report
    same = tune_biases_with_report(state, x, iters=4, batch_size=8, reference=state.graph).report
    assert same.kl_before == default.kl_before and same.kl_after == default.kl_after
    scaled = with_layer(state.graph, "fc", weight=3 * state.graph["fc"].weight)
    other = tune_biases_with_report(state, x, iters=4, batch_size=8, reference=scaled).report
    assert other.kl_before > 2 * default.kl_before
    with pytest.raises(QuantError, match="'reference' parameter of tune_biases"):
        tune_biases(state, x, reference=scaled.records)



@pytest.mark.parametrize("kwargs, param", [
    ({"iters": 0}, "iters"),
    ({"lr": -1.0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": 1.5}, "seed"),
    ({"groups": [0, 1, 2]}, "groups"),
    ({"groups": 7}, "groups"),
])
def test_bad_arguments_name_the_parameter(state, kwargs, param):
    with pytest.raises(QuantError) as info:
        tune_biases(state, _data(4), **kwargs)
    assert f"'{param}' parameter of tune_biases" in str(info.value)
    assert "\n" not in str(info.value)


def test_groups_pick_the_held_out_samples(state):
    """Samples with one label are held out together; the held-out score is theirs."""
    x = _data()
    groups = [i // 4 for i in range(len(x))]  # 4 groups: one of them held out
    held = held_out_samples(len(x), 0, groups)
    assert len(held) == 4 and len({i // 4 for i in held.tolist()}) == 1
    report = tune_biases_with_report(state, x, iters=4, batch_size=4, groups=groups).report
    model = state.model()
    f = torch.log_softmax(model.float_forward(x[held]).double(), 1)
    q = torch.log_softmax(model.forward(x[held]).double(), 1)
    assert report.held_out_before == pytest.approx(float((f.exp() * (f - q)).sum(1).mean()),
                                                   rel=1e-5)


def test_tuned_bias_codes_stay_within_bias_bits():
    """Biases trained far out of range are stored at the limit code (13-bit biases here), and
    the clamped biases the training saw are exactly those of the returned state's model."""
    x = _data()
    st = initial_state(_model(), QuantConfig(weight=W4, bias_bits=13), [x])
    model = st.model()
    names = ["c1.0", "dw.0", "pw"]
    tuner = bias_tuning._BiasTuner(model, names, 13)
    with torch.no_grad():
        for d, sign in zip(tuner.deltas, (1.0, -1.0, 1.0)):
            d.fill_(sign * 1e6)
    tuned = st.replace(graph=tuner.graph(st.graph, tuner.biases())).model()
    trained, stored = tuner.params(), model_tensors(tuned)
    limit = bias_code_limit(13)
    for n in names:
        np.testing.assert_array_equal(np.abs(tuned.bias_codes(n)), limit)
        torch.testing.assert_close(trained[n][1], stored[n][1], rtol=0, atol=0)


def test_bias_codes_stay_in_range():
    limit = bias_code_limit(8)
    assert limit == 127 and bias_code_limit(32) == 2**31 - 1 - 511
    scale = np.array([0.5, 0.5, 2.0])
    b = bias_in_range(np.array([100.0, -70.0, 10.0]), scale, limit)
    assert b.dtype == np.float32
    np.testing.assert_array_equal(np.rint(b / scale), [127, -127, 5])
    # float32 cannot hold every int32 code: the margin keeps rint(float32 value) in range
    big = bias_in_range(np.array([3e9]), np.array([1.0]), bias_code_limit(32))
    assert np.rint(big.astype(np.float64))[0] <= 2**31 - 1


def test_no_integer_bias_means_nothing_to_tune():
    x = _data(4)
    cfg = QuantConfig(weight=quant.BinaryFormat())
    st = initial_state(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval(), cfg, [x])
    result = tune_biases_with_report(st, x, iters=2)
    assert result.state is st and result.report.layers == () and not result.report.kept
    assert "float bias" in next(iter(result.report.skipped.values()))


def test_a_diverging_loss_stops_training_and_is_reported(state, monkeypatch):
    """A NaN training loss from step 2 on: training stops at step 2, nothing is kept (no
    checkpoint was reached before it) and the report says so."""
    from quant.calibrate import bias_tuning

    real, calls = bias_tuning.kl_per_sample, {"n": 0}

    def nan_from_second_step(target, log_q):
        kl = real(target, log_q)
        if log_q.requires_grad:
            calls["n"] += 1
            if calls["n"] >= 2:
                return kl * float("nan")
        return kl

    monkeypatch.setattr(bias_tuning, "kl_per_sample", nan_from_second_step)
    result = tune_biases_with_report(state, _data(), iters=8)
    assert result.report.diverged_at == 2 and not result.report.kept
    assert result.state is state
    assert "loss diverged at step 2" in result.report.to_text()

"""AdaQuant (quant.calibrate.adaquant): layer output error against round-to-nearest, the fixed
weight parameters reproduce the optimized codes, what each mode feeds a layer, the held-out
decision (a worse layer is left alone), bias code range, the integer program within one LSB of
the fake-quant model, determinism, argument errors, and the patch sampler it relies on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import quant
from quant import APoTFormat, IntFormat, QuantConfig, QuantError
from quant.calibrate import layer_fit
from quant.calibrate.adaquant import adaquant, adaquant_with_report
from quant.calibrate.layer_fit import LayerProblem, layer_mse
from quant.calibrate.layer_rows import LayerRows
from quant.calibrate.samples import held_out_samples
from quant.calibrate.ste import bias_code_limit, fake_quant_act, model_tensors
from quant.execute import OP_TABLE
from quant.model import initial_state
from tests._calib_nets import images, seeded_with_bn_stats

W4 = IntFormat(bits=4, signed=True, symmetric=True, per_channel=True)


class Net(nn.Module):
    """conv-BN-ReLU6, depthwise-ReLU6, pointwise, residual add, global pool, linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6())
        self.pw = nn.Conv2d(8, 8, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.c1(x)
        y = self.pw(self.dw(y)) + y
        return self.fc(torch.flatten(self.gap(y), 1))


def _model() -> nn.Module:
    return seeded_with_bn_stats(Net)


def _data(n: int = 16) -> torch.Tensor:
    return images(n)


@pytest.fixture(scope="module")
def w4_state():
    x = _data()
    return initial_state(_model(), QuantConfig(weight=W4), [x]), x


@pytest.fixture(scope="module")
def w4_sequential(w4_state):
    state, x = w4_state
    return adaquant_with_report(state, x, iters=150, batch_size=256)


def _codes(model, name):
    return np.asarray(model.weight_codes(name), dtype=np.int64)


def test_lowers_layer_output_error_vs_round_to_nearest(w4_state, w4_sequential):
    state, _ = w4_state
    report = w4_sequential.report
    assert [r.name for r in report.layers] == [r.name for r in state.graph
                                               if r.op in ("conv2d", "linear")]
    for r in report.layers:  # kept exactly when the held-out error went down
        assert r.kept == (r.held_after < r.held_before)
    kept = [r for r in report.layers if r.kept]
    assert len(kept) >= 3
    before = sum(r.held_before for r in report.layers)
    after = sum(min(r.held_after, r.held_before) for r in report.layers)
    assert after < 0.8 * before
    assert sum(r.mse_after for r in kept) < 0.8 * sum(r.mse_before for r in kept)
    assert "held_ratio" in report.to_text() and f"{len(kept)} kept" in report.to_text()


def test_fixed_params_reproduce_the_optimized_codes(w4_state, w4_sequential):
    state, x = w4_state
    new = w4_sequential.state
    rtn, model = state.model(), new.model()  # builds: bias codes in range
    changed = 0
    for r in w4_sequential.report.layers:
        if not r.kept:
            assert r.name not in new.weight_params
            continue
        params = new.weight_params[r.name]
        assert model.weight_params(r.name) is params
        codes = _codes(model, r.name)
        # the graph's float weight is exactly the decoded codes, so encoding reproduces them
        decoded = params.dequantize(codes).astype(np.float32)
        np.testing.assert_array_equal(new.graph[r.name].weight, decoded)
        np.testing.assert_array_equal(params.quantize(new.graph[r.name].weight), codes)
        assert np.all(params.scale.astype(np.float32).astype(np.float64) == params.scale)
        changed += not np.array_equal(codes, _codes(rtn, r.name))
        assert np.all(np.abs(model.bias_codes(r.name)) < 2**31)
    assert changed >= 1
    # the fake-quant model of the new state is what the optimization produced
    tensors = model_tensors(model)
    for r in w4_sequential.report.layers:
        if r.kept:
            np.testing.assert_array_equal(tensors[r.name][0].numpy(), new.graph[r.name].weight)


def test_inputs_of_each_mode(w4_state, w4_sequential):
    """Sequential: the fake-quant model with the optimized earlier layers feeds a layer;
    parallel: the float model's input, fake-quantized with the producer's parameters.  The
    held-out error is the error on the held-out samples."""
    state, x = w4_state
    rtn = state.model()
    before = model_tensors(rtn)
    floats = rtn.run(x, mode="float")
    seq_fake = w4_sequential.state.model().run(x, mode="fake")
    par_result = adaquant_with_report(state, x, mode="parallel", iters=20, batch_size=256)
    par = par_result.report
    seq = {r.name: r for r in w4_sequential.report.layers}
    held = held_out_samples(len(x), 0)
    differ = 0
    for r in par.layers:
        rec = state.graph[r.name]
        src = rec.inputs[0]
        target = torch.from_numpy(floats[r.name])
        x_par = fake_quant_act(torch.from_numpy(floats[src]), rtn.act_params(src))
        x_seq = torch.from_numpy(seq_fake[src])
        assert r.mse_before == pytest.approx(layer_mse(rec, x_par, target, *before[r.name]),
                                             rel=1e-9)
        assert seq[r.name].mse_before == pytest.approx(
            layer_mse(rec, x_seq, target, *before[r.name]), rel=1e-9)
        assert seq[r.name].held_before == pytest.approx(
            layer_mse(rec, x_seq[held], target[held], *before[r.name]), rel=1e-5)
        differ += not torch.equal(x_par, x_seq)
    first = par.layers[0].name
    assert par.layers[0].mse_before == pytest.approx(seq[first].mse_before, rel=1e-12)
    assert differ >= 2  # after the first optimized layer the two inputs part ways
    last = par.layers[-1].name  # and so do the layers optimized on them
    assert not np.array_equal(par_result.state.graph[last].weight,
                              w4_sequential.state.graph[last].weight)


def test_a_layer_that_would_get_worse_is_left_alone(w4_state, monkeypatch):
    """Every optimized layer sabotaged (its weight negated): none is kept, the state is
    returned as it was, and the sequential pass feeds later layers the old ones."""
    state, x = w4_state
    real = layer_fit._Quantizer.final

    def worse(self):
        weight, bias, params = real(self)
        return -weight, bias, params

    monkeypatch.setattr(layer_fit._Quantizer, "final", worse)
    result = adaquant_with_report(state, x, iters=5, batch_size=64)
    assert not any(r.kept for r in result.report.layers)
    assert all(r.held_after > r.held_before for r in result.report.layers)
    for rec in state.graph:
        assert result.state.graph[rec.name] is rec
    assert dict(result.state.weight_params) == dict(state.weight_params)
    rtn = state.model()
    fake, floats, before = rtn.run(x), rtn.run(x, mode="float"), model_tensors(rtn)
    for r in result.report.layers:
        rec = state.graph[r.name]
        assert r.mse_before == pytest.approx(layer_mse(
            rec, torch.from_numpy(fake[rec.inputs[0]]), torch.from_numpy(floats[r.name]),
            *before[r.name]), rel=1e-9)


def test_a_diverging_layer_falls_back_and_is_reported(w4_state, monkeypatch):
    """A training loss that turns NaN at step 3 stops every layer's fit there and the report
    names the step; a layer keeps its round-to-nearest parameters unless a checkpoint before
    the NaN (or the start) beat them on the held-out samples."""
    state, x = w4_state
    real, calls = layer_fit._rows_loss, {"n": 0}

    def nan_after_two(*args):
        loss = real(*args)
        if not loss.requires_grad:  # a held-out score
            return loss
        calls["n"] += 1
        return loss * float("nan") if calls["n"] % 3 == 0 else loss

    monkeypatch.setattr(layer_fit, "_rows_loss", nan_after_two)
    result = adaquant_with_report(state, x, iters=6, batch_size=64)
    for r in result.report.layers:
        assert r.diverged_at == 3 and r.step < 3
        if r.kept:
            assert r.held_after < r.held_before and r.fallback == ""
        else:
            assert r.fallback.startswith("loss diverged (not finite) at step 3")
            assert result.state.graph[r.name] is state.graph[r.name]
    assert "diverged c1.0: loss not finite at step 3" in result.report.to_text()
    assert "held out: 4 of 16 samples" in result.report.to_text()


def test_calibration_data_with_nan_is_an_error(w4_state):
    state, x = w4_state
    bad = x.clone()
    bad[5, 0, 1, 1] = float("nan")
    with pytest.raises(quant.CalibrationError, match="adaquant: calibration sample 5 holds NaN"):
        adaquant(state, bad)


def test_integer_program_matches_fake_quant_within_one_lsb(w4_sequential):
    from hwsim.lower import lower
    from hwsim.verify import verify

    qm = w4_sequential.state.model()
    summary = verify(qm, lower(qm, requant="dyadic"), _data(6)).summary
    assert summary["max_lsb_diff_any_layer"] <= 1


def test_bias_codes_stay_within_the_limit(w4_state):
    """The optimized bias codes are clamped to the allowed range (int32 less a float32 margin
    by default: ``bias_code_limit``); with a limit of 2 codes the clamp binds."""
    state, x = w4_state
    model = state.model()
    rec = state.graph["pw"]
    s_x = float(model.act_params(rec.inputs[0]).scale)
    fake, floats = model.run(x), model.run(x, mode="float")
    assert np.abs(model.bias_codes("pw")).max() > 2
    for limit in (2, bias_code_limit(32)):
        prob = LayerProblem(rec, torch.from_numpy(fake[rec.inputs[0]]),
                            torch.from_numpy(floats["pw"]), model.weight_params("pw"), s_x,
                            limit, model_tensors(model)["pw"], held_out_samples(len(x), 0))
        fit = layer_fit.fit_layer(prob, iters=30, lr=0.05, batch_size=128,
                                  generator=torch.Generator().manual_seed(0))
        codes = np.rint(fit.bias.astype(np.float64) / (s_x * fit.params.scale))
        assert np.abs(codes).max() <= limit
        if limit == 2:
            assert np.abs(codes).max() == 2
        _, bias = fit.tensors(s_x)
        np.testing.assert_array_equal(bias.numpy(), (codes * s_x * fit.params.scale)
                                      .astype(np.float32))


def test_groups_are_held_out_together(w4_state):
    state, x = w4_state
    groups = [i // 2 for i in range(len(x))]
    held = held_out_samples(len(x), 0, groups)
    assert len(held) == 2 * (len(x) // 2 // 4)
    assert all(int(i) ^ 1 in held.tolist() for i in held)  # both copies of a pair
    report = adaquant_with_report(state, x, iters=10, batch_size=64, groups=groups).report
    rtn, floats = state.model(), state.model().run(x, mode="float")
    first = state.graph[report.layers[0].name]
    x_q = fake_quant_act(torch.from_numpy(floats[first.inputs[0]]),
                         rtn.act_params(first.inputs[0]))
    target = torch.from_numpy(floats[first.name])
    assert report.layers[0].held_before == pytest.approx(
        layer_mse(first, x_q[held], target[held], *model_tensors(rtn)[first.name]), rel=1e-5)
    assert held_out_samples(len(x), 0, ["a", "b", "c"] * 5 + ["d"]) is not None
    assert held_out_samples(len(x), 0, ["a", "b", "c"] * 5 + ["c"]) is None


def test_reference_graph_is_the_target(w4_state, w4_sequential):
    """After AdaQuant the state's graph holds decoded codes; with the float graph from before
    as the reference a second pass starts from the first pass's error, without it the target
    is the decoded-code layer."""
    state, x = w4_state
    kwargs = dict(iters=5, batch_size=256, layers=["c1.0"])
    again = adaquant_with_report(w4_sequential.state, x, reference=state.graph, **kwargs)
    done = w4_sequential.report.layers[0]
    assert done.name == "c1.0" and done.kept
    assert again.report.layers[0].held_before == pytest.approx(done.held_after, rel=1e-5)
    default = adaquant_with_report(w4_sequential.state, x, **kwargs)
    assert default.report.layers[0].held_before < 0.5 * done.held_after
    with pytest.raises(QuantError, match="'reference' parameter of adaquant"):
        adaquant(state, x, reference=state.graph.records)
    other = quant.capture(nn.Sequential(nn.Conv2d(3, 4, 3)), x[:1])
    with pytest.raises(QuantError, match="reference graph's records differ"):
        adaquant(state, x, reference=other)


@pytest.mark.parametrize("kwargs, param", [
    ({"mode": "both"}, "mode"),
    ({"iters": 0}, "iters"),
    ({"lr": 0.0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": -1}, "seed"),
    ({"layers": ["no.such.layer"]}, "layers"),
    ({"layers": "c1.0"}, "layers"),
    ({"groups": [0, 1]}, "groups"),
    ({"groups": "abcdefghijklmnop"}, "groups"),
    ({"groups": [[i] for i in range(16)]}, "groups"),
    ({"reference": "graph"}, "reference"),
])
def test_bad_arguments_name_the_parameter(w4_state, kwargs, param):
    state, x = w4_state
    with pytest.raises(QuantError) as info:
        adaquant(state, x, **kwargs)
    message = str(info.value)
    assert f"'{param}' parameter of adaquant" in message and "\n" not in message


def test_tiny_data_linear_layer():
    """One sample: nothing can be held out, every output position trains and scores."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    x = torch.randn(1, 12)
    state = initial_state(net, QuantConfig(weight=W4), [x])
    result = adaquant_with_report(state, x, iters=30)
    assert "output positions" in result.report.held_out
    assert len(result.report.layers) == 2
    assert all(np.isfinite(r.mse_after) for r in result.report.layers)
    result.state.model().forward(x)


def test_bad_state_and_data():
    with pytest.raises(QuantError, match="'state' parameter of adaquant"):
        adaquant("state", _data())
    state = initial_state(_model(), QuantConfig(weight=W4), [_data(4)])
    with pytest.raises(quant.CalibrationError, match="empty"):
        adaquant(state, [])


@pytest.mark.parametrize("conv", [
    nn.Conv2d(6, 8, 3, 2, 1),
    nn.Conv2d(6, 6, 3, 1, 1, groups=6),
    nn.Conv2d(6, 12, 3, 1, 1, groups=6),
    nn.Conv2d(6, 4, 1, stride=2),
    nn.Conv2d(6, 8, (3, 2), (2, 1), (1, 0), dilation=(1, 2), groups=2),
    "asymmetric padding",
])
def test_sampled_rows_equal_the_convolution(conv):
    torch.manual_seed(0)
    asymmetric = conv == "asymmetric padding"
    conv = nn.Conv2d(6, 4, 2) if asymmetric else conv
    graph = quant.capture(nn.Sequential(conv), torch.zeros(1, 6, 9, 10))
    rec = graph[graph.names("conv2d")[0]]
    if asymmetric:  # (top, left, bottom, right), as a captured "same" conv of even size has
        rec = dataclasses.replace(rec, attrs={**rec.attrs, "padding": (1, 0, 0, 1)})
    x = torch.randn(3, 6, 9, 10)
    w = torch.from_numpy(rec.weight)
    y = OP_TABLE["conv2d"](rec, [x], w, None)
    rows = LayerRows(rec, x)
    idx = torch.randperm(rows.n_rows, generator=torch.Generator().manual_seed(0))[:40]
    got = rows.product(rows.patches(idx), rows.weight_matrix(w))
    torch.testing.assert_close(got, rows.output_rows(y)[:, idx], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_mobilenet_w4a8_adaquant_beats_round_to_nearest_and_lowers_exactly():
    """MobileNetV2 (real weights, 64×64 images to keep it short), int4 weights with the first
    and last layers at int8: AdaQuant's fake-quant logits are much closer to the float ones
    than round-to-nearest's, and the integer program of the calibrated model stays within one
    output code of the fake-quant model at every layer."""
    from hwsim.lower import lower
    from hwsim.verify import verify
    from hwsim.zoo import mobilenet_v2, sample_images

    model = mobilenet_v2().eval()
    calib, ev = sample_images("calib", size=64), sample_images("eval", size=64)[:20]
    names = [r.name for r in quant.capture(model, calib[:1]) if r.op in ("conv2d", "linear")]
    int8 = IntFormat(bits=8, signed=True, symmetric=True, per_channel=True)
    cfg = QuantConfig(weight=W4, layer_weight={names[0]: int8, names[-1]: int8})
    rtn = initial_state(model, cfg, [calib])
    tuned = adaquant(rtn, calib, iters=40, groups=[i // 2 for i in range(len(calib))])
    with torch.no_grad():
        ref = model(ev).double()

    def sqnr(state):
        out = state.model().forward(ev).double()
        return 10 * np.log10(float((ref ** 2).sum()) / float(((out - ref) ** 2).sum()))

    assert sqnr(tuned) > sqnr(rtn) + 3.0
    qm = tuned.model()
    summary = verify(qm, lower(qm, requant="dyadic"), ev[:4]).summary
    assert summary["max_lsb_diff_any_layer"] <= 1


# ---- group-wise (GroupIntFormat) weights -------------------------------------------------------
G4 = quant.GroupIntFormat(bits=4, group_size=32)


def _mlp_data(n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 64, generator=g)


@pytest.fixture(scope="module")
def group_state():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 32)).eval()
    x = _mlp_data()
    return initial_state(net, QuantConfig(weight=G4), [x]), x


@pytest.fixture(scope="module")
def group_sequential(group_state):
    state, x = group_state
    return adaquant_with_report(state, x, iters=150, batch_size=128)


def test_group_layers_lower_held_out_error_vs_round_to_nearest(group_state, group_sequential):
    state, _ = group_state
    report = group_sequential.report
    assert [r.name for r in report.layers] == [r.name for r in state.graph if r.op == "linear"]
    assert not report.skipped
    for r in report.layers:
        assert r.kept == (r.held_after < r.held_before)
    assert all(r.kept for r in report.layers)
    assert sum(r.held_after for r in report.layers) < 0.95 * sum(r.held_before
                                                                 for r in report.layers)


def test_group_fixed_params_reproduce_the_optimized_codes(group_state, group_sequential):
    state, _ = group_state
    new = group_sequential.state
    rtn, model = state.model(), new.model()
    changed = 0
    for r in group_sequential.report.layers:
        params = new.weight_params[r.name]
        assert isinstance(params, quant.GroupParams) and params.fmt == G4
        assert model.weight_params(r.name) is params
        assert params.scale.shape == (new.graph[r.name].weight.shape[0],
                                      new.graph[r.name].weight.shape[1] // 32)
        assert np.all(params.scale.astype(np.float32).astype(np.float64) == params.scale)
        codes = _codes(model, r.name)
        decoded = params.dequantize(codes).astype(np.float32)
        np.testing.assert_array_equal(new.graph[r.name].weight, decoded)
        np.testing.assert_array_equal(params.quantize(new.graph[r.name].weight), codes)
        changed += not np.array_equal(codes, _codes(rtn, r.name))
        assert model.bias_codes(r.name) is None  # the group format keeps a float bias
    assert changed >= 1
    tensors = model_tensors(model)
    for r in group_sequential.report.layers:
        np.testing.assert_array_equal(tensors[r.name][0].numpy(), new.graph[r.name].weight)
        np.testing.assert_array_equal(tensors[r.name][1].numpy(), new.graph[r.name].bias)


def test_group_integer_program_matches_fake_quant_within_one_lsb(group_sequential):
    from hwsim.lower import lower
    from hwsim.verify import verify

    qm = group_sequential.state.model()
    summary = verify(qm, lower(qm, requant="dyadic"), _mlp_data(8)).summary
    assert summary["max_lsb_diff_any_layer"] <= 1


def test_batches_of_different_lengths_are_walked_one_by_one(group_state):
    """Batches are run through the model separately (a token-sequence model has no batch
    axis) and may differ in length; for a per-sample model that equals the stacked data."""
    state, x = group_state
    whole = adaquant_with_report(state, x, iters=20, batch_size=64)
    parts = adaquant_with_report(state, [x[:20], x[20:]], iters=20, batch_size=64)
    assert parts.report.held_out == whole.report.held_out == "16 of 64 samples"
    for a, b in zip(whole.report.layers, parts.report.layers):
        assert a.name == b.name and a.kept == b.kept
        assert a.mse_before == pytest.approx(b.mse_before, rel=1e-4)
        assert a.mse_after == pytest.approx(b.mse_after, rel=1e-3)

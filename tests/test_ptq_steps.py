"""Cross-layer equalization, bias correction and BN re-estimation as calibration steps."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import quant
from quant.calibrate.bias_correction import correct_biases, sequential_pass
from quant.calibrate.bn_reestimate import reestimate_bn
from quant.calibrate.equalize import equalize, equalize_with_report
from quant.execute import float_params, run_graph
from quant.model import initial_state

W4 = quant.IntFormat(bits=4, signed=True, symmetric=True, per_channel=True)


def _net(act=nn.ReLU, seed: int = 0) -> nn.Module:
    """conv+BN -> grouped conv+BN -> depthwise (multiplier 2)+BN -> maxpool -> 1x1 conv+BN
    -> avgpool -> flatten (2x2 spatial) -> linear; BN gains spread over ~e^±2 per channel."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), act(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), act(),
        nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.BatchNorm2d(16), act(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8), act(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.exp(torch.randn(c)))
                m.bias.copy_(0.3 * torch.randn(c))
                m.running_mean.copy_(0.1 * torch.randn(c))
                m.running_var.copy_(torch.rand(c) + 0.5)
    return net.eval()


def _data(seed: int, n: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g)


def _float_out(graph, x):
    return run_graph(graph, x, float_params(graph), keep=False)[graph.output_name]


def _ranges(w: np.ndarray) -> np.ndarray:
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1)


# ---- equalization ---------------------------------------------------------------------------
def test_equalize_keeps_float_function_and_evens_channel_ranges():
    net, x = _net(), _data(1)
    graph = quant.capture(net, x[:1])
    result = equalize_with_report(graph)
    eq = result.graph
    pairs = [(p.first, p.second, p.via) for p in result.report.pairs]
    assert pairs == [("0", "3", ()), ("3", "6", ()), ("6", "10", ("9",)),
                     ("10", "15", ("13", "14"))]
    assert result.report.converged and not result.report.float_model_changed
    ref, out = _float_out(graph, x), _float_out(eq, x)
    # float32 tolerance: rescaled weights round at 2^-24 relative, a few ops deep
    assert float((out - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    # equalized: the first layer's per-channel ranges are far less spread than before
    first = graph.names("conv2d")[0]
    spread = lambda w: _ranges(w).max() / _ranges(w).min()  # noqa: E731
    assert spread(eq[first].weight) < spread(graph[first].weight) / 2
    # and at convergence r1_i == r2_i for the pair first -> grouped conv (input channel view)
    w2 = eq[graph.names("conv2d")[1]].weight  # (8, 4, 3, 3), 2 groups
    r2 = np.abs(w2.reshape(2, 4, 4, 9)).max(axis=(1, 3)).reshape(8)
    np.testing.assert_allclose(_ranges(eq[first].weight), r2, rtol=1e-4)
    assert graph[first].weight is not eq[first].weight  # the input graph is untouched


def test_equalize_pairs_through_flatten_with_spatial_positions():
    net, x = _net(), _data(2)
    graph = quant.capture(net, x[:1])
    report = equalize_with_report(graph).report
    last = [p for p in report.pairs if graph[p.second].op == "linear"]
    assert len(last) == 1 and graph[last[0].first].op == "conv2d"
    assert [graph[v].op for v in last[0].via] == ["avgpool2d", "flatten"]
    assert last[0].scale_min != last[0].scale_max  # really rescaled


def test_relu6_pairs_are_skipped_by_default():
    net, x = _net(nn.ReLU6), _data(3)
    graph = quant.capture(net, x[:1])
    result = equalize_with_report(graph)
    assert result.report.pairs == ()
    assert any("does not commute" in reason for _, reason in result.report.skipped)
    for rec in graph:
        if rec.weight is not None:
            assert result.graph[rec.name].weight is rec.weight
    torch.testing.assert_close(_float_out(result.graph, x), _float_out(graph, x), rtol=0, atol=0)


def test_relu6_replacement_is_reported_and_logged(caplog):
    net, x = _net(nn.ReLU6), _data(3)
    graph = quant.capture(net, x[:1])
    with caplog.at_level(logging.WARNING, logger="quant.calibrate.equalize"):
        eq = equalize(graph, relu6="relu")
    assert "changed the float model" in caplog.text
    report = equalize_with_report(graph, relu6="relu").report
    assert report.float_model_changed and len(report.relu6_replaced) == 4
    assert "FLOAT MODEL CHANGED" in report.summary()
    assert all(eq[n].activation == (0.0, float("inf")) for n in report.relu6_replaced)
    # equal to equalizing the same net built with ReLU (the float model that was changed to)
    relu_graph = quant.capture(_net(nn.ReLU), x[:1])
    torch.testing.assert_close(_float_out(eq, x), _float_out(relu_graph, x), rtol=1e-4, atol=1e-4)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(4, 4, 1)
        self.c = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        return self.c(torch.relu(self.b(y)) + y)


def test_residual_branches_are_not_equalized():
    x = _data(4)
    torch.manual_seed(0)
    graph = quant.capture(_Residual().eval(), x[:1])
    report = equalize_with_report(graph).report
    assert [(p.first, p.second) for p in report.pairs] == []
    reasons = dict(report.skipped)
    assert "2 consumers" in reasons["a"] and "feeds a add" in reasons["b"]


def test_equalize_rejects_bad_options():
    graph = quant.capture(_net(), _data(0)[:1])
    with pytest.raises(quant.QuantError, match="'relu6' parameter of equalize"):
        equalize(graph, relu6="maybe")
    with pytest.raises(quant.QuantError, match="'iterations' parameter"):
        equalize(graph, iterations=0)
    with pytest.raises(quant.QuantError, match="expects a LayerGraph"):
        equalize("graph")


# ---- bias correction and BN re-estimation ---------------------------------------------------
def _state(weight=W4, layer_weight=None, seed=0):
    net, x = _net(seed=seed), _data(10)
    cfg = quant.QuantConfig(weight=weight, layer_weight=layer_weight or {})
    return net, x, initial_state(net, cfg, [x[:24], x[24:]])


def _preact(qm, reference, name, x):
    """(fake-quant, float) outputs of layer ``name`` before its clamp, from public accessors:
    the fake-quant layer on its fake-quant input; the reference float layer on its float input."""
    rec = qm.graph[name]
    fake = qm.run(x, "fake")[rec.inputs[0]]
    flo = run_graph(reference, x, float_params(reference))[rec.inputs[0]]
    p = qm.weight_params(name)
    w_q = qm.weight_entry(name).decode(p, qm.weight_codes(name)).astype(np.float32)
    s_x = float(qm.act_params(rec.inputs[0]).scale)
    step = s_x * np.asarray(qm.weight_entry(name).code_scale(p), dtype=np.float64)
    b_q = (qm.bias_codes(name) * step).astype(np.float32)
    ref = reference[name]

    def layer(inp, w, b):
        inp, w, b = torch.as_tensor(inp), torch.from_numpy(w), torch.from_numpy(b)
        if rec.op == "linear":
            return F.linear(inp, w, b)
        return F.conv2d(inp, w, b, padding=rec.attrs["padding"][:2], groups=rec.attrs["groups"])

    return layer(fake, w_q, b_q), layer(flo, ref.weight, ref.bias), np.broadcast_to(step, b_q.shape)


def _channel_moments(y):
    dims = [0, 2, 3] if y.dim() == 4 else [0]
    v, m = torch.var_mean(y.double(), dim=dims, correction=0)
    return m.numpy(), v.sqrt().numpy()


def _sqnr(out, ref):
    return 10 * np.log10(float((ref.double() ** 2).sum() / ((out - ref).double() ** 2).sum()))


def test_bias_correction_zeroes_the_mean_error_and_helps_held_out_data():
    # seed 1: the net's 4-bit error is mostly a mean shift (with seed 0 it is not, and matching
    # pre-activation means through ReLUs leaves the output SQNR about where it was)
    net, x, state = _state(seed=1)
    corrected = correct_biases(state, x)
    qm = corrected.model()
    weighted = [r.name for r in state.graph if r.op in ("conv2d", "linear")]
    before = []
    for name in weighted:
        y_q, y_f, step = _preact(state.model(), state.graph, name, x)
        before.append(np.abs(_channel_moments(y_q)[0] - _channel_moments(y_f)[0]).max())
        y_q, y_f, step = _preact(qm, state.graph, name, x)
        err = _channel_moments(y_q)[0] - _channel_moments(y_f)[0]
        # what is left: the rounding of the new bias to its code grid (half a step)
        assert np.all(np.abs(err) <= 0.5 * step + 1e-5), name
    assert max(before) > 10 * max(0.5 * step.max(), 1e-5)  # there was something to correct
    # weights, ranges and weight codes untouched; biases moved
    for name in weighted:
        assert corrected.graph[name].weight is state.graph[name].weight
        np.testing.assert_array_equal(qm.weight_codes(name), state.model().weight_codes(name))
    assert corrected.act_params is state.act_params
    held_out = _data(99)
    with torch.no_grad():
        ref = net(held_out)
    gain = _sqnr(qm.forward(held_out), ref) - _sqnr(state.model().forward(held_out), ref)
    assert gain > 3.0  # measured about 9.5 dB at 4 bits on this net


def test_bn_reestimation_matches_mean_and_std_and_keeps_codes():
    net, x, state = _state()
    new = reestimate_bn(state, x)
    old_qm, qm = state.model(), new.model()
    scales_changed = 0
    for name in [r.name for r in state.graph if r.op in ("conv2d", "linear")]:
        np.testing.assert_array_equal(qm.weight_codes(name), old_qm.weight_codes(name))
        ratio = qm.weight_params(name).scale / old_qm.weight_params(name).scale
        scales_changed += int(np.any(np.abs(ratio - 1) > 1e-3))
        y_q, y_f, step = _preact(qm, state.graph, name, x)
        (m_q, s_q), (m_f, s_f) = _channel_moments(y_q), _channel_moments(y_f)
        np.testing.assert_allclose(s_q, s_f, rtol=1e-4, atol=1e-6, err_msg=name)
        assert np.all(np.abs(m_q - m_f) <= 0.5 * step + 1e-5), name
    assert scales_changed == 5
    assert new.act_params is state.act_params


def test_bn_reestimation_of_a_per_tensor_layer_corrects_the_mean_only():
    per_tensor = quant.IntFormat(bits=4, signed=True, symmetric=True, per_channel=False)
    _, x, state = _state(layer_weight={"3": per_tensor})
    new = reestimate_bn(state, x)
    assert "3" not in new.weight_params and "0" in new.weight_params
    assert new.graph["3"].weight is state.graph["3"].weight
    y_q, y_f, step = _preact(new.model(), state.graph, "3", x)
    assert np.all(np.abs(_channel_moments(y_q)[0] - _channel_moments(y_f)[0]) <= 0.5 * step + 1e-5)


def test_chained_steps_take_the_original_graph_as_reference():
    _, x, state = _state()
    bc = correct_biases(state, x)
    both = reestimate_bn(bc, x, reference=state.graph)
    y_q, y_f, _ = _preact(both.model(), state.graph, "15", x)
    np.testing.assert_allclose(_channel_moments(y_q)[1], _channel_moments(y_f)[1], rtol=1e-4)


def test_the_pass_sees_what_the_fake_quant_model_computes():
    _, x, state = _state()
    seen = {}

    def record(layer, stats):
        seen[layer.record.name] = stats
        return None

    out = sequential_pass(state, [x[:20], x[20:]], record)
    assert out.graph is state.graph
    qm = state.model()
    for name, stats in seen.items():
        y_q, y_f, _ = _preact(qm, state.graph, name, x)
        for got, want in zip((stats.quant_mean, stats.quant_std, stats.float_mean,
                              stats.float_std), (*_channel_moments(y_q), *_channel_moments(y_f))):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("step", [correct_biases, reestimate_bn])
def test_steps_are_deterministic(step):
    _, x, state = _state()
    a, b = step(state, [x[:20], x[20:]]), step(state, [x[:20], x[20:]])
    for rec in a.graph:
        if rec.weight is not None:
            np.testing.assert_array_equal(rec.weight, b.graph[rec.name].weight)
            np.testing.assert_array_equal(rec.bias, b.graph[rec.name].bias)
    assert a.weight_params.keys() == b.weight_params.keys()
    for name, p in a.weight_params.items():
        np.testing.assert_array_equal(p.scale, b.weight_params[name].scale)
    graph = quant.capture(_net(), x[:1])
    e1, e2 = equalize(graph), equalize(graph)
    for rec in e1:
        if rec.weight is not None:
            np.testing.assert_array_equal(rec.weight, e2[rec.name].weight)


@pytest.mark.parametrize("step", [correct_biases, reestimate_bn])
def test_bad_data_is_one_clear_error(step):
    _, x, state = _state()
    with pytest.raises(quant.CalibrationError, match=r"^\w+: data is empty; pass at least one"):
        step(state, [])
    with pytest.raises(quant.CalibrationError, match="batch 1 is a list"):
        step(state, [x, [1, 2]])
    with pytest.raises(quant.QuantError, match="does not match the captured input shape"):
        step(state, torch.zeros(2, 3, 9, 9))
    other = quant.capture(_Residual().eval(), _data(4)[:1])
    with pytest.raises(quant.QuantError, match="reference graph's records differ"):
        step(state, x, reference=other)
    with pytest.raises(quant.QuantError, match="expected a CalibrationState"):
        step(state.graph, x)


def test_bias_outside_the_code_range_is_an_error():
    # data far outside the calibration range: the activations clip in the quantized model, the
    # float model's do not, and the corrected bias no longer fits 16-bit codes
    net, x = _net(), _data(10)
    state = initial_state(net, quant.QuantConfig(weight=W4, bias_bits=16), [x])
    with pytest.raises(quant.QuantError, match=r"^correct_biases: layer '3': bias codes reach"):
        correct_biases(state, x * 100)


@pytest.mark.slow
def test_bias_correction_rescues_mobilenet_v2_at_4_bits():
    """Real weights: 4-bit per-channel weights (first and last layers 8-bit), 8-bit
    activations; bias correction on the 28 calibration images, SQNR on the 50 held-out ones."""
    from hwsim.zoo import mobilenet_v2
    from hwsim.zoo.images import sample_images

    model = mobilenet_v2().eval()
    calib, ev = sample_images("calib"), sample_images("eval")
    weighted = [r.name for r in quant.capture(model, calib[:1])
                if r.op in ("conv2d", "linear")]
    w8 = quant.IntFormat(bits=8, signed=True, symmetric=True, per_channel=True)
    cfg = quant.QuantConfig(weight=W4, layer_weight={weighted[0]: w8, weighted[-1]: w8})
    state = initial_state(model, cfg, [calib[:14], calib[14:]])
    corrected = correct_biases(state, calib)
    with torch.no_grad():
        ref = model(ev)
    before = _sqnr(state.model().forward(ev), ref)
    after = _sqnr(corrected.model().forward(ev), ref)
    assert after > before + 3.0  # measured 0.4 dB -> 5.1 dB

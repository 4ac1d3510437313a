"""quant.sensitivity: Hutchinson / Fisher / empirical Fisher / measured sensitivity tables."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quant.allocate import Option
from quant.capture import capture
from quant.errors import QuantError
from quant.formats import (FormatEntry, IntFormat, fit_int_params, register_format,
                           straight_through, unregister_format)
from quant.model import QuantConfig, quantize
from quant.sensitivity import SensitivityTable, sensitivity_table
from quant.sensitivity.graphrun import as_data, graph_params, resolve_loss, targets
from quant.sensitivity.hutchinson import hutchinson_traces


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5)).eval()


def cnn_data(n_batches: int = 3, n: int = 8, labels: bool = False, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, 2, 6, 6, generator=g) for _ in range(n_batches)]
    if not labels:
        return xs
    return [(x, torch.randint(0, 5, (n,), generator=g)) for x in xs]


INT_LADDER = [Option(8, 8), Option(6, 8), Option(4, 8), Option(3, 8), Option(2, 8)]


# ---- Hutchinson -------------------------------------------------------------------------------
def test_hutchinson_trace_matches_dense_hessian():
    """E[vᵀHv] = Tr(H) for Rademacher v, variance 2(||H||_F² − Σ H_ii²) per probe: with
    blockwise probes (rule: stderr <= 3 % of the mean, or 1500 probes) every estimate is within
    4 stderr and 10 % of the trace of the dense Hessian block
    (torch.autograd.functional.hessian), in float64.  Weights converge; the input activation's
    block (small trace, large off-diagonal) runs to the probe cap."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 3)).eval()
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(4))
    data = as_data([(x, y)])
    graph = capture(mlp, x[:1])
    layers = [r.name for r in graph if r.op == "linear"]
    _, loss_fn = resolve_loss(None, True)
    est = hutchinson_traces(graph, data, [y], loss_fn, layers, [graph.input_name], seed=0,
                            tol=0.03, min_probes=16, max_probes=1500, probe_block=100,
                            blockwise=True, dtype=torch.float64)
    params = graph_params(graph, torch.float64)
    from quant.sensitivity.graphrun import graph_forward

    exact = []
    for name in layers:
        w0, b = params[name]

        def loss_of_w(w, name=name, b=b):
            return loss_fn(graph_forward(graph, x.double(), {**params, name: (w, b)}), y).mean()

        exact.append(float(torch.autograd.functional.hessian(loss_of_w, w0)
                           .reshape(w0.numel(), w0.numel()).trace()))

    def loss_of_x(tap):
        return loss_fn(graph_forward(graph, x.double(), params, {graph.input_name: tap}), y).mean()

    h_x = torch.autograd.functional.hessian(loss_of_x, torch.zeros(10, 4, dtype=torch.float64))
    exact_x = float(h_x.reshape(40, 40).trace())
    got = list(est["weight_trace"]) + list(est["act_trace"])
    se = list(est["weight_stderr"]) + list(est["act_stderr"])
    for g_, s_, e_ in zip(got, se, exact + [exact_x]):
        assert abs(g_ - e_) <= 4 * s_ + 1e-12
        assert abs(g_ - e_) <= 0.1 * abs(e_)
    assert all(est["converged"][:2]) and est["probes"][2] == 1500


def test_hutchinson_table_terms_and_stopping_details():
    data = cnn_data()
    t = sensitivity_table(small_cnn(), INT_LADDER, data, method="hutchinson", max_probes=16)
    d = t.details
    assert t.layer_names == ("0", "3") and t.omega.shape == (2, 5)
    assert d["probing"] == "joint" and list(d["weight_probes"]) == [16, 16]
    assert len(d["weight_trace_stderr"]) == 2 and "stderr <=" in d["stopping_rule"]
    # Ω = Tr/n · ||ΔW||² + Tr(H_x) · σ²
    graph = capture(small_cnn(), data[0][:1])
    for l, name in enumerate(t.layer_names):
        w = graph[name].weight.astype(np.float64)
        dw = fit_int_params(w, IntFormat(4, per_channel=True)).fake_quantize(w) - w
        expect_w = d["weight_trace"][l] / w.size * np.sum(dw ** 2)
        np.testing.assert_allclose(d["weight_term"][l][2], expect_w, rtol=1e-10)
        np.testing.assert_allclose(d["act_term"][l][2],
                                   d["act_trace"][l] * d["act_noise_power"][l][2], rtol=1e-10)
    np.testing.assert_allclose(t.omega, np.asarray(d["weight_term"]) + np.asarray(d["act_term"]))
    # seeded: the same call gives the same table
    again = sensitivity_table(small_cnn(), INT_LADDER, data, method="hutchinson", max_probes=16)
    np.testing.assert_array_equal(t.omega, again.omega)


@pytest.mark.parametrize("method", ["hutchinson", "fisher", "empirical_fisher"])
def test_fewer_bits_larger_omega(method):
    opts = INT_LADDER + [Option(8, 4), Option(8, 2)]
    # no labels: KL(float ‖ model) (hutchinson: its Hessian at the float weights is the PSD
    # Gauss-Newton matrix, so traces are > 0) and argmax labels (empirical_fisher)
    kw = {"max_probes": 8} if method == "hutchinson" else {}
    t = sensitivity_table(small_cnn(), opts, cnn_data(), method=method, **kw)
    w = np.asarray(t.details["weight_term"])
    a = np.asarray(t.details["act_term"])
    assert np.all(np.diff(w[:, :5], axis=1) > 0), w  # w8 > w6 > w4 > w3 > w2 bits
    assert np.all(np.diff(t.omega[:, :5], axis=1) > 0)
    assert np.all(a[:, 0] < a[:, 5]) and np.all(a[:, 5] < a[:, 6])  # a8 < a4 < a2
    assert np.all(np.isfinite(t.omega)) and np.all(t.omega > 0)


# ---- Fisher -----------------------------------------------------------------------------------
def _per_sample_loop(model, xs, labels):
    """Explicit Python loop: mean over samples of squared per-sample gradients of the NLL, for
    both weights and the model input; plus the squared batch-averaged gradient."""
    weights = [model[0].weight, model[3].weight]
    f_w = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
    f_x, mean_g, n = 0.0, [torch.zeros_like(w, dtype=torch.float64) for w in weights], 0
    for x, y in zip(xs, labels):
        for i in range(x.shape[0]):
            xi = x[i:i + 1].clone().requires_grad_(True)
            loss = F.cross_entropy(model(xi), y[i:i + 1])
            grads = torch.autograd.grad(loss, weights + [xi])
            for j, g in enumerate(grads[:2]):
                f_w[j] += g.double() ** 2
                mean_g[j] += g.double()
            f_x += float((grads[2].double() ** 2).sum())
            n += 1
    return ([f / n for f in f_w], f_x / n, [(m / n) ** 2 for m in mean_g])


@pytest.mark.parametrize("method", ["fisher", "empirical_fisher"])
def test_fisher_is_per_sample(method):
    model = small_cnn()
    data = cnn_data(labels=(method == "empirical_fisher"))
    t = sensitivity_table(model, [Option(4, 8)], data, method=method)
    xs = [b[0] if isinstance(b, tuple) else b for b in data]
    labels = [torch.tensor(v) for v in t.details["label_values"]]
    if method == "empirical_fisher":
        assert t.details["labels"] == "observed"
        assert all(torch.equal(lab, b[1]) for lab, b in zip(labels, data))
    else:
        assert t.details["labels"] == "sampled"
        again = sensitivity_table(model, [Option(4, 8)], data, method=method, seed=1)
        assert again.details["label_values"] != t.details["label_values"]  # the seed samples
    f_w, f_x, batch_avg = _per_sample_loop(model, xs, labels)
    for l, w in enumerate([model[0].weight, model[3].weight]):
        w64 = w.detach().double().numpy()
        dw2 = (fit_int_params(w64, IntFormat(4, per_channel=True)).fake_quantize(w64) - w64) ** 2
        loop_term = 0.5 * float(np.sum(f_w[l].numpy() * dw2))
        np.testing.assert_allclose(t.details["weight_term"][l][0], loop_term, rtol=1e-5)
        np.testing.assert_allclose(t.details["fisher_trace"][l], float(f_w[l].sum()), rtol=1e-5)
        wrong = 0.5 * float(np.sum(batch_avg[l].numpy() * dw2))
        assert abs(wrong - loop_term) > 0.2 * loop_term  # the batch-averaged version differs
    assert t.details["act_source"][0] == capture(model, xs[0][:1]).input_name
    np.testing.assert_allclose(t.details["act_fisher_trace"][0], f_x, rtol=1e-5)


# ---- measured ---------------------------------------------------------------------------------
def test_measured_uses_heldout_split_only():
    model, data = small_cnn(), cnn_data(n_batches=4)
    opts = [Option(8, 8), Option(3, 8), Option(8, 3)]
    t = sensitivity_table(model, opts, data, method="measured", holdout_fraction=0.25, seed=5)
    d = t.details
    calib_idx, hold_idx = np.asarray(d["calibration_indices"]), np.asarray(d["holdout_indices"])
    assert d["n_holdout"] == 8 and d["n_calibration"] == 24
    assert not set(calib_idx) & set(hold_idx)
    assert sorted(set(calib_idx) | set(hold_idx)) == list(range(32))
    x_all = torch.cat(data)
    calib = [x_all[torch.from_numpy(calib_idx)][i:i + 8] for i in range(0, 24, 8)]
    hold = x_all[torch.from_numpy(hold_idx)]

    def kl_on_holdout(qm):
        p = F.log_softmax(qm.float_forward(hold), dim=1)
        q = F.log_softmax(qm.forward(hold), dim=1)
        return float((p.exp() * (p - q)).sum(dim=1).double().mean())

    base = quantize(model, QuantConfig(), calib)
    assert d["base_loss"] == pytest.approx(kl_on_holdout(base), rel=1e-6)
    # one entry equals quant.quantize with only that layer switched
    cfg = QuantConfig(layer_weight={"3": IntFormat(3, per_channel=True)})
    switched = kl_on_holdout(quantize(model, cfg, calib))
    l3 = t.layer_names.index("3")
    assert t.omega[l3, 1] == pytest.approx(switched - d["base_loss"], rel=1e-6)
    # activation switch: the layer's input record's output format
    src = d["act_source"][l3]
    cfg = QuantConfig(layer_activation={src: IntFormat(3, signed=False, symmetric=False)})
    assert t.omega[l3, 2] == pytest.approx(kl_on_holdout(quantize(model, cfg, calib))
                                           - d["base_loss"], rel=1e-6)
    assert np.all(t.omega[:, 0] == 0.0)  # the base option itself


def test_measured_negative_delta_is_kept():
    """Base W3: switching one layer to W8 brings the model closer to float, so ΔL < 0."""
    base = QuantConfig(weight=IntFormat(3, per_channel=True))
    t = sensitivity_table(small_cnn(), [Option(8, 8), Option(3, 8)], cnn_data(), method="measured",
                          config=base)
    assert np.all(t.omega[:, 0] < 0), t.omega
    raw = np.asarray(t.details["layer_loss"]) - t.details["base_loss"]
    np.testing.assert_array_equal(t.omega, raw)


# ---- formats through the registry -------------------------------------------------------------
@dataclass(frozen=True)
class _ToyFormat:
    """A power-of-two-scale uniform format registered only in this test."""

    bits: int = 4


@dataclass(frozen=True, eq=False)
class _ToyParams:
    scale: float
    fmt: _ToyFormat


def _toy_fit(x, fmt):
    q = 2 ** (fmt.bits - 1) - 1
    return _ToyParams(2.0 ** np.ceil(np.log2(max(np.abs(x).max(), 1e-12) / q)), fmt)


@pytest.fixture
def toy_format():
    register_format(FormatEntry(
        name="toy", format_type=_ToyFormat, fit=_toy_fit,
        encode=lambda p, x: np.clip(np.rint(np.asarray(x) / p.scale), -(2 ** (p.fmt.bits - 1) - 1),
                                    2 ** (p.fmt.bits - 1) - 1).astype(np.int32),
        decode=lambda p, c: np.asarray(c, dtype=np.float64) * p.scale,
        storage_bits=lambda fmt: fmt.bits, code_scale=lambda p: np.asarray(p.scale),
        fake_quant=straight_through))
    try:
        yield
    finally:
        unregister_format("toy")


@pytest.mark.parametrize("method", ["hutchinson", "fisher", "empirical_fisher", "measured"])
def test_apot_binary_and_registered_formats(method, toy_format):
    opts = [Option(4, 8, "apot"), Option(1, 8, "binary"), Option(4, 8, "toy"),
            Option(2, 8, "apot"), Option(2, 8, "binary")]
    kw = {"max_probes": 8} if method == "hutchinson" else {}
    t = sensitivity_table(small_cnn(), opts, cnn_data(), method=method, **kw)
    assert np.all(np.isfinite(t.omega[:, :3])), t.omega
    if method != "measured":
        assert np.all(t.omega[:, :3] > 0)
    # apot w2 (signed APoT needs 3..7 bits) and ls1-binary at 2 bits cannot be built: inf + reason
    assert np.all(np.isinf(t.omega[:, 3:]))
    reasons = {(r["layer"], r["option"]): r["reason"] for r in t.details["infeasible"]}
    assert set(reasons) == {(n, k) for n in t.layer_names for k in (3, 4)}
    assert "APoTFormat" in reasons[("0", 3)] and "BinaryFormat" in reasons[("0", 4)]
    # a template for a family: binary "gf" takes k = bits
    from quant.formats import BinaryFormat

    t2 = sensitivity_table(small_cnn(), [Option(2, 8, "binary")], cnn_data(), method=method,
                           formats={"binary": BinaryFormat("gf")}, **kw)
    assert np.all(np.isfinite(t2.omega))


def test_bogus_option_is_a_one_line_error():
    with pytest.raises(QuantError) as err:
        sensitivity_table(small_cnn(), [Option(4, 8), Option(4, 8, weight_format="nope")],
                          cnn_data(), method="fisher")
    msg = str(err.value)
    assert "'nope'" in msg and "options[1]" in msg and "\n" not in msg
    with pytest.raises(QuantError, match="layers"):
        sensitivity_table(small_cnn(), [Option(4, 8)], cnn_data(), layers=["nope"])
    with pytest.raises(QuantError, match="max_probes"):
        sensitivity_table(small_cnn(), [Option(4, 8)], cnn_data(), method="measured",
                          max_probes=3)


# ---- table ------------------------------------------------------------------------------------
def test_json_round_trip():
    t = sensitivity_table(small_cnn(), [Option(4, 8), Option(2, 8, "apot")], cnn_data(),
                          method="measured", layers=["3"])
    assert t.layer_names == ("3",) and np.isinf(t.omega[0, 1])
    text = json.dumps(t.to_dict(), allow_nan=False)
    back = SensitivityTable.from_dict(json.loads(text))
    np.testing.assert_array_equal(back.omega, t.omega)
    assert back.layer_names == t.layer_names and back.options == t.options
    assert back.method == "measured"
    assert back.details["infeasible"] == t.details["infeasible"]
    assert back.details["base_loss"] == t.details["base_loss"]
    assert json.dumps(back.to_dict(), allow_nan=False) == text


def test_table_import_is_torch_free():
    import subprocess
    import sys

    code = ("import sys; from quant.sensitivity import SensitivityTable; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)

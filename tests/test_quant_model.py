"""quantize() / QuantizedModel: fake-quant semantics against an int64 reference, parameters,
configuration errors, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from quant import (
    ActivationObserver,
    CalibrationError,
    IntFormat,
    QuantConfig,
    QuantError,
    quantize,
)
from tests._calib_nets import seeded_with_bn_stats


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 6)

    def forward(self, x):
        y = self.c1(x)
        y = torch.relu(self.pw(torch.relu(self.dw(y))) + y)
        y = self.pool(y)
        return self.fc(torch.flatten(self.gap(y), 1))


def _model() -> nn.Module:
    return seeded_with_bn_stats(Net)


def _data(seed=1, n=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, 16, 16, generator=g) for _ in range(n)]


def _conv_int64(x, w, attrs):
    """Pure int64 reference conv: x (N, C, H, W), w (K, C/g, R, S) integer arrays."""
    top, left, bottom, right = attrs["padding"]
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    (sh, sw), g = attrs["stride"], attrs["groups"]
    k, cg, r, s = w.shape
    win = sliding_window_view(x, (r, s), axis=(2, 3))[:, :, ::sh, ::sw]  # N C OH OW R S
    outs = []
    for gi in range(g):
        xs = win[:, gi * cg:(gi + 1) * cg]
        ws = w[gi * (k // g):(gi + 1) * (k // g)]
        outs.append(np.einsum("ncxyrs,kcrs->nkxy", xs, ws, dtype=np.int64))
    return np.concatenate(outs, axis=1)


def test_fake_quant_matches_int64_reference_up_to_rounding():
    qm = quantize(_model(), QuantConfig(), _data())
    x = _data(seed=7, n=1)[0]
    fake = qm.run(x, mode="fake")
    g = qm.graph
    xin = g.input_name
    assert np.array_equal(qm.act_params(xin).quantize(fake[xin]), qm.quantize_input(x))
    assert np.array_equal(qm.quantize_input(x), qm.quantize_input(x.numpy().astype(np.float64)))
    checked = 0
    for rec in g:
        if rec.op not in ("conv2d", "linear"):
            continue
        px, pw, py = qm.act_params(rec.inputs[0]), qm.weight_params(rec.name), qm.act_params(rec.name)
        xq = px.quantize(fake[rec.inputs[0]]).astype(np.int64) - int(px.zero_point)
        wq = qm.weight_codes(rec.name).astype(np.int64)
        wq = wq - pw.zero_point.reshape(-1, *([1] * (wq.ndim - 1)))
        if rec.op == "conv2d":
            acc = _conv_int64(xq, wq, rec.attrs)
            bshape = (1, -1, 1, 1)
        else:
            acc = xq @ wq.T
            bshape = (1, -1)
        b = qm.bias_codes(rec.name)
        if b is not None:
            acc = acc + b.reshape(bshape)
        real = acc.astype(np.float64) * (float(px.scale) * pw.scale).reshape(bshape)
        if rec.activation is not None:
            real = np.clip(real, *rec.activation)
        ref_codes = py.quantize(real).astype(np.int64)
        got_codes = py.quantize(fake[rec.name]).astype(np.int64)
        diff = np.abs(ref_codes - got_codes)
        assert diff.max() <= 1, rec.name
        assert (diff == 0).mean() >= 0.98, rec.name
        checked += 1
    assert checked == 4


def test_fake_outputs_lie_on_their_grids_and_aliases_share_params():
    qm = quantize(_model(), QuantConfig(), _data())
    fake = qm.run(_data(seed=3, n=1)[0], mode="fake")
    for rec in qm.graph:
        p = qm.act_params(rec.name)
        vals = fake[rec.name].astype(np.float64)
        assert np.array_equal(p.dequantize(p.quantize(vals)).astype(np.float32), fake[rec.name])
    assert qm.act_params("pool") is qm.act_params(qm.graph["pool"].inputs[0])
    assert not qm.has_own_act_params("pool") and qm.has_own_act_params("gap")
    flat = qm.graph.names("flatten")[0]
    assert qm.act_params(flat) is qm.act_params("gap")
    assert qm.act_params("c1.0").fmt == QuantConfig().activation


def test_bias_codes_and_weight_params():
    qm = quantize(_model(), QuantConfig(), _data())
    rec = qm.graph["fc"]
    pw = qm.weight_params("fc")
    assert pw.scale.shape == (6,) and pw.axis == 0 and np.all(pw.zero_point == 0)
    s_x = float(qm.act_params(rec.inputs[0]).scale)
    expected = np.rint(rec.bias.astype(np.float64) / (s_x * pw.scale)).astype(np.int64)
    assert qm.bias_codes("fc").dtype == np.int64
    assert np.array_equal(qm.bias_codes("fc"), expected)
    assert qm.bias_codes("c1.0") is not None  # BN folded in a bias-free conv
    codes = qm.weight_codes("dw")
    assert codes.dtype == np.int8 and codes.shape == (8, 1, 3, 3)
    assert np.abs(codes).max(axis=(1, 2, 3)).tolist() == [127] * 8
    with pytest.raises(QuantError, match="'pool' is a maxpool2d record and has no weights"):
        qm.weight_params("pool")
    with pytest.raises(QuantError, match="no layer named 'nope'"):
        qm.act_params("nope")


def test_float_mode_reproduces_model_and_fake_is_close():
    model = _model()
    qm = quantize(model, QuantConfig(), _data())
    x = _data(seed=5, n=1)[0]
    with torch.no_grad():
        ref = model(x)
    assert float((qm.float_forward(x) - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    out = qm.forward(x)
    sqnr_db = 10 * np.log10(float((ref**2).sum()) / float(((out - ref) ** 2).sum()))
    assert sqnr_db > 20.0
    assert np.array_equal(qm.run(x, "float")[qm.graph.output_name], qm.float_forward(x).numpy())


@pytest.mark.parametrize("clipping", ["minmax", "percentile", "mse"])
def test_quantize_is_deterministic(clipping):
    cfg = QuantConfig(activation=IntFormat(8, False, False, False, clipping), reservoir_size=512)
    a = quantize(_model(), cfg, _data())
    b = quantize(_model(), cfg, _data())
    for rec in a.graph:
        pa, pb = a.act_params(rec.name), b.act_params(rec.name)
        assert np.array_equal(pa.scale, pb.scale) and np.array_equal(pa.zero_point, pb.zero_point)
        if rec.weight is not None:
            assert np.array_equal(a.weight_codes(rec.name), b.weight_codes(rec.name))


def test_layer_weight_override_and_errors():
    fmt4 = IntFormat(4, True, True, True)
    qm = quantize(_model(), QuantConfig(layer_weight={"pw": fmt4}), _data())
    assert qm.weight_params("pw").fmt == fmt4 and np.abs(qm.weight_codes("pw")).max() == 7
    assert np.abs(qm.weight_codes("dw")).max() == 127
    with pytest.raises(QuantError, match=r"\['pool'\] that are not conv2d or linear"):
        quantize(_model(), QuantConfig(layer_weight={"pool": fmt4}), _data())
    with pytest.raises(QuantError, match="per-tensor"):
        QuantConfig(activation=IntFormat(8, per_channel=True))
    with pytest.raises(QuantError, match="'bias_bits' parameter of QuantConfig"):
        QuantConfig(bias_bits=64)


def test_bias_outside_int_range_is_an_error():
    model = _model()
    with torch.no_grad():
        model.fc.bias.fill_(1e4)
    with pytest.raises(QuantError, match=r"layer 'fc': bias codes .* int24 range"):
        quantize(model, QuantConfig(bias_bits=24), _data())


def test_calibration_errors():
    with pytest.raises(CalibrationError, match="empty"):
        quantize(_model(), QuantConfig(), [])
    with pytest.raises(CalibrationError, match="batch 1 is a list"):
        quantize(_model(), QuantConfig(), [_data()[0], [1, 2]])
    bad = _data()[0].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(CalibrationError, match="layer 'x'.*NaN"):
        quantize(_model(), QuantConfig(), [_data()[0], bad])


def test_observer_minmax_and_reservoir_percentile():
    rng = np.random.default_rng(0)
    data = [torch.from_numpy(rng.normal(size=20000).astype(np.float32)) for _ in range(5)]
    allv = torch.cat(data).numpy()
    mm = ActivationObserver(IntFormat(8, True, False, False, "minmax"))
    pc = ActivationObserver(IntFormat(8, True, False, False, "percentile", 99.0),
                            reservoir_size=8192, seed=3)
    for t in data:
        mm.update(t)
        pc.update(t)
    p = mm.params()
    lo, hi = p.representable_range()
    assert lo <= allv.min() + float(p.scale) / 2 and hi >= allv.max() - float(p.scale) / 2
    _, hi_pc = pc.params().representable_range()
    assert abs(hi_pc - np.percentile(allv, 99.0)) < 0.15
    with pytest.raises(CalibrationError):
        ActivationObserver(IntFormat()).params()

"""Acceptance: two small networks trained for a few seconds on sklearn's digits (8x8 images
upsampled to 16x16), exported both ways and checked bit for bit against ONNX Runtime.

* MobileNetV3-style classifier: conv-BN-hardswish stem, an inverted residual (expand 1x1 -
  depthwise - squeeze-excite with a hardsigmoid gate - project, added to its input), head.
* U-Net-style ink-mask predictor: stride-2 encoder convs, a bottleneck, a decoder with
  nn.ConvTranspose2d (stride 2) and nn.Upsample (nearest and bilinear), skip connections with
  torch.cat, a sigmoid head.

hwsim flow: quant.quantize (u8 and s8 activations) -> lower(requant="float32", engine="ort") ->
export_onnx -> ONNX Runtime, every node's codes compared (`mismatches`). ONNX flow: the same
trained torch model -> torch.onnx.export -> quant_pre_process + quantize_static (QDQ and
QOperator) -> hwsim.onnx.verify_onnx, every node ONNX Runtime exposes compared. The U-Net's
bilinear Resize is imported as ONNX Runtime runs it: a float32 island in QDQ form, the NHWC
integer kernel on codes in QOperator form (tests/test_onnx_resize_linear.py).
"""
from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("sklearn", reason="scikit-learn provides the digits data")

import quant  # noqa: E402
from hwsim.lower import lower  # noqa: E402
from hwsim.onnx import onnx_model, verify_onnx  # noqa: E402
from tests._onnx_helpers import quantize_forms  # noqa: E402
from tests.test_onnx_export import mismatches  # noqa: E402

F32 = np.float32


class MobileNetV3ish(nn.Module):
    """(N, 1, 16, 16) -> (N, 10) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32),
                                    nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False),
                                nn.BatchNorm2d(32), nn.Hardswish())
        self.se_reduce, self.se_expand = nn.Conv2d(32, 8, 1), nn.Conv2d(8, 32, 1)
        self.gate = nn.Hardsigmoid()
        self.project = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.Conv2d(16, 32, 1), nn.Hardswish())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(self.expand(x))
        s = F.adaptive_avg_pool2d(y, 1)
        y = y * self.gate(self.se_expand(F.relu(self.se_reduce(s))))
        x = x + self.project(y)
        x = F.adaptive_avg_pool2d(self.head(x), 1)
        return self.fc(torch.flatten(x, 1))


class UNetish(nn.Module):
    """(N, 1, 16, 16) -> (N, 1, 16, 16) ink probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(1, 8, 3, padding=1)
        self.enc2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)          # 8x8
        self.bottleneck = nn.Conv2d(16, 16, 3, stride=2, padding=1)   # 4x4
        self.up2 = nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1, output_padding=1)  # 8x8
        self.dec2 = nn.Conv2d(32, 16, 3, padding=1)
        self.up_nearest = nn.Upsample(scale_factor=2, mode="nearest")  # 16x16
        self.up_bilinear = nn.Upsample(scale_factor=2, mode="bilinear")
        self.dec1 = nn.Conv2d(16 + 16 + 8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        e1 = F.relu(self.enc1(x))
        e2 = F.relu(self.enc2(e1))
        b = F.relu(self.bottleneck(e2))
        d2 = F.relu(self.dec2(torch.cat([F.relu(self.up2(b)), e2], 1)))
        d1 = torch.cat([self.up_nearest(d2), self.up_bilinear(d2), e1], 1)
        return torch.sigmoid(self.head(F.relu(self.dec1(d1))))


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 1797 digits as (N, 1, 16, 16) float32 in about [-1, 1], and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(F32) / 16.0)[:, None]
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return (x - 0.5) * 2, torch.from_numpy(d.target.astype(np.int64))


def _train(net: nn.Module, x, target, loss_fn, steps: int) -> nn.Module:
    """Adam, batches of 32, seeded, one thread; eval mode afterwards (BatchNorm statistics
    kept)."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        opt.zero_grad()
        loss_fn(net(x[idx]), target[idx]).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def trained():
    """{name: (trained net, 32 held-out images)}; each net trains in a few seconds."""
    torch.manual_seed(0)
    x, labels = _digits()
    mask = (x > 0).to(torch.float32)
    noisy = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads only contend
    try:
        torch.manual_seed(0)
        mobile = _train(MobileNetV3ish(), x[:1500], labels[:1500], F.cross_entropy, 300)
        torch.manual_seed(0)
        unet = _train(UNetish(), noisy[:1500], mask[:1500], F.binary_cross_entropy, 100)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        acc = float((mobile(x[1500:]).argmax(1) == labels[1500:]).float().mean())
        iou_in = (unet(noisy[1500:]) > 0.5) & (mask[1500:] > 0)
        iou_un = (unet(noisy[1500:]) > 0.5) | (mask[1500:] > 0)
        iou = float(iou_in.sum() / iou_un.sum())
    print(f"\ntrained in {time.perf_counter() - t0:.1f} s: MobileNetV3-style held-out accuracy "
          f"{acc:.3f}, U-Net-style ink-mask IoU {iou:.3f}")
    assert acc > 0.8 and iou > 0.7  # trained, not random
    return {"mobilenetv3": (mobile, x[1500:1532]), "unet": (unet, noisy[1500:1532])}


def _qm(net, x, signed: bool):
    act = quant.IntFormat(bits=8, signed=signed, symmetric=False, per_channel=False)
    return quant.quantize(net, quant.QuantConfig(activation=act), [x])


CASES = [(net, s) for net in ("mobilenetv3", "unet") for s in ("u8", "s8")]


@pytest.mark.parametrize("name,act", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_hwsim_flow_exports_bit_exact_at_every_node(trained, name, act):
    net, x = trained[name]
    qm = _qm(net, x, act == "s8")
    program = lower(qm, requant="float32", engine="ort")
    ops = {n.op for n in program.nodes()}
    want = {"mobilenetv3": {"activation_lut", "mul", "add", "conv2d", "linear"},
            "unet": {"conv_transpose2d", "resize_nearest", "resize_linear", "concat",
                     "activation_lut"}}[name]
    assert want <= ops, want - ops
    bad, compared, _ = mismatches(program, qm.quantize_input(x))
    types = sorted({n.op_type for n in onnx_model(program).graph.node})
    print(f"\n{name} {act}: {compared} codes compared over {len(bad)} tensors, "
          f"{sum(bad.values())} mismatches; ONNX ops {types}")
    assert compared > 0 and set(bad) == {n.name for n in program.nodes()} - {"x"}
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}
    fns = {n.attrs["fn"] for n in program.nodes() if n.op == "activation_lut"}
    assert fns == ({"hardswish", "hardsigmoid"} if name == "mobilenetv3" else {"sigmoid"})


FORMS = ("qdq-u8", "qdq-s8", "qoperator-u8", "qoperator-s8")


def _onnx_forms(net, x, tmp_path, forms=FORMS) -> dict:
    """torch.onnx.export (batch symbolic) -> quant_pre_process -> quantize_static in `forms`.
    ONNX's own shape inference is used: the symbolic one leaves Resize's output shape with a
    symbolic batch incomplete (and its temporary files in the working directory)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    f, pre = tmp_path / "float.onnx", tmp_path / "pre.onnx"
    with torch.no_grad():
        torch.onnx.export(net, x[:1], str(f), opset_version=17, dynamo=False,
                          input_names=["input"], output_names=["y"],
                          dynamic_axes={"input": {0: "N"}, "y": {0: "N"}})
    quant_pre_process(str(f), str(pre), skip_symbolic_shape=True)
    return quantize_forms(pre, tmp_path / "q", x.numpy()[:16], forms)


def _quiet(fn, *args, **kwargs):
    """fn(...) with ONNX Runtime's quantization warnings and log lines silenced."""
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    finally:
        logging.getLogger().setLevel(level)


@pytest.fixture(scope="module")
def onnx_forms(trained, tmp_path_factory):
    cache: dict = {}

    def get(name: str) -> dict:
        if name not in cache:
            net, x = trained[name]
            cache[name] = _quiet(_onnx_forms, net, x, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def _verify(onnx_forms, trained, name: str, form: str):
    path = onnx_forms(name)[form]
    _, x = trained[name]
    check = verify_onnx(path, x.numpy())
    s = check.summary
    print(f"\n{name} {form}: {s['outputs_compared']} outputs compared over "
          f"{len(check.per_layer)} nodes, {s['total_mismatches']} mismatches; layers "
          f"{s['layers_bit_exact']}; ops {sorted(set(check.per_layer['op']))}")
    assert s["outputs_compared"] > 0 and s["total_mismatches"] == 0, check.per_layer.to_string()
    return check.program


@pytest.mark.parametrize("form", FORMS)
def test_onnx_runtime_quantized_mobilenetv3_verifies_bit_exact(onnx_forms, trained, form):
    _verify(onnx_forms, trained, "mobilenetv3", form)


@pytest.mark.parametrize("form", FORMS)
def test_onnx_runtime_quantized_unet_verifies_bit_exact(onnx_forms, trained, form):
    """The trained U-Net as it is (nearest and bilinear upsampling); its ConvTranspose is a
    float island in both forms (ONNX Runtime does not quantize it), and so is its bilinear
    Resize: in float32 (QDQ) or on the codes with ONNX Runtime's NHWC integer kernel
    (QOperator)."""
    program = _verify(onnx_forms, trained, "unet", form)
    bilinear = [n for n in program.nodes() if n.op == "float_island"
                and any(i["op"] == "Resize" and i["attrs"].get("mode") == "linear"
                        for i in n.attrs["nodes"])]
    assert len(bilinear) == 1
    assert "/up_bilinear/Resize" in [i["name"] for i in bilinear[0].attrs["nodes"]]
    assert ("NhwcUpsampleBilinearInteger" in bilinear[0].attrs["note"]) == \
        form.startswith("qoperator")
    assert any(n.op == "resize_nearest" for n in program.nodes())

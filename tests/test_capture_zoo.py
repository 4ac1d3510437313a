"""capture() on the zoo architectures: record counts and float-graph equivalence."""

from __future__ import annotations

import pytest
import torch

from hwsim.zoo import mobilenet_v2, resnet18, resnet50
from quant import capture
from quant.execute import float_params, run_graph

# Counts derived from the architectures:
# MobileNetV2: stem conv + 17 inverted residuals (first: dw + project = 2 convs; the other 16:
#   expand + dw + project = 48) + final 1x1 conv = 52 conv, 1 linear; residual adds where
#   stride 1 and c_in == c_out: repeats-1 per stage for (24:2, 32:3, 64:4, 96:3, 160:3) = 10.
# ResNet-18: conv1 + 8 blocks x 2 + 3 downsample 1x1 = 20 conv, 8 adds.
# ResNet-50: conv1 + 16 bottlenecks x 3 + 4 downsample = 53 conv, 16 adds.
EXPECTED = {
    "mobilenet_v2": (mobilenet_v2, 52, 1, 10, 0),
    "resnet18": (resnet18, 20, 1, 8, 1),
    "resnet50": (resnet50, 53, 1, 16, 1),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_zoo_capture_counts_and_float_equivalence(name):
    factory, n_conv, n_linear, n_add, n_maxpool = EXPECTED[name]
    model = factory()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    g = capture(model, x[:1])
    assert g.count("conv2d") == n_conv
    assert g.count("linear") == n_linear
    assert g.count("add") == n_add
    assert g.count("maxpool2d") == n_maxpool
    assert g.count("clamp") == 0  # every ReLU / ReLU6 is fused
    assert g.count("avgpool2d") == 1 and g.count("flatten") == 1
    assert g.records[g.output_name].out_shape == (1, 1000)
    with torch.no_grad():
        ref = model(x)
    out = run_graph(g, x, float_params(g), keep=False)[g.output_name]
    # BN folding reorders float32 rounding; measured ~1e-6 of max|logit| on MobileNetV2,
    # tolerance 1e-5 of max|logit| (+ tiny absolute floor).
    tol = 1e-5 * float(ref.abs().max()) + 1e-6
    assert float((out - ref).abs().max()) <= tol


def test_mobilenet_depthwise_attrs():
    g = capture(mobilenet_v2(pretrained=False), torch.zeros(1, 3, 32, 32))
    dw = g["features.2.conv.1.0"]
    assert dw.attrs["groups"] == 96 and dw.weight.shape == (96, 1, 3, 3)
    assert dw.attrs["stride"] == (2, 2) and dw.attrs["padding"] == (1, 1, 1, 1)
    assert dw.activation == (0.0, 6.0)
    assert g["features.2.conv.2"].activation is None  # linear bottleneck

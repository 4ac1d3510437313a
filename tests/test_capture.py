"""capture(): records, attributes, BatchNorm folding, activation fusion, unsupported ops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quant import UnsupportedOpError, capture
from quant.execute import float_params, run_graph


def _float_out(graph, x):
    return run_graph(graph, x, float_params(graph), keep=False)[graph.output_name]


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0, generator=g)
                m.bias.normal_(0, 0.5, generator=g)
                m.running_mean.normal_(0, 0.5, generator=g)
                m.running_var.uniform_(0.2, 3.0, generator=g)
    return model.eval()


class ConvBN(nn.Module):
    def __init__(self, bias: bool, groups: int = 1, affine: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(8, affine=affine)

    def forward(self, x):
        return self.bn(self.conv(x))


@pytest.mark.parametrize("bias, groups, affine", [(False, 1, True), (True, 1, True),
                                                  (True, 4, True), (False, 2, False)])
def test_bn_folding_matches_unfolded_module(bias, groups, affine):
    torch.manual_seed(0)
    model = ConvBN(bias, groups, affine)
    if affine:
        _randomize_bn(model)
    else:
        with torch.no_grad():
            model.bn.running_mean.normal_(0, 0.5)
            model.bn.running_var.uniform_(0.2, 3.0)
    model.eval()
    x = torch.randn(3, 4, 9, 9)
    g = capture(model, x[:1])
    assert [r.op for r in g] == ["input", "conv2d"]
    rec = g["conv"]
    assert rec.weight.dtype == np.float32 and rec.weight.shape == (8, 4 // groups, 3, 3)
    assert rec.bias.shape == (8,) and rec.bias.dtype == np.float32
    with torch.no_grad():
        ref = model(x)
    # float32 conv with folded vs unfolded weights: rounding of a ~36-term dot product and of
    # the BN affine; relative error ~1e-7 per op, so 1e-5 of the output scale is generous.
    tol = 1e-5 * float(ref.abs().max())
    assert float((_float_out(g, x) - ref).abs().max()) <= tol


class Toy(nn.Module):
    """Covers every record op and the fusion rules."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.branch = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.act6 = nn.ReLU6()
        self.pool = nn.MaxPool2d(2, 2)
        self.avg = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.same = nn.Conv2d(16, 4, 4, padding="same", dilation=1)
        self.drop = nn.Dropout(0.3)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)
        self.hard = nn.Hardtanh(-2.0, 2.0)

    def forward(self, x):
        s = self.stem(x)
        b = self.act6(self.branch(s))          # fused: branch's only consumer
        r = s + b                             # add; s has two consumers -> no fusion into stem
        r = F.relu(r)                          # fused into add
        c = torch.cat([self.pool(r), self.pool(s)], dim=1)
        c = self.avg(c)
        y = self.drop(self.same(c))
        y = torch.clamp(y, min=-1.0, max=3.0)  # fused into same
        y = self.gap(y)
        y = y.view(y.size(0), -1)
        y = self.fc(y)
        return self.hard(y)                    # fused into fc


def test_toy_records_attrs_and_fusion():
    torch.manual_seed(0)
    model = _randomize_bn(Toy())
    x = torch.randn(2, 3, 8, 8)
    g = capture(model, x[:1])
    assert [r.op for r in g] == ["input", "conv2d", "conv2d", "add", "maxpool2d", "maxpool2d",
                                 "concat", "avgpool2d", "conv2d", "avgpool2d", "flatten",
                                 "linear"]
    assert g.input_name == "x" and g.output_name == "fc"
    assert g["stem.0"].activation == (0.0, math.inf)
    assert g["branch"].activation == (0.0, 6.0) and g["branch"].bias is None
    add = g.records[g.names("add")[0]]
    assert add.inputs == ("stem.0", "branch") and add.activation == (0.0, math.inf)
    assert g["same"].attrs == {"stride": (1, 1), "padding": (1, 1, 2, 2), "dilation": (1, 1),
                               "groups": 1}
    assert g["same"].activation == (-1.0, 3.0)
    assert g["fc"].activation == (-2.0, 2.0)
    cat = g.records[g.names("concat")[0]]
    assert cat.attrs == {"axis": 1} and cat.out_shape == (1, 16, 4, 4)
    assert g["avg"].attrs == {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1, 1, 1),
                              "ceil_mode": False, "count_include_pad": False, "global": False}
    assert g["gap"].attrs["global"] is True and g["gap"].attrs["kernel"] == (4, 4)
    flat = g.records[g.names("flatten")[0]]
    assert flat.attrs == {"start_dim": 1} and flat.out_shape == (1, 4)
    assert g["pool"].attrs["kernel"] == (2, 2)
    assert len(set(g.records)) == len(g)
    with torch.no_grad():
        ref = model(x)
    assert float((_float_out(g, x) - ref).abs().max()) <= 1e-5 * float(ref.abs().max()) + 1e-6


class SharedOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.conv(x)
        return self.relu(y) + y


def test_activation_not_fused_when_producer_has_other_consumers():
    g = capture(SharedOutput().eval(), torch.randn(1, 2, 3, 3))
    assert g["conv"].activation is None
    assert g["relu"].op == "clamp" and g["relu"].attrs == {"min": 0.0, "max": math.inf}
    assert g.records[g.output_name].inputs == ("relu", "conv")


class Wrap(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.block = nn.Sequential(inner)

    def forward(self, x):
        return self.block(x)


class ExpBlock(nn.Module):
    def forward(self, x):
        return torch.exp(x)


@pytest.mark.parametrize("model, op, path", [
    (Wrap(nn.ELU()), "ELU", "block.0"),
    (Wrap(ExpBlock()), "exp", "block.0"),
    (Wrap(nn.InstanceNorm2d(2)), "InstanceNorm2d", "block.0"),
    (Wrap(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")), "Conv2d", "block.0"),
])
def test_unsupported_op_names_op_and_module_path(model, op, path):
    with pytest.raises(UnsupportedOpError) as info:
        capture(model.eval(), torch.randn(1, 2, 4, 4))
    msg = str(info.value)
    assert op in msg and repr(path) in msg


def test_add_of_constant_is_unsupported_and_other_reshapes_keep_a_free_leading_dim():
    class AddConst(nn.Module):
        def forward(self, x):
            return x + torch.ones(3, 2, 2, 2)  # varies over the batch: refused

    class Reshape(nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], 2, -1)

    with pytest.raises(UnsupportedOpError, match="constant"):
        capture(AddConst(), torch.randn(1, 2, 2, 2))
    graph = capture(Reshape(), torch.randn(3, 2, 2, 2))
    (rec,) = [r for r in graph if r.op == "reshape"]
    assert rec.attrs["shape"] == (-1, 2, 4) and rec.out_shape == (3, 2, 4)


def test_capture_restores_training_flags_and_bn_stats():
    model = _randomize_bn(ConvBN(True))
    model.train()
    before = model.bn.running_mean.clone()
    capture(model, torch.randn(4, 4, 6, 6) * 5 + 3)
    assert model.training and model.bn.training
    assert torch.equal(model.bn.running_mean, before)


class Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.ident = nn.Identity()
        self.adapt = nn.AdaptiveAvgPool2d((2, 3))
        self.bad = nn.AdaptiveAvgPool2d(4)

    def forward(self, x):
        return torch.flatten(self.adapt(self.ident(x)).contiguous(), 1)


def test_adaptive_pool_reducing_to_plain_pool_and_identity_removal():
    g = capture(Pools(), torch.randn(1, 2, 6, 9))
    assert [r.op for r in g] == ["input", "avgpool2d", "flatten"]
    assert g["adapt"].attrs["kernel"] == (3, 3) and g["adapt"].attrs["global"] is False
    assert g["adapt"].inputs == ("x",)
    x = torch.randn(2, 2, 6, 9)
    assert torch.allclose(_float_out(g, x), Pools()(x), atol=1e-6)

    class Bad(Pools):
        def forward(self, x):
            return self.bad(x)

    with pytest.raises(UnsupportedOpError, match="'bad'.*from 6x9 to 4x4"):
        capture(Bad(), torch.randn(1, 2, 6, 9))

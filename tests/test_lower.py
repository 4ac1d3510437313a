"""QuantizedModel -> integer program: every layer within 1 LSB of the fake-quant model."""
import numpy as np
import pytest
import torch
from torch import nn

import quant
from hwsim.errors import ProgramError
from hwsim.executor import execute
from hwsim.ir import load_program, save_program
from hwsim.lower import lower
from hwsim.verify import verify


class SmallNet(nn.Module):
    """clamp, conv-BN-ReLU, depthwise-BN-ReLU6, residual add, max pool, concat, avg pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                                nn.BatchNorm2d(8), nn.ReLU6())
        self.pw = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.side = nn.Conv2d(8, 4, 3, padding=2, dilation=2)
        self.head = nn.Linear(12, 10)

    def forward(self, x):
        x = self.stem(torch.clamp(x, -2.0, 2.0))  # on the input: a standalone clamp record
        y = self.pw(self.dw(x)) + x
        y = self.pool(y)
        y = torch.cat([y, torch.relu(self.side(y))], dim=1)
        y = nn.functional.adaptive_avg_pool2d(y, 1)
        return self.head(torch.flatten(y, 1))


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = SmallNet()
    for m in net.modules():  # non-trivial BN statistics so folding matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def qmodel():
    g = torch.Generator().manual_seed(1)
    calib = torch.randn(16, 3, 16, 16, generator=g)
    qm = quant.quantize(_net(), quant.QuantConfig(), [calib[:8], calib[8:]], example_input=calib[:1])
    evals = torch.randn(6, 3, 16, 16, generator=g)
    return qm, evals


@pytest.mark.parametrize("requant", ["dyadic", "float32"])
def test_every_layer_within_one_lsb_of_fake_quant(qmodel, requant):
    qm, evals = qmodel
    program = lower(qm, requant=requant)
    report = verify(qm, program, evals)
    rows = report.per_layer
    ops = set(rows["op"])
    assert {"clamp", "conv2d", "linear", "add", "maxpool2d", "concat", "avgpool2d"} <= ops
    assert rows["max_lsb_diff"].max() <= 1, rows.to_string()
    # max pooling compares codes: equal to the fake-quant model by construction
    assert rows.loc[rows["op"] == "maxpool2d", "bit_exact"].all()
    assert report.summary["total_overflows"] == 0
    assert (rows["cosine"] > 0.95).all(), rows.to_string()


def test_narrow_accumulator_reports_overflow_and_saturation_differs_from_wrap(qmodel):
    qm, evals = qmodel
    x = qm.quantize_input(evals)
    wrap = execute(lower(qm, accumulator_bits=10, accumulator_mode="wrap"), x)
    sat = execute(lower(qm, accumulator_bits=10, accumulator_mode="saturate"), x)
    assert wrap.total_overflows > 0 and sat.total_overflows > 0
    assert not np.array_equal(wrap.output, sat.output)


def test_saved_program_runs_identically(qmodel, tmp_path):
    qm, evals = qmodel
    program = lower(qm)
    x = qm.quantize_input(evals)
    again = load_program(save_program(program, tmp_path / "small"))
    np.testing.assert_array_equal(execute(program, x).output, execute(again, x).output)


def test_bad_lowering_options_are_named(qmodel):
    qm, _ = qmodel
    with pytest.raises(ProgramError, match="requant must be one of"):
        lower(qm, requant="float16")
    with pytest.raises(ProgramError, match="accumulator_bits"):
        lower(qm, accumulator_bits=4)

"""An integer program as the cost model sees it: every width and format is the node's own."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import quant
from hwsim.errors import ProgramError, WorkloadError
from hwsim.ir import check_program
from hwsim.lower import lower
from hwsim.workloads import program_workload, uncosted_ops


@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 5)).eval()
    return model, torch.randn(8, 3, 8, 8)


@pytest.mark.parametrize("bits", [3, 4, 6])
def test_a_low_bit_program_is_costed_at_its_own_width(model_and_data, bits):
    model, x = model_and_data
    qm = quant.quantize(model, quant.QuantConfig(weight=quant.IntFormat(bits, per_channel=True)), [x])
    layers = program_workload(lower(qm), batch=2)
    assert [(l.name, l.weight_bits, l.act_bits, l.weight_format, l.batch) for l in layers] == [
        ("0", bits, 8, "int", 2), ("3", bits, 8, "int", 2), ("6", bits, 8, "int", 2)]


def test_apot_and_mixed_layers_carry_their_format(model_and_data):
    model, x = model_and_data
    config = quant.QuantConfig(weight=quant.APoTFormat(5), layer_weight={"6": quant.IntFormat(8)})
    layers = program_workload(lower(quant.quantize(model, config, [x])))
    assert [(l.weight_format, l.weight_bits) for l in layers] == [("apot", 5), ("apot", 5),
                                                                   ("int", 8)]


def test_a_dense_node_without_its_weight_width_is_rejected_not_defaulted(model_and_data):
    model, x = model_and_data
    program = lower(quant.quantize(model, quant.QuantConfig(), [x]))
    node = program.node("3")
    attrs = {k: v for k, v in node.attrs.items() if k != "weight_bits"}
    program.graph.nodes["3"]["node"] = dataclasses.replace(node, attrs=attrs)
    with pytest.raises(ProgramError, match="node '3': missing attribute 'weight_bits'"):
        check_program(program)


def test_undeclared_attrs_and_arrays_are_errors(model_and_data):
    model, x = model_and_data
    program = lower(quant.quantize(model, quant.QuantConfig(), [x]))
    node = program.node("0")
    program.graph.nodes["0"]["node"] = dataclasses.replace(
        node, attrs={**node.attrs, "wieght_bits": 4}, arrays={**node.arrays, "extra": np.ones(1)})
    with pytest.raises(ProgramError) as err:
        check_program(program)
    assert "attribute 'wieght_bits' is not declared by op 'conv2d'" in str(err.value)
    assert "array 'extra' is not declared by op 'conv2d'" in str(err.value)


def test_ops_the_cost_model_leaves_out_say_why(model_and_data):
    model, x = model_and_data
    program = lower(quant.quantize(model, quant.QuantConfig(), [x]))
    reasons = uncosted_ops(program)
    assert set(reasons) == {"maxpool2d", "flatten"} and all(reasons.values())
    with pytest.raises(WorkloadError, match="batch must be a positive integer"):
        program_workload(program, batch=0)


@pytest.mark.parametrize("attr, value, message", [
    ("stride", [0, 1], "stride must be 2 ints >= 1"),
    ("padding", "1,1,1,1", "padding must be 4 ints >= 0"),
    ("dilation", [1.0, 1.0], "dilation must be 2 ints >= 1"),
    ("groups", 3, "8 output channels are not divisible by groups=3"),
])
def test_conv_geometry_is_checked(model_and_data, attr, value, message):
    model, x = model_and_data
    program = lower(quant.quantize(model, quant.QuantConfig(), [x]))
    node = program.node("3")
    program.graph.nodes["3"]["node"] = dataclasses.replace(node, attrs={**node.attrs, attr: value})
    with pytest.raises(ProgramError, match=f"node '3': {message}"):
        check_program(program)

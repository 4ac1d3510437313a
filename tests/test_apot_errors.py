"""Bad input around APoT weights: one clear error naming the layer, field or parameter."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import quant
from hwsim.errors import ProgramError
from hwsim.ir import check_program
from hwsim.lower import lower


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()


@pytest.mark.parametrize("bits, signed", [(8, True), (2, True), (7, False), (1, False)])
def test_apot_bits_out_of_range(bits, signed):
    with pytest.raises(quant.QuantError, match="The 'bits' parameter of APoTFormat"):
        quant.APoTFormat(bits=bits, signed=signed)


def test_nan_weights_name_the_layer():
    model = _model()
    with torch.no_grad():
        model[3].weight[0, 5] = float("nan")
    with pytest.raises(quant.QuantError, match=r"layer '3' \(3\): 1 of 192 weights are NaN"):
        quant.quantize(model, quant.QuantConfig(weight=quant.APoTFormat(4)), [torch.randn(4, 3, 6, 6)])


def test_unsigned_apot_is_not_a_weight_format():
    with pytest.raises(quant.QuantError, match=r"layer_weight\['0'\].*APoT weights are signed"):
        quant.QuantConfig(layer_weight={"0": quant.APoTFormat(4, signed=False)})


def test_apot_layer_with_a_pairs_accumulator_or_too_many_terms_is_rejected():
    x = torch.randn(4, 3, 6, 6)
    program = lower(quant.quantize(_model(), quant.QuantConfig(weight=quant.APoTFormat(4)), [x]))
    node = program.node("0")
    bad = dataclasses.replace(node, attrs={**node.attrs, "accumulator": {"bits": 32,
                                                                           "mode": "int16_pairs"}})
    program.graph.nodes["0"]["node"] = bad
    with pytest.raises(ProgramError, match="node '0': a shift-add adder wraps or saturates"):
        check_program(program)
    weight = np.asarray(node.arrays["weight"]).copy()
    weight.flat[0] = 7  # three set bits; 4-bit APoT adds at most two terms per weight
    program.graph.nodes["0"]["node"] = dataclasses.replace(node, arrays={**node.arrays,
                                                                          "weight": weight})
    with pytest.raises(ProgramError, match="node '0': a weight level has 3 set bits; the datapath "
                                           "adds at most terms=2"):
        check_program(program)


def test_engine_modes_name_apot_layers_they_cannot_run():
    x = torch.randn(4, 3, 6, 6)
    config = quant.QuantConfig(weight=quant.APoTFormat(4), layer_weight={"3": quant.IntFormat(8)})
    qm = quant.quantize(_model(), config, [x])
    with pytest.raises(ProgramError, match=r"layer_engines names \['0'\], which are not integer"):
        lower(qm, layer_engines={"0": "ort"})
    program = lower(qm, engine="ort")  # applies to the uniform layers only
    assert program.node("3").attrs["engine"] == "ort" and "engine" not in program.node("0").attrs

"""``QuantizedModel(weight_params=...)``: weights encoded with parameters a calibration step
fixed, instead of fitted ones."""

import numpy as np
import pytest
import torch
from torch import nn

import quant
from quant.calibrate import calibrate
from quant.formats import QuantParams
from quant.model import QuantizedModel


def _graph_and_act():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    x = torch.randn(2, 3, 8, 8)
    cfg = quant.QuantConfig()
    graph = quant.capture(net, x[:1])
    act, scales = calibrate(graph, [x], cfg.activation)
    return graph, cfg, act, scales, x


def test_fixed_params_are_used_for_codes():
    graph, cfg, act, scales, _ = _graph_and_act()
    conv = graph.names("conv2d")[0]
    w = graph[conv].weight
    fitted = QuantizedModel(graph, cfg, act, scales).weight_params(conv)
    halved = QuantParams(np.asarray(fitted.scale) / 2, np.zeros(4, np.int64), 0, fitted.fmt)
    qm = QuantizedModel(graph, cfg, act, scales, weight_params={conv: halved})
    assert qm.weight_params(conv) is halved
    expect = np.clip(np.rint(w.astype(np.float64) / halved.scale[:, None, None, None]), -127, 127)
    np.testing.assert_array_equal(qm.weight_codes(conv), expect)
    # the fitted model's codes differ: the override really took effect
    assert not np.array_equal(QuantizedModel(graph, cfg, act, scales).weight_codes(conv), expect)


def test_unknown_layer_is_named():
    graph, cfg, act, scales, _ = _graph_and_act()
    with pytest.raises(quant.QuantError, match=r"QuantizedModel.weight_params names \['nope'\]"):
        QuantizedModel(graph, cfg, act, scales, weight_params={"nope": None})

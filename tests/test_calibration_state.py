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


def test_state_model_equals_quantize_and_with_layer_changes_one_record():
    from quant.calibrate import with_layer
    from quant.model import initial_state
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 8, 8)
    state = initial_state(net, quant.QuantConfig(), [x])
    direct = quant.quantize(net, quant.QuantConfig(), [x])
    torch.testing.assert_close(state.model().forward(x), direct.forward(x), rtol=0, atol=0)
    first, second = state.graph.names("conv2d")
    graph2 = with_layer(state.graph, first, bias=np.zeros(4, np.float32))
    assert graph2[second] is state.graph[second]
    np.testing.assert_array_equal(graph2[first].bias, 0)
    assert state.graph[first].bias.any()  # the original graph is untouched
    with pytest.raises(quant.QuantError, match="new weight has shape"):
        with_layer(state.graph, first, weight=np.zeros((4, 3, 1, 1)))
    # ranges observed again on the changed float graph
    moved = state.replace(graph=graph2).recalibrated([x])
    assert moved.act_params[first].scale != state.act_params[first].scale

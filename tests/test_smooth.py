"""SmoothQuant (quant.calibrate.smooth) and FFN outlier-channel groups
(quant.calibrate.split_outliers) on a tiny post-LN transformer block with outlier channels:
the float model is unchanged, the 8-bit tensors get flatter, the choices made on held-out
batches are deterministic, and the integer program stays within 1 LSB of the fake-quant model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.ao.quantization import QuantStub

import quant
from hwsim.lower import lower
from hwsim.verify import verify
from quant.calibrate import (CalibrationState, smooth, smooth_with_report, split_outliers,
                             split_outliers_with_report)
from quant.calibrate.smooth import smoothing_scales
from quant.errors import CalibrationError, QuantError
from quant.execute import float_params, run_graph
from quant.model import initial_state

D, FF, HEADS = 16, 32, 2
A8 = quant.IntFormat(bits=8, signed=True, symmetric=False)
A16 = quant.IntFormat(bits=16, signed=True, symmetric=False)
# float32: gamma / s and W · s are rounded once each; the outputs are O(1)
FLOAT_ATOL = 2e-5


class Block(nn.Module):
    """A LayerNorm on the input, then one BERT layer (post-LN) on token rows (T, D), with
    QuantStub copies of the LayerNorm outputs that feed the linears (as hwsim.zoo.minilm)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm0 = nn.LayerNorm(D)
        self.query, self.key, self.value = (nn.Linear(D, D) for _ in range(3))
        self.attn_out = nn.Linear(D, D)
        self.attn_norm = nn.LayerNorm(D)
        self.ffn_in = nn.Linear(D, FF)
        self.gelu = nn.GELU()
        self.ffn_out = nn.Linear(FF, D)
        self.ffn_norm = nn.LayerNorm(D)
        self.attn_input = QuantStub()
        self.ffn_input = QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm0(x)
        xq = self.attn_input(x)
        q = self.query(xq).view(-1, HEADS, D // HEADS).transpose(0, 1)
        k = self.key(xq).view(-1, HEADS, D // HEADS).permute(1, 2, 0)
        v = self.value(xq).view(-1, HEADS, D // HEADS).transpose(0, 1)
        ctx = torch.matmul(torch.softmax(torch.matmul(q, k), dim=-1), v)
        h = self.attn_norm(self.attn_out(ctx.transpose(0, 1).reshape(-1, D)) + x)
        return self.ffn_norm(self.ffn_out(self.gelu(self.ffn_in(self.ffn_input(h)))) + h)


def _block() -> Block:
    torch.manual_seed(0)
    block = Block().eval()
    with torch.no_grad():
        for norm in (block.norm0, block.attn_norm, block.ffn_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
        block.norm0.weight[3] = 20.0  # BERT-like outlier channels of the LayerNorm outputs
        block.attn_norm.weight[5] = 15.0
        block.ffn_in.weight[7] *= 12.0  # and one outlier hidden channel in the FFN
    return block


def _batches(n: int = 12, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(int(t), D, generator=g)
            for t in torch.randint(4, 11, (n,), generator=g)]


@pytest.fixture(scope="module")
def block():
    return _block()


@pytest.fixture(scope="module")
def batches():
    return _batches()


def _state(block, batches, residual_bits=16) -> CalibrationState:
    graph = quant.capture(block, batches[0])
    wide = {}
    if residual_bits != 8:
        wide = {n: A16 for r in graph if r.op == "add" for n in (*r.inputs, r.name)}
    config = quant.QuantConfig(activation=A8, layer_activation=wide)
    return initial_state(block, config, batches, example_input=batches[0])


def _float_out(graph, x):
    return run_graph(graph, x, float_params(graph), keep=True)


def test_smoothed_float_graph_equals_the_original(block, batches):
    state = _state(block, batches)
    result = smooth_with_report(state, batches, alpha=0.5)
    assert {n.norm for n in result.report.norms} == {"norm0", "attn_norm"}
    assert dict(result.report.skipped) == {"ffn_norm": "it feeds no linear layer"}
    for x in _batches(4, seed=7):
        before = _float_out(state.graph, x)[state.graph.output_name].numpy()
        after = _float_out(result.state.graph, x)[state.graph.output_name].numpy()
        np.testing.assert_allclose(after, before, atol=FLOAT_ATOL, rtol=0)


def test_the_mac_array_copy_becomes_a_layernorm_and_the_residual_stream_is_unchanged(
        block, batches):
    state = _state(block, batches)
    out = smooth(state, batches, alpha=0.5)
    assert out.graph["attn_input"].op == "layernorm"
    assert out.graph["attn_input"].inputs == state.graph["norm0"].inputs
    # the LayerNorm on the residual path keeps gamma and beta
    np.testing.assert_array_equal(out.graph["norm0"].weight, state.graph["norm0"].weight)
    x = batches[2]
    before, after = _float_out(state.graph, x), _float_out(out.graph, x)
    np.testing.assert_array_equal(after["norm0"].numpy(), before["norm0"].numpy())


def _flatness(values: torch.Tensor) -> float:
    """Largest per-channel max |x| over the median one."""
    m = values.abs().reshape(-1, values.shape[-1]).amax(dim=0)
    return float(m.max() / m.median())


def test_smoothed_linear_inputs_have_flatter_channel_ranges(block, batches):
    state = _state(block, batches)
    out = smooth(state, batches, alpha=0.5)
    x = torch.cat([b for b in batches])  # token rows: LayerNorm is per row
    before, after = _float_out(state.graph, x), _float_out(out.graph, x)
    for copy in ("attn_input", "ffn_input"):
        assert _flatness(after[copy]) < 0.5 * _flatness(before[copy]), copy
        # and the per-tensor range the 8-bit copy gets is smaller relative to the typical one
        assert out.model().act_params(copy).scale < state.model().act_params(copy).scale


def test_every_consumer_of_one_layernorm_gets_the_same_scales(block, batches):
    state = _state(block, batches)
    out = smooth(state, batches, alpha=0.5)
    ratios = [out.graph[n].weight.astype(np.float64) / state.graph[n].weight
              for n in ("query", "key", "value")]
    s = ratios[0][0]
    for r in ratios:
        np.testing.assert_allclose(r, np.broadcast_to(s, r.shape), rtol=1e-6)
    gamma_ratio = state.graph["norm0"].weight / out.graph["attn_input"].weight.astype(np.float64)
    np.testing.assert_allclose(gamma_ratio, s, rtol=1e-6)
    assert s[3] == s.max()  # the outlier channel is divided most


def test_smoothing_scales_formula():
    x = np.array([4.0, 1.0, 0.0, 9.0])
    w = np.array([1.0, 4.0, 2.0, 0.0])
    np.testing.assert_allclose(smoothing_scales(x, w, 0.5), [2.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(smoothing_scales(x, w, 1.0), [4.0, 1.0, 1.0, 1.0])


def test_alpha_chosen_on_held_out_batches_is_deterministic(block, batches):
    state = _state(block, batches)
    first = smooth_with_report(state, batches, alphas=(0.25, 0.5, 0.75), seed=3).report
    again = smooth_with_report(state, batches, alphas=(0.25, 0.5, 0.75), seed=3).report
    assert first == again
    assert [a for a, _ in first.held_out_errors] == [None, 0.25, 0.5, 0.75]
    best = min(first.held_out_errors, key=lambda ae: ae[1])
    assert first.alpha == best[0]
    # the outlier channels make the unsmoothed model worse on held-out data
    assert first.alpha is not None and best[1] < first.held_out_errors[0][1]


def test_layernorm_feeding_only_linears_is_scaled_itself():
    torch.manual_seed(0)
    model = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 8)).eval()
    with torch.no_grad():
        model[0].weight[2] = 30.0
    xs = _batches(6)
    state = initial_state(model, quant.QuantConfig(activation=A8), xs, example_input=xs[0])
    result = smooth_with_report(state, xs, alpha=0.5)
    (norm,) = result.report.norms
    assert norm.copy is None and norm.consumers == ("1",)
    assert result.state.graph["0"].weight[2] < 30.0
    before = _float_out(state.graph, xs[0])["1"].numpy()
    np.testing.assert_allclose(_float_out(result.state.graph, xs[0])["1"].numpy(), before,
                               atol=FLOAT_ATOL)


class _SharedNorm(nn.Module):
    """A LayerNorm read directly by a linear and by an add: not smoothable."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(D)
        self.fc = nn.Linear(D, D)

    def forward(self, x):
        h = self.norm(x)
        return self.fc(h) + h


def test_layernorm_read_directly_by_a_linear_and_the_residual_is_skipped_with_a_reason():
    xs = _batches(4)
    state = initial_state(_SharedNorm().eval(), quant.QuantConfig(activation=A8), xs,
                          example_input=xs[0])
    report = smooth_with_report(state, xs, alpha=0.5).report
    assert report.alpha is None and report.norms == ()  # nothing to smooth
    assert "directly" in dict(report.skipped)["norm"]


def test_split_float_graph_equals_the_original_and_isolates_the_outlier(block, batches):
    state = _state(block, batches)
    result = split_outliers_with_report(state, batches, count=1)
    (blk,) = result.report.blocks
    assert (blk.up, blk.act, blk.down, blk.channels) == ("ffn_in", "gelu", "ffn_out", (7,))
    g = result.state.graph
    assert g["ffn_out"].op == "add" and g["ffn_out"].inputs == ("ffn_out.main", "ffn_out.outlier")
    assert g["ffn_in.outlier"].weight.shape == (1, D)
    assert g["ffn_out.main"].weight.shape == (D, FF - 1)
    # the new records take the formats of the records they came from
    model = result.state.model()
    for new, src in (("ffn_out.main", "ffn_out"), ("ffn_out.outlier", "ffn_out")):
        assert model.act_params(new).fmt == state.model().act_params(src).fmt
    for x in _batches(4, seed=7):
        before = _float_out(state.graph, x)[state.graph.output_name].numpy()
        after = _float_out(g, x)[g.output_name].numpy()
        np.testing.assert_allclose(after, before, atol=FLOAT_ATOL, rtol=0)
    # the 8-bit GELU output without the outlier channel gets a finer step
    assert model.act_params("gelu").scale < 0.5 * state.model().act_params("gelu").scale


def test_split_count_chosen_on_held_out_batches_is_deterministic(block, batches):
    state = _state(block, batches)
    first = split_outliers_with_report(state, batches, counts=(0, 1, 2), seed=5).report
    again = split_outliers_with_report(state, batches, counts=(2, 1, 0), seed=5).report
    assert first == again
    assert [k for k, _ in first.held_out_errors] == [0, 1, 2]
    assert first.count == min(first.held_out_errors, key=lambda ke: ke[1])[0]


def test_integer_program_is_within_one_lsb_of_fake_quant(block, batches):
    state = split_outliers(smooth(_state(block, batches), batches, alpha=0.5), batches, count=1)
    qm = state.model()
    program = lower(qm, requant="dyadic", name="toy")
    report = verify(qm, program, batches[5])
    assert report.per_layer["max_lsb_diff"].max() <= 1, report.to_text()
    assert report.summary["total_overflows"] == 0
    assert {"layernorm"} <= {r.op for r in state.graph if r.name == "attn_input"}


def test_smooth_and_split_improve_the_fake_quant_model(block, batches):
    state = _state(block, batches)
    tuned = split_outliers(smooth(state, batches, alpha=0.5), batches, count=1)
    test = _batches(6, seed=11)

    def error(s):
        qm = s.model()
        return sum(float((qm(x) - qm.float_forward(x)).pow(2).sum()) for x in test)

    assert error(tuned) < 0.5 * error(state)


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 1.5}, "'alpha' parameter of smooth must be a float in [0.0, 1.0]"),
    ({"alpha": -0.1}, "'alpha' parameter of smooth must be a float in [0.0, 1.0]"),
    ({"alpha": True}, "'alpha' parameter of smooth"),
    ({"alphas": ()}, "'alphas' parameter of smooth must be a non-empty sequence"),
    ({"alphas": "0.5"}, "'alphas' parameter of smooth must be a non-empty sequence"),
    ({"alphas": (0.5, 2.0)}, "'alphas' parameter of smooth must be a float in [0.0, 1.0]"),
    ({"seed": -1}, "'seed' parameter of smooth"),
])
def test_smooth_rejects_bad_arguments_in_one_line(block, batches, kwargs, message):
    with pytest.raises(QuantError) as info:
        smooth(_state(block, batches[:4]), batches[:4], **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"count": -1}, "'count' parameter of split_outliers must be an int"),
    ({"counts": []}, "'counts' parameter of split_outliers must be a non-empty sequence"),
    ({"counts": (0, 1.5)}, "'counts' parameter of split_outliers must be an int"),
])
def test_split_rejects_bad_arguments_in_one_line(block, batches, kwargs, message):
    with pytest.raises(QuantError) as info:
        split_outliers(_state(block, batches[:4]), batches[:4], **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_held_out_choice_needs_four_batches_and_a_state(block, batches):
    state = _state(block, batches[:3])
    with pytest.raises(CalibrationError, match="at least 4 calibration batches.*fixed alpha"):
        smooth(state, batches[:3])
    with pytest.raises(CalibrationError, match="at least 4 calibration batches.*fixed count"):
        split_outliers(state, batches[:3])
    with pytest.raises(QuantError, match="expects a CalibrationState"):
        smooth(state.graph, batches, alpha=0.5)
    with pytest.raises(CalibrationError, match="data is empty"):
        smooth(state, [], alpha=0.5)


def test_fixed_weight_parameters_must_come_after_smoothing(block, batches):
    state = _state(block, batches[:4])
    fixed = state.replace(weight_params={"query": state.model().weight_params("query")})
    with pytest.raises(QuantError, match="run smooth before"):
        smooth(fixed, batches[:4], alpha=0.5)


def test_nothing_to_do_returns_the_state_itself(block, batches):
    state = _state(block, batches)
    assert split_outliers(state, batches, count=0) is state
    plain = initial_state(nn.Sequential(nn.Linear(D, D)).eval(),
                          quant.QuantConfig(activation=A8), batches, example_input=batches[0])
    assert smooth(plain, batches) is plain and split_outliers(plain, batches) is plain

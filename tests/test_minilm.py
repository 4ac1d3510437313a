"""all-MiniLM-L6-v2 through hwsim: the zoo model equals Hugging Face's BERT, the encoder
captures (linear, matmul, layernorm, gelu, softmax, reshape, transpose), and the integer program
(int8 linears and attention matmuls, float vector ops) reproduces the float embeddings."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import quant
from hwsim import execute, load_program, save_program
from hwsim.kernels.matmul import matmul_int, matmul_int_reference
from hwsim.kernels.vector import vector_op
from hwsim.minilm_flow import minilm_cosines, quantize_minilm, residual_stream
from hwsim.verify import verify
from hwsim.zoo.minilm import minilm, minilm_model_dir
from hwsim.zoo.sentences import sentences

_EVAL = sentences(300)[:12]


@pytest.fixture(scope="module")
def int8_run():
    return quantize_minilm(weight_bits=8, calib_sentences=16)


def test_zoo_minilm_equals_the_transformers_bert_model():
    os.environ["HF_HUB_OFFLINE"] = "1"
    transformers = pytest.importorskip("transformers", reason="the float reference of this test")
    model_dir = str(minilm_model_dir())
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    hf = transformers.AutoModel.from_pretrained(model_dir).eval()
    ours = minilm()
    for text in _EVAL[:4]:
        enc = tok(text, return_tensors="pt")
        assert enc["input_ids"][0].tolist() == ours.token_ids(text)
        with torch.no_grad():
            ref = hf(**enc).last_hidden_state[0].numpy()
            got = ours.encoder(ours.embed(text)).numpy()
        np.testing.assert_allclose(got, ref, atol=2e-5)  # float32, 1/sqrt(d) folded into W_q


def test_encoder_capture_has_every_transformer_op():
    m = minilm()
    graph = quant.capture(m.encoder, m.embed(_EVAL[0]))
    counts = {op: graph.count(op) for op in ("linear", "matmul", "layernorm", "gelu", "softmax",
                                              "add", "transpose", "reshape", "clamp")}
    assert counts == {"linear": 36, "matmul": 12, "layernorm": 12, "gelu": 6, "softmax": 6,
                      "add": 12, "transpose": 24, "reshape": 18, "clamp": 12}  # 12 QuantStubs
    wide = residual_stream(graph)
    assert len(wide) == 35  # 12 adds and the 23 records they read (the input is not one)
    assert not any(graph[n].op in ("clamp", "linear") and graph.consumers(n)
                   and graph[graph.consumers(n)[0]].op == "matmul" for n in wide)


def test_int8_encoder_embeddings_match_float(int8_run):
    table = minilm_cosines(int8_run, _EVAL)
    assert table["int_vs_float"].mean() >= 0.99, table
    # the integer path is as good as the fake-quant model; they differ by 1-LSB steps that
    # propagate through 6 layers (each layer alone is within 1 LSB: the next test)
    assert abs(table["int_vs_float"].mean() - table["fake_vs_float"].mean()) < 0.002, table
    assert table["int_vs_fake"].mean() >= 0.995, table


def test_integer_program_is_within_one_lsb_of_fake_quant_at_every_layer(int8_run):
    x = int8_run.model.embed(_EVAL[3])
    report = verify(int8_run.qm, int8_run.program, x)
    per_op = report.per_layer.groupby("op")["max_lsb_diff"].max()
    assert per_op["matmul"] == 0 and per_op["linear"] <= 1 and per_op["vector_op"] <= 1, per_op
    assert report.summary["total_overflows"] == 0


def test_fast_and_reference_backends_and_a_saved_program_agree(int8_run, tmp_path):
    codes = int8_run.qm.quantize_input(int8_run.model.embed(_EVAL[1]))
    fast = execute(int8_run.program, codes, record=True)
    ref = execute(int8_run.program, codes, record=True, backend="reference")
    for name, t in fast.tensors.items():
        np.testing.assert_array_equal(t, ref.tensors[name], err_msg=name)
    save_program(int8_run.program, tmp_path / "minilm")
    again = execute(load_program(tmp_path / "minilm"), codes)
    np.testing.assert_array_equal(again.output, fast.output)


def test_an_8_bit_residual_stream_is_what_costs_accuracy(int8_run):
    narrow = quantize_minilm(weight_bits=8, residual_bits=8, calib_sentences=16)
    wide = minilm_cosines(int8_run, _EVAL[:6])["int_vs_float"].mean()
    assert minilm_cosines(narrow, _EVAL[:6])["int_vs_float"].mean() < wide - 0.05


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), lead=st.integers(1, 3), m=st.integers(1, 9),
       k=st.integers(1, 40), n=st.integers(1, 9), wide=st.booleans())
def test_matmul_int_equals_reference(seed, lead, m, k, n, wide):
    rng = np.random.default_rng(seed)
    hi = 2**15 if wide else 128
    a = rng.integers(-hi, hi, size=(lead, m, k)).astype(np.int32 if wide else np.int8)
    b = rng.integers(-hi, hi, size=(lead, k, n)).astype(np.int32 if wide else np.int8)
    zp_a, zp_b = int(rng.integers(-5, 5)), int(rng.integers(-5, 5))
    np.testing.assert_array_equal(matmul_int(a, zp_a, b, zp_b),
                                  matmul_int_reference(a, zp_a, b, zp_b))
    expect = (a.astype(object) - zp_a) @ (b.astype(object) - zp_b) if lead == 1 else None
    if expect is not None:
        np.testing.assert_array_equal(matmul_int(a, zp_a, b, zp_b)[0], expect[0].astype(np.int64))


@pytest.mark.parametrize("fn", ["layernorm", "gelu", "softmax"])
def test_vector_ops_are_within_one_lsb_of_torch(fn):
    rng = np.random.default_rng(3)
    codes = rng.integers(-128, 128, size=(64, 48)).astype(np.int8)
    s_in, s_out = 0.05, 0.02 if fn != "softmax" else 1 / 255
    zp_out = 0 if fn != "softmax" else -128
    x = torch.from_numpy(((codes.astype(np.float64) - 3) * s_in).astype(np.float32))
    gamma, beta = rng.normal(size=48).astype(np.float32), rng.normal(size=48).astype(np.float32)
    y = {"layernorm": lambda: F.layer_norm(x, (48,), torch.from_numpy(gamma),
                                           torch.from_numpy(beta), 1e-12),
         "gelu": lambda: F.gelu(x), "softmax": lambda: torch.softmax(x, -1)}[fn]()
    ref = np.clip(np.rint(y.numpy().astype(np.float64) / s_out) + zp_out, -128, 127)
    params = {"layernorm": {"eps": 1e-12}, "gelu": {"approximate": "none"}, "softmax": {"dim": 1}}[fn]
    got = vector_op(codes, fn, input_zero_point=3, input_scale=s_in, output_scale=s_out,
                    output_zero_point=zp_out, clamp=(-128, 127), params=params, gamma=gamma,
                    beta=beta)
    assert np.abs(got - ref).max() <= 1
    assert np.mean(got == ref) > 0.99


class _Attn(nn.Module):
    def __init__(self, const: bool) -> None:
        super().__init__()
        self.const = const
        self.w = nn.Parameter(torch.ones(8, 8))
        self.norm = nn.LayerNorm((4, 8))

    def forward(self, x):
        return torch.matmul(x, self.w) if self.const else self.norm(x.view(-1, 4, 8))


@pytest.mark.parametrize("const, needle", [(True, "parameter or buffer"),
                                           (False, "LayerNorm over")])
def test_unsupported_transformer_pieces_name_the_op(const, needle):
    with pytest.raises(quant.UnsupportedOpError, match=needle):
        quant.capture(_Attn(const), torch.rand(8, 8) if const else torch.rand(4, 32))

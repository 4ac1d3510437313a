"""bench/bench_ptq.py: its metrics on hand-made logits, the sentence split, and the hwsim recipe
table and ONNX Runtime rows end to end on a tiny seeded network."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_ptq", REPO / "bench" / "bench_ptq.py")
bench_ptq = importlib.util.module_from_spec(_spec)
sys.modules["bench_ptq"] = bench_ptq  # its dataclasses look their module up while being built
_spec.loader.exec_module(bench_ptq)
metrics = bench_ptq.metrics

# rows: float arg-max 0, 1, 2; quantized arg-max 0, 2, 2
REF = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 5.0]])
APPROX = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 5.0]])


def test_top1_and_topk_containment():
    assert metrics.top1_agreement(REF, APPROX) == pytest.approx(2 / 3)
    assert metrics.topk_containment(REF, APPROX, k=1) == pytest.approx(2 / 3)
    # row 2: the float class (1) is second in the quantized logits, so inside the top 2
    assert metrics.topk_containment(REF, APPROX, k=2) == 1.0
    # the float class tied with the best quantized class counts as inside the top 1
    assert metrics.topk_containment(np.array([[1.0, 0.0]]), np.array([[2.0, 2.0]]), k=1) == 1.0
    # and one strictly higher class pushes it out
    assert metrics.topk_containment(np.array([[1.0, 0.0]]), np.array([[1.0, 2.0]]), k=1) == 0.0
    assert metrics.topk_containment(REF, -APPROX, k=3) == 1.0
    with pytest.raises(ValueError, match="k must be a positive int"):
        metrics.topk_containment(REF, APPROX, k=0)


def test_sqnr_and_kl_hand_computed():
    # signal 3² + 4² = 25, noise 1² = 1
    out = metrics.classifier_metrics(np.array([[3.0, 4.0]]), np.array([[3.0, 3.0]]))
    assert out["sqnr_db"] == pytest.approx(10 * math.log10(25))
    # p = (1/2, 1/2), q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    kl = metrics.mean_kl(np.array([[0.0, 0.0]]), np.array([[math.log(3), 0.0]]))
    assert kl == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    # the mean over rows; softmax ignores a constant shift of the logits
    two = metrics.mean_kl(np.array([[0.0, 0.0], [5.0, 5.0]]),
                          np.array([[math.log(3), 0.0], [105.0, 105.0]]))
    assert two == pytest.approx(0.25 * math.log(4 / 3), rel=1e-12)
    # large logits stay finite (the softmax is shifted by the row maximum)
    assert metrics.mean_kl(np.array([[1000.0, 0.0]]), np.array([[1000.0, 0.0]])) == 0.0
    with pytest.raises(ValueError, match="logit arrays of one shape"):
        metrics.classifier_metrics(REF, APPROX[:2])


def test_embedding_cosines():
    out = metrics.embedding_metrics(np.array([[1.0, 0.0], [0.0, 1.0]]),
                                    np.array([[1.0, 1.0], [0.0, 2.0]]))
    assert out["cos_min"] == pytest.approx(1 / math.sqrt(2))
    assert out["cos_mean"] == pytest.approx((1 / math.sqrt(2) + 1) / 2)


def test_sentence_split_is_disjoint_and_deterministic():
    calib, evals = bench_ptq.split_sentences(["a", "b", "a", "c", "d", "b", "e"])
    assert (calib, evals) == (["a", "c", "e"], ["b", "d"])
    from hwsim.zoo.sentences import sentences
    calib, evals = bench_ptq.split_sentences(sentences(60))
    assert not set(calib) & set(evals)
    assert (calib, evals) == bench_ptq.split_sentences(sentences(60))


def test_module_path_of_exporter_node_names():
    assert bench_ptq.module_path_of("/features/features.1/conv/conv.0/conv.0.0/Conv") == \
        "features.1.conv.0.0"
    assert bench_ptq.module_path_of("/layers/layers.0/query/Gemm") == "layers.0.query"
    assert bench_ptq.module_path_of("/classifier/classifier.1/Gemm") == "classifier.1"
    assert bench_ptq.module_path_of("Gemm_3") == ""


def _tiny_case() -> object:
    """A seeded conv-conv-linear classifier and random inputs: 16 calibrate, 12 evaluate."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6))
    with torch.no_grad():  # a BatchNorm with non-trivial statistics, folded by capture
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    calib, evals = torch.randn(16, 3, 8, 8), torch.randn(12, 3, 8, 8)
    return bench_ptq.ModelCase(
        name="tiny", kind="classifier", model=model, calib=tuple(calib.split(1)),
        hwsim_batches=(calib,), example=calib[:1], evals=tuple(evals.split(4)),
        reduce=lambda y: y, policies=lambda graph: {"": bench_ptq.quant.QuantConfig()},
        ragged=False, split_note="", policy_note="")


def test_recipe_table_end_to_end_on_a_tiny_network():
    case = _tiny_case()
    reference = bench_ptq.float_outputs(case)
    graph = bench_ptq.quant.capture(case.model, case.example)
    extra = {"int8 twice": bench_ptq.w8a8}  # a new row is one entry
    rows = bench_ptq.hwsim_rows(case, reference, {**bench_ptq.RECIPES, **extra}, graph)
    by_name = {r["row"]: r for r in rows}
    assert list(by_name) == [*bench_ptq.RECIPES, "int8 twice"]
    w8, w4 = by_name["hwsim W8A8"], by_name["hwsim W4A8"]
    assert w8["sqnr_db"] > 25 and w8["top1"] >= 0.9 and w8["kl"] < 1e-2
    assert 10 < w4["sqnr_db"] < w8["sqnr_db"]  # the int4 middle conv costs some accuracy
    # the same recipe on the same input is deterministic
    assert {k: v for k, v in by_name["int8 twice"].items() if "seconds" not in k} == \
        {k: v for k, v in w8.items() if "seconds" not in k} | {"row": "int8 twice"}

    # W4A8: first and last conv/linear int8, the one between int4
    weighted = [r.name for r in bench_ptq.weighted_records(graph)]
    assert len(weighted) == 3
    inp = bench_ptq.PTQInput(case.model, case.hwsim_batches, case.example,
                             bench_ptq.quant.QuantConfig(), tuple(weighted))
    qm = bench_ptq.RECIPES["hwsim W4A8"](inp)
    assert [qm.weight_format(n).bits for n in weighted] == [8, 4, 8]
    assert np.abs(qm.weight_codes(weighted[1])).max() <= 8


def test_ort_rows_on_a_tiny_network(tmp_path):
    pytest.importorskip("onnxruntime")
    case = _tiny_case()
    reference = bench_ptq.float_outputs(case)
    pre, _ = bench_ptq.export_onnx(case, tmp_path)
    nodes = bench_ptq.weighted_onnx_nodes(pre)
    assert [n.module_path for n in nodes] == ["0", "3", "7"]  # BatchNorm folded into conv 0
    keep = bench_ptq.onnx_first_last(nodes, "0", "7")
    assert [n.module_path for n in keep] == ["0", "7"]
    emitted = []
    rows = bench_ptq.ort_rows(case, reference, pre, tmp_path, emitted.append, keep,
                              methods=("MinMax",))
    assert emitted == rows and [r["row"] for r in rows] == ["ORT MinMax W8A8", "ORT MinMax W4A8"]
    w8, w4 = rows
    assert "error" not in w8, w8
    assert w8["weight_types"] == {"int8": 3} and w8["sqnr_db"] > 25
    assert w8["quantized_inputs"]["Conv"] == 2 and w8["quantized_inputs"]["Gemm"] == 1
    if "error" not in w4:  # ORT versions without 4-bit QDQ weights report why instead
        assert w4["weight_types"] == {"int8": 2, "int4": 1}


def test_results_json_is_written_after_every_row(tmp_path):
    path = tmp_path / "out.json"
    results = bench_ptq.Results(path, {"seed": 0})
    results.add_row("tiny", {"row": "a", "top1": 1.0})
    assert json.loads(path.read_text())["models"]["tiny"]["rows"] == [{"row": "a", "top1": 1.0}]
    results.add_note("tiny", "n")
    assert json.loads(path.read_text())["models"]["tiny"]["notes"] == ["n"]


def test_cli_rejects_out_of_range_images():
    with pytest.raises(SystemExit):
        bench_ptq.parse_args(["--images", "51"])
    args = bench_ptq.parse_args(["--model", "minilm", "--skip-peers"])
    assert isinstance(args, argparse.Namespace) and args.skip_peers and args.model == "minilm"


def test_pipeline_recipes_run_the_named_pipeline_with_the_case_groups(monkeypatch):
    """A pipeline row is quant.quantize with that PipelineConfig: the case's groups reach it,
    and W4A8 keeps the first and last layers int8."""
    from quant.calibrate import pipeline as pipeline_mod

    case = dataclasses.replace(_tiny_case(), groups=tuple(i // 2 for i in range(16)))
    graph = bench_ptq.quant.capture(case.model, case.example)
    weighted = tuple(r.name for r in bench_ptq.weighted_records(graph))
    inp = bench_ptq.PTQInput(case.model, case.hwsim_batches, case.example,
                             bench_ptq.quant.QuantConfig(), weighted, case.groups)
    seen = []
    real = pipeline_mod.run_pipeline

    def spy(model, config, data, example_input=None):
        seen.append(config.calibration)
        return real(model, config, data, example_input)

    monkeypatch.setattr(pipeline_mod, "run_pipeline", spy)
    qm = bench_ptq.PIPELINE_RECIPES["hwsim W4A8 light"](inp)
    assert seen[0].name == "light" and seen[0].groups == case.groups
    assert [qm.weight_format(n).bits for n in weighted] == [8, 4, 8]
    assert qm.act_params(graph.output_name).fmt.clipping == "minmax"

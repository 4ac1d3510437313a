"""hwsim's post-training quantization against the tools a user would pick instead, on one split.

One table per model; every row is calibrated on the same calibration inputs and scored on the
same evaluation inputs against the float model:

* ``mobilenet_v2`` (real ImageNet weights): calibration = ``sample_images("calib")`` (28
  images), evaluation = ``sample_images("eval")`` (50, or ``--images N``). Columns: top-1
  agreement with the float model, top-5 containment (the float model's top-1 class among the
  quantized model's 5 largest logits), logit SQNR over all evaluation logits (dB), mean
  KL(float softmax || quantized softmax) (nats), quantization time (s).
* ``minilm`` (all-MiniLM-L6-v2, real weights): ``hwsim.zoo.sentences.sentences(N)`` without
  repeats, even positions calibrate and odd positions evaluate (disjoint halves). Columns:
  mean and minimum cosine similarity of the sentence embeddings (mean-pooled, L2-normalized
  last hidden states) to the float model's, quantization time (s).

Rows:

* **hwsim**: a recipe builds a ``quant.QuantizedModel`` from the calibration input; the bench
  lowers it to hwsim's integer program (``hwsim.lower.lower``: dyadic requantization, 32-bit
  wrapping accumulators) and runs that program bit-accurately (``hwsim.executor.execute``) on the
  evaluation inputs. Its time is the recipe's plus lowering. Every recipe runs under each of
  the model's activation policies: MobileNetV2 one (``quant.QuantConfig()``'s), MiniLM two
  (every activation int8, as in ORT's rows, and "res16": the residual stream at int16, the
  policy of ``hwsim.minilm_flow``).  MobileNetV2 also gets the calibration pipelines
  (``quant.calibrate.pipeline``: "light" and "advanced", W8A8 and W4A8, their own activation
  ranges; ``--skip-pipelines`` drops them), each picture and its flip held out together.
* **ONNX Runtime**: ``quantize_static`` on the float model exported with ``torch.onnx.export``
  (TorchScript exporter) and ``quant_pre_process``; calibration MinMax, Percentile, Entropy
  (ORT's defaults; ``--ort-entropy-2048`` adds Entropy with 2048 histogram bins, minutes per
  row); W8A8 and W4A8 (``QuantType.QInt4`` weights, the same first and last layers int8); run by
  an ORT InferenceSession. Export and pre-processing happen once per model, not in the times.
* **NNCF**: ``nncf.quantize`` (ONNX backend, defaults: fast bias correction on) on the same
  pre-processed ONNX model, run by ORT; only when ``nncf`` is importable. NNCF is not a project
  dependency: run the bench from a separate venv with ``pip install nncf`` and the project.

Adding an hwsim row (e.g. a calibration pipeline from ``quant/calibrate/``) is one line in
``RECIPES``: a row name mapped to a function of a ``PTQInput`` returning a ``QuantizedModel``,
e.g. with ``correct_biases`` from ``quant.calibrate.bias_correction``::

    "hwsim W8A8 +biascorr": lambda inp: correct_biases(inp.state(inp.base), inp.batches).model(),

``PTQInput`` carries the float model, the calibration batches, the model's activation policy
(``base``: the ``QuantConfig`` every recipe starts from) and its conv/linear layers in execution
order; ``inp.quantize(config)`` and ``inp.state(config)`` do the capture and range calibration.

    .venv/bin/python bench/bench_ptq.py [--model mobilenet_v2|minilm|all] [--images N]
        [--sentences N] [--skip-peers] [--skip-pipelines] [--ort-entropy-2048]
        [--json out.json]

``--images`` / ``--sentences`` shrink the evaluation (and MiniLM's calibration) for quick runs.
Seeded (SEED) and deterministic: hwsim's calibration reservoirs, ORT's calibrators and the
integer program have no randomness left.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _ptq_metrics as metrics  # noqa: E402  (bench/_ptq_metrics.py)

import quant  # noqa: E402
from hwsim.executor import execute  # noqa: E402
from hwsim.lower import lower  # noqa: E402

SEED = 0
ONNX_OPSET = 17
EVAL_BATCH = 10  # images per integer-program / ORT call

INT8_WEIGHTS = quant.IntFormat(bits=8, signed=True, symmetric=True, per_channel=True)
INT4_WEIGHTS = quant.IntFormat(bits=4, signed=True, symmetric=True, per_channel=True)


# ---- hwsim recipes ------------------------------------------------------------------------
@dataclass(frozen=True)
class PTQInput:
    """What every hwsim recipe is given.

    Attributes:
        model: the float model (eval mode).
        batches: calibration batches, as ``quant.quantize`` takes them.
        example: the capture input.
        base: the model's activation policy, weights at the default int8 per channel: the
            ``QuantConfig`` recipes start from (replace its weight formats, keep the rest).
        weighted: conv2d / linear record names in execution order.
    """

    model: nn.Module
    batches: tuple[torch.Tensor, ...]
    example: torch.Tensor
    base: quant.QuantConfig
    weighted: tuple[str, ...]
    groups: tuple[int, ...] | None = None

    def quantize(self, config: quant.QuantConfig) -> quant.QuantizedModel:
        """Capture, calibrate activation ranges on ``batches`` and quantize under ``config``."""
        return quant.quantize(self.model, config, self.batches, example_input=self.example)

    def state(self, config: quant.QuantConfig):
        """The ``quant.calibrate.CalibrationState`` after capture and range calibration: the
        input of the post-training steps in ``quant/calibrate/``."""
        from quant.model import initial_state

        return initial_state(self.model, config, self.batches, example_input=self.example)

    def weights(self, fmt: Any, *, first_last: Any = None) -> quant.QuantConfig:
        """``base`` with every weight in ``fmt``; the first and last conv/linear layers in
        ``first_last`` when given."""
        layer_weight = dict(self.base.layer_weight)
        if first_last is not None:
            layer_weight[self.weighted[0]] = layer_weight[self.weighted[-1]] = first_last
        return dataclasses.replace(self.base, weight=fmt, layer_weight=layer_weight)


Recipe = Callable[[PTQInput], quant.QuantizedModel]


def w8a8(inp: PTQInput) -> quant.QuantizedModel:
    """int8 symmetric per-channel weights (``quant.QuantConfig()``'s), min-max activations."""
    return inp.quantize(inp.weights(INT8_WEIGHTS))


def w4a8(inp: PTQInput) -> quant.QuantizedModel:
    """int4 symmetric per-channel weights, the first and last conv/linear layers int8."""
    return inp.quantize(inp.weights(INT4_WEIGHTS, first_last=INT8_WEIGHTS))


def pipeline(name: str, bits: int) -> Recipe:
    """The "light" / "advanced" calibration pipeline (``quant.calibrate.pipeline``) on the
    W8A8 or W4A8 formats above; samples with the same ``PTQInput.groups`` label (an image and
    its flip) are held out together."""
    from quant.calibrate import PipelineConfig

    def recipe(inp: PTQInput) -> quant.QuantizedModel:
        config = (inp.weights(INT8_WEIGHTS) if bits == 8
                  else inp.weights(INT4_WEIGHTS, first_last=INT8_WEIGHTS))
        pipe = PipelineConfig(name, groups=inp.groups, seed=SEED)
        return inp.quantize(dataclasses.replace(config, calibration=pipe))
    return recipe


RECIPES: dict[str, Recipe] = {
    "hwsim W8A8": w8a8,
    "hwsim W4A8": w4a8,
}
def w4g32_adaquant(inp: PTQInput) -> quant.QuantizedModel:
    """int4 weights with one scale per 32 input features (``quant.GroupIntFormat``), after
    smoothing and the outlier split (32 outlier channels or none, so the split layers keep
    whole groups), then sequential AdaQuant holding out whole sentences."""
    from quant.calibrate import adaquant, smooth, split_outliers

    state = inp.state(inp.weights(quant.GroupIntFormat(bits=4, group_size=32)))
    state = smooth(state, inp.batches, seed=SEED)
    state = split_outliers(state, inp.batches, counts=(0, 32), seed=SEED)
    sentence = [i for i, b in enumerate(inp.batches) for _ in range(b.shape[0])]
    return adaquant(state, inp.batches, seed=SEED, groups=sentence).model()


# transformers only: SmoothQuant, then BERT's FFN outlier channels split off
# (quant.calibrate.smooth, split_outliers; strengths chosen on held-out calibration samples)
TRANSFORMER_RECIPES: dict[str, Recipe] = {
    "hwsim W8A8 smooth": lambda inp: quant.calibrate.smooth(
        inp.state(inp.weights(INT8_WEIGHTS)), inp.batches, seed=SEED).model(),
    "hwsim W8A8 smooth+split": lambda inp: quant.calibrate.split_outliers(quant.calibrate.smooth(
        inp.state(inp.weights(INT8_WEIGHTS)), inp.batches, seed=SEED), inp.batches,
        seed=SEED).model(),
    "hwsim W4A8 smooth+split": lambda inp: quant.calibrate.split_outliers(quant.calibrate.smooth(
        inp.state(inp.weights(INT4_WEIGHTS, first_last=INT8_WEIGHTS)), inp.batches, seed=SEED),
        inp.batches, seed=SEED).model(),
    "hwsim W4g32A8 smooth+split+adaquant": w4g32_adaquant,
}
# classifiers only: the pipelines' loss is the KL of the output softmax
PIPELINE_RECIPES: dict[str, Recipe] = {
    "hwsim W8A8 light": pipeline("light", 8),
    "hwsim W8A8 advanced": pipeline("advanced", 8),
    "hwsim W4A8 light": pipeline("light", 4),
    "hwsim W4A8 advanced": pipeline("advanced", 4),
}


# ---- models ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelCase:
    """A model and its split.

    Attributes:
        name: the ``--model`` name.
        kind: "classifier" (logit columns) or "embedding" (cosine columns).
        model: the float model (eval mode).
        calib: calibration samples, one per ORT / NNCF calibration step.
        hwsim_batches: the same samples as hwsim's calibration batches.
        example: capture and ONNX export input.
        evals: evaluation inputs, each run in one call.
        reduce: one call's model output -> the rows compared (logits, or one embedding).
        policies: captured graph -> {row suffix: base QuantConfig}; hwsim rows are every
            recipe under every policy.
        groups: one label per calibration sample: samples held out together by the
            calibration pipelines (None: each sample its own).
        ragged: calibration samples differ in shape (one sentence each).
        split_note: how the split was made (printed under the table).
        policy_note: what the hwsim activation policies are.
    """

    name: str
    kind: str
    model: nn.Module
    calib: tuple[torch.Tensor, ...]
    hwsim_batches: tuple[torch.Tensor, ...]
    example: torch.Tensor
    evals: tuple[torch.Tensor, ...]
    reduce: Callable[[np.ndarray], np.ndarray]
    policies: Callable[[quant.LayerGraph], dict[str, quant.QuantConfig]]
    ragged: bool
    split_note: str
    policy_note: str
    groups: tuple[int, ...] | None = None


def mobilenet_case(images: int = 50) -> ModelCase:
    from hwsim.zoo import mobilenet_v2, sample_images

    calib = sample_images("calib")
    evals = sample_images("eval")[:images]
    return ModelCase(
        name="mobilenet_v2", kind="classifier", model=mobilenet_v2().eval(),
        calib=tuple(calib.split(1)), hwsim_batches=(calib,), example=calib[:1],
        evals=tuple(evals.split(EVAL_BATCH)), reduce=lambda y: y,
        policies=lambda graph: {"": quant.QuantConfig()}, ragged=False,
        split_note=f"calibration: sample_images('calib') ({len(calib)} images); evaluation: "
                   f"sample_images('eval')[:{len(evals)}]",
        policy_note="hwsim activations: uint8 asymmetric per tensor, min-max ranges "
                    "(quant.QuantConfig()'s); the pipelines set their own ranges",
        groups=tuple(i // 2 for i in range(len(calib))))  # 14 pictures, each with its flip


def split_sentences(texts: list[str]) -> tuple[list[str], list[str]]:
    """Repeats dropped (first occurrence kept), then even positions calibrate and odd ones
    evaluate: two disjoint halves that both mix the grammar's sentences and its facts."""
    unique = list(dict.fromkeys(texts))
    return unique[0::2], unique[1::2]


def minilm_case(sentences: int = 200) -> ModelCase:
    from hwsim.minilm_flow import residual_stream
    from hwsim.zoo import minilm
    from hwsim.zoo.sentences import sentences as generated

    model = minilm()
    calib_texts, eval_texts = split_sentences(generated(sentences, seed=SEED))
    calib = tuple(model.embed(s) for s in calib_texts)
    act = quant.IntFormat(bits=8, signed=True, symmetric=False)
    wide = quant.IntFormat(bits=16, signed=True, symmetric=False)

    def policies(graph: quant.LayerGraph) -> dict[str, quant.QuantConfig]:
        return {"": quant.QuantConfig(activation=act),
                " res16": quant.QuantConfig(activation=act, layer_activation={
                    name: wide for name in residual_stream(graph)})}

    return ModelCase(
        name="minilm", kind="embedding", model=model.encoder, calib=calib, hwsim_batches=calib,
        example=calib[0], evals=tuple(model.embed(s) for s in eval_texts),
        reduce=lambda h: model.pool(h)[None], policies=policies, ragged=True,
        split_note=f"sentences({sentences}) without repeats: {len(calib_texts)} calibrate (even "
                   f"positions), {len(eval_texts)} evaluate (odd)",
        policy_note="hwsim activations: int8 asymmetric per tensor, min-max ranges; 'res16': the "
                    "residual stream (adds and their inputs) at int16, hwsim.minilm_flow's "
                    "default; LayerNorm, GELU, softmax in float32 (vector unit)")


CASES: dict[str, Callable[[argparse.Namespace], ModelCase]] = {
    "mobilenet_v2": lambda args: mobilenet_case(args.images),
    "minilm": lambda args: minilm_case(args.sentences),
}


# ---- running and scoring ---------------------------------------------------------------------
@torch.no_grad()
def float_outputs(case: ModelCase) -> np.ndarray:
    """The float model's reduced outputs on the evaluation inputs: the reference of every row."""
    return np.concatenate([case.reduce(case.model(x).numpy()) for x in case.evals])


def score(case: ModelCase, reference: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    if case.kind == "classifier":
        return metrics.classifier_metrics(reference, outputs)
    return metrics.embedding_metrics(reference, outputs)


def weighted_records(graph: quant.LayerGraph) -> list[quant.LayerRecord]:
    """conv2d / linear records in execution order."""
    return [r for r in graph if r.op in ("conv2d", "linear")]


def hwsim_rows(case: ModelCase, reference: np.ndarray, recipes: dict[str, Recipe],
               graph: quant.LayerGraph) -> Iterator[dict[str, Any]]:
    """Every recipe under every activation policy of ``case``, as integer programs
    (``graph``: the model captured on ``case.example``); each row as soon as it is scored."""
    weighted = tuple(r.name for r in weighted_records(graph))
    for suffix, base in case.policies(graph).items():
        inp = PTQInput(case.model, case.hwsim_batches, case.example, base, weighted,
                       case.groups)
        for name, recipe in recipes.items():
            yield hwsim_row(case, reference, name + suffix, recipe, inp)


def hwsim_row(case: ModelCase, reference: np.ndarray, name: str, recipe: Recipe,
              inp: PTQInput) -> dict[str, Any]:
    torch.manual_seed(SEED)
    start = time.perf_counter()
    qm = recipe(inp)
    program = lower(qm, requant="dyadic", accumulator_bits=32, accumulator_mode="wrap",
                    name=f"{case.name}_{name.replace(' ', '_')}")
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    outputs = []
    for x in case.evals:
        codes = execute(program, qm.quantize_input(x)).output.astype(np.int64)
        outputs.append(case.reduce(program.output.out.dequantize(codes)))
    eval_seconds = time.perf_counter() - start
    return {"row": name, "tool": "hwsim", **score(case, reference, np.concatenate(outputs)),
            "seconds": seconds, "eval_seconds": eval_seconds}


# ---- ONNX Runtime ----------------------------------------------------------------------------
ORT_METHODS = ("MinMax", "Percentile", "Entropy")
# Entropy with 2048 histogram bins (quantize_static cannot pass a bin count; see ort_quantize):
# opt-in (--ort-entropy-2048), its threshold search took ~200 s per row on MobileNetV2 here.
ORT_ENTROPY_2048 = "Entropy-2048"
ORT_WEIGHTS = {8: "QInt8", 4: "QInt4"}


def export_onnx(case: ModelCase, workdir: Path) -> tuple[Path, float]:
    """The float model as ONNX (TorchScript exporter, dynamic first axis) after ORT's
    ``quant_pre_process``; the path and the seconds both took."""
    from onnxruntime.quantization import quant_pre_process

    raw, pre = workdir / f"{case.name}.onnx", workdir / f"{case.name}_pre.onnx"
    start = time.perf_counter()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(case.model, (case.example,), str(raw), dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=ONNX_OPSET)
    quant_pre_process(str(raw), str(pre))
    return pre, time.perf_counter() - start


class _Reader:
    """ORT calibration data: one sample per ``get_next``; ``set_range`` for strided runs."""

    def __init__(self, samples: tuple[torch.Tensor, ...]) -> None:
        self._samples = [{"x": s.numpy()} for s in samples]
        self.set_range(0, len(self._samples))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        self._pos += 1
        return self._samples[self._pos - 1]

    def __len__(self) -> int:
        return len(self._samples)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pos, self._end = start_index, min(end_index, len(self._samples))


@dataclass(frozen=True)
class OnnxWeighted:
    """A Conv / Gemm / MatMul node with a constant weight."""

    node: str
    weight: str  # initializer name
    axis: int  # output-channel axis of the weight
    module_path: str  # the torch module it came from, read off the exporter's node name


def module_path_of(node_name: str) -> str:
    """The torch module path in a TorchScript-exporter node name ("" if it has none). Scopes
    are separated by "/"; a module's scope is its name relative to the nearest enclosing
    module that is not a container, so a scope extending the previous one replaces it:
    "/features/features.1/conv/conv.0/conv.0.0/Conv" -> "features.1.conv.0.0",
    "/layers/layers.0/query/Gemm" -> "layers.0.query"."""
    anchor = full = ""
    previous = None
    for scope in node_name.strip("/").split("/")[:-1]:
        if previous is None or not scope.startswith(previous + "."):
            anchor = full
        full = f"{anchor}.{scope}" if anchor else scope
        previous = scope
    return full


def weighted_onnx_nodes(path: Path) -> list[OnnxWeighted]:
    """Every Conv / Gemm / MatMul with a constant weight, in graph order."""
    import onnx

    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2 \
                or node.input[1] not in inits:
            continue
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        axis = 0 if node.op_type == "Conv" or (node.op_type == "Gemm" and trans_b) else 1
        out.append(OnnxWeighted(node.name, node.input[1], axis, module_path_of(node.name)))
    return out


def onnx_first_last(nodes: list[OnnxWeighted], first: str, last: str) -> tuple[OnnxWeighted, ...]:
    """The nodes of torch modules ``first`` and ``last`` (hwsim's first and last conv/linear),
    or the first and last weighted nodes in graph order when the names do not match."""
    by_path = {n.module_path: n for n in nodes}
    if first in by_path and last in by_path:
        return by_path[first], by_path[last]
    return nodes[0], nodes[-1]


def qdq_summary(model: Any) -> dict[str, dict[str, int]]:
    """What a QDQ model (onnx.ModelProto) quantizes: ``weight_types``, how many constant tensors
    of each integer type it dequantizes (int32 biases left out), and ``quantized_inputs``, how
    many inputs of each op type come from a dequantized activation."""
    import onnx

    inits = {i.name: i.data_type for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    weights: dict[str, int] = {}
    inputs: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            kind = onnx.TensorProto.DataType.Name(inits[node.input[0]]).lower()
            if kind != "int32":
                weights[kind] = weights.get(kind, 0) + 1
        for name in node.input:
            src = producer.get(name)
            if src is not None and src.op_type == "DequantizeLinear" and src.input[0] not in inits:
                inputs[node.op_type] = inputs.get(node.op_type, 0) + 1
    return {"weight_types": weights, "quantized_inputs": dict(sorted(inputs.items()))}


def _quiet_calls():
    """ORT's histogram calibrators print progress to stdout; keep it out of the tables."""
    return contextlib.redirect_stdout(io.StringIO())


def ort_quantize(case: ModelCase, pre: Path, out: Path, method: str, weight_bits: int,
                 keep_int8: tuple[OnnxWeighted, ...], workdir: Path) -> None:
    """``quantize_static``: QDQ, per-channel symmetric weights of ``weight_bits`` (4: the
    ``keep_int8`` nodes int8 by TensorQuantOverrides), uint8 asymmetric activations."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          create_calibrator, quantize_static, save_tensors_data)

    extra: dict[str, Any] = {"WeightSymmetric": True, "ActivationSymmetric": False}
    if weight_bits == 4:
        extra["TensorQuantOverrides"] = {n.weight: [{"quant_type": QuantType.QInt8, "axis": n.axis}]
                                         for n in keep_int8}
    if case.ragged:  # one sentence per collect_data: histogram calibrators stack a call's outputs
        extra["CalibStridedMinMax"] = 1
    calibrate_method = getattr(CalibrationMethod, method.split("-")[0])
    reader: _Reader | None = _Reader(case.calib)
    cache = None
    if method == ORT_ENTROPY_2048:  # quantize_static passes no bin count on: calibrate, then cache
        calibrator = create_calibrator(pre, augmented_model_path=str(workdir / "augmented.onnx"),
                                       calibrate_method=calibrate_method,
                                       extra_options={"num_bins": 2048, "num_quantized_bins": 128})
        with _quiet_calls():
            for i in range(len(case.calib)):
                calibrator.collect_data(_Reader(case.calib[i:i + 1]))
            ranges = calibrator.compute_data()
        cache = workdir / f"{case.name}_entropy2048.json"
        save_tensors_data(ranges, cache)
        reader = None
    with _quiet_calls():
        quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=False,
                        activation_type=QuantType.QUInt8,
                        weight_type=getattr(QuantType, ORT_WEIGHTS[weight_bits]),
                        calibrate_method=calibrate_method, extra_options=extra,
                        calibration_cache_path=None if cache is None else str(cache))


def ort_outputs(case: ModelCase, model: Path | bytes) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                   providers=["CPUExecutionProvider"])
    return np.concatenate([case.reduce(session.run(None, {"x": x.numpy()})[0])
                           for x in case.evals])


def ort_rows(case: ModelCase, reference: np.ndarray, pre: Path, workdir: Path,
             emit: Callable[[dict[str, Any]], None], keep_int8: tuple[OnnxWeighted, ...],
             methods: tuple[str, ...] = ORT_METHODS) -> list[dict[str, Any]]:
    import onnx

    rows = []
    for weight_bits in (8, 4):
        for method in methods:
            name = f"ORT {method} W{weight_bits}A8"
            out = workdir / f"{case.name}_{method}_w{weight_bits}.onnx"
            start = time.perf_counter()
            try:
                ort_quantize(case, pre, out, method, weight_bits, keep_int8, workdir)
                seconds = time.perf_counter() - start
                outputs = ort_outputs(case, out)
            except Exception as exc:  # shown in the table: ORT cannot produce or run this row
                row = {"row": name, "tool": "onnxruntime", "error": _why(exc)}
            else:
                row = {"row": name, "tool": "onnxruntime", **score(case, reference, outputs),
                       "seconds": seconds, **qdq_summary(onnx.load(str(out)))}
            emit(row)
            rows.append(row)
    return rows


def nncf_rows(case: ModelCase, reference: np.ndarray, pre: Path,
              emit: Callable[[dict[str, Any]], None]) -> list[str]:
    """``nncf.quantize`` on the pre-processed ONNX model (its defaults; every calibration
    sample); the notes under the table."""
    import nncf
    import onnx

    dataset = nncf.Dataset([{"x": s.numpy()} for s in case.calib])
    model = onnx.load(str(pre))
    model_type = nncf.ModelType.TRANSFORMER if case.kind == "embedding" else None
    start = time.perf_counter()
    summary = None
    try:
        quantized = nncf.quantize(model, dataset, subset_size=len(case.calib),
                                  model_type=model_type)
        seconds = time.perf_counter() - start
        outputs = ort_outputs(case, quantized.SerializeToString())
    except Exception as exc:  # shown in the table
        emit({"row": "NNCF W8A8", "tool": "nncf", "error": _why(exc)})
    else:
        summary = qdq_summary(quantized)
        emit({"row": "NNCF W8A8", "tool": "nncf", **score(case, reference, outputs),
              "seconds": seconds, **summary})
    emit({"row": "NNCF W4A8", "tool": "nncf",
          "error": "not offered: nncf.quantize has int8 (and fp8) modes only; 4-bit weights "
                   "are nncf.compress_weights, weight-only (float activations)"})
    preset = ("MIXED, with model_type=TRANSFORMER as NNCF advises for transformers (it adds "
              "SmoothQuant)" if model_type else "PERFORMANCE: symmetric activations")
    notes = [f"NNCF {nncf.__version__}, ONNX backend: nncf.quantize defaults (preset {preset}; "
             "int8 per-channel symmetric weights; per-tensor activation ranges = mean over the "
             "samples of each sample's min / max; fast bias correction on), subset_size = "
             f"{len(case.calib)} (all calibration samples), run by ONNX Runtime"]
    if summary is not None:
        notes.append(f"NNCF W8A8: dequantized constants by type {summary['weight_types']}; "
                     f"inputs fed by quantized activations, by op: {summary['quantized_inputs']}")
    return notes


def _why(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


# ---- output -----------------------------------------------------------------------------------
class Results:
    """Rows and notes per model; rewritten to ``path`` (if any) after every change."""

    def __init__(self, path: Path | None, meta: dict[str, Any]) -> None:
        self.path, self.data = path, {"meta": meta, "models": {}}

    def add_row(self, model: str, row: dict[str, Any]) -> None:
        self._model(model)["rows"].append(row)
        self._save()

    def add_note(self, model: str, note: str) -> None:
        self._model(model)["notes"].append(note)
        self._save()

    def _model(self, model: str) -> dict[str, Any]:
        return self.data["models"].setdefault(model, {"rows": [], "notes": []})

    def _save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self.data, indent=1, default=float) + "\n")


COLUMNS = {
    "classifier": (("top1", "top-1", "{:.3f}"), ("top5", "top-5", "{:.3f}"),
                   ("sqnr_db", "SQNR dB", "{:.2f}"), ("kl", "KL", "{:.4f}"),
                   ("seconds", "time s", "{:.1f}")),
    "embedding": (("cos_mean", "cos mean", "{:.4f}"), ("cos_min", "cos min", "{:.4f}"),
                  ("seconds", "time s", "{:.1f}")),
}
NAME_WIDTH = 26


def format_row(kind: str, row: dict[str, Any]) -> str:
    cells = [f"{row['row']:<{NAME_WIDTH}}"]
    if "error" in row:
        return f"{cells[0]} -- {row['error']}"
    for key, head, fmt in COLUMNS[kind]:
        cells.append(f"{fmt.format(row[key]):>{max(len(head), 8)}}")
    return " ".join(cells)


def header(kind: str) -> str:
    heads = [f"{'row':<{NAME_WIDTH}}"] + [f"{h:>{max(len(h), 8)}}" for _, h, _ in COLUMNS[kind]]
    return " ".join(heads)


# ---- main -------------------------------------------------------------------------------------
def run_case(case: ModelCase, args: argparse.Namespace, results: Results) -> None:
    print(f"\n== {case.name} ==  ({case.split_note})", flush=True)
    print(header(case.kind), flush=True)

    def emit(row: dict[str, Any]) -> None:
        results.add_row(case.name, row)
        print(format_row(case.kind, row), flush=True)

    reference = float_outputs(case)
    graph = quant.capture(case.model, case.example)
    recipes = dict(RECIPES)
    if case.kind == "classifier" and not args.skip_pipelines:
        recipes.update(PIPELINE_RECIPES)
    if case.kind == "embedding":
        recipes.update(TRANSFORMER_RECIPES)
    for row in hwsim_rows(case, reference, recipes, graph):
        emit(row)
    notes = [case.policy_note,
             "hwsim: integer program (hwsim.lower, dyadic requantization, int32 wrapping "
             "accumulators) run bit-accurately by hwsim.executor; W8A8: int8 symmetric per-channel "
             "weights; W4A8: int4 symmetric per-channel, first and last conv/linear int8"]
    if args.skip_peers:
        notes.append("peers skipped (--skip-peers)")
    else:
        weighted = weighted_records(graph)
        notes += peer_rows(case, reference, emit, args,
                           (weighted[0].module_path, weighted[-1].module_path))
    for note in notes:
        results.add_note(case.name, note)
        print(f"  * {note}")


def peer_rows(case: ModelCase, reference: np.ndarray, emit: Callable[[dict[str, Any]], None],
              args: argparse.Namespace, first_last: tuple[str, str]) -> list[str]:
    """ONNX Runtime and NNCF rows; ``first_last``: the torch modules of hwsim's first and last
    conv/linear layers, kept int8 in the W4A8 rows. Returns the notes."""
    import importlib.util

    import onnxruntime

    methods = ORT_METHODS + ((ORT_ENTROPY_2048,) if args.ort_entropy_2048 else ())
    with tempfile.TemporaryDirectory(prefix="bench_ptq_") as tmp:
        workdir = Path(tmp)
        pre, export_seconds = export_onnx(case, workdir)
        keep_int8 = onnx_first_last(weighted_onnx_nodes(pre), *first_last)
        rows = ort_rows(case, reference, pre, workdir, emit, keep_int8, methods)
        notes = [
            f"ORT {onnxruntime.__version__} quantize_static: QDQ, activation_type=QUInt8 "
            "(asymmetric per tensor), weight_type=QInt8 / QInt4 with WeightSymmetric=True, "
            f"per_channel=True, reduce_range=False; W4A8 keeps {keep_int8[0].node} and "
            f"{keep_int8[-1].node} int8 (TensorQuantOverrides)",
            "ORT calibrators at their defaults: Percentile 99.999 of |x| in 2048 bins "
            "(symmetric range); Entropy 128 bins / 128 quantized bins"
            + ("; Entropy-2048: 2048 bins through create_calibrator + calibration_cache_path"
               if args.ort_entropy_2048 else "")
            + ("; one sentence per calibration pass (CalibStridedMinMax=1: the histogram "
               "calibrators cannot stack sentences of different lengths)" if case.ragged else ""),
            f"ONNX: torch.onnx.export (TorchScript exporter, opset {ONNX_OPSET}) + "
            f"quant_pre_process, {export_seconds:.1f} s once, not in the rows' times"]
        notes += _entropy_note(rows)
        notes += [f"{r['row']}: dequantized constants by type {r['weight_types']}; inputs fed "
                  f"by quantized activations, by op: {r['quantized_inputs']}"
                  for r in rows[:1] + rows[len(methods):len(methods) + 1] if "weight_types" in r]
        if importlib.util.find_spec("nncf") is None:
            emit({"row": "NNCF", "tool": "nncf", "error": "not installed"})
            notes.append("NNCF: not installed here; for its rows run this bench from a separate "
                         "venv with `pip install nncf` and the project (`pip install -e .`)")
        else:
            notes += nncf_rows(case, reference, pre, emit)
    return notes


def _entropy_note(rows: list[dict[str, Any]]) -> list[str]:
    """A note when ORT's default Entropy rows equal the MinMax rows."""
    by_name = {r["row"]: r for r in rows if "error" not in r}
    same = [bits for bits in (8, 4)
            if f"ORT Entropy W{bits}A8" in by_name and f"ORT MinMax W{bits}A8" in by_name
            and all(by_name[f"ORT Entropy W{bits}A8"][k] == by_name[f"ORT MinMax W{bits}A8"][k]
                    for k in by_name[f"ORT MinMax W{bits}A8"] if k not in ("row", "seconds"))]
    if not same:
        return []
    return ["ORT Entropy at its defaults scores exactly as MinMax: with as many histogram bins as "
            "quantized bins (128) its threshold search has one candidate, the full range"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*CASES, "all"], default="all")
    parser.add_argument("--images", type=int, default=50,
                        help="MobileNetV2 evaluation images, 1..50 (default 50)")
    parser.add_argument("--sentences", type=int, default=200,
                        help="MiniLM sentences generated before the split (default 200)")
    parser.add_argument("--skip-peers", action="store_true",
                        help="hwsim rows only (no ONNX Runtime / NNCF)")
    parser.add_argument("--skip-pipelines", action="store_true",
                        help="no rows of the light / advanced calibration pipelines")
    parser.add_argument("--ort-entropy-2048", action="store_true",
                        help="add ORT Entropy rows with 2048 histogram bins (minutes per row)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads (default 1: the bench's calls are small, and "
                             "on a busy 2-core machine thread wake-ups dominated them)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the results here, after every row")
    args = parser.parse_args(argv)
    if not 1 <= args.images <= 50:
        parser.error(f"--images must be in 1..50 (the zoo's evaluation images); got {args.images}")
    if args.torch_threads < 1:
        parser.error(f"--torch-threads must be at least 1; got {args.torch_threads}")
    if args.sentences < 4:
        parser.error(f"--sentences must be at least 4; got {args.sentences}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(args.torch_threads)
    names = list(CASES) if args.model == "all" else [args.model]
    results = Results(args.json, {"seed": SEED, "torch": torch.__version__,
                                  "torch_threads": args.torch_threads,
                                  "argv": sys.argv[1:] if argv is None else list(argv)})
    print(f"torch {torch.__version__}, {args.torch_threads} intra-op thread(s); ONNX Runtime at "
          "its default threads; times are wall-clock seconds on this machine")
    for name in names:
        run_case(CASES[name](args), args, results)


if __name__ == "__main__":
    main()

"""all-MiniLM-L6-v2 through hwsim: quantize the encoder, lower it, and compare sentence
embeddings of the integer program with the float model (torch bridge, like ``hwsim.flows``).

What runs where (stated in every report):

* integer: every Linear (int8 or int4 weights per output channel, int8 input activations) and
  both attention matmuls (Q·K^T and P·V on int8 codes), bit-accurately;
* float on a vector unit: LayerNorm, GELU and softmax (dequantize, float32, requantize), the
  token-embedding lookup and the final mean pooling;
* activations: 8-bit per tensor (min-max) wherever they enter a Linear or a matmul, and the
  residual stream (the adds, the two Linear outputs added to it, and the LayerNorm outputs on
  the skip path) held at ``residual_bits`` (16 by default): its outlier channels make 8 bits
  there cost most of the accuracy. The vector unit writes each LayerNorm output twice: at
  ``residual_bits`` for the skip connection and at ``act_bits`` (the encoder's QuantStub
  copies) for the MAC array.

Two calibration steps move BERT's outlier channels out of the 8-bit tensors (both on by
default, each choosing its strength on held-out calibration sentences, so each can decide to
do nothing): ``quant.calibrate.smooth`` (SmoothQuant: the LayerNorm outputs feeding the
QKV and FFN-up linears; the MAC-array copy of each LayerNorm output becomes a LayerNorm with
gamma / s and beta / s, the linears' weight columns are multiplied by s) and
``quant.calibrate.split_outliers`` (the few outlier hidden channels of each FFN block, before
and after GELU, in a tensor of their own).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import quant
from hwsim.executor import execute
from hwsim.ir import IntProgram
from hwsim.lower import lower
from hwsim.zoo.minilm import MiniLM, minilm
from hwsim.zoo.sentences import sentences as generated_sentences
from quant.calibrate import smooth_with_report, split_outliers_with_report
from quant.calibrate.outlier_split import OutlierSplitReport
from quant.calibrate.smooth import SmoothingReport
from quant.model import initial_state


@dataclass
class MiniLMRun:
    """A quantized MiniLM encoder: float model, fake-quant model, integer program, config."""

    model: MiniLM
    qm: object
    program: IntProgram
    weight_bits: int
    act_bits: int
    residual_bits: int
    smoothing: SmoothingReport | None = None  # what quant.calibrate.smooth did (when run)
    outlier_split: OutlierSplitReport | None = None  # what split_outliers did (when run)


def residual_stream(graph: quant.LayerGraph) -> list[str]:
    """Records on the residual stream: every add and the records feeding an add (the skip
    path's LayerNorm outputs and the Linear outputs added to it); not the model input."""
    names = []
    for rec in graph:
        if rec.op == "add":
            names += [*rec.inputs, rec.name]
    return sorted(set(names) - {graph.input_name})


def quantize_minilm(weight_bits: int = 8, act_bits: int = 8, residual_bits: int = 16,
                    calib_sentences: int = 32, seed: int = 0,
                    requant: str = "dyadic", smooth: bool = True,
                    split_outliers: bool = True) -> MiniLMRun:
    """Quantize and lower the encoder, calibrated on ``calib_sentences`` generated sentences
    (``seed``), disjoint from the evaluation ones of ``minilm_cosines``' default.
    ``smooth`` / ``split_outliers``: run those calibration steps (module docstring)."""
    model = minilm()
    held_out = set(generated_sentences(300))  # the default evaluation sentences
    texts = [s for s in generated_sentences(4 * calib_sentences, seed=seed + 1000)
             if s not in held_out][:calib_sentences]
    calib = [model.embed(s) for s in texts]
    graph = quant.capture(model.encoder, calib[0])
    act = quant.IntFormat(bits=act_bits, signed=True, symmetric=False)
    wide = quant.IntFormat(bits=residual_bits, signed=True, symmetric=False)
    config = quant.QuantConfig(
        weight=quant.IntFormat(bits=weight_bits, signed=True, symmetric=True, per_channel=True),
        activation=act,
        layer_activation={name: wide for name in residual_stream(graph)} if residual_bits != act_bits else {})
    state = initial_state(model.encoder, config, calib, example_input=calib[0])
    smoothing = split = None
    if smooth:
        result = smooth_with_report(state, calib, seed=seed)
        state, smoothing = result.state, result.report
    if split_outliers:
        result = split_outliers_with_report(state, calib, seed=seed)
        state, split = result.state, result.report
    qm = state.model()
    return MiniLMRun(model, qm, lower(qm, requant=requant, name="minilm"), weight_bits,
                     act_bits, residual_bits, smoothing, split)


def minilm_cosines(run: MiniLMRun, sentences: list[str] | None = None) -> pd.DataFrame:
    """Per sentence: ``tokens`` and the cosine similarities of the sentence embeddings
    ``int_vs_float``, ``fake_vs_float``, ``int_vs_fake`` (float64; embeddings are mean-pooled,
    L2-normalized last hidden states). Default sentences: 300 generated ones (seed 0)."""
    sentences = generated_sentences(300) if sentences is None else sentences
    model, qm, program = run.model, run.qm, run.program
    rows = []
    for text in sentences:
        x = model.embed(text)
        ref = model.pool(model.encoder(x).detach().numpy())
        fake = model.pool(qm(x).detach().numpy())
        codes = execute(program, qm.quantize_input(x)).output
        integer = model.pool(program.output.out.dequantize(codes.astype(np.int64)))
        rows.append({"tokens": int(x.shape[0]), "int_vs_float": float(integer @ ref),
                     "fake_vs_float": float(fake @ ref), "int_vs_fake": float(integer @ fake)})
    return pd.DataFrame(rows)

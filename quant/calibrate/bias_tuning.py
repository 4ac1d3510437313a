"""Bias tuning: train only the biases so the fake-quant model's outputs match the float model's.

Hubara et al., "Improving Post Training Neural Quantization: Layer-wise Calibration and Integer
Programming" (2020), Section 6 ("bias tuning"): minimize ``KL(softmax(float logits) ||
softmax(quantized logits))`` over the calibration data with respect to the biases alone,
gradients through the fake-quant forward by the straight-through estimator
(``quant.calibrate.ste``).  Weights, weight parameters and activation ranges stay as they are;
a tuned bias keeps integer codes in the ``QuantConfig.bias_bits`` range.

Each bias is trained as ``b0 + s_y · delta`` with ``s_y`` the scale of the layer's output
activation, so the learning rate is a fraction of one output code step per Adam step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F

from quant._validate import check_float, check_int
from quant.calibrate.kl import kl_per_sample, log_probs
from quant.calibrate.samples import (check_groups, generator, held_out_samples,
                                      stack_batches, training_samples)
from quant.calibrate.state import CalibrationState, with_layer
from quant.calibrate.ste import (bias_code_limit, bias_in_range, bias_scale, fake_quant_bias,
                                 model_tensors, ste_forward)
from quant.errors import QuantError
from quant.execute import float_params, run_graph
from quant.graph import WEIGHTED_OPS, LayerGraph

DEFAULT_ITERS = 40
DEFAULT_LR = 0.01
DEFAULT_BATCH_SIZE = 7


@dataclass(frozen=True)
class BiasTuningReport:
    """What one bias-tuning run did.

    KL: mean over samples of KL(float ‖ fake-quant) of the output softmax, nats per sample.

    Attributes:
        kl_before / kl_after: over all the calibration data, the model before and the one
            returned.
        held_out_before / held_out_after: the same over the held-out samples only, run as one
            batch (with fewer than 4 samples nothing is held out: over the training samples).
        layers: the layers whose biases were tuned.
        skipped: layer name -> why its bias was not tuned (no bias; a float bias).
        kept: the tuned biases were kept (they lowered the held-out KL; without held-out
            samples, the KL over all the data).
        seconds: wall time.
        diverged_at: the first step whose training loss was not finite (training stopped
            there; the best biases scored before it are kept, if any beat the start), or 0.
    """

    kl_before: float
    kl_after: float
    held_out_before: float
    held_out_after: float
    layers: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    kept: bool = True
    seconds: float = 0.0
    diverged_at: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "skipped", MappingProxyType(dict(self.skipped)))

    def to_text(self) -> str:
        return (f"bias tuning: {len(self.layers)} layers, KL {self.kl_before:.4g} -> "
                f"{self.kl_after:.4g} nats/sample (held out {self.held_out_before:.4g} -> "
                f"{self.held_out_after:.4g}; {'kept' if self.kept else 'not kept'}), "
                f"{self.seconds:.1f} s"
                + (f"; loss diverged at step {self.diverged_at}" if self.diverged_at else ""))


@dataclass(frozen=True)
class BiasTuningResult:
    """The tuned state and the report of how it was reached."""

    state: CalibrationState
    report: BiasTuningReport


def tune_biases(state: CalibrationState, data: torch.Tensor | Iterable[torch.Tensor], *,
                iters: int = DEFAULT_ITERS, lr: float = DEFAULT_LR,
                batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                reference: LayerGraph | None = None,
                groups: Sequence[Hashable] | None = None) -> CalibrationState:
    """Bias tuning (module docstring) of every conv2d / linear layer with an integer bias.

    Args:
        state: the state to tune.
        data: calibration inputs, one float tensor (N, ...) or batches of them.
        iters: Adam steps (default 40).
        lr: Adam learning rate in output code steps of each layer (default 0.01), decayed to 0
            on a cosine schedule.
        batch_size: samples per step (default 7).
        seed: seed of the held-out samples and of the sample order; the result is
            deterministic given it.  With AdaQuant's seed and groups, the held-out samples are
            the ones AdaQuant did not train on.
        reference: the float graph whose outputs are the target (default ``state.graph``).
            After a step that stores decoded codes as float weights (AdaQuant), pass the graph
            from before that step.
        groups: one label per sample (N): samples with the same label are held out together
            (e.g. an image and its flipped copy); default: every sample its own group.
    A quarter of the samples (of the groups: ``samples.held_out_samples``) is not trained on;
    the biases are scored on them at the start and at 4 evenly spaced steps and the best are
    returned (the state is returned unchanged if none beats the start).  A step whose loss is
    not finite stops the training (``BiasTuningReport.diverged_at``).  The model output's last
    axis holds the logits (softmax over it).
    Raises:
        QuantError: a bad argument (named in the message); CalibrationError: empty data.
    """
    return tune_biases_with_report(state, data, iters=iters, lr=lr, batch_size=batch_size,
                                   seed=seed, reference=reference, groups=groups).state


def tune_biases_with_report(state: CalibrationState,
                            data: torch.Tensor | Iterable[torch.Tensor], *,
                            iters: int = DEFAULT_ITERS, lr: float = DEFAULT_LR,
                            batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                            reference: LayerGraph | None = None,
                            groups: Sequence[Hashable] | None = None) -> BiasTuningResult:
    """``tune_biases`` with the same arguments, returning the state and a ``BiasTuningReport``."""
    owner = "tune_biases"
    if not isinstance(state, CalibrationState):
        raise QuantError(f"The 'state' parameter of {owner} must be a CalibrationState. Got "
                         f"{type(state).__name__} instead.")
    check_int(iters, "iters", owner, 1, 10**7)
    check_float(lr, "lr", owner, 0.0, 100.0, lo_open=True)
    check_int(batch_size, "batch_size", owner, 1, 2**31 - 1)
    check_int(seed, "seed", owner, 0, 2**63 - 1)
    if reference is not None and not isinstance(reference, LayerGraph):
        raise QuantError(f"The 'reference' parameter of {owner} must be a LayerGraph or None. "
                         f"Got {type(reference).__name__} instead.")
    x = stack_batches(data, owner)
    start = time.perf_counter()
    model = state.model()
    target = _log_probs(_float_logits(state.graph if reference is None else reference, x))
    names, skipped = _tunable(model)
    held = held_out_samples(x.shape[0], seed, check_groups(groups, x.shape[0], owner))
    train = training_samples(x.shape[0], held)
    scored = train if held is None else held
    before = kl_per_sample(target, _log_probs(model.forward(x)))
    # the held-out score is always computed on exactly this batch: float results (and so
    # output codes at rounding boundaries) may depend on how the samples are batched
    start_score = _score(model, x, target, scored)
    if not names:
        report = BiasTuningReport(float(before.mean()), float(before.mean()), start_score,
                                  start_score, (), skipped, False, time.perf_counter() - start)
        return BiasTuningResult(state, report)

    tuner = _BiasTuner(model, names, state.config.bias_bits)
    opt = torch.optim.Adam(tuner.deltas, lr=lr)
    gen = generator(seed, 0)
    p = min(batch_size, train.shape[0])
    order, pos = train[torch.randperm(train.shape[0], generator=gen)], 0
    best, saved, diverged = start_score, None, 0
    check_at = {round(iters * (i + 1) / 4) for i in range(4)}
    for step in range(iters):
        if pos + p > order.shape[0]:
            order, pos = train[torch.randperm(train.shape[0], generator=gen)], 0
        idx = order[pos:pos + p]
        pos += p
        logits = ste_forward(model, x[idx], tuner.params())
        loss = kl_per_sample(target[idx], F.log_softmax(logits, dim=-1)).mean()
        if not torch.isfinite(loss):
            diverged = step + 1
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / iters))
        opt.step()
        if step + 1 in check_at:
            with torch.no_grad():
                score = _score(model, x, target, scored, tuner.params())
            if score < best:  # False for NaN
                best, saved = score, tuner.biases()

    tuned = state if saved is None else state.replace(graph=tuner.graph(state.graph, saved))
    after = before if saved is None else kl_per_sample(target,
                                                        _log_probs(tuned.model().forward(x)))
    report = BiasTuningReport(float(before.mean()), float(after.mean()), start_score, best,
                              tuple(names), skipped, saved is not None,
                              time.perf_counter() - start, diverged)
    return BiasTuningResult(tuned, report)


def _score(model, x: torch.Tensor, target: torch.Tensor, samples: torch.Tensor,
           params: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]] | None = None) -> float:
    """Mean KL over ``samples``, computed as one batch of the fake-quant forward."""
    logits = ste_forward(model, x[samples], params)
    return float(kl_per_sample(target[samples], _log_probs(logits)).mean())


class _BiasTuner:
    """The trained biases: ``b0 + s_y · delta`` per layer, fake-quantized to integer codes of
    ``s_x · s_w`` with STE gradients; the weights stay the model's decoded codes."""

    def __init__(self, model, names: list[str], bias_bits: int) -> None:
        self.names = names
        self.tensors = model_tensors(model)
        self.limit = bias_code_limit(bias_bits)
        self.b0 = {n: torch.from_numpy(model.graph[n].bias.copy()) for n in names}
        self.unit = {n: float(model.act_params(n).scale) for n in names}
        self.scales = {n: torch.from_numpy(bias_scale(model, n).copy()) for n in names}
        self.deltas = [torch.zeros_like(self.b0[n], requires_grad=True) for n in names]

    def params(self) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        out = dict(self.tensors)
        for n, d in zip(self.names, self.deltas):
            b = self.b0[n] + self.unit[n] * d
            out[n] = (self.tensors[n][0], fake_quant_bias(b, self.scales[n], self.limit))
        return out

    def biases(self) -> dict[str, np.ndarray]:
        """Current float32 biases with codes in range."""
        with torch.no_grad():
            return {n: bias_in_range((self.b0[n] + self.unit[n] * d).numpy(),
                                     self.scales[n].numpy(), self.limit)
                    for n, d in zip(self.names, self.deltas)}

    @staticmethod
    def graph(graph: LayerGraph, biases: Mapping[str, np.ndarray]) -> LayerGraph:
        for n, b in biases.items():
            graph = with_layer(graph, n, bias=b)
        return graph


def _tunable(model) -> tuple[list[str], dict[str, str]]:
    names, skipped = [], {}
    for rec in model.graph:
        if rec.op not in WEIGHTED_OPS:
            continue
        if rec.bias is None:
            skipped[rec.name] = "the layer has no bias"
        elif model.bias_codes(rec.name) is None:
            skipped[rec.name] = (f"its {model.weight_family(rec.name)} weight format keeps a "
                                 "float bias")
        else:
            names.append(rec.name)
    return names, skipped


def _float_logits(graph: LayerGraph, x: torch.Tensor) -> torch.Tensor:
    return run_graph(graph, x, float_params(graph), keep=False)[graph.output_name]


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return log_probs(logits, "tune_biases")

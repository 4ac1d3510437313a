"""AdaQuant: layer-wise calibration of quantized weights, biases and weight scales.

Hubara et al., "Improving Post Training Neural Quantization: Layer-wise Calibration and Integer
Programming" (2020), Section 3.  Every conv2d / linear layer with a uniform ``IntFormat`` or a
group-wise ``GroupIntFormat`` weight (one scale per (output channel, group); its bias stays
float) is optimized in turn (``quant.calibrate.layer_fit``): the mean squared error of its output,
after its fused activation clamp, between the float layer on its float input and the quantized
layer on its quantized input, over a weight perturbation, the bias and the weight scale(s).

Modes (what the quantized layer is fed):

* ``"parallel"``: the float model's input to the layer, fake-quantized with the producer's
  activation parameters (every layer sees float upstream layers).
* ``"sequential"``: the input the fake-quant model computes when the layers already processed
  use their optimized weights (the error of the layers before is seen and compensated).

The float reference is ``state.graph`` (or the ``reference`` graph).  Only the inputs of the
current layer (and the live values of the two forward passes) are held in memory.  A quarter of
the samples (``samples.held_out_samples``: of the ``groups``, e.g. an image together with its
flipped copy; the same for every layer) is never trained on, and every choice is made on them: each layer's starting scale (current or minimum-weight-MSE
clipping), its best checkpoint, and whether the result replaces the layer at all: a layer whose
output error on the held-out samples is not lower than before is left as it was.  With fewer
than 4 samples a quarter of each layer's output positions is held out instead.

The result keeps, for each optimized layer, a float weight equal to the decoded optimized
codes, the optimized bias and the optimized ``QuantParams`` in ``weight_params``, so
``state.model()`` encodes exactly the optimized codes (bias codes within
``QuantConfig.bias_bits``) and lowers to an ordinary integer program.  The state's graph is
then no longer the float model: pass the graph from before AdaQuant as ``reference`` to the
steps that follow (``tune_biases``, ``reestimate_bn``, another ``adaquant``).

Activation ranges are not optimized (an activation's parameters are shared by all its
consumers); the paper also trains them.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from quant._validate import check_choice, check_float, check_int
from quant.calibrate.layer_fit import LayerProblem, fit_layer
from quant.calibrate.samples import (check_groups, generator, held_out_samples,
                                      stack_batches)
from quant.calibrate.bias_correction import _check_reference, as_batches
from quant.calibrate.state import CalibrationState, with_layer
from quant.calibrate.ste import bias_code_limit, fake_quant_act, fake_quant_walk, model_tensors
from quant.calibrate.walk import GraphWalk
from quant.errors import QuantError
from quant.execute import float_params
from quant.formats import GroupIntFormat, IntFormat
from quant.graph import WEIGHTED_OPS, LayerGraph

MODES = ("sequential", "parallel")
# Defaults, chosen on MobileNetV2 W4A8 with the 28 calibration images of hwsim.zoo (3 of their
# 14 pictures held out): 150 steps of 512 positions scored best on the evaluation images among
# 75..800 steps, 256..1024 positions and learning rates 5e-3..2e-2 (more fitting helped the
# held-out calibration pictures but not the evaluation ones), and a scale learning as fast as
# the weights did worse.
DEFAULT_ITERS = 150
DEFAULT_LR = 5e-3
DEFAULT_BATCH_SIZE = 512
# Learning rates of the weight, scale and bias groups relative to ``lr``.
LR_RATIOS = (1.0, 1.0 / 30, 1.0 / 3)


@dataclass(frozen=True)
class LayerReport:
    """AdaQuant on one layer.

    Attributes:
        name: layer name.
        mse_before: output MSE (after the fused activation, real units squared) of the layer as
            it was, on all the calibration inputs of the mode.
        mse_after: the same for the optimized layer.
        held_before / held_after: the same on the held-out samples only.
        kept: the optimized layer replaced the old one (``held_after < held_before``).
        fallback: why it did not ("" when kept): no improvement on the held-out samples, or
            a loss that diverged (the layer then keeps its previous, e.g. round-to-nearest,
            parameters).
        diverged_at: the Adam step whose training loss was not finite (the fit stopped there
            and chose among the checkpoints before it), or 0.
        step: the Adam step whose parameters were chosen on the held-out samples (0: the
            starting ones).
        seconds: wall time of the layer's optimization.
    """

    name: str
    mse_before: float
    mse_after: float
    held_before: float
    held_after: float
    kept: bool
    step: int
    seconds: float
    fallback: str = ""
    diverged_at: int = 0


@dataclass(frozen=True)
class AdaQuantReport:
    """Per-layer results of one AdaQuant run.

    Attributes:
        mode: "sequential" or "parallel".
        layers: one ``LayerReport`` per optimized layer, in graph order.
        skipped: layer name -> why it was not optimized (weight format neither a uniform
            ``IntFormat`` nor a ``GroupIntFormat``).
        seconds: wall time of the whole run.
        held_out: what the choices were made on: "k of N samples", or, with too few samples
            to hold any out, "a quarter of each layer's output positions".
    """

    mode: str
    layers: tuple[LayerReport, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    held_out: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "skipped", MappingProxyType(dict(self.skipped)))

    def to_text(self) -> str:
        """A table: layer, MSE before and after and their ratio (all samples, then held-out
        samples), kept, seconds; then the skipped layers."""
        kept = sum(r.kept for r in self.layers)
        lines = [f"AdaQuant ({self.mode}, {len(self.layers)} layers, {kept} kept, "
                 f"{self.seconds:.1f} s; held out: {self.held_out})",
                 f"{'layer':<32} {'mse_before':>11} {'mse_after':>11} {'ratio':>6} "
                 f"{'held_ratio':>10} kept {'step':>5} {'s':>5}"]
        for r in self.layers:
            lines.append(f"{r.name:<32} {r.mse_before:11.4g} {r.mse_after:11.4g} "
                         f"{_ratio(r.mse_after, r.mse_before):6.3f} "
                         f"{_ratio(r.held_after, r.held_before):10.3f} "
                         f"{'yes' if r.kept else 'no ':<4} {r.step:5d} {r.seconds:5.1f}")
        lines += [f"diverged {r.name}: loss not finite at step {r.diverged_at}"
                  for r in self.layers if r.diverged_at]
        lines += [f"fallback {r.name}: {r.fallback}" for r in self.layers if r.fallback]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _ratio(after: float, before: float) -> float:
    return after / before if before > 0 else float("nan")


@dataclass(frozen=True)
class AdaQuantResult:
    """The calibrated state and the report of how it was reached."""

    state: CalibrationState
    report: AdaQuantReport


def adaquant(state: CalibrationState, data: torch.Tensor | Iterable[torch.Tensor], *,
             mode: str = "sequential", iters: int = DEFAULT_ITERS, lr: float = DEFAULT_LR,
             batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
             layers: Iterable[str] | None = None, reference: LayerGraph | None = None,
             groups: Sequence[Hashable] | None = None) -> CalibrationState:
    """AdaQuant (module docstring) on the conv2d / linear layers of ``state``.

    Args:
        state: the state to calibrate (e.g. ``quant.model.initial_state(...)``).
        data: calibration inputs, one float tensor (N, ...) or batches of them.  Each batch
            is run through the model on its own (batches may differ in their axis 0: e.g.
            sentences (T, hidden) of different lengths for a model whose axis 0 is the token
            axis); the samples are the batches' axis 0 concatenated (N in all; ``groups``
            labels them, e.g. by sentence), and every layer's inputs for all N are held at
            once.
        mode: "sequential" (default) or "parallel" (module docstring).
        iters: Adam steps per layer (default 150).
        lr: Adam learning rate of the weights (default 5e-3), in code steps of the initial
            scale per step; the log scales learn at ``lr / 30``, the biases at ``lr / 3`` in
            units of the output channel's RMS.  Cosine decay to 0.
        batch_size: output positions per step (default 512; a conv output pixel of one
            sample or a linear row); capped at the layer's number of training positions.
        seed: seed of the held-out samples and of the position sampling; the result is
            deterministic given it (and torch's thread count).
        layers: names of the layers to optimize (default: every eligible one).
        reference: the float graph whose layer outputs are the targets; default
            ``state.graph``.  Pass the original graph when ``state.graph`` was already moved by
            a step (AdaQuant itself, bias correction, BN re-estimation).
        groups: one label per sample (N): samples with the same label are held out together,
            e.g. an image and its flipped copy, so that nothing chosen on the held-out samples
            was seen in training; default: every sample its own group.
    Returns: the calibrated state (see ``adaquant_with_report`` for the per-layer report).
    Raises:
        QuantError: a bad argument (named in the message); CalibrationError: empty data.
    """
    return adaquant_with_report(state, data, mode=mode, iters=iters, lr=lr,
                                batch_size=batch_size, seed=seed, layers=layers,
                                reference=reference, groups=groups).state


def adaquant_with_report(state: CalibrationState,
                         data: torch.Tensor | Iterable[torch.Tensor], *,
                         mode: str = "sequential", iters: int = DEFAULT_ITERS,
                         lr: float = DEFAULT_LR, batch_size: int = DEFAULT_BATCH_SIZE,
                         seed: int = 0, layers: Iterable[str] | None = None,
                         reference: LayerGraph | None = None,
                         groups: Sequence[Hashable] | None = None) -> AdaQuantResult:
    """``adaquant`` with the same arguments, returning the state and an ``AdaQuantReport``."""
    owner = "adaquant"
    if not isinstance(state, CalibrationState):
        raise QuantError(f"The 'state' parameter of {owner} must be a CalibrationState. Got "
                         f"{type(state).__name__} instead.")
    check_choice(mode, "mode", owner, MODES)
    check_int(iters, "iters", owner, 1, 10**7)
    check_float(lr, "lr", owner, 0.0, 1.0, lo_open=True)
    check_int(batch_size, "batch_size", owner, 1, 2**31 - 1)
    check_int(seed, "seed", owner, 0, 2**63 - 1)
    if reference is None:
        reference = state.graph
    elif not isinstance(reference, LayerGraph):
        raise QuantError(f"The 'reference' parameter of {owner} must be a LayerGraph or None. "
                         f"Got {type(reference).__name__} instead.")
    _check_reference(state.graph, reference, owner)
    chosen, skipped = _eligible(state, layers)
    batches = as_batches(data, owner)
    x = stack_batches(batches, owner)
    held_out = held_out_samples(x.shape[0], seed, check_groups(groups, x.shape[0], owner))

    start = time.perf_counter()
    model = state.model()
    current = model_tensors(model)
    limit = bias_code_limit(state.config.bias_bits)
    floats = _Walks([GraphWalk(reference, b, float_params(reference)) for b in batches])
    fakes = (_Walks([fake_quant_walk(model, b, current) for b in batches])
             if mode == "sequential" else None)
    del x
    graph, weight_params, reports = state.graph, dict(state.weight_params), []
    with torch.no_grad():
        for index, name in enumerate(chosen):
            t0 = time.perf_counter()
            rec = state.graph[name]
            x_float = floats.inputs_of(name)[0]
            target = floats.step()
            if fakes is not None:
                x_q = fakes.inputs_of(name)[0]
            else:
                x_q = fake_quant_act(x_float, model.act_params(rec.inputs[0]))
            del x_float
            s_x = float(model.act_params(rec.inputs[0]).scale)
            prob = LayerProblem(rec, x_q, target, model.weight_params(name), s_x, limit,
                                current[name], held_out)
            with torch.enable_grad():
                fit = fit_layer(prob, iters=iters, lr=lr, batch_size=batch_size,
                                generator=generator(seed, index), lr_ratios=LR_RATIOS)
            if fit.improved:
                graph = with_layer(graph, name, weight=fit.weight, bias=fit.bias)
                weight_params[name] = fit.params
            if fakes is not None:
                fakes.step(*(fit.tensors(s_x) if fit.improved else current[name]))
            reports.append(LayerReport(name, fit.mse_before, fit.mse_after, fit.held_before,
                                       fit.held_after, fit.improved, fit.step,
                                       time.perf_counter() - t0, fit.fallback,
                                       fit.diverged_at))
            del prob, x_q, target
    n = sum(b.shape[0] for b in batches)
    held = (f"{len(held_out)} of {n} samples" if held_out is not None
            else "a quarter of each layer's output positions (fewer than 4 sample groups)")
    report = AdaQuantReport(mode, tuple(reports), skipped, time.perf_counter() - start, held)
    return AdaQuantResult(state.replace(graph=graph, weight_params=weight_params), report)


class _Walks:
    """One ``GraphWalk`` per calibration batch, walked in step; a layer's inputs and outputs
    are the batches' ones concatenated along axis 0.  Each batch is run on its own, so a model
    whose axis 0 is not a batch axis (a transformer encoder on one (T, hidden) token sequence)
    sees each of its inputs alone, and batches may differ in their axis 0 (sentences of
    different lengths)."""

    def __init__(self, walks: list[GraphWalk]) -> None:
        self.walks = walks

    def inputs_of(self, name: str) -> list[torch.Tensor]:
        per = [w.inputs_of(name) for w in self.walks]
        return [torch.cat(ts) for ts in zip(*per)]

    def step(self, weight: torch.Tensor | None = None,
             bias: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([w.step(weight, bias) for w in self.walks])


def _eligible(state: CalibrationState, layers: Iterable[str] | None
              ) -> tuple[list[str], dict[str, str]]:
    """(layers to optimize in graph order, skipped layer -> reason)."""
    weighted = [r.name for r in state.graph if r.op in WEIGHTED_OPS]
    if layers is None:
        wanted = set(weighted)
    else:
        if isinstance(layers, str):
            raise QuantError("The 'layers' parameter of adaquant must be an iterable of layer "
                             f"names. Got the str {layers!r} instead.")
        wanted = set(layers)
        unknown = sorted(wanted - set(weighted))
        if unknown:
            raise QuantError(f"The 'layers' parameter of adaquant names {unknown}, which are not "
                             f"conv2d or linear layers; e.g. {weighted[:3]}")
    chosen, skipped = [], {}
    for name in weighted:
        if name not in wanted:
            continue
        fmt = state.config.weight_format(name)
        if isinstance(fmt, (IntFormat, GroupIntFormat)):
            chosen.append(name)
        else:
            skipped[name] = (f"weight format {fmt.describe()} is not a uniform IntFormat or "
                             "GroupIntFormat")
    return chosen, skipped


"""SmoothQuant: move the outlier channels of LayerNorm outputs into the weights they meet.

Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language
Models" (ICML 2023).  A LayerNorm output ``X`` (tokens x C) that feeds linear layers has a few
channels far larger than the rest, so one per-tensor activation scale wastes most codes on
them; the weights meeting those channels are ordinary.  With per-channel factors ``s_j > 0``,

    Linear(X) = (X diag(1/s)) (diag(s) W^T) + b,

and ``X diag(1/s)`` is the same LayerNorm with gamma and beta divided by ``s``: exact in real
arithmetic (float32 rounding only), and the integer program is an ordinary one (a LayerNorm
with other gamma / beta, linears with other weights).  Per input channel ``j``::

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)

where ``max|X_j|`` is over the calibration data and ``max|W_j|`` over column ``j`` of every
linear the LayerNorm feeds: they all share ``s``.  ``alpha`` in [0, 1] moves the difficulty
from the activations (alpha = 1: flat activation ranges) to the weights (alpha = 0).  A
channel with ``max|X_j| = 0`` or ``max|W_j| = 0`` keeps ``s_j = 1``.

Where the LayerNorm's output goes:

* only to linear layers (directly or through identity copies, e.g. a ``QuantStub`` captured as
  a clamp ``(-inf, inf)``): gamma and beta of the LayerNorm itself are divided by ``s``;
* also elsewhere (post-LN BERT: the output is the residual stream too), with the linears
  reached through an identity copy: that copy becomes a second LayerNorm record of the same
  input with gamma / s and beta / s (same name, so its activation format is kept).  The
  vector unit already writes the LayerNorm output twice, once per format (``hwsim.minilm_flow``);
  now the second write applies other gamma and beta.  The residual stream is unchanged;
* also elsewhere with linears reading it directly, or no gamma: skipped (the report says why).

``alpha`` is chosen on held-out data (``alpha=None``): a seeded quarter of the calibration
batches (``quant.calibrate.samples.held_out_samples``; one batch is one unit, e.g. one
sentence) is kept out; for the unsmoothed graph and each candidate, the channel maxima and the
activation ranges come from the other batches, and the fake-quant model's output error on the
held-out batches (``sum ||y_q - y_f||^2 / sum ||y_f||^2``, ``y_f`` the float graph's output)
decides.  When no candidate beats the unsmoothed graph, the state is returned as it was and
the report says so.  The chosen smoothing is then applied with the channel maxima of all batches
and the activation ranges are observed again on all of them (``state.recalibrated``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from quant._validate import check_float, check_int
from quant.calibrate.bias_correction import as_batches
from quant.calibrate.samples import held_out_samples
from quant.calibrate.state import CalibrationState, with_layer
from quant.errors import CalibrationError, QuantError
from quant.execute import float_params, run_graph
from quant.graph import LayerGraph, LayerRecord

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class SmoothedNorm:
    """One smoothed LayerNorm.

    Attributes:
        norm: the LayerNorm record whose output channels were rescaled.
        copy: the identity copy rewritten as a second LayerNorm with gamma / s and beta / s;
            None when ``norm``'s own gamma and beta were divided by ``s``.
        consumers: the linear layers whose weight columns were multiplied by ``s``.
        scale_min / scale_max: the extreme factors ``s_j``.
    """

    norm: str
    copy: str | None
    consumers: tuple[str, ...]
    scale_min: float
    scale_max: float


@dataclass(frozen=True)
class SmoothingReport:
    """What ``smooth`` did.

    Attributes:
        alpha: the migration strength used; None: the graph was left unsmoothed (no candidate
            beat it on the held-out batches, or nothing is smoothable).
        held_out_errors: (candidate, relative output error on the held-out batches), the
            unsmoothed graph as candidate None first; empty when ``alpha`` was given.
        norms: the smoothed LayerNorms (empty when ``alpha`` is None).
        skipped: (LayerNorm record, reason) for each LayerNorm not smoothed.
    """

    alpha: float | None
    held_out_errors: tuple[tuple[float | None, float], ...]
    norms: tuple[SmoothedNorm, ...]
    skipped: tuple[tuple[str, str], ...]

    def summary(self) -> str:
        """One line: alpha, how it was chosen, how many LayerNorms were smoothed."""
        if self.held_out_errors:
            errs = ", ".join(f"{'none' if a is None else f'{a:g}'}: {e:.3g}"
                             for a, e in self.held_out_errors)
            how = f" (held-out relative error {errs})"
        else:
            how = " (given)" if self.alpha is not None else ""
        if self.alpha is None:
            return f"smoothing: left unsmoothed{how}; {len(self.skipped)} LayerNorms not smoothable"
        return (f"smoothing: alpha {self.alpha:g}{how}; {len(self.norms)} LayerNorm outputs "
                f"smoothed, {len(self.skipped)} skipped")


@dataclass(frozen=True)
class Smoothing:
    """The smoothed state and its report."""

    state: CalibrationState
    report: SmoothingReport


@dataclass(frozen=True)
class _Site:
    """A LayerNorm output (or its identity copy ``copy``) and the linears it feeds."""

    norm: str
    copy: str | None
    consumers: tuple[str, ...]


def smooth(state: CalibrationState, data: Any, *, alpha: float | None = None,
           alphas: Sequence[float] = DEFAULT_ALPHAS, seed: int = 0) -> CalibrationState:
    """SmoothQuant on every LayerNorm that feeds linear layers (see the module docstring).

    Args:
        state: the state to smooth; no consumer linear may have weight parameters fixed by an
            earlier step (smooth first).
        data: calibration inputs: a float tensor or an iterable of batches; each batch is one
            held-out unit (pass one sentence per batch for a token-row transformer).
        alpha: the migration strength in [0, 1]; None (default): chosen among ``alphas`` and
            "no smoothing" on held-out batches (needs at least 4 batches).
        alphas: the candidates, each in [0, 1].
        seed: seed of the held-out choice (``held_out_samples``).
    Returns: the state with the smoothed float graph and activation ranges observed again on
        ``data`` (with the config's formats and clipping); ``state`` itself when nothing was
        smoothed.
    Raises: QuantError for bad arguments; CalibrationError for empty data, or too few batches
        to hold out when ``alpha`` is None.
    """
    result = smooth_with_report(state, data, alpha=alpha, alphas=alphas, seed=seed)
    log.info(result.report.summary())
    return result.state


def smooth_with_report(state: CalibrationState, data: Any, *, alpha: float | None = None,
                       alphas: Sequence[float] = DEFAULT_ALPHAS, seed: int = 0) -> Smoothing:
    """``smooth`` that also returns what was done (same arguments)."""
    owner = "smooth"
    if not isinstance(state, CalibrationState):
        raise QuantError(f"{owner} expects a CalibrationState; got {type(state).__name__}")
    if alpha is not None:
        alpha = check_float(alpha, "alpha", owner, 0.0, 1.0)
    candidates = _check_alphas(alphas, owner)
    check_int(seed, "seed", owner, 0, 2**63 - 1)
    batches = as_batches(data, owner)
    graph = state.graph
    sites, skipped = find_sites(graph)
    fixed = sorted({c for s in sites for c in s.consumers if c in state.weight_params})
    if fixed:
        raise QuantError(f"{owner}: layers {fixed} have weight parameters fixed by an earlier "
                         "step; run smooth before the steps that fix weight parameters")
    errors: list[tuple[float | None, float]] = []
    if alpha is None and sites:
        train, test = held_out_batches(batches, seed, owner, "alpha")
        x_max = channel_max(graph, {s.norm for s in sites}, train)
        errors = held_out_errors(
            state, train, test,
            {a: graph if a is None else smooth_graph(graph, sites, x_max, a)[0]
             for a in (None, *candidates)})
        alpha = min(errors, key=lambda ae: ae[1])[0]  # first of equals: unsmoothed first
    if alpha is None or not sites:
        return Smoothing(state, SmoothingReport(None, tuple(errors), (), tuple(skipped)))
    x_max = channel_max(graph, {s.norm for s in sites}, batches)
    out, norms = smooth_graph(graph, sites, x_max, alpha)
    report = SmoothingReport(alpha, tuple(errors), tuple(norms), tuple(skipped))
    return Smoothing(state.replace(graph=out).recalibrated(batches), report)


def _check_alphas(alphas: Any, owner: str) -> tuple[float, ...]:
    if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence) or not alphas:
        raise QuantError(f"The 'alphas' parameter of {owner} must be a non-empty sequence of "
                         f"floats in [0, 1]. Got {alphas!r} instead.")
    return tuple(check_float(a, "alphas", owner, 0.0, 1.0) for a in alphas)


def held_out_batches(batches: list[torch.Tensor], seed: int, owner: str, what: str
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(training batches, held-out batches): a seeded quarter of the batches held out
    (``held_out_samples``, one batch one unit); CalibrationError with fewer than 4 batches."""
    held = held_out_samples(len(batches), seed)
    if held is None:
        raise CalibrationError(f"{owner}: choosing {what} on held-out data needs at least 4 "
                               f"calibration batches (one per sentence or sample); got "
                               f"{len(batches)}. Pass more batches or a fixed {what}.")
    held_set = set(held.tolist())
    return ([b for i, b in enumerate(batches) if i not in held_set],
            [batches[i] for i in sorted(held_set)])


def held_out_errors(state: CalibrationState, train: list[torch.Tensor],
                    test: list[torch.Tensor], graphs: dict[Any, LayerGraph],
                    configs: dict[Any, Any] | None = None) -> list[tuple[Any, float]]:
    """(candidate, relative output error ``sum ||y_q - y_f||^2 / sum ||y_f||^2`` on ``test``)
    for each candidate graph (and config, default ``state.config``), its activation ranges
    observed on ``train``; ``y_f`` is the output of ``state.graph`` in float."""
    graph = state.graph
    params = float_params(graph)
    with torch.no_grad():
        ref = [run_graph(graph, x, params, keep=False)[graph.output_name] for x in test]
    energy = sum(float(r.double().pow(2).sum()) for r in ref)
    errors = []
    for key, g in graphs.items():
        config = state.config if configs is None else configs[key]
        qm = state.replace(graph=g, config=config).recalibrated(train).model()
        with torch.no_grad():
            noise = sum(float((qm(x).double() - r.double()).pow(2).sum())
                        for x, r in zip(test, ref))
        errors.append((key, noise / energy if energy > 0 else math.inf))
    return errors


def find_sites(graph: LayerGraph) -> tuple[list[_Site], list[tuple[str, str]]]:
    """The smoothable LayerNorm outputs, and ``(LayerNorm, reason)`` for the others."""
    sites: list[_Site] = []
    skipped: list[tuple[str, str]] = []
    for rec in graph:
        if rec.op != "layernorm":
            continue
        found = _sites_of(graph, rec)
        if isinstance(found, str):
            skipped.append((rec.name, found))
        else:
            sites += found
    return sites, skipped


def _is_copy(rec: LayerRecord) -> bool:
    """An identity clamp ``(-inf, inf)`` (e.g. a captured QuantStub)."""
    return (rec.op == "clamp" and rec.activation is None
            and rec.attrs.get("min") == -math.inf and rec.attrs.get("max") == math.inf)


def _linear_users(graph: LayerGraph, name: str, channels: int) -> list[str] | None:
    """The consumers of ``name`` if every one is a linear layer over its ``channels``."""
    users = graph.consumers(name)
    ok = users and name != graph.output_name and all(
        graph[u].op == "linear" and graph[u].weight.shape[1] == channels for u in users)
    return list(users) if ok else None


def _sites_of(graph: LayerGraph, rec: LayerRecord) -> list[_Site] | str:
    if rec.weight is None:
        return "it has no gamma (elementwise_affine=False)"
    channels = rec.weight.shape[0]
    linears, copies, others = [], [], []
    for user in graph.consumers(rec.name):
        u = graph[user]
        if u.op == "linear" and u.weight.shape[1] == channels:
            linears.append(user)
        elif _is_copy(u) and _linear_users(graph, user, channels) is not None:
            copies.append(user)
        else:
            others.append(user)
    if rec.name == graph.output_name:
        others.append("the model output")
    if not linears and not copies:
        return "it feeds no linear layer"
    if not others:
        users = linears + [c for copy in copies for c in _linear_users(graph, copy, channels)]
        return [_Site(rec.name, None, tuple(users))]
    if linears:
        return (f"it feeds linear layers {linears} directly and also {others}, whose input "
                "would change")
    return [_Site(rec.name, copy, tuple(_linear_users(graph, copy, channels))) for copy in copies]


def channel_max(graph: LayerGraph, names: set[str], batches: list[torch.Tensor]
                ) -> dict[str, np.ndarray]:
    """Per record in ``names``, max |output| per channel (last axis; float64 (C,)) over
    ``batches`` of the float graph."""
    out: dict[str, np.ndarray] = {}

    def observe(rec: LayerRecord, y: torch.Tensor) -> torch.Tensor:
        if rec.name in names:
            m = y.detach().abs().reshape(-1, y.shape[-1]).amax(dim=0).double().numpy()
            out[rec.name] = m if rec.name not in out else np.maximum(out[rec.name], m)
        return y

    params = float_params(graph)
    with torch.no_grad():
        for x in batches:
            run_graph(graph, x, params, post=observe, keep=False)
    return out


def smoothing_scales(x_max: np.ndarray, w_max: np.ndarray, alpha: float) -> np.ndarray:
    """``s_j = x_max_j^alpha / w_max_j^(1 - alpha)`` (float64); 1 where either is 0."""
    ok = (x_max > 0) & (w_max > 0)
    x = np.where(ok, x_max, 1.0)
    w = np.where(ok, w_max, 1.0)
    return np.where(ok, x**alpha / w ** (1.0 - alpha), 1.0)


def smooth_graph(graph: LayerGraph, sites: list[_Site], x_max: dict[str, np.ndarray],
                 alpha: float) -> tuple[LayerGraph, list[SmoothedNorm]]:
    """``graph`` with every site smoothed at ``alpha`` given the channel maxima ``x_max``."""
    out = graph
    norms = []
    for site in sites:
        norm = graph[site.norm]
        w_max = np.max([np.abs(graph[c].weight).max(axis=0) for c in site.consumers], axis=0)
        s = smoothing_scales(x_max[site.norm], w_max.astype(np.float64), alpha)
        gamma = norm.weight.astype(np.float64) / s
        beta = None if norm.bias is None else norm.bias.astype(np.float64) / s
        if site.copy is None:
            out = with_layer(out, norm.name, weight=gamma, bias=beta)
        else:
            out = _as_norm(out, site.copy, norm, gamma, beta)
        for c in site.consumers:
            out = with_layer(out, c, weight=graph[c].weight.astype(np.float64) * s[None, :])
        norms.append(SmoothedNorm(site.norm, site.copy, site.consumers, float(s.min()),
                                  float(s.max())))
    return out, norms


def _as_norm(graph: LayerGraph, copy: str, norm: LayerRecord, gamma: np.ndarray,
             beta: np.ndarray | None) -> LayerGraph:
    """``graph`` with identity copy ``copy`` of ``norm``'s output replaced by a LayerNorm of
    ``norm``'s input with ``gamma`` and ``beta`` (float32)."""
    rec = graph[copy]
    records = dict(graph.records)
    records[copy] = dataclasses.replace(
        rec, op="layernorm", inputs=norm.inputs, attrs=dict(norm.attrs),
        weight=gamma.astype(np.float32),
        bias=None if beta is None else beta.astype(np.float32), activation=None)
    return LayerGraph(records, graph.input_name, graph.output_name)

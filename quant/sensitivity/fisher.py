"""Fisher-information sensitivity: the true Fisher and the empirical Fisher, per sample.

Model: with ``F`` the diagonal of a Fisher matrix of the weights (or of an activation),

    Ω_w[l, k] = ½ Σ F_l ⊙ (Q_k(W_l) − W_l)²,
    Ω_a[l, k] = ½ σ²_k Σ F_x = ½ σ²_k · mean_i ||∂ℓ_i/∂x_i||²,      Ω = Ω_w + Ω_a,

the second-order loss change with the Hessian replaced by the Fisher (weights: elementwise;
activations: independent noise of power ``σ²_k`` per element, measured as in
``quant.sensitivity.options``; ``x`` is layer l's input activation, the output of its input
record).  Reference point: the float model.

* "fisher" (the true Fisher): ``F = mean_i g_i ⊙ g_i`` with ``g_i = ∇ −log p(ŷ_i | x_i)`` and
  ``ŷ_i`` drawn from the model's own predictive distribution ``softmax(logits_i)`` (one draw per
  sample, seeded).  Its expectation over ŷ is the Fisher information, which equals the
  Gauss-Newton matrix of the log-likelihood: a curvature estimate.
* "empirical_fisher": the same with the observed labels ``y_i`` (or, without labels, the float
  model's argmax).  Kunstner, Balles and Hennig ("Limitations of the empirical Fisher
  approximation for natural gradient descent", NeurIPS 2019) show that this is *not* the
  Fisher in general: it is the (uncentred) second moment of the observed-label gradients, which
  reflects how far the model is from fitting those labels rather than the curvature; it
  coincides with the Fisher only when the labels are distributed as the model predicts.  With
  argmax pseudo-labels it collapses further (a confident model's gradients are ~0).

Both use PER-SAMPLE gradients, ``torch.func.vmap(torch.func.grad(...))`` over a functional
forward of the captured graph, chunked by ``chunk_size``.  The squared mean gradient of a batch
(``(mean_i g_i)²``) is a different quantity (it vanishes at a stationary point) and is not used.
The activation gradient of sample i is taken with respect to a zero tensor added to that
sample's activation (a *tap*), inside the same vmapped call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from quant.allocate.protocol import Option
from quant.errors import QuantError
from quant.graph import LayerGraph
from quant.sensitivity.graphrun import (Data, LossFn, activation_samples, graph_forward,
                                        graph_params, record_shape)
from quant.sensitivity.options import OptionPlan, WeightErrors, act_noise_power, fill_terms


def nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample ``−log softmax(logits)[label]`` (N,)."""
    return F.cross_entropy(logits, labels.long(), reduction="none")


def float_logits(graph: LayerGraph, data: Data, dtype: torch.dtype) -> list[torch.Tensor]:
    params = graph_params(graph, dtype)
    with torch.no_grad():
        outs = [graph_forward(graph, x.to(dtype), params) for x in data.xs]
    if any(o.dim() != 2 for o in outs):
        raise QuantError("fisher sensitivity needs a classifier: the model output must be "
                         f"logits (N, C); got shape {tuple(outs[0].shape)}")
    return outs


def sample_labels(logits: Sequence[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """One label per sample drawn from ``softmax(logits)`` with a seeded generator."""
    gen = torch.Generator().manual_seed(int(seed))
    return [torch.multinomial(torch.softmax(z.to(torch.float64), dim=1), 1, generator=gen)[:, 0]
            for z in logits]


def per_sample_grads(graph: LayerGraph, params: dict, layers: Sequence[str],
                     taps: Sequence[str], x: torch.Tensor, target: torch.Tensor,
                     loss_fn: LossFn, chunk_size: int | None = None
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-sample gradients of ``loss_fn`` for batch ``x``: weight name -> (N, *W.shape) and
    tap record -> (N, *activation shape), by ``vmap(grad(.))``."""
    weights = {n: params[n][0].detach() for n in layers}
    tap0 = {s: torch.zeros(record_shape(graph, s, int(x.shape[0])), dtype=x.dtype) for s in taps}

    def one(w: dict, t: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        fp = {**params, **{n: (w[n], params[n][1]) for n in w}}
        out = graph_forward(graph, xi.unsqueeze(0), fp, {s: v.unsqueeze(0) for s, v in t.items()})
        return loss_fn(out, yi.unsqueeze(0)).sum()

    fn = vmap(grad(one, argnums=(0, 1)), in_dims=(None, 0, 0, 0), chunk_size=chunk_size)
    return fn(weights, tap0, x, target)


def fisher_diagonals(graph: LayerGraph, data: Data, labels: Sequence[torch.Tensor],
                     loss_fn: LossFn, layers: Sequence[str], taps: Sequence[str], *,
                     chunk_size: int | None = 16, dtype: torch.dtype = torch.float32
                     ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """(weight name -> mean_i g_i² float64 of W's shape, tap -> mean_i ||g_x,i||²)."""
    params = graph_params(graph, dtype)
    f_w = {n: np.zeros(graph[n].weight.shape) for n in layers}
    f_a = {s: 0.0 for s in taps}
    n_total = data.n
    for x, y in zip(data.xs, labels):
        gw, ga = per_sample_grads(graph, params, layers, taps, x.to(dtype), y, loss_fn,
                                  chunk_size)
        for n in layers:
            f_w[n] += (gw[n].to(torch.float64) ** 2).sum(dim=0).numpy() / n_total
        for s in taps:
            f_a[s] += float((ga[s].to(torch.float64) ** 2).sum()) / n_total
    return f_w, f_a


def fisher_table(graph: LayerGraph, data: Data, method: str, loss: Any, layers: Sequence[str],
                 options: Sequence[Option], plan: OptionPlan, *, seed: int = 0,
                 chunk_size: int | None = 16, act_sample: int = 65536,
                 dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, dict[str, Any]]:
    """(omega, details) of "fisher" / "empirical_fisher" (see module docstring)."""
    logits = float_logits(graph, data, dtype)
    if method == "fisher":
        if loss is not None:
            raise QuantError("sensitivity_table: method='fisher' uses the model's own "
                             "likelihood (−log p(ŷ|x), ŷ sampled); loss must be None")
        labels, label_source, loss_name, loss_fn = sample_labels(logits, seed), "sampled", "nll", nll
    else:
        if data.ys is not None:
            labels, label_source = list(data.ys), "observed"
        else:
            labels, label_source = [z.argmax(dim=1) for z in logits], "float_argmax"
        if loss is None or loss == "ce":
            loss_name, loss_fn = "nll", nll
        elif callable(loss):
            loss_name = getattr(loss, "__name__", "callable")

            def loss_fn(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return loss(z, y).reshape(-1)
        else:
            raise QuantError(f"sensitivity_table: method='empirical_fisher' takes loss None, "
                             f"'ce' or a callable (logits, labels) -> (N,); got {loss!r}")
    taps = [r.name for r in graph if r.name in set(plan.source)]
    f_w, f_a = fisher_diagonals(graph, data, labels, loss_fn, layers, taps,
                                chunk_size=chunk_size, dtype=dtype)
    samples = activation_samples(graph, data, taps, graph_params(graph, dtype), dtype,
                                 act_sample, seed)
    errors = WeightErrors(graph)
    noise = np.full((len(layers), len(options)), np.nan)
    powers: dict[tuple[str, Any], float] = {}

    def weight_term(l: int, k: int) -> float:
        sq = errors.squared(layers[l], plan.weight_fmt[l][k], plan.weight_params.get((l, k)))
        return float(0.5 * np.sum(f_w[layers[l]] * sq))

    def act_term(l: int, k: int) -> float:
        src, fmt = plan.source[l], plan.act_fmt[l][k]
        if (src, fmt) not in powers:
            powers[(src, fmt)] = act_noise_power(*samples[src], fmt)
        noise[l, k] = powers[(src, fmt)]
        return float(0.5 * f_a[src] * noise[l, k])

    w_term, a_term = fill_terms(plan, layers, options, weight_term, act_term)
    details = {
        "reference": "float",
        "loss": loss_name,
        "labels": label_source,
        "label_values": [y.tolist() for y in labels],
        "n_samples": data.n,
        "per_sample_gradients": "torch.func.vmap(torch.func.grad)",
        "fisher_trace": [float(f_w[n].sum()) for n in layers],
        "act_source": list(plan.source),
        "act_fisher_trace": [f_a[s] for s in plan.source],
        "act_noise_power": noise,
        "weight_term": w_term,
        "act_term": a_term,
        "infeasible": plan.infeasible_details(layers, options),
    }
    return w_term + a_term, details

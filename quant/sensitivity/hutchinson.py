"""HAWQ-V2 sensitivity: Hessian traces by Hutchinson's estimator.

Model (Dong et al., "HAWQ-V2: Hessian Aware trace-Weighted Quantization of Neural Networks",
NeurIPS 2020): with ``H_l`` the Hessian of the calibration loss with respect to layer l's
(BN-folded) weight ``W_l`` of ``n_l`` elements,

    Ω_w[l, k] = Tr(H_l) / n_l · ||Q_k(W_l) − W_l||²,

i.e. the second-order loss change ``ΔWᵀ H ΔW`` with ``H_l`` replaced by its average eigenvalue
(the usual HAWQ-V2 normalization, without the factor ½).

Activation term (our model, same convention): quantizing layer l's input activation ``x`` (the
output of its input record, see ``options.act_source``) adds noise ``ε`` with ``E[ε] = 0`` and
``E[ε²] = σ²_k`` per element, independent of everything else, so with ``H_x`` the Hessian of
the loss with respect to that activation tensor (the mean over samples of each sample's block)

    Ω_a[l, k] = Tr(H_x) · σ²_k,          Ω = Ω_w + Ω_a.

``σ²_k`` is measured (``options.act_noise_power``): the mean squared quantization error of the
option's activation format fitted to a sample of that activation, ≈ Δ²/12 for an unclipped
uniform quantizer of step Δ.  The activation term refers to the float model like the weight
term; a record feeding several layers gives each of them the same term (see
``details["act_source"]``).

Traces (Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
smoothing splines", 1990): ``Tr(H) = E[vᵀ H v]`` for Rademacher ``v`` (entries ±1), with
variance ``2 (||H||_F² − Σ H_ii²)``.  ``Hv`` is computed by double back-propagation
(``torch.autograd.grad`` with ``create_graph=True``) of the loss over all calibration batches
(batch losses weighted by batch size).  Probing:

* joint (default, as HAWQ-V2 / PyHessian do): one probe ``v`` covers every layer's weights and
  every tapped activation, one Hessian-vector product (HVP) per probe and batch; the block
  estimate ``v_lᵀ (Hv)_l`` is unbiased for ``Tr(H_ll)`` but the off-diagonal blocks add variance
  ``2 Σ_{m≠l} ||H_lm||_F²``.
* ``blockwise=True``: the probe is zero outside block l (one HVP per block, probe and batch), so
  the variance is that of the block alone; each block stops on its own.

Stopping rule: probes are drawn in rounds of ``probe_block``; after at least ``min_probes``,
stop when every trace (blockwise: that block's trace) has ``stderr <= tol · |mean|`` (stderr =
sample std / sqrt(probes)), or at ``max_probes``.  ``details`` reports probes, HVPs, each
trace's mean, stderr and whether it met the rule.

Loss: ``loss=None`` is cross-entropy with labels, else KL(float ‖ model), whose Hessian at the
float weights is the Gauss-Newton matrix (PSD, so traces are >= 0 up to estimation noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from quant.allocate.protocol import Option
from quant.errors import QuantError
from quant.sensitivity.graphrun import (Data, LossFn, activation_samples, graph_forward,
                                        graph_params, record_shape)
from quant.sensitivity.options import OptionPlan, WeightErrors, act_noise_power, fill_terms
from quant.graph import LayerGraph


def _rademacher(shape: Sequence[int], gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.randint(0, 2, tuple(shape), generator=gen).to(dtype).mul_(2).sub_(1)


def hutchinson_traces(graph: LayerGraph, data: Data, targets: Sequence[torch.Tensor],
                      loss_fn: LossFn, layers: Sequence[str], taps: Sequence[str], *,
                      seed: int = 0, tol: float = 0.05, min_probes: int = 8,
                      max_probes: int = 128, probe_block: int = 8, blockwise: bool = False,
                      dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Hutchinson estimates of the traces of the loss Hessian blocks of ``layers``' weights and
    of the outputs of records ``taps`` (see module docstring; ``blockwise``: one HVP per block
    and probe, with the probe zero outside the block, and each block stops on its own).
    Returns ``weight_trace`` / ``weight_stderr`` (L,), ``act_trace`` / ``act_stderr`` (T,),
    ``probes`` (per block), ``converged`` (per block), ``hvps``."""
    if min_probes < 2 or max_probes < min_probes or probe_block < 1 or tol <= 0:
        raise QuantError(f"hutchinson: need 2 <= min_probes <= max_probes, probe_block >= 1, "
                         f"tol > 0; got min_probes={min_probes}, max_probes={max_probes}, "
                         f"probe_block={probe_block}, tol={tol}")
    params = graph_params(graph, dtype)
    weights = {n: params[n][0].requires_grad_(True) for n in layers}
    fparams = {**params, **{n: (weights[n], params[n][1]) for n in layers}}
    gen = torch.Generator().manual_seed(int(seed))
    n_total = data.n
    blocks = len(layers) + len(taps)
    samples: list[list[float]] = [[] for _ in range(blocks)]
    active = list(range(blocks))
    done, hvps = 0, 0

    def stats(j: int) -> tuple[float, float]:
        arr = np.asarray(samples[j])
        se = arr.std(ddof=1) / np.sqrt(arr.size) if arr.size > 1 else np.inf
        return float(arr.mean()), float(se)

    while active and done < max_probes:
        block = min(probe_block, max_probes - done)
        v_w = [[_rademacher(weights[n].shape, gen, dtype) for n in layers] for _ in range(block)]
        z = np.zeros((block, blocks))
        for x, t in zip(data.xs, targets):
            nb = int(x.shape[0])
            tap_t = {s: torch.zeros(record_shape(graph, s, nb), dtype=dtype, requires_grad=True)
                     for s in taps}
            out = graph_forward(graph, x.to(dtype), fparams, tap_t)
            loss = loss_fn(out, t).mean()
            tensors = [weights[n] for n in layers] + [tap_t[s] for s in taps]
            grads = torch.autograd.grad(loss, tensors, create_graph=True, allow_unused=True)
            live = [j for j in active if grads[j] is not None and grads[j].requires_grad]
            for p in range(block):
                v = v_w[p] + [_rademacher(tap_t[s].shape, gen, dtype) for s in taps]
                if not live:
                    continue
                if blockwise:
                    hv = {j: torch.autograd.grad(grads[j], tensors[j], grad_outputs=v[j],
                                                 retain_graph=True, allow_unused=True)[0]
                          for j in live}
                    hvps += len(live)
                else:
                    hv = dict(zip(range(blocks), torch.autograd.grad(
                        [grads[j] for j in live], tensors, grad_outputs=[v[j] for j in live],
                        retain_graph=True, allow_unused=True)))
                    hvps += 1
                for j in active:
                    h = hv.get(j)
                    if h is not None:
                        z[p, j] += nb / n_total * float((v[j] * h).sum(dtype=torch.float64))
            del grads, loss, out
        for j in active:
            samples[j].extend(z[:, j].tolist())
        done += block
        if done >= min_probes:
            unconverged = [j for j in active if stats(j)[1] > tol * abs(stats(j)[0])]
            if blockwise:
                active = unconverged
            elif not unconverged:
                active = []
    mean, se = (np.array(v) for v in zip(*(stats(j) for j in range(blocks)))) if blocks else (
        np.zeros(0), np.zeros(0))
    probes = np.array([len(s) for s in samples], dtype=np.int64)
    L = len(layers)
    return {"weight_trace": mean[:L], "weight_stderr": se[:L], "act_trace": mean[L:],
            "act_stderr": se[L:], "probes": probes, "converged": se <= tol * np.abs(mean),
            "hvps": hvps}


def hutchinson_table(graph: LayerGraph, data: Data, targets: Sequence[torch.Tensor],
                     loss_name: str, loss_fn: LossFn, layers: Sequence[str],
                     options: Sequence[Option], plan: OptionPlan, *, seed: int = 0,
                     tol: float = 0.05, min_probes: int = 8, max_probes: int = 128,
                     probe_block: int = 8, blockwise: bool = False, act_sample: int = 65536,
                     dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, dict[str, Any]]:
    """(omega, details) of the "hutchinson" method (see module docstring)."""
    taps = [r.name for r in graph if r.name in set(plan.source)]  # graph order
    tr = hutchinson_traces(graph, data, targets, loss_fn, layers, taps, seed=seed, tol=tol,
                           min_probes=min_probes, max_probes=max_probes,
                           probe_block=probe_block, blockwise=blockwise, dtype=dtype)
    act_trace = dict(zip(taps, tr["act_trace"]))
    act_se = dict(zip(taps, tr["act_stderr"]))
    samples = activation_samples(graph, data, taps, graph_params(graph, dtype), dtype,
                                 act_sample, seed)
    errors = WeightErrors(graph)
    noise = np.full((len(layers), len(options)), np.nan)

    powers: dict[tuple[str, Any], float] = {}

    def weight_term(l: int, k: int) -> float:
        sq = errors.squared(layers[l], plan.weight_fmt[l][k], plan.weight_params.get((l, k)))
        return float(tr["weight_trace"][l] / sq.size * sq.sum())

    def act_term(l: int, k: int) -> float:
        src, fmt = plan.source[l], plan.act_fmt[l][k]
        if (src, fmt) not in powers:
            powers[(src, fmt)] = act_noise_power(*samples[src], fmt)
        noise[l, k] = powers[(src, fmt)]
        return float(act_trace[src] * noise[l, k])

    w_term, a_term = fill_terms(plan, layers, options, weight_term, act_term)
    L = len(layers)
    details = {
        "reference": "float",
        "loss": loss_name,
        "n_samples": data.n,
        "stopping_rule": (f"rounds of {probe_block} Rademacher probes; after >= {min_probes} "
                          f"probes stop when {'a' if blockwise else 'every'} trace has stderr "
                          f"<= {tol} * |mean| (stderr = std / sqrt(probes)), or at "
                          f"{max_probes} probes"),
        "probing": "blockwise" if blockwise else "joint",
        "hvps": int(tr["hvps"]),
        "weight_probes": tr["probes"][:L],
        "act_probes": [int(tr["probes"][L + taps.index(s)]) for s in plan.source],
        "tol": tol,
        "weight_trace": tr["weight_trace"],
        "weight_trace_stderr": tr["weight_stderr"],
        "weight_numel": [int(graph[n].weight.size) for n in layers],
        "weight_converged": tr["converged"][:L],
        "act_source": list(plan.source),
        "act_trace": [act_trace[s] for s in plan.source],
        "act_trace_stderr": [act_se[s] for s in plan.source],
        "act_converged": [bool(tr["converged"][L + taps.index(s)]) for s in plan.source],
        "act_noise_power": noise,
        "weight_term": w_term,
        "act_term": a_term,
        "infeasible": plan.infeasible_details(layers, options),
    }
    return w_term + a_term, details

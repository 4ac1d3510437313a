"""The float graph as a differentiable function, the data, and the losses the methods share.

Every method works on ``quant.capture``'s ``LayerGraph`` (BatchNorm folded), so the weights it
perturbs are the ones ``quant.quantize`` quantizes and the layer names are its record names.
``graph_forward`` evaluates the graph with the op table of ``quant.execute`` but with autograd on:
weights come from a dict of tensors, and a *tap* (a tensor added to a record's output, zero in
value) makes the derivative with respect to that activation available.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from quant.errors import QuantError
from quant.execute import OP_TABLE, apply_activation
from quant.graph import WEIGHTED_OPS, LayerGraph

# (logits (N, C), target) -> per-sample losses (N,)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Data:
    """Calibration batches: inputs and, if the data has them, labels."""

    xs: tuple[torch.Tensor, ...]
    ys: tuple[torch.Tensor, ...] | None

    @property
    def n(self) -> int:
        return sum(int(x.shape[0]) for x in self.xs)

    @property
    def batch_size(self) -> int:
        return int(self.xs[0].shape[0])


def as_data(data: Any) -> Data:
    """A list of tensors or of (x, y) pairs -> ``Data``; anything else is a QuantError."""
    if isinstance(data, torch.Tensor):
        data = [data]
    batches = list(data)
    if not batches:
        raise QuantError("sensitivity_table: data is empty; pass at least one batch")
    paired = [isinstance(b, (tuple, list)) for b in batches]
    if any(paired) and not all(paired):
        raise QuantError("sensitivity_table: data mixes tensors and (x, y) pairs")
    xs, ys = [], []
    for i, b in enumerate(batches):
        x, y = (b if paired[0] else (b, None))
        if paired[0] and len(b) != 2:
            raise QuantError(f"sensitivity_table: data[{i}] has {len(b)} items; expected (x, y)")
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 1:
            raise QuantError(f"sensitivity_table: data[{i}] input must be a float tensor (N, ...)")
        xs.append(x.detach().to(torch.float32))
        if y is not None:
            y = torch.as_tensor(y)
            if y.shape[:1] != x.shape[:1]:
                raise QuantError(f"sensitivity_table: data[{i}] has {x.shape[0]} inputs but "
                                 f"labels of shape {tuple(y.shape)}")
            ys.append(y.detach())
    return Data(tuple(xs), tuple(ys) if paired[0] else None)


def weighted_layers(graph: LayerGraph, layers: Sequence[str] | None) -> tuple[str, ...]:
    """The conv2d / linear records to score: all of them (graph order) or ``layers``."""
    allowed = [r.name for r in graph if r.op in WEIGHTED_OPS]
    if layers is None:
        return tuple(allowed)
    chosen = tuple(layers)
    bad = [n for n in chosen if n not in allowed]
    if bad:
        raise QuantError(f"sensitivity_table: layers {bad} are not conv2d / linear records; "
                         f"e.g. {allowed[:3]}")
    if len(set(chosen)) != len(chosen):
        raise QuantError("sensitivity_table: layers has duplicates")
    return chosen


def graph_params(graph: LayerGraph, dtype: torch.dtype
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Fresh (weight, bias) tensors of every weighted record (and layernorm's gamma / beta)."""
    out = {}
    for rec in graph:
        if rec.weight is not None:
            w = torch.tensor(rec.weight, dtype=dtype)
            b = None if rec.bias is None else torch.tensor(rec.bias, dtype=dtype)
            out[rec.name] = (w, b)
    return out


def graph_forward(graph: LayerGraph, x: torch.Tensor,
                  params: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
                  taps: Mapping[str, torch.Tensor] | None = None,
                  observe: Callable[[str, torch.Tensor], None] | None = None) -> torch.Tensor:
    """The float graph's output for ``x``, differentiable in ``params`` and ``taps`` (added to
    the named records' outputs).  ``observe(name, value)`` sees every record output."""
    taps = taps or {}
    values: dict[str, torch.Tensor] = {}
    remaining: dict[str, int] = {}
    for rec in graph:
        for s in rec.inputs:
            remaining[s] = remaining.get(s, 0) + 1
    for rec in graph:
        if rec.op == "input":
            y = x
        else:
            w, b = params.get(rec.name, (None, None))
            y = apply_activation(rec, OP_TABLE[rec.op](rec, [values[s] for s in rec.inputs], w, b))
            for s in rec.inputs:
                remaining[s] -= 1
                if remaining[s] == 0 and s != graph.output_name:
                    del values[s]
        if rec.name in taps:
            y = y + taps[rec.name]
        if observe is not None:
            observe(rec.name, y)
        values[rec.name] = y
    return values[graph.output_name]


def record_shape(graph: LayerGraph, name: str, n: int) -> tuple[int, ...]:
    return (n, *graph[name].out_shape[1:])


def _kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(softmax(target) || softmax(logits)) per sample (class dim 1)."""
    logp_t = F.log_softmax(target, dim=1)
    per = (logp_t.exp() * (logp_t - F.log_softmax(logits, dim=1))).sum(dim=1)
    return per.reshape(per.shape[0], -1).mean(dim=1)


def _ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    per = F.cross_entropy(logits, target.long(), reduction="none")
    return per.reshape(per.shape[0], -1).mean(dim=1)


def resolve_loss(loss: Any, has_labels: bool) -> tuple[str, LossFn]:
    """(name, per-sample loss).  None: "ce" with labels, else "kl" (KL(float ‖ model), whose
    target is the float graph's logits).  A callable gets (logits, target) -> (N,) losses,
    target = the labels if the data has them, else the float logits."""
    if loss is None:
        loss = "ce" if has_labels else "kl"
    if callable(loss):
        name = getattr(loss, "__name__", "callable")

        def fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            out = loss(logits, target)
            return out.reshape(-1) if out.dim() else out.expand(logits.shape[0])
        return name, fn
    if loss == "kl":
        return "kl", _kl
    if loss == "ce":
        if not has_labels:
            raise QuantError("sensitivity_table: loss='ce' needs (x, y) batches with labels")
        return "ce", _ce
    raise QuantError(f"sensitivity_table: loss must be 'kl', 'ce', a callable or None; "
                     f"got {loss!r}")


def targets(graph: LayerGraph, data: Data, loss_name: str, params: Any,
            dtype: torch.dtype) -> list[torch.Tensor]:
    """Per batch, the loss target: the labels, or the float graph's logits for "kl"/no labels."""
    if data.ys is not None and loss_name != "kl":
        return list(data.ys)
    with torch.no_grad():
        return [graph_forward(graph, x.to(dtype), params).detach() for x in data.xs]


def activation_samples(graph: LayerGraph, data: Data, names: Sequence[str], params: Any,
                       dtype: torch.dtype, size: int, seed: int
                       ) -> dict[str, tuple[np.ndarray, tuple[float, float]]]:
    """Per record, a seeded uniform sample (about ``size`` values) of its float outputs over
    the data, and their exact (min, max)."""
    rng = np.random.default_rng(seed)
    want = set(names)
    per_batch = max(1, -(-size // len(data.xs)))
    parts: dict[str, list[np.ndarray]] = {n: [] for n in want}
    lo = {n: np.inf for n in want}
    hi = {n: -np.inf for n in want}

    def observe(name: str, y: torch.Tensor) -> None:
        if name not in want:
            return
        flat = y.detach().reshape(-1).to(torch.float64).numpy()
        lo[name] = min(lo[name], float(flat.min()))
        hi[name] = max(hi[name], float(flat.max()))
        take = flat if flat.size <= per_batch else flat[rng.choice(flat.size, per_batch,
                                                                   replace=False)]
        parts[name].append(take.copy())

    with torch.no_grad():
        for x in data.xs:
            graph_forward(graph, x.to(dtype), params, observe=observe)
    return {n: (np.concatenate(parts[n]), (lo[n], hi[n])) for n in want}

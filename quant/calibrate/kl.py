"""KL divergence of a quantized model's output softmax from the float model's: the loss of bias
tuning and of the pipelines' ΔL."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from quant.errors import QuantError


def log_probs(logits: torch.Tensor, owner: str) -> torch.Tensor:
    """float64 log-softmax over the last axis of ``logits`` (N, ..., classes); ``owner`` names
    the caller in the error for an output without a class axis."""
    if logits.dim() < 2:
        raise QuantError(f"{owner}: the model output has shape {tuple(logits.shape)}; "
                         "expected (N, ..., classes)")
    return F.log_softmax(logits.double(), dim=-1)


def kl_per_sample(target: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Per sample (N,): ``sum p (log p - log q)`` over the last axis, summed over any middle
    axes; ``target`` and ``log_q`` are log-probabilities."""
    kl = (target.exp() * (target - log_q.to(target.dtype))).sum(dim=-1)
    return kl.reshape(kl.shape[0], -1).sum(dim=1)

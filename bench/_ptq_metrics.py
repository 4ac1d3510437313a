"""Agreement of a quantized model's outputs with the float model's, for bench_ptq.

Classifiers (logits, one row per input): top-1 agreement, top-k containment, logit SQNR and
mean KL divergence of the softmaxes. Embedders (one embedding per row): cosine similarity per
row. SQNR and cosine are hwsim.verify's (the same definitions the verification reports use).
All figures in float64; inputs may be any float dtype.
"""
from __future__ import annotations

import numpy as np

from hwsim.verify import cosine, sqnr_db


def _logits_pair(reference: np.ndarray, approx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    app = np.asarray(approx, dtype=np.float64)
    if ref.ndim != 2 or ref.shape != app.shape or ref.shape[0] == 0:
        raise ValueError(f"expected two (N, classes) logit arrays of one shape with N >= 1; got "
                         f"{ref.shape} and {app.shape}")
    return ref, app


def top1_agreement(reference: np.ndarray, approx: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is the same in both."""
    ref, app = _logits_pair(reference, approx)
    return float(np.mean(ref.argmax(axis=1) == app.argmax(axis=1)))


def topk_containment(reference: np.ndarray, approx: np.ndarray, k: int = 5) -> float:
    """Fraction of rows whose `reference` arg-max class is among the `k` largest of `approx`
    (ties at the k-th value count as inside: the class is in the top k if fewer than k
    classes score strictly higher; with k >= the number of classes every row is inside)."""
    ref, app = _logits_pair(reference, approx)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}")
    target = ref.argmax(axis=1)
    score = app[np.arange(len(app)), target]
    higher = np.sum(app > score[:, None], axis=1)
    return float(np.mean(higher < k))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log softmax in float64 (shifted by the row maximum, so large logits are fine)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def mean_kl(reference: np.ndarray, approx: np.ndarray) -> float:
    """Mean over rows of KL(softmax(reference) || softmax(approx)), in nats."""
    ref, app = _logits_pair(reference, approx)
    log_p, log_q = log_softmax(ref), log_softmax(app)
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))


def classifier_metrics(reference: np.ndarray, approx: np.ndarray) -> dict[str, float]:
    """The bench's classifier columns: top1, top5, sqnr_db (over all logits), kl."""
    ref, app = _logits_pair(reference, approx)
    return {"top1": top1_agreement(ref, app), "top5": topk_containment(ref, app, 5),
            "sqnr_db": float(sqnr_db(ref, app)), "kl": mean_kl(ref, app)}


def embedding_metrics(reference: np.ndarray, approx: np.ndarray) -> dict[str, float]:
    """Cosine similarity of each row of `approx` with the same row of `reference`: its mean
    and minimum (`cos_mean`, `cos_min`)."""
    ref = np.asarray(reference, dtype=np.float64)
    app = np.asarray(approx, dtype=np.float64)
    if ref.ndim != 2 or ref.shape != app.shape or ref.shape[0] == 0:
        raise ValueError(f"expected two (N, dim) embedding arrays of one shape with N >= 1; got "
                         f"{ref.shape} and {app.shape}")
    cos = np.array([cosine(r, a) for r, a in zip(ref, app)])
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min())}

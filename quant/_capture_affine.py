"""Per-channel affine steps of capture: ``x * c``, ``x + c``, ``x - c``, ``c - x``, ``x / c`` and
a standalone BatchNorm2d, as ``y = a_c · x + b_c`` over the channel axis (axis 1).

capture records such a step as a depthwise 1×1 conv2d (weight ``a`` (C, 1, 1, 1), bias ``b``
(C,)), or folds it into the conv2d / conv_transpose2d producing ``x``, as BatchNorm is folded.
Arithmetic in float64, results float32. No graph logic here.
"""
from __future__ import annotations

import numpy as np


def channel_vector(const: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray | None:
    """``const`` as a (C,) float64 vector when it broadcasts against ``x_shape`` (N, C, ...)
    along the channel axis only (a scalar, or shape (C, 1, ..., 1) / (1, C, 1, ..., 1)); None
    if it does not (e.g. a constant varying over H or W)."""
    c = np.asarray(const, dtype=np.float64)
    rank, channels = len(x_shape), int(x_shape[1])
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1), (channels,)).copy()


Affine = tuple[np.ndarray, np.ndarray]


def affine_of(kind: str, c: np.ndarray, const_first: bool, alpha: float) -> Affine | None:
    """(a, b) float64 (C,) of ``y = a x + b`` for op ``kind`` ("mul" | "add" | "sub" | "div")
    with the per-channel constant ``c`` (the first operand if ``const_first``; torch's
    ``alpha`` scales the second operand of add / sub). None: not affine in x (``c / x``)."""
    one, zero = np.ones_like(c), np.zeros_like(c)
    if kind == "mul":
        return c.copy(), zero
    if kind == "div":
        return (None if const_first else (1.0 / c, zero))
    if kind == "add":
        return (alpha * one, c) if const_first else (one, alpha * c)
    # sub: c - alpha x, or x - alpha c
    return (-alpha * one, c) if const_first else (one, -alpha * c)


def depthwise_weight(a: np.ndarray) -> np.ndarray:
    """(C,) scales -> the float32 (C, 1, 1, 1) weight of a depthwise 1×1 convolution."""
    return np.asarray(a, dtype=np.float64).reshape(-1, 1, 1, 1).astype(np.float32)


def fold_affine(weight: np.ndarray, bias: np.ndarray | None, a: np.ndarray,
                b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A conv's (K, ...) weight and (K,) bias followed by ``a_k y + b_k``: ``w' = a w``,
    ``b' = a b + b`` (float64, results float32)."""
    k = weight.shape[0]
    bias64 = np.zeros(k) if bias is None else bias.astype(np.float64)
    w = weight.astype(np.float64) * a.reshape(-1, *([1] * (weight.ndim - 1)))
    return w.astype(np.float32), (a * bias64 + b).astype(np.float32)


def batchnorm_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm2d as (a, b) float64 (C,): a = γ/√(σ²+ε), b = β - μ a."""
    mean = bn.running_mean.detach().cpu().double().numpy()
    var = bn.running_var.detach().cpu().double().numpy()
    k = mean.shape[0]
    gamma = bn.weight.detach().cpu().double().numpy() if bn.weight is not None else np.ones(k)
    beta = bn.bias.detach().cpu().double().numpy() if bn.bias is not None else np.zeros(k)
    a = gamma / np.sqrt(var + bn.eps)
    return a, beta - mean * a

"""Argument binding and attribute normalization for torch.fx capture (no graph logic here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

_MISSING = object()

# Parameter names and defaults of the functional / method forms capture understands.
SIGNATURES: dict[str, tuple[tuple[str, Any], ...]] = {
    "max_pool2d": (("input", _MISSING), ("kernel_size", _MISSING), ("stride", None),
                   ("padding", 0), ("dilation", 1), ("ceil_mode", False),
                   ("return_indices", False)),
    "avg_pool2d": (("input", _MISSING), ("kernel_size", _MISSING), ("stride", None),
                   ("padding", 0), ("ceil_mode", False), ("count_include_pad", True),
                   ("divisor_override", None)),
    "adaptive_avg_pool2d": (("input", _MISSING), ("output_size", _MISSING)),
    "relu": (("input", _MISSING), ("inplace", False)),
    "hardtanh": (("input", _MISSING), ("min_val", -1.0), ("max_val", 1.0), ("inplace", False)),
    "clamp": (("input", _MISSING), ("min", None), ("max", None)),
    "dropout": (("input", _MISSING), ("p", 0.5), ("training", True), ("inplace", False)),
    "cat": (("tensors", _MISSING), ("dim", 0)),
    "add": (("input", _MISSING), ("other", _MISSING), ("alpha", 1)),
    "flatten": (("input", _MISSING), ("start_dim", 0), ("end_dim", -1)),
    "transpose": (("input", _MISSING), ("dim0", _MISSING), ("dim1", _MISSING)),
    "softmax": (("input", _MISSING), ("dim", _MISSING), ("_stacklevel", 3), ("dtype", None)),
    "gelu": (("input", _MISSING), ("approximate", "none")),
    "mul": (("input", _MISSING), ("other", _MISSING)),
    "pointwise": (("input", _MISSING), ("inplace", False)),
    "interpolate": (("input", _MISSING), ("size", None), ("scale_factor", None),
                    ("mode", "nearest"), ("align_corners", None),
                    ("recompute_scale_factor", None), ("antialias", False)),
    "unsqueeze": (("input", _MISSING), ("dim", _MISSING)),
    "expand_as": (("input", _MISSING), ("other", _MISSING)),
    "sub": (("input", _MISSING), ("other", _MISSING), ("alpha", 1)),
    "div": (("input", _MISSING), ("other", _MISSING), ("rounding_mode", None)),
    "conv2d": (("input", _MISSING), ("weight", _MISSING), ("bias", None), ("stride", 1),
               ("padding", 0), ("dilation", 1), ("groups", 1)),
    "conv_transpose2d": (("input", _MISSING), ("weight", _MISSING), ("bias", None),
                         ("stride", 1), ("padding", 0), ("output_padding", 0), ("groups", 1),
                         ("dilation", 1)),
    "lrn": (("input", _MISSING), ("size", _MISSING), ("alpha", 1e-4),
            ("beta", 0.75), ("k", 1.0)),
    "split": (("tensor", _MISSING), ("split_size_or_sections", _MISSING), ("dim", 0)),
    "chunk": (("input", _MISSING), ("chunks", _MISSING), ("dim", 0)),
}


def bind(kind: str, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Map positional ``args`` and ``kwargs`` of a call onto ``SIGNATURES[kind]``."""
    spec = SIGNATURES[kind]
    out: dict[str, Any] = {}
    for (name, default), value in zip(spec, args):
        out[name] = value
    for name, default in spec[len(args):]:
        out[name] = kwargs.get(name, default)
    for name, value in kwargs.items():
        out[name] = value
    missing = [name for name, value in out.items() if value is _MISSING]
    if missing:
        raise TypeError(f"{kind}: missing arguments {missing}")
    return out


def pair(value: Any) -> tuple[int, int]:
    """An int or 1/2-sequence of ints -> (a, b)."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    seq = tuple(int(v) for v in value)
    return (seq[0], seq[0]) if len(seq) == 1 else (seq[0], seq[1])


def pads4(value: Any) -> tuple[int, int, int, int]:
    """torch's symmetric (ph, pw) padding -> (top, left, bottom, right)."""
    ph, pw = pair(value)
    return ph, pw, ph, pw


def conv_padding(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) zero padding of a Conv2d, resolving 'valid' and 'same'."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return 0, 0, 0, 0
        # 'same': torch puts the smaller half before, the extra element after.
        pads = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return top, left, bottom, right
    return pads4(conv.padding)


def to_numpy_f32(t: torch.Tensor | None) -> np.ndarray | None:
    if t is None:
        return None
    return t.detach().cpu().to(torch.float64).numpy().astype(np.float32)


def fold_batchnorm(weight: np.ndarray, bias: np.ndarray | None,
                   bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Fold eval-mode BN into the preceding conv; float64 arithmetic, float32 results.

    ``w' = w · γ/√(σ²+ε)`` per output channel, ``b' = (b - μ) · γ/√(σ²+ε) + β``.
    """
    mean = bn.running_mean.detach().cpu().double().numpy()
    var = bn.running_var.detach().cpu().double().numpy()
    k = weight.shape[0]
    gamma = bn.weight.detach().cpu().double().numpy() if bn.weight is not None else np.ones(k)
    beta = bn.bias.detach().cpu().double().numpy() if bn.bias is not None else np.zeros(k)
    factor = gamma / np.sqrt(var + bn.eps)
    b = bias.astype(np.float64) if bias is not None else np.zeros(k)
    w_new = weight.astype(np.float64) * factor.reshape(-1, *([1] * (weight.ndim - 1)))
    b_new = (b - mean) * factor + beta
    return w_new.astype(np.float32), b_new.astype(np.float32)


def transposed_to_output_major(weight: np.ndarray, groups: int) -> np.ndarray:
    """torch's ConvTranspose2d weight (C, K/groups, R, S) -> (K, C/groups, R, S), output
    channel major: ``out[g*K/groups + o, i] = weight[g*C/groups + i, o]``."""
    c, kg, r, s = weight.shape
    w = weight.reshape(groups, c // groups, kg, r, s).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(w.reshape(groups * kg, c // groups, r, s))


def output_major_to_transposed(weight, groups: int):
    """The inverse of `transposed_to_output_major` (numpy array or torch tensor)."""
    k, cg, r, s = weight.shape
    w = weight.reshape(groups, k // groups, cg, r, s).swapaxes(1, 2)
    return w.reshape(groups * cg, k // groups, r, s)

"""Operand validation shared by the kernels and the reference. Every failure raises KernelError
naming the operand and what was expected."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from hwsim.errors import KernelError

IntPair = tuple[int, int]
IntQuad = tuple[int, int, int, int]


def int_array(name: str, a: object, ndim: int, layout: str) -> np.ndarray:
    """Return ``a`` as a numpy integer array with ``ndim`` dimensions (no copy)."""
    if not isinstance(a, np.ndarray):
        raise KernelError(f"{name} must be a numpy integer array of shape {layout}; got {type(a).__name__}.")
    if a.dtype.kind not in "iu" or a.dtype == np.uint64:
        raise KernelError(
            f"{name} must hold integer codes (int8..int64 or uint8..uint32); got dtype {a.dtype}."
        )
    if a.ndim != ndim:
        raise KernelError(f"{name} must have shape {layout} ({ndim} dims); got shape {a.shape}.")
    return a


@functools.lru_cache(maxsize=32)
def _iinfo(dtype: np.dtype) -> np.iinfo:
    return np.iinfo(dtype)


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def scalar_int(name: str, v: object) -> int:
    """Return ``v`` as a Python int; raise if it is not an integer scalar."""
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iu":
        return int(v)
    if not _is_int(v):
        raise KernelError(f"{name} must be an integer scalar; got {v!r}.")
    return int(v)


def zero_point(name: str, zp: object, dtype: np.dtype) -> int:
    """A scalar zero point, checked to lie in the range of the codes' dtype."""
    v = scalar_int(name, zp)
    info = _iinfo(dtype)
    if not info.min <= v <= info.max:
        raise KernelError(f"{name} must lie in [{info.min}, {info.max}] (the range of {dtype}); got {v}.")
    return v


def channel_zero_points(name: str, zp: object, channels: int, dtype: np.dtype) -> np.ndarray:
    """Weight zero point: None (0), a scalar, or one per output channel -> int64 (channels,)."""
    if zp is None:
        return np.zeros(channels, dtype=np.int64)
    if isinstance(zp, np.ndarray) and zp.ndim == 1:
        if zp.dtype.kind not in "iu":
            raise KernelError(f"{name} must hold integers; got dtype {zp.dtype}.")
        if zp.shape != (channels,):
            raise KernelError(f"{name} must be a scalar or have shape ({channels},) (one per output channel); got shape {zp.shape}.")
        info = _iinfo(dtype)
        if zp.size and (int(zp.min()) < info.min or int(zp.max()) > info.max):
            raise KernelError(f"{name} must lie in [{info.min}, {info.max}] (the range of {dtype}); got values in [{int(zp.min())}, {int(zp.max())}].")
        return zp.astype(np.int64)
    return np.full(channels, zero_point(name, zp, dtype), dtype=np.int64)


def bias_vector(name: str, bias: object, channels: int) -> np.ndarray:
    """Integer bias: None (zeros) or shape (channels,) -> int64 (channels,)."""
    if bias is None:
        return np.zeros(channels, dtype=np.int64)
    if not isinstance(bias, np.ndarray) or bias.dtype.kind not in "iu" or bias.dtype == np.uint64:
        raise KernelError(f"{name} must be None or a numpy integer array of shape ({channels},); got {bias!r:.80}.")
    if bias.shape != (channels,):
        raise KernelError(f"{name} must have shape ({channels},) (one per output channel); got shape {bias.shape}.")
    return bias.astype(np.int64)


def positive_pair(name: str, v: object) -> IntPair:
    """An int or a pair of ints, each >= 1 (kernel size, stride, dilation)."""
    pair = (v, v) if _is_int(v) else tuple(v) if isinstance(v, Sequence) else None
    if pair is None or len(pair) != 2 or not all(_is_int(p) and p >= 1 for p in pair):
        raise KernelError(f"{name} must be an int >= 1 or a pair of them; got {v!r}.")
    return int(pair[0]), int(pair[1])


def padding_quad(name: str, v: object) -> IntQuad:
    """Padding as int, (h, w) or (top, left, bottom, right) (ONNX order), each >= 0."""
    if _is_int(v):
        quad: tuple = (v,) * 4
    elif isinstance(v, Sequence) and len(v) == 2:
        quad = (v[0], v[1], v[0], v[1])
    elif isinstance(v, Sequence) and len(v) == 4:
        quad = tuple(v)
    else:
        quad = ()
    if len(quad) != 4 or not all(_is_int(p) and p >= 0 for p in quad):
        raise KernelError(f"{name} must be an int >= 0, (h, w) or (top, left, bottom, right); got {v!r}.")
    return tuple(int(p) for p in quad)  # type: ignore[return-value]


def conv_out_size(name: str, size: int, pad_total: int, kernel: int, stride: int, dilation: int) -> int:
    """floor((size + pads - dilation*(kernel-1) - 1) / stride) + 1, checked >= 1."""
    span = dilation * (kernel - 1) + 1
    if size + pad_total < span:
        raise KernelError(
            f"{name}: the padded input ({size} + {pad_total} padding) is smaller than the kernel "
            f"extent {span} (kernel {kernel}, dilation {dilation})."
        )
    return (size + pad_total - span) // stride + 1


def accumulator_spec(acc: object):
    from hwsim.kernels.types import AccumulatorSpec

    if not isinstance(acc, AccumulatorSpec):
        raise KernelError(f"acc must be an AccumulatorSpec(bits=..., mode=...); got {acc!r}.")
    return acc


def conv_arrays(fn: str, x, w, groups, acc):
    """Validate a conv's input x (N, C, H, W), weight w (K, C/groups, R, S), groups (dividing C
    and K) and accumulator; return (x, w, groups, acc)."""
    x = int_array(f"{fn}: x", x, 4, "(N, C, H, W)")
    w = int_array(f"{fn}: w", w, 4, "(K, C/groups, R, S)")
    acc = accumulator_spec(acc)
    g = scalar_int(f"{fn}: groups", groups)
    c = x.shape[1]
    k, cg, r, s = w.shape
    if g < 1 or c % g or k % g:
        raise KernelError(f"{fn}: groups must be >= 1 and divide both C={c} and K={k}; got {g}.")
    if cg != c // g:
        raise KernelError(f"{fn}: w must have shape (K, C/groups, R, S) = ({k}, {c // g}, R, S) "
                          f"for C={c}, groups={g}; got {w.shape}.")
    if min(k, r, s) < 1:
        raise KernelError(f"{fn}: w must have K, R, S >= 1; got shape {w.shape}.")
    return x, w, g, acc


def conv_operands(x, x_zp, w, w_zp, bias, stride, padding, dilation, groups, acc):
    """Validate conv2d operands; return a tuple of normalized values (see conv2d_int)."""
    x, w, g, acc = conv_arrays("conv2d", x, w, groups, acc)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    xzp = zero_point("conv2d: x_zp", x_zp, x.dtype)
    wzp = channel_zero_points("conv2d: w_zp", w_zp, k, w.dtype)
    b = bias_vector("conv2d: bias", bias, k)
    st = positive_pair("conv2d: stride", stride)
    dl = positive_pair("conv2d: dilation", dilation)
    pd = padding_quad("conv2d: padding", padding)
    oh = conv_out_size("conv2d (height)", h, pd[0] + pd[2], r, st[0], dl[0])
    ow = conv_out_size("conv2d (width)", wd, pd[1] + pd[3], s, st[1], dl[1])
    return x, xzp, w, wzp, b, st, pd, dl, g, acc, (n, k, oh, ow)


def conv_layer_constants(fn: str, w, w_zp, bias, stride, padding, dilation, groups):
    """Validate the constants of a conv layer prepared once (no input yet): returns
    (w, groups, in_channels, w_zp (K,), bias (K,), stride, padding, dilation)."""
    w = int_array(f"{fn}: w", w, 4, "(K, C/groups, R, S)")
    k, cg, r, s = w.shape
    g = scalar_int(f"{fn}: groups", groups)
    if g < 1 or k % g or min(k, r, s) < 1:
        raise KernelError(f"{fn}: groups must be >= 1 and divide K={k}, and K, R, S >= 1; "
                          f"got groups={g}, w shape {w.shape}.")
    return (w, g, g * cg, channel_zero_points(f"{fn}: w_zp", w_zp, k, w.dtype),
            bias_vector(f"{fn}: bias", bias, k), positive_pair(f"{fn}: stride", stride),
            padding_quad(f"{fn}: padding", padding), positive_pair(f"{fn}: dilation", dilation))


def linear_operands(x, x_zp, w, w_zp, bias, acc):
    """Validate linear operands; return normalized values (see linear_int)."""
    x = int_array("linear: x", x, 2, "(N, in)")
    w = int_array("linear: w", w, 2, "(out, in)")
    acc = accumulator_spec(acc)
    if x.shape[1] != w.shape[1]:
        raise KernelError(f"linear: x has {x.shape[1]} input features but w has shape {w.shape} (expected (out, {x.shape[1]})).")
    if w.shape[0] < 1:
        raise KernelError(f"linear: w must have at least one output row; got shape {w.shape}.")
    xzp = zero_point("linear: x_zp", x_zp, x.dtype)
    wzp = channel_zero_points("linear: w_zp", w_zp, w.shape[0], w.dtype)
    b = bias_vector("linear: bias", bias, w.shape[0])
    return x, xzp, w, wzp, b, acc

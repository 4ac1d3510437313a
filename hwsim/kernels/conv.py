"""Fast exact conv2d / linear on integer codes.

Strategy: integer-valued operands run on float GEMM (BLAS) or a numba direct kernel whenever a
bound proves every partial sum is an exactly representable integer. A float sum of integers is
exact, in any order, while every partial sum stays below 2^24 in magnitude in float32 (below
2^53 in float64), since every integer up to that bound is representable; here
|partial| <= max|x - x_zp| * max_k sum|w_k - w_zp[k]|, and the reduction is split into chunks
summed in int64 when float32 needs it. Wrap-mode overflow is applied to the exact sum;
saturation runs an ordered numba kernel unless the bound (plus |bias|) proves no step can clip.
"""

from __future__ import annotations

import weakref

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _checks as ck
from hwsim.kernels import _nb
from hwsim.kernels.types import AccumResult, AccumulatorSpec

_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53
_I64_LIMIT = (1 << 63) - 1
_MAX_F32_CHUNKS = 4
# Below this reduction length per group, a numba direct kernel beats one BLAS call per group.
_DIRECT_MAX_GROUP_REDUCTION = 48


def _max_abs_centered(x: np.ndarray, zp: int) -> int:
    if x.size == 0:
        return 0
    return max(int(x.max()) - zp, zp - int(x.min()), 0)


def _plan_dtype(bound: int, max_product: int) -> np.dtype:
    """Arithmetic dtype for a reduction whose partial sums are bounded by ``bound``."""
    if bound < _F32_EXACT:
        return np.dtype(np.float32)
    if max_product < _F32_EXACT // 2 and bound < _MAX_F32_CHUNKS * (_F32_EXACT // 2):
        return np.dtype(np.float32)  # chunked: several float32 GEMMs summed in int64
    if bound < _F64_EXACT:
        return np.dtype(np.float64)
    return np.dtype(np.int64)


def _float32_chunks(abs_wc: np.ndarray, ax: int) -> list[tuple[int, int]]:
    """Split the reduction axis of |w - w_zp| (K, L) into ranges whose bound is < 2^24."""
    csum = np.cumsum(abs_wc, axis=1, dtype=np.int64)
    chunks, j0, n_l = [], 0, abs_wc.shape[1]
    while j0 < n_l:
        base = csum[:, j0 - 1 : j0] if j0 else 0
        col_bound = (csum[:, j0:] - base).max(axis=0) * ax  # nondecreasing along the axis
        j1 = j0 + int(np.searchsorted(col_bound, _F32_EXACT, side="left"))
        if j1 == j0:
            raise KernelError("internal: a single product exceeds the float32 exact range")
        chunks.append((j0, j1))
        j0 = j1
    return chunks


def _center_padded(x: np.ndarray, zp: int, pads: tuple[int, int, int, int], dtype: np.dtype, phases: int = 1) -> np.ndarray:
    """(x - zp) in ``dtype`` inside zero padding (top, left, bottom, right), shape
    (N, C, Hp, Wp); with phases > 1, (N, C, Hp, phases, ceil(Wp/phases)) split by column phase."""
    pt, pl, pb, pr = pads
    n, c, h, w = x.shape
    if phases == 1 and pt == pl == pb == pr == 0 and x.dtype.itemsize <= 2 and dtype.kind == "f":
        return np.subtract(x, dtype.type(zp), dtype=dtype)  # one pass; operands < 2^17: exact
    wp = w + pl + pr
    out = np.zeros((n, c, h + pt + pb, phases, -(-wp // phases)), dtype=dtype)
    # |x - zp| < 2^17 for codes of <= 16 bits: int32 arithmetic, which converts to float packed.
    _nb.center_pad(np.ascontiguousarray(x), np.int64(zp), pt, pl, x.dtype.itemsize <= 2, out)
    return out if phases > 1 else out.reshape(n, c, h + pt + pb, wp)


def _im2col(xp: np.ndarray, r_n: int, s_n: int, stride, dilation, oh: int, ow: int) -> np.ndarray:
    """(N, C, Hp, Wp) padded input -> (N, C*R*S, OH*OW) patches, rows ordered (c, r, s)."""
    (sh, sw), (dh, dw) = stride, dilation
    n, c = xp.shape[:2]
    if r_n == s_n == 1:
        return np.ascontiguousarray(xp[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]).reshape(n, c, oh * ow)
    cols = np.empty((n, c, r_n, s_n, oh, ow), dtype=xp.dtype)
    for r in range(r_n):
        for s in range(s_n):
            cols[:, :, r, s] = xp[:, :, r * dh : r * dh + (oh - 1) * sh + 1 : sh, s * dw : s * dw + (ow - 1) * sw + 1 : sw]
    return cols.reshape(n, c * r_n * s_n, oh * ow)


def _gemm(wf: np.ndarray, cols: np.ndarray, chunks: list[tuple[int, int]] | None) -> np.ndarray:
    """wf (K, L) @ cols (N, L, P) -> (N, K, P), exact; float32 chunks are summed in int64."""
    if chunks is None or len(chunks) == 1:
        return np.matmul(wf, cols)
    total = np.zeros((cols.shape[0], wf.shape[0], cols.shape[2]), dtype=np.int64)
    for j0, j1 in chunks:
        total += np.matmul(wf[:, j0:j1], cols[:, j0:j1]).astype(np.int64)
    return total


def _exact_sums(x, xzp, wc, ax, wsum, stride, pads, dilation, groups, out_shape) -> np.ndarray:
    """Exact sum_{c,r,s} (x - x_zp)(w - w_zp) as (N, K, OH*OW) in float32/float64/int64 values."""
    n, k, oh, ow = out_shape
    _, cg, r_n, s_n = wc.shape
    bound = ax * int(wsum.max())
    dtype = _plan_dtype(bound, ax * _abs_max_weight(wc))
    direct = dtype.kind == "i" or (groups > 1 and cg * r_n * s_n < _DIRECT_MAX_GROUP_REDUCTION)
    if dtype.kind == "f" and bound >= _F32_EXACT and direct:
        dtype = np.dtype(np.float64)  # the direct kernel does not chunk
    if direct:
        xq = _center_padded(x, xzp, pads, dtype, phases=stride[1])
        if stride[1] == 1:
            xq = xq.reshape(xq.shape[0], xq.shape[1], xq.shape[2], 1, xq.shape[3])
        out = np.zeros((n, k, oh, ow), dtype=dtype)
        _nb.direct_conv(xq, _cast_weights(wc, dtype), out, stride[0], dilation[0], dilation[1], k // groups)
        return out.reshape(n, k, oh * ow)
    xp = _center_padded(x, xzp, pads, dtype)
    cols = _im2col(xp, r_n, s_n, stride, dilation, oh, ow)
    wf = _cast_weights(wc, dtype).reshape(k, -1)
    if groups == 1:
        chunks = _float32_chunks(np.abs(wc.reshape(k, -1)), ax) if bound >= _F32_EXACT and dtype == np.float32 else None
        return _gemm(wf, cols, chunks)
    kg, lg = k // groups, cg * r_n * s_n
    parts = []
    for g in range(groups):
        wg = wc[g * kg : (g + 1) * kg].reshape(kg, -1)
        gb = ax * int(np.abs(wg).sum(axis=1).max())
        chunks = _float32_chunks(np.abs(wg), ax) if gb >= _F32_EXACT and dtype == np.float32 else None
        parts.append(_gemm(wf[g * kg : (g + 1) * kg], cols[:, g * lg : (g + 1) * lg], chunks))
    return np.concatenate(parts, axis=1)


def _accumulate(x, xzp, wc, wsum, bias, stride, pads, dilation, groups, acc, out_shape) -> AccumResult:
    """Shared by conv2d_int and linear_int: pick the exact path, then wrap or saturate."""
    ax = _max_abs_centered(x, xzp)
    bound = ax * int(wsum.max())
    max_bias = int(np.abs(bias).max())
    no_overflow = bound + max_bias <= acc.max_value
    n, k, oh, ow = out_shape
    if acc.mode == "saturate" and not no_overflow:
        max_product = ax * _abs_max_weight(wc)
        if max_product + (1 << (acc.bits - 1)) > _I64_LIMIT or max_bias > _I64_LIMIT:
            raise KernelError(
                f"saturating accumulation of {acc.bits} bits cannot be computed exactly in int64: "
                f"max |product| = {max_product}; use a narrower accumulator or narrower operands."
            )
        values = np.empty(out_shape, dtype=np.int64)
        overflows = _nb.saturate_conv(
            np.ascontiguousarray(x), np.int64(xzp), wc, bias, stride[0], stride[1], pads[0], pads[1],
            dilation[0], dilation[1], k // groups, np.int64(acc.min_value), np.int64(acc.max_value), values,
        )
        return AccumResult(values, int(overflows))
    if bound + max_bias > _I64_LIMIT:
        raise KernelError(
            f"the exact accumulation may exceed int64 (bound {bound} + |bias| {max_bias} >= 2^63); "
            "operands this wide are not supported by the fast kernels."
        )
    sums = _exact_sums(x, xzp, wc, ax, wsum, stride, pads, dilation, groups, out_shape)
    values, overflows = _nb.finish(sums, bias, acc.bits, not no_overflow, sums.dtype == np.float32)
    return AccumResult(values.reshape(out_shape), int(overflows))


# Prepared weights of read-only weight arrays (an IntProgram's arrays are read-only), keyed by
# the array's identity: a network runs the same weights many times, and centring and casting them
# on every call costs as much as a small layer. A writeable array is never cached, so mutating
# one can never hit a stale entry; an entry leaves the cache when its weight array is freed.
_PREPARED: dict[tuple, tuple] = {}  # (id(root), data ptr, shape, strides) -> (ref, zp, wc, wsum)
_DERIVED: dict[int, dict] = {}     # id(wc) -> {key: value derived from wc (casts, maxima)}


def _forget(key: tuple) -> None:
    entry = _PREPARED.pop(key, None)
    if entry is not None:
        _DERIVED.pop(id(entry[2]), None)


def _centered_weights(w: np.ndarray, wzp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w - w_zp[k]) as int64 of w's shape, and sum |w - w_zp| per output channel (K,)."""
    cacheable = not w.flags.writeable
    root = w
    while isinstance(root.base, np.ndarray):  # views (reshape) of one buffer share an entry
        root = root.base
    key = (id(root), w.__array_interface__["data"][0], w.shape, w.strides)
    if cacheable:
        hit = _PREPARED.get(key)
        if hit is not None and hit[0]() is root and hit[1] == wzp.tobytes():
            return hit[2], hit[3]
    k = w.shape[0]
    wc = np.empty(w.shape, dtype=np.int64)
    wsum = _nb.center_weights(np.ascontiguousarray(w).reshape(k, -1), wzp, wc.reshape(k, -1))
    if cacheable:
        wc.flags.writeable = False
        _forget(key)
        _PREPARED[key] = (weakref.ref(root, lambda _, key=key: _forget(key)), wzp.tobytes(), wc,
                          wsum)
        _DERIVED[id(wc)] = {}
    return wc, wsum


def _derived(wc: np.ndarray, key, compute):
    """compute(wc), memoized when wc is a cached prepared weight array."""
    memo = _DERIVED.get(id(wc)) if not wc.flags.writeable else None
    if memo is None:
        return compute(wc)
    if key not in memo:
        memo[key] = compute(wc)
    return memo[key]


def _cast_weights(wc: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return _derived(wc, ("cast", np.dtype(dtype).str), lambda a: a.astype(dtype))


def _abs_max_weight(wc: np.ndarray) -> int:
    return _derived(wc, "absmax", lambda a: int(np.abs(a).max()))


def conv2d_int(
    x: np.ndarray,
    x_zp: int,
    w: np.ndarray,
    w_zp: int | np.ndarray | None = None,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    acc: AccumulatorSpec = AccumulatorSpec(),
) -> AccumResult:
    """Exact integer 2-D convolution accumulators.

    x: codes (N, C, H, W), any integer dtype; x_zp: scalar zero point in x's dtype range.
    w: codes (K, C/groups, R, S); w_zp: None, scalar, or per-output-channel (K,).
    bias: None or integer (K,), added in the accumulator domain.
    stride, dilation: int or (h, w); padding: int, (h, w) or (top, left, bottom, right).
    acc: accumulator width and overflow mode.

    For output (n, k, oh, ow): bias[k] + sum over c in k's group, r, s of
    (x[n, c, ih, iw] - x_zp) * (w[k, c, r, s] - w_zp[k]); padded positions contribute 0.
    Returns AccumResult: values int64 (N, K, OH, OW) wrapped/saturated to acc.bits, and the
    number of output elements that overflowed.
    """
    x, xzp, w, wzp, b, st, pd, dl, g, acc, out_shape = ck.conv_operands(
        x, x_zp, w, w_zp, bias, stride, padding, dilation, groups, acc
    )
    wc, wsum = _centered_weights(w, wzp)
    return _accumulate(x, xzp, wc, wsum, b, st, pd, dl, g, acc, out_shape)


def linear_int(
    x: np.ndarray,
    x_zp: int,
    w: np.ndarray,
    w_zp: int | np.ndarray | None = None,
    bias: np.ndarray | None = None,
    acc: AccumulatorSpec = AccumulatorSpec(),
) -> AccumResult:
    """Exact integer fully-connected accumulators.

    x: codes (N, in); w: codes (out, in); w_zp: None, scalar or (out,); bias: None or (out,).
    values[n, o] = bias[o] + sum_i (x[n, i] - x_zp) * (w[o, i] - w_zp[o]), order over i
    ascending for saturation. Returns AccumResult with values int64 (N, out).
    """
    x, xzp, w, wzp, b, acc = ck.linear_operands(x, x_zp, w, w_zp, bias, acc)
    n, n_in = x.shape
    n_out = w.shape[0]
    wc, wsum = _centered_weights(w, wzp)
    # A linear layer is a 1x1 conv of the batch laid out as pixels: (1, in, N, 1) -> (1, out, N, 1).
    x4 = np.ascontiguousarray(x.T).reshape(1, n_in, n, 1)
    res = _accumulate(x4, xzp, wc.reshape(n_out, n_in, 1, 1), wsum, b, (1, 1), (0, 0, 0, 0), (1, 1), 1, acc, (1, n_out, n, 1))
    return AccumResult(np.ascontiguousarray(res.values.reshape(n_out, n).T), res.overflow_count)

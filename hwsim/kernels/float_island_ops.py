"""Float-island ops that compute nothing new (shape ops, MaxPool) and the N-input Sum, as
ONNX Runtime's CPU kernels run them in float32 (measured against onnxruntime 1.32, x86-64):

- Transpose, Split, Slice, Squeeze, Unsqueeze: move values, exact by construction.
- MaxPool (2-D, N x C x H x W): the largest value of each window, padding ignored (it holds
  -inf); exact whatever the order. Output size as ONNX Runtime's PoolAttributes computes it:
  floor((H + pads - dilation·(k - 1) - 1) / stride) + 1, with ceil_mode the ceiling, less one
  when the last window would start in the tail padding; SAME_UPPER / SAME_LOWER pad
  (ceil(H / stride) - 1)·stride + k - H in total, ignoring the dilation, as ONNX Runtime does.
- Sum of N inputs: left to right, y = f32(f32(f32(x0 + x1) + x2) + ...), numpy broadcasting.

Each op has a fast form and an element-by-element reference; both return float32 arrays.
A Split inside an island is one node per output it feeds: attrs["output_index"] names the
output, attrs["outputs_count"] the number of outputs of the ONNX node (hwsim's own keys).
"""
from __future__ import annotations

import math

import numpy as np

from hwsim.kernels.float_island_errors import FloatIslandError

_F32 = np.float32


def _x(ins) -> np.ndarray:
    return np.asarray(ins[0], dtype=_F32)


def _ints(v) -> list[int]:
    return [int(d) for d in np.asarray(v).reshape(-1)]


def _axis(a: int, rank: int, what: str) -> int:
    if not -rank <= a < rank:
        raise FloatIslandError(f"{what}: axis {a} out of range for rank {rank}")
    return a % rank


# --- Transpose ----------------------------------------------------------------------------------

def transpose_perm(rank: int, attrs) -> tuple[int, ...]:
    """The permutation (default: the dims reversed), checked."""
    perm = attrs.get("perm")
    perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
    if sorted(perm) != list(range(rank)):
        raise FloatIslandError(f"Transpose: perm {perm} is not a permutation of {rank} dims")
    return tuple(perm)


def _transpose(ins, attrs):
    x = _x(ins)
    return np.ascontiguousarray(x.transpose(transpose_perm(x.ndim, attrs)))


def _transpose_ref(ins, attrs):
    x = _x(ins)
    perm = transpose_perm(x.ndim, attrs)
    out = np.empty(tuple(x.shape[p] for p in perm), _F32)
    for idx in np.ndindex(*out.shape):
        src = [0] * x.ndim
        for k, p in enumerate(perm):
            src[p] = idx[k]
        out[idx] = x[tuple(src)]
    return out


# --- Split ----------------------------------------------------------------------------------

def split_sizes(dim: int, split, num_outputs, count: int) -> list[int]:
    """ONNX Split's piece lengths along the axis: the `split` input / attribute, else
    `num_outputs` pieces of ceil(dim / num_outputs) (the last one shorter), else `count` equal
    pieces."""
    if split is not None and np.size(split):
        sizes = _ints(split)
        if sum(sizes) != dim or min(sizes) < 0:
            raise FloatIslandError(f"Split: sizes {sizes} do not add up to the axis length {dim}")
        return sizes
    n = int(num_outputs) if num_outputs else count
    if n < 1:
        raise FloatIslandError(f"Split into {n} pieces")
    if num_outputs:
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        if sizes[-1] < 0:
            raise FloatIslandError(f"Split: {dim} values cannot make {n} pieces of {chunk}")
        return sizes
    if dim % n:
        raise FloatIslandError(f"Split: axis length {dim} is not divisible into {n} equal pieces")
    return [dim // n] * n


def split_piece(shape: tuple[int, ...], ins, attrs) -> tuple[int, int, int]:
    """(axis, start, stop) of the piece attrs["output_index"] of a Split."""
    axis = _axis(int(attrs.get("axis", 0)), len(shape), "Split")
    split = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("split")
    sizes = split_sizes(shape[axis], split, attrs.get("num_outputs"),
                        int(attrs.get("outputs_count", 1)))
    index = int(attrs.get("output_index", 0))
    if not 0 <= index < len(sizes):
        raise FloatIslandError(f"Split: output {index} of {len(sizes)}")
    start = sum(sizes[:index])
    return axis, start, start + sizes[index]


def _split(ins, attrs):
    x = _x(ins)
    axis, start, stop = split_piece(x.shape, ins, attrs)
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return np.ascontiguousarray(x[tuple(index)])


def _split_ref(ins, attrs):
    x = _x(ins)
    axis, start, stop = split_piece(x.shape, ins, attrs)
    shape = list(x.shape)
    shape[axis] = stop - start
    out = np.empty(shape, _F32)
    for idx in np.ndindex(*shape):
        src = list(idx)
        src[axis] += start
        out[idx] = x[tuple(src)]
    return out


# --- Slice ------------------------------------------------------------------------------------

def slice_ranges(shape: tuple[int, ...], ins, attrs) -> list[tuple[int, int, int, int]]:
    """ONNX Slice as (axis, start, stop, step) per sliced axis, normalized: negative indices
    count from the end, then clamped (step > 0: to [0, dim]; step < 0: start to [0, dim - 1],
    stop to [-1, dim - 1]); so the kept indices are range(start, stop, step)."""
    def given(i, key):
        v = ins[i] if len(ins) > i and ins[i] is not None else attrs.get(key)
        return None if v is None else _ints(v)
    starts, ends = given(1, "starts"), given(2, "ends")
    if starts is None or ends is None or len(starts) != len(ends):
        raise FloatIslandError(f"Slice: starts {starts} and ends {ends} must be given, of one "
                               "length")
    axes = given(3, "axes") or list(range(len(starts)))
    steps = given(4, "steps") or [1] * len(starts)
    if len(axes) != len(starts) or len(steps) != len(starts) or 0 in steps:
        raise FloatIslandError(f"Slice: axes {axes} / steps {steps} do not match starts "
                               f"{starts} (steps must be non-zero)")
    out, seen = [], set()
    for a, b, e, st in zip(axes, starts, ends, steps):
        ax = _axis(a, len(shape), "Slice")
        if ax in seen:
            raise FloatIslandError(f"Slice: axis {ax} given twice")
        seen.add(ax)
        dim = shape[ax]
        b, e = (b + dim if b < 0 else b), (e + dim if e < 0 else e)
        if st > 0:
            b, e = min(max(b, 0), dim), min(max(e, 0), dim)
        else:
            b, e = min(max(b, 0), dim - 1), min(max(e, -1), dim - 1)
        out.append((ax, b, e, st))
    return out


def _slice(ins, attrs):
    x = _x(ins)
    for ax, b, e, st in slice_ranges(x.shape, ins, attrs):
        x = np.take(x, np.arange(b, e, st, dtype=np.int64), axis=ax)
    return np.ascontiguousarray(x, dtype=_F32)


def _slice_ref(ins, attrs):
    x = _x(ins)
    keep = [list(range(d)) for d in x.shape]
    for ax, b, e, st in slice_ranges(x.shape, ins, attrs):
        keep[ax] = list(range(b, e, st))
    out = np.empty(tuple(len(k) for k in keep), _F32)
    for idx in np.ndindex(*out.shape):
        out[idx] = x[tuple(k[i] for k, i in zip(keep, idx))]
    return out


# --- Squeeze / Unsqueeze ------------------------------------------------------------------------

def _axes(ins, attrs) -> list[int] | None:
    v = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("axes")
    return None if v is None else _ints(v)


def squeeze_shape(shape: tuple[int, ...], axes) -> tuple[int, ...]:
    """Squeeze's output shape: `axes` removed (None: every dimension of length 1)."""
    if axes is None:
        return tuple(d for d in shape if d != 1)
    drop = {_axis(a, len(shape), "Squeeze") for a in axes}
    if any(shape[a] != 1 for a in drop):
        raise FloatIslandError(f"Squeeze: axes {sorted(drop)} of {shape} are not all 1")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def unsqueeze_shape(shape: tuple[int, ...], axes) -> tuple[int, ...]:
    """Unsqueeze's output shape: a 1 inserted at each of `axes` (of the output's rank)."""
    if not axes:
        raise FloatIslandError("Unsqueeze needs axes")
    rank = len(shape) + len(axes)
    put = {_axis(a, rank, "Unsqueeze") for a in axes}
    if len(put) != len(axes):
        raise FloatIslandError(f"Unsqueeze: repeated axes {axes}")
    rest = iter(shape)
    return tuple(1 if i in put else next(rest) for i in range(rank))


def _squeeze(ins, attrs):
    x = _x(ins)
    return x.reshape(squeeze_shape(x.shape, _axes(ins, attrs)))


def _unsqueeze(ins, attrs):
    x = _x(ins)
    return x.reshape(unsqueeze_shape(x.shape, _axes(ins, attrs)))


def _flat_copy(shape_fn):
    def ref(ins, attrs):  # element by element in row-major order: a reshape moves nothing
        x = _x(ins)
        out = np.empty(shape_fn(x.shape, _axes(ins, attrs)), _F32)
        flat_in, flat_out = x.reshape(-1), out.reshape(-1)
        for i in range(flat_in.size):
            flat_out[i] = flat_in[i]
        return out
    return ref


# --- MaxPool -----------------------------------------------------------------------------------

def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def maxpool_geometry(shape: tuple[int, ...], attrs) -> tuple:
    """(kernel, strides, dilations, pads (top, left, bottom, right), (OH, OW)) of a 2-D
    MaxPool over (N, C, H, W), as ONNX Runtime computes them."""
    if len(shape) != 4:
        raise FloatIslandError(f"MaxPool: 2-D pools on (N, C, H, W) only; got {shape}")
    kernel = _ints(attrs.get("kernel_shape", ()))
    strides = _ints(attrs.get("strides", (1, 1)))
    dil = _ints(attrs.get("dilations", (1, 1)))
    pads = _ints(attrs.get("pads", (0, 0, 0, 0)))
    if len(kernel) != 2 or len(strides) != 2 or len(dil) != 2 or len(pads) != 4 \
            or min(kernel + strides + dil) < 1 or min(pads) < 0:
        raise FloatIslandError(f"MaxPool: kernel_shape {kernel}, strides {strides}, dilations "
                               f"{dil}, pads {pads}: expected a 2-D pool")
    auto_pad, ceil = _text(attrs.get("auto_pad", "NOTSET")), int(attrs.get("ceil_mode", 0))
    out = []
    for ax in range(2):
        size, k, s, d = shape[2 + ax], kernel[ax], strides[ax], dil[ax]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):  # ORT's legacy rule: dilation ignored
            total = (-(-size // s) - 1) * s + k - size
            if total < 0:
                raise FloatIslandError(f"MaxPool: {auto_pad} with stride {s} > kernel {k} "
                                       "gives negative padding")
            small = total // 2
            pads[ax], pads[ax + 2] = ((small, total - small) if auto_pad == "SAME_UPPER"
                                      else (total - small, small))
        elif auto_pad == "VALID":
            pads[ax] = pads[ax + 2] = 0
        elif auto_pad != "NOTSET":
            raise FloatIslandError(f"MaxPool: auto_pad {auto_pad!r}")
        span = size + pads[ax] + pads[ax + 2] - d * (k - 1) - 1
        if span < 0:
            raise FloatIslandError(f"MaxPool: kernel {kernel} does not fit {shape[2:]}")
        o = (-(-span // s) if ceil else span // s) + 1
        if ceil and (o - 1) * s >= size + pads[ax]:
            o -= 1
        out.append(o)
    return tuple(kernel), tuple(strides), tuple(dil), tuple(pads), tuple(out)


def _maxpool(ins, attrs):
    x = _x(ins)
    (kh, kw), (sh, sw), (dh, dw), (top, left, _, _), (oh, ow) = maxpool_geometry(x.shape, attrs)
    n, c, h, w = x.shape
    ph = max(top + h, (oh - 1) * sh + (kh - 1) * dh + 1)
    pw = max(left + w, (ow - 1) * sw + (kw - 1) * dw + 1)
    xp = np.full((n, c, ph, pw), -np.inf, dtype=_F32)
    xp[:, :, top:top + h, left:left + w] = x
    y = np.full((n, c, oh, ow), -np.inf, dtype=_F32)
    for i in range(kh):
        for j in range(kw):
            r, q = i * dh, j * dw
            np.maximum(y, xp[:, :, r:r + sh * (oh - 1) + 1:sh, q:q + sw * (ow - 1) + 1:sw], out=y)
    return y


def _maxpool_ref(ins, attrs):
    x = _x(ins)
    (kh, kw), (sh, sw), (dh, dw), (top, left, _, _), (oh, ow) = maxpool_geometry(x.shape, attrs)
    out = np.empty(x.shape[:2] + (oh, ow), _F32)
    for a, ch, p, q in np.ndindex(*out.shape):
        best = None
        for i in range(kh):
            for j in range(kw):
                r, col = p * sh - top + i * dh, q * sw - left + j * dw
                if 0 <= r < x.shape[2] and 0 <= col < x.shape[3]:
                    v = x[a, ch, r, col]
                    best = v if best is None or v > best else best
        out[a, ch, p, q] = -np.inf if best is None else best
    return out


# --- Sum -----------------------------------------------------------------------------------------

def _sum_shape(xs) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(*(x.shape for x in xs))
    except ValueError:
        raise FloatIslandError(f"Sum: shapes {[x.shape for x in xs]} do not broadcast") from None


def _sum(ins, attrs):
    xs = [np.asarray(v, dtype=_F32) for v in ins if v is not None]
    _sum_shape(xs)
    y = xs[0]
    with np.errstate(all="ignore"):
        for v in xs[1:]:
            y = (y + v).astype(_F32)
    return y


def _sum_ref(ins, attrs):
    xs = [np.asarray(v, dtype=_F32) for v in ins if v is not None]
    shape = _sum_shape(xs)
    b = [np.broadcast_to(x, shape) for x in xs]
    out = np.empty(shape, _F32)
    with np.errstate(all="ignore"):
        for idx in np.ndindex(*shape):
            acc = b[0][idx]
            for x in b[1:]:
                acc = _F32(acc + x[idx])
            out[idx] = acc
    return out


def ops(spec) -> dict:
    """name -> spec(fewest, most, fast, reference, constant inputs), for FLOAT_OPS."""
    return {
        "Transpose": spec(1, 1, _transpose, _transpose_ref),
        "Split": spec(1, 2, _split, _split_ref, (1,)),
        "Slice": spec(1, 5, _slice, _slice_ref, (1, 2, 3, 4)),
        "Squeeze": spec(1, 2, _squeeze, _flat_copy(squeeze_shape), (1,)),
        "Unsqueeze": spec(1, 2, _unsqueeze, _flat_copy(unsqueeze_shape), (1,)),
        "MaxPool": spec(1, 1, _maxpool, _maxpool_ref),
        "Sum": spec(1, math.inf, _sum, _sum_ref),
    }

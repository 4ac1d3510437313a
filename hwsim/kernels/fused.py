"""conv2d / linear fused with requantization: bit-identical to conv2d_int (or linear_int)
followed by requantize_float32 / requantize_dyadic, without materializing int64 accumulators.

When the bound proves |sum| + |bias| < 2^24 and no accumulator overflow, the exact float32 sums
are requantized in one pass (4 bytes read per output instead of 8 written + 8 read). Otherwise
the unfused kernels run, so results never depend on which path was taken.
"""

from __future__ import annotations

import weakref

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels import _checks as ck
from hwsim.kernels import _nb
from hwsim.kernels._requant_checks import output_dtype, output_range
from hwsim.kernels.conv import (_DERIVED, _F32_EXACT, _accumulate, _cast_weights,
                                 _centered_weights, _derived, _exact_sums, _max_abs_centered)
from hwsim.kernels.requant import requantize_dyadic, requantize_float32
from hwsim.kernels.types import AccumulatorSpec, RequantResult

_MAGIC_RANGE = 1 << 22


def _channel_vector(fn: str, name: str, v, k: int, kind: str) -> np.ndarray:
    arr = np.asarray(v)
    if kind == "float32" and arr.dtype != np.float32:
        raise KernelError(f"{fn}: {name} must be float32 (compute it with ort_output_scale); got dtype {arr.dtype}.")
    if kind == "int" and (arr.dtype.kind not in "iu" or arr.dtype == np.uint64):
        raise KernelError(f"{fn}: {name} must be integer(s); got dtype {arr.dtype}.")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] not in (1, k)):
        raise KernelError(f"{fn}: {name} must be a scalar or have shape ({k},) (one per output channel); got shape {arr.shape}.")
    return np.ascontiguousarray(arr.reshape(-1))


class PreparedConv:
    """A conv2d fused with requantization whose constants were validated and prepared once
    (weights centred and cast, bounds summed), for running the same layer many times.

    Build it with `prepare_conv2d`; `prepared(x, x_zp)` equals conv2d_int followed by
    requantize_float32 / requantize_dyadic (axis=1) bit for bit. Only the input is checked per
    call. When a bound proves |sum| + |bias| < 2^24 and no accumulator overflow, exact float32
    sums (or, for depthwise convs, int32 sums from a direct numba kernel) are requantized in one
    pass; otherwise the unfused kernels run, so results never depend on the path taken.
    """

    def __init__(self, fn: str, w, w_zp, bias, stride, padding, dilation, groups,
                 acc: AccumulatorSpec, requant: str, params: dict) -> None:
        self.fn, self.requant, self.params = fn, requant, params
        (self.w, g, self.in_channels, self.wzp, self.bias, self.stride, self.padding,
         self.dilation) = ck.conv_layer_constants(fn, w, w_zp, bias, stride, padding, dilation,
                                                  groups)
        self.acc = ck.accumulator_spec(acc)
        k, cg = self.w.shape[:2]
        self.groups = g
        self.wc, self.wsum = _centered_weights(self.w, self.wzp)
        if self.wc.flags.writeable:  # not shared: memoize derived casts for this object's life
            self.wc.flags.writeable = False
            _DERIVED[id(self.wc)] = {}
            weakref.finalize(self, _DERIVED.pop, id(self.wc), None)
        self.wsum_max = int(self.wsum.max())
        self.bias_f32 = self.bias.astype(np.float32)
        self.max_bias = int(np.abs(self.bias).max())
        self.depthwise = g > 1 and g == k and cg == 1
        zp, lo, hi = params["range"]
        self.out_dtype = output_dtype(lo, hi)
        self.fast_range = requant != "float32" or (abs(lo - zp) <= _MAGIC_RANGE and
                                                   abs(hi - zp) <= _MAGIC_RANGE)

    def out_shape(self, x_shape: tuple) -> tuple[int, int, int, int]:
        n, _, h, w = x_shape
        _, _, r, s = self.w.shape
        pd, st, dl = self.padding, self.stride, self.dilation
        oh = ck.conv_out_size(f"{self.fn} (height)", h, pd[0] + pd[2], r, st[0], dl[0])
        ow = ck.conv_out_size(f"{self.fn} (width)", w, pd[1] + pd[3], s, st[1], dl[1])
        return n, self.w.shape[0], oh, ow

    def __call__(self, x: np.ndarray, x_zp: int) -> RequantResult:
        x = ck.int_array(f"{self.fn}: x", x, 4, "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise KernelError(f"{self.fn}: x has {x.shape[1]} channels; the weights expect "
                              f"{self.in_channels} (groups={self.groups}).")
        xzp = ck.zero_point(f"{self.fn}: x_zp", x_zp, x.dtype)
        return self._run(x, xzp, self.out_shape(x.shape))

    def _run(self, x, xzp, out_shape) -> RequantResult:
        params, requant = self.params, self.requant
        zp, lo, hi = params["range"]
        n, k, oh, ow = out_shape
        st, pd, dl, g = self.stride, self.padding, self.dilation, self.groups
        ax = _max_abs_centered(x, xzp)
        worst = ax * self.wsum_max + self.max_bias
        if not (worst < _F32_EXACT and worst <= self.acc.max_value and self.fast_range):
            res = _accumulate(x, xzp, self.wc, self.wsum, self.bias, st, pd, dl, g, self.acc,
                              out_shape)
            per = {name: (v if v.shape[0] > 1 else v[0]) for name, v in params.items()
                   if name != "range"}
            if requant == "float32":
                codes = requantize_float32(res.values, per["scale"], zp, lo, hi, axis=1)
            else:
                codes = requantize_dyadic(res.values, per["m"], per["shift"], zp, lo, hi, axis=1)
            return RequantResult(codes, res.overflow_count)
        if self.depthwise:
            return RequantResult(_depthwise(x, xzp, self.wc, self.bias, st, pd, dl, requant,
                                            params, out_shape), 0)
        sums = _exact_sums(x, xzp, self.wc, ax, self.wsum, st, pd, dl, g, out_shape)
        out = np.empty((n, k, oh * ow), dtype=self.out_dtype)
        if requant == "float32":
            _nb.fused_float32(sums, self.bias_f32, params["scale"], np.int64(zp), np.int64(lo),
                              np.int64(hi), out)
        else:
            _nb.fused_dyadic(sums, self.bias, params["m"], params["shift"], np.int64(zp),
                             np.int64(lo), np.int64(hi), out)
        return RequantResult(out.reshape(out_shape), 0)


class PreparedLinear:
    """A linear layer fused with requantization, prepared once (see PreparedConv).
    `prepared(x, x_zp)` with x (N, in) returns codes (N, out)."""

    def __init__(self, fn: str, w, w_zp, bias, acc: AccumulatorSpec, requant: str,
                 params: dict) -> None:
        w = ck.int_array(f"{fn}: w", w, 2, "(out, in)")
        if w.shape[0] < 1:
            raise KernelError(f"{fn}: w must have at least one output row; got shape {w.shape}.")
        self.fn, self.n_out, self.n_in = fn, w.shape[0], w.shape[1]
        self.conv = PreparedConv(fn, w.reshape(self.n_out, self.n_in, 1, 1), w_zp, bias, 1, 0,
                                 1, 1, acc, requant, params)

    def __call__(self, x: np.ndarray, x_zp: int) -> RequantResult:
        x = ck.int_array(f"{self.fn}: x", x, 2, "(N, in)")
        if x.shape[1] != self.n_in:
            raise KernelError(f"{self.fn}: x has {x.shape[1]} input features but w has shape "
                              f"({self.n_out}, {self.n_in}).")
        xzp = ck.zero_point(f"{self.fn}: x_zp", x_zp, x.dtype)
        n = x.shape[0]
        # A linear layer is a 1x1 conv of the batch laid out as pixels: (1, in, N, 1).
        x4 = np.ascontiguousarray(x.T).reshape(1, self.n_in, n, 1)
        res = self.conv._run(x4, xzp, (1, self.n_out, n, 1))
        return RequantResult(np.ascontiguousarray(res.codes.reshape(self.n_out, n).T),
                             res.overflow_count)


def _check_requant_mode(requant: str) -> None:
    if requant not in ("float32", "dyadic"):
        raise KernelError(f"requant must be 'float32' or 'dyadic'; got {requant!r}.")


def prepare_conv2d(w, w_zp, bias, stride, padding, dilation, groups, acc: AccumulatorSpec, *,
                   out_zero_point: int, qmin: int, qmax: int, requant: str, scale_f32=None,
                   m=None, shift=None) -> PreparedConv:
    """Validate and prepare a conv2d + requantization once. `requant` "float32" (ONNX Runtime's
    order) takes `scale_f32`; "dyadic" takes `m` and `shift`. Returns a callable (x, x_zp)."""
    _check_requant_mode(requant)
    fn = f"conv2d_requantize_{requant}"
    w = ck.int_array(f"{fn}: w", w, 4, "(K, C/groups, R, S)")
    params = _requant_params(fn, requant, w.shape[0], out_zero_point, qmin, qmax,
                             scale_f32=scale_f32, m=m, shift=shift)
    return PreparedConv(fn, w, w_zp, bias, stride, padding, dilation, groups, acc, requant, params)


def prepare_linear(w, w_zp, bias, acc: AccumulatorSpec, *, out_zero_point: int, qmin: int,
                   qmax: int, requant: str, scale_f32=None, m=None, shift=None) -> PreparedLinear:
    """As prepare_conv2d, for a linear layer with weights (out, in)."""
    _check_requant_mode(requant)
    fn = f"linear_requantize_{requant}"
    w = ck.int_array(f"{fn}: w", w, 2, "(out, in)")
    params = _requant_params(fn, requant, w.shape[0], out_zero_point, qmin, qmax,
                             scale_f32=scale_f32, m=m, shift=shift)
    return PreparedLinear(fn, w, w_zp, bias, acc, requant, params)


# From this many channels on, the channels-last depthwise kernel is the faster one (measured on
# MobileNetV2's shapes: 3-8x faster on 14x14 and 7x7 planes, slower on 112x112 with 32 channels).
_CHANNELS_LAST_MIN_CHANNELS = 128


def _depthwise(x, xzp, wc, b, st, pd, dl, requant, params, out_shape) -> np.ndarray:
    """Depthwise conv + requantization in one numba pass (caller proved the float32 bound)."""
    zp, lo, hi = params["range"]
    out = np.empty(out_shape, dtype=output_dtype(lo, hi))
    geom = (st[0], st[1], pd[0], pd[1], dl[0], dl[1])
    xs = np.ascontiguousarray(x)
    channels = wc.shape[0]
    if channels >= _CHANNELS_LAST_MIN_CHANNELS:
        wt = _derived(wc, "depthwise_rsc", lambda a: np.ascontiguousarray(
            a[:, 0].transpose(1, 2, 0).astype(np.int32)))
        rng = (np.int64(zp), np.int64(lo), np.int64(hi), out)
        if requant == "float32":
            _nb.depthwise_cl_float32(xs, np.int64(xzp), wt, b, *geom,
                                     _per_channel(params["scale"], channels), *rng)
        else:
            _nb.depthwise_cl_dyadic(xs, np.int64(xzp), wt, b, *geom,
                                    _per_channel(params["m"], channels),
                                    _per_channel(params["shift"], channels), *rng)
        return out
    w3 = _cast_weights(wc, np.int32).reshape(wc.shape[0], wc.shape[2], wc.shape[3])
    if requant == "float32":
        _nb.depthwise_float32(xs, np.int64(xzp), w3, b, *geom, params["scale"], np.int64(zp),
                              np.int64(lo), np.int64(hi), out)
    else:
        _nb.depthwise_dyadic(xs, np.int64(xzp), w3, b, *geom, params["m"], params["shift"],
                             np.int64(zp), np.int64(lo), np.int64(hi), out)
    return out


def _per_channel(v: np.ndarray, channels: int) -> np.ndarray:
    """A per-tensor constant (shape (1,)) repeated per channel; per-channel ones unchanged."""
    return v if v.shape[0] == channels else np.full(channels, v[0], dtype=v.dtype)


def _requant_params(fn, requant, k, out_zero_point, qmin, qmax, scale_f32=None, m=None, shift=None):
    params = {"range": output_range(fn, out_zero_point, qmin, qmax)}
    if requant == "float32":
        params["scale"] = _channel_vector(fn, "scale_f32", scale_f32, k, "float32")
        if not np.all(np.isfinite(params["scale"])):
            raise KernelError(f"{fn}: scale_f32 must be finite.")
    else:
        params["m"] = _channel_vector(fn, "m", m, k, "int").astype(np.int64)
        params["shift"] = _channel_vector(fn, "shift", shift, k, "int").astype(np.int64)
        if params["m"].shape != params["shift"].shape:
            raise KernelError(f"{fn}: m and shift must both be scalars or both per channel ({k},).")
        if params["m"].min() < 0 or params["m"].max() >= 2**31 or params["shift"].min() < 0 or params["shift"].max() > 63:
            raise KernelError(f"{fn}: m must lie in [0, 2^31) and shift in [0, 63].")
    return params


def conv2d_requantize_float32(
    x, x_zp, w, w_zp, bias, stride, padding, dilation, groups, acc: AccumulatorSpec,
    scale_f32, out_zero_point: int, qmin: int, qmax: int,
) -> RequantResult:
    """conv2d_int(...) then requantize_float32(values, scale_f32, ..., axis=1), fused.
    Arguments as those two functions; scale_f32 is float32, scalar or (K,)."""
    return prepare_conv2d(w, w_zp, bias, stride, padding, dilation, groups, acc,
                          out_zero_point=out_zero_point, qmin=qmin, qmax=qmax,
                          requant="float32", scale_f32=scale_f32)(x, x_zp)


def conv2d_requantize_dyadic(
    x, x_zp, w, w_zp, bias, stride, padding, dilation, groups, acc: AccumulatorSpec,
    m, shift, out_zero_point: int, qmin: int, qmax: int,
) -> RequantResult:
    """conv2d_int(...) then requantize_dyadic(values, m, shift, ..., axis=1), fused."""
    return prepare_conv2d(w, w_zp, bias, stride, padding, dilation, groups, acc,
                          out_zero_point=out_zero_point, qmin=qmin, qmax=qmax,
                          requant="dyadic", m=m, shift=shift)(x, x_zp)


def linear_requantize_float32(x, x_zp, w, w_zp, bias, acc: AccumulatorSpec, scale_f32,
                              out_zero_point: int, qmin: int, qmax: int) -> RequantResult:
    """linear_int(...) then requantize_float32(values, scale_f32, ..., axis=1), fused; (N, out)."""
    return prepare_linear(w, w_zp, bias, acc, out_zero_point=out_zero_point, qmin=qmin,
                          qmax=qmax, requant="float32", scale_f32=scale_f32)(x, x_zp)


def linear_requantize_dyadic(x, x_zp, w, w_zp, bias, acc: AccumulatorSpec, m, shift,
                             out_zero_point: int, qmin: int, qmax: int) -> RequantResult:
    """linear_int(...) then requantize_dyadic(values, m, shift, ..., axis=1), fused; (N, out)."""
    return prepare_linear(w, w_zp, bias, acc, out_zero_point=out_zero_point, qmin=qmin,
                          qmax=qmax, requant="dyadic", m=m, shift=shift)(x, x_zp)

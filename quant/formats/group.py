"""Group-wise (block) integer weights: ``GroupIntFormat`` (what a code can be) and
``GroupParams`` (what fitted codes mean).

A weight ``w`` of shape (K, C, ...) (linear: (out, in); conv2d: (K, C, R, S)) is cut along axis
1 into ``G = C / group_size`` groups of ``group_size`` consecutive input features (a conv group
spans its input channels' whole R x S kernel).  Every (output channel k, group g) block has its
own uniform grid: codes ``q`` of ``bits`` bits and ``w ≈ scale[k, g] · (q - zero_point[k, g])``.
A block is fitted exactly as one channel of a per-channel ``IntFormat`` (``fit_int_params`` on
the (K·G, group_size·R·S) view: min-max, percentile or MSE clipping), then degenerate blocks
are settled as per-channel int weights are (``settle_channel_scales``: an all-zero block takes
the layer's largest block scale, a block scale below 2^-16 of it is raised to that floor), so
every block's requantization multiplier stays within 2^16 of the layer's largest.

``group_size`` must divide C: a weight whose axis 1 is not a multiple is a ``QuantError``
naming the group size and the number of input features (no ragged last group).  The scales of
a channel differ from group to group, so there is no one code step to hold a bias in integer
codes: the bias stays float (``code_scale`` is None) and the integer program adds it in the
requantization stage, where the groups' accumulators are summed (``hwsim.ops.group``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant._validate import check_bool, check_choice, check_int
from quant.errors import QuantError
from quant.formats._shared import finite_tensor
from quant.formats.uniform import CLIPPING_METHODS, IntFormat, QuantParams
from quant.formats.uniform_fit import fit_int_params, settle_channel_scales

#: Largest group size a format accepts.
MAX_GROUP_SIZE = 1 << 20


@dataclass(frozen=True)
class GroupIntFormat:
    """Signed integer weights with one scale (and zero point) per (output channel, group).

    Attributes:
        bits: code width, 2..8 (signed; symmetric codes lie in ``[-(2^(b-1) - 1), 2^(b-1) - 1]``,
            asymmetric ones in ``[-2^(b-1), 2^(b-1) - 1]``).
        group_size: consecutive input features (axis 1 of the weight) sharing one scale, >= 1;
            it must divide the layer's input features.
        symmetric: zero point 0 in every block (otherwise one zero point per block).
        clipping: how a block's range is chosen: "minmax", "percentile" or "mse" (as
            ``IntFormat``, per block).
    """

    bits: int = 4
    group_size: int = 32
    symmetric: bool = True
    clipping: str = "minmax"

    def __post_init__(self) -> None:
        owner = "GroupIntFormat"
        check_int(self.bits, "bits", owner, 2, 8)
        check_int(self.group_size, "group_size", owner, 1, MAX_GROUP_SIZE)
        check_bool(self.symmetric, "symmetric", owner)
        check_choice(self.clipping, "clipping", owner, CLIPPING_METHODS)

    @property
    def code_format(self) -> IntFormat:
        """The per-block uniform format: a per-channel ``IntFormat`` over the (K·G) blocks."""
        return IntFormat(bits=self.bits, signed=True, symmetric=self.symmetric, per_channel=True,
                         clipping=self.clipping)

    def describe(self) -> str:
        """Short name, e.g. ``int4-g32`` (``-asym`` and the clipping when not min-max)."""
        name = f"int{self.bits}-g{self.group_size}"
        name += "" if self.symmetric else "-asym"
        return name + ("" if self.clipping == "minmax" else f"-{self.clipping}")


def group_count(shape: tuple[int, ...], group_size: int, what: str = "a weight") -> int:
    """Groups per output channel, ``shape[1] / group_size``, of a weight of ``shape`` (K, C, ...);
    QuantError when ``group_size`` does not divide C."""
    if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
        raise QuantError(f"group-wise weights need {what} of shape (out, in) or (K, C, R, S) "
                         f"with at least one output channel and input feature; got {shape}")
    if shape[1] % group_size:
        raise QuantError(f"group size {group_size} does not divide the {shape[1]} input "
                         f"features (axis 1 of {what} of shape {shape}); choose a group size "
                         f"that divides {shape[1]}")
    return shape[1] // group_size


def _blocks(x: np.ndarray, group_size: int) -> np.ndarray:
    """``x`` (K, C, ...) as blocks (K·G, group_size·prod(...)); block k·G + g is channel k's
    group g."""
    k = x.shape[0]
    groups = group_count(x.shape, group_size)
    return x.reshape(k, groups, -1).reshape(k * groups, -1)


@dataclass(frozen=True, eq=False)
class GroupParams:
    """Scales and zero points of a weight fitted with a ``GroupIntFormat``.

    Attributes:
        scale: float64 (K, G), > 0; real value of one code step of block (k, g).
        zero_point: int64 (K, G); 0 for a symmetric format.
        fmt: the format.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    fmt: GroupIntFormat

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, GroupIntFormat):
            raise QuantError(f"GroupParams.fmt must be a GroupIntFormat; got "
                             f"{type(self.fmt).__name__}")
        scale = np.array(self.scale, dtype=np.float64)
        zp = np.array(self.zero_point)
        if scale.ndim != 2 or min(scale.shape) < 1 or zp.shape != scale.shape \
                or zp.dtype.kind not in "iu":
            raise QuantError(f"GroupParams.scale and zero_point must have one shape (K, G) "
                             f"(zero points integers); got {scale.shape} and {zp.dtype} "
                             f"{zp.shape}")
        zp = zp.astype(np.int64)
        rows = QuantParams(scale.reshape(-1), zp.reshape(-1), 0, self.fmt.code_format)
        for arr in (scale, zp):
            arr.setflags(write=False)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp)
        object.__setattr__(self, "_rows", rows)

    @property
    def channels(self) -> int:
        return int(self.scale.shape[0])

    @property
    def groups(self) -> int:
        """Groups per output channel, G."""
        return int(self.scale.shape[1])

    def _view(self, x: np.ndarray) -> np.ndarray:
        if x.ndim < 2 or x.shape[0] != self.channels or \
                x.shape[1] != self.groups * self.fmt.group_size:
            raise QuantError(f"group parameters of {self.channels} channels x {self.groups} "
                             f"groups of {self.fmt.group_size} cannot apply to a tensor of shape "
                             f"{x.shape}")
        return _blocks(x, self.fmt.group_size)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float (K, C, ...) -> codes of the same shape (int8): per block
        ``clamp(rint(x / scale) + zero_point, qmin, qmax)`` in float64 (``QuantParams``)."""
        xf = np.asarray(x, dtype=np.float64)
        return self._rows.quantize(self._view(xf)).reshape(xf.shape)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Codes (K, C, ...) -> float64 ``scale[k, g] · (codes - zero_point[k, g])``."""
        c = np.asarray(codes)
        return self._rows.dequantize(self._view(c)).reshape(c.shape)

    def __repr__(self) -> str:
        return (f"GroupParams({self.fmt.describe()}, channels={self.channels}, "
                f"groups={self.groups})")


def fit_group(w: np.ndarray, fmt: GroupIntFormat) -> GroupParams:
    """``GroupParams`` of ``w`` (K, C, ...), finite, C a multiple of ``fmt.group_size``: every
    block fitted as a channel of ``fmt.code_format``, degenerate blocks settled (module
    docstring)."""
    if not isinstance(fmt, GroupIntFormat):
        raise QuantError(f"fit_group needs a GroupIntFormat; got {type(fmt).__name__}")
    wf = finite_tensor(w, "fit_group", "group-wise weight parameters")
    blocks = _blocks(wf, fmt.group_size)
    rows, _, _ = settle_channel_scales(blocks, fit_int_params(blocks, fmt.code_format))
    shape = (wf.shape[0], wf.shape[1] // fmt.group_size)
    return GroupParams(rows.scale.reshape(shape), rows.zero_point.reshape(shape), fmt)

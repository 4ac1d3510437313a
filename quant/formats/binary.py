"""Least-squares binary formats: ``BinaryFormat`` (which fit) and ``BinaryParams`` (its result).

A tensor is approximated row by row as ``x ≈ sum_i v_i b_i`` with sign planes ``b_i`` in
{-1, +1} and scales ``v_i >= 0`` ("Least squares binary quantization of neural networks",
Pouransari, Tu, Tuzel; CVPR Workshops 2020).  A *row* is one slice along ``axis``
(axis 0: one output channel of a weight, one sample of an activation batch (N, ...));
``axis=None`` fits the whole tensor as one row.

Methods and their number of terms ``k``:

* ``"ls1"``: 1 term, ``b = sign(x)``, ``v = mean|x|``.
* ``"gf"``: greedy foldable GF-k, k = 1..4 (default 2).
* ``"ls2"``: 2 terms, the optimal 2-bit fit (levels ``±(v1 - v2)``, ``±(v1 + v2)``).
* ``"lst"``: 2 terms of equal scale, the optimal ternary fit (levels ``{0, ±2v}``).

``sign(0) = +1`` everywhere.  ``binary_fake_quant`` is the torch straight-through version
(torch is imported only when it is called, so ``quant.formats`` stays torch-free).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from quant._validate import check_choice, check_int
from quant.errors import QuantError
from quant.formats._shared import finite_tensor
from quant.formats.binary_fit import fit_greedy_rows, fit_ls2_rows, fit_lst_rows

if TYPE_CHECKING:
    import torch

BINARY_METHODS = ("ls1", "ls2", "lst", "gf")
_FIXED_TERMS = {"ls1": 1, "ls2": 2, "lst": 2}
_DEFAULT_GF_TERMS = 2


@dataclass(frozen=True)
class BinaryFormat:
    """A least-squares binary number format.

    Attributes:
        method: "ls1", "ls2", "lst" or "gf".
        k: number of binary terms (sign planes), 1..4.  Free only for "gf" (default 2); for the
            other methods it is fixed (ls1: 1, ls2: 2, lst: 2) and may be left as None.  After
            construction ``k`` always holds the number of terms.
        axis: the row axis (0: per output channel / per sample), or None for one row per tensor.
    """

    method: str = "ls1"
    k: int | None = None
    axis: int | None = 0

    def __post_init__(self) -> None:
        owner = "BinaryFormat"
        check_choice(self.method, "method", owner, BINARY_METHODS)
        if self.k is not None:
            check_int(self.k, "k", owner, 1, 4)
        fixed = _FIXED_TERMS.get(self.method)
        if fixed is None:
            object.__setattr__(self, "k", _DEFAULT_GF_TERMS if self.k is None else self.k)
        elif self.k is None:
            object.__setattr__(self, "k", fixed)
        elif self.k != fixed:
            raise QuantError(f"The 'k' parameter of BinaryFormat must be {fixed} (or None) for "
                             f"method {self.method!r}. Got {self.k!r} instead.")
        if self.axis is not None and (isinstance(self.axis, bool) or not isinstance(self.axis, int)
                                      or self.axis < 0):
            raise QuantError("The 'axis' parameter of BinaryFormat must be a non-negative int or "
                             f"None. Got {self.axis!r} instead.")

    @property
    def bits(self) -> int:
        """Bits stored per value: one per sign plane."""
        return int(self.k)  # type: ignore[arg-type]

    def describe(self) -> str:
        """Short name: ``ls1``, ``ls2``, ``lst`` or ``gf<k>``, plus ``-pt`` when per tensor."""
        name = f"gf{self.k}" if self.method == "gf" else self.method
        return name + ("-pt" if self.axis is None else "")


@dataclass(frozen=True, eq=False)
class BinaryParams:
    """Scales and sign planes of a tensor fitted with a ``BinaryFormat``.

    Attributes:
        v: float64 (rows, k), ``v >= 0``; scale of each term per row.
        b: int8 (k, *x.shape) in {-1, +1}; the sign planes, in the tensor's own layout.
        fmt: the format; ``fmt.axis`` says which axis of ``b[i]`` the rows run along.
    """

    v: np.ndarray
    b: np.ndarray
    fmt: BinaryFormat

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, BinaryFormat):
            raise QuantError(f"BinaryParams.fmt must be a BinaryFormat; got {type(self.fmt).__name__}")
        v = np.array(self.v, dtype=np.float64)
        b = np.asarray(self.b)
        k = self.fmt.k
        if v.ndim != 2 or v.shape[1] != k:
            raise QuantError(f"BinaryParams.v must have shape (rows, {k}) for "
                             f"{self.fmt.describe()}; got shape {v.shape}")
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise QuantError("BinaryParams.v must be finite and >= 0")
        if b.dtype != np.int8 or b.ndim < 1 or b.shape[0] != k:
            raise QuantError(f"BinaryParams.b must be int8 of shape ({k}, *tensor_shape); got "
                             f"{b.dtype} of shape {b.shape}")
        if not np.all((b == 1) | (b == -1)):
            raise QuantError("BinaryParams.b must hold only -1 and +1")
        axis = self.fmt.axis
        rows = 1 if axis is None else (b.shape[axis + 1] if b.ndim > axis + 1 else None)
        if rows != v.shape[0]:
            raise QuantError(f"BinaryParams.v has {v.shape[0]} rows but b of shape {b.shape} has "
                             f"{rows} along axis {axis}")
        b = b.copy()
        v.setflags(write=False)
        b.setflags(write=False)
        object.__setattr__(self, "v", v)
        object.__setattr__(self, "b", b)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the fitted tensor."""
        return tuple(self.b.shape[1:])

    def _row_scale(self, i: int) -> np.ndarray:
        """``v[:, i]`` reshaped to broadcast along ``fmt.axis`` of the tensor."""
        col = self.v[:, i]
        if self.fmt.axis is None:
            return col.reshape(())
        shape = [1] * len(self.shape)
        shape[self.fmt.axis] = col.shape[0]
        return col.reshape(shape)

    def dequantize(self) -> np.ndarray:
        """``x_hat = sum_i v_i b_i``, float64 of the fitted tensor's shape."""
        x_hat = np.zeros(self.shape, dtype=np.float64)
        for i in range(self.fmt.k):  # type: ignore[arg-type]
            x_hat += self._row_scale(i) * self.b[i]
        return x_hat

    def levels(self) -> np.ndarray:
        """Per row, the 2^k values ``sum_i s_i v_i`` over all signs s, sorted ascending.

        float64 (rows, 2^k); repeated values are kept (LS-T lists 0 twice).
        """
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=self.fmt.k)))
        return np.sort(self.v @ signs.T, axis=1)

    def __repr__(self) -> str:
        return f"BinaryParams({self.fmt.describe()}, shape={self.shape}, rows={self.v.shape[0]})"


def _as_rows(x: Any, fmt: BinaryFormat) -> np.ndarray:
    """Validate ``x`` and view it as float64 rows (R, n) along ``fmt.axis``."""
    xf = finite_tensor(x, "fit_binary", f"{fmt.describe()} binary parameters")
    if fmt.axis is None:
        return xf.reshape(1, -1)
    if xf.ndim <= fmt.axis:
        raise QuantError(f"BinaryFormat axis={fmt.axis} needs a tensor with at least "
                         f"{fmt.axis + 1} dims; got shape {xf.shape}")
    return np.moveaxis(xf, fmt.axis, 0).reshape(xf.shape[fmt.axis], -1)


def fit_binary(x: np.ndarray, fmt: BinaryFormat) -> BinaryParams:
    """Fit scales and sign planes of ``fmt`` to ``x`` (any shape, finite, non-empty), per row.

    Returns BinaryParams with ``v`` (rows, k) and ``b`` (k, *x.shape).
    """
    if not isinstance(fmt, BinaryFormat):
        raise QuantError(f"fit_binary needs a BinaryFormat; got {type(fmt).__name__}")
    rows = _as_rows(x, fmt)
    if fmt.method == "ls2":
        v, planes = fit_ls2_rows(rows)
    elif fmt.method == "lst":
        v, planes = fit_lst_rows(rows)
    else:
        v, planes = fit_greedy_rows(rows, fmt.k)  # type: ignore[arg-type]
    return BinaryParams(v, _planes_to_shape(planes, np.shape(x), fmt), fmt)


def encode_binary(x: np.ndarray, v: np.ndarray, fmt: BinaryFormat) -> BinaryParams:
    """Sign planes of ``x`` for *given* scales ``v`` (a static, calibrated format).

    Greedy residual signs: ``r = x``; for i = 1..k: ``b_i = sign(r)`` (sign(0) = +1),
    ``r -= v_i b_i``.  With ``v_1 >= v_2 >= ...`` this picks the nearest level for LS-1, LS-2,
    LS-T (v_1 = v_2) and GF-k.  ``x`` any non-empty finite shape, rows along ``fmt.axis``;
    ``v`` (rows, k) or (k,) for the same scales in every row.  Computed in float64.
    Returns BinaryParams with these scales.
    """
    if not isinstance(fmt, BinaryFormat):
        raise QuantError(f"encode_binary needs a BinaryFormat; got {type(fmt).__name__}")
    rows = _as_rows(x, fmt)
    scales = np.asarray(v, dtype=np.float64)
    if scales.ndim == 1:
        scales = np.broadcast_to(scales, (rows.shape[0], scales.shape[0]))
    if scales.shape != (rows.shape[0], fmt.k):
        raise QuantError(f"encode_binary: scales must have shape ({fmt.k},) or "
                         f"({rows.shape[0]}, {fmt.k}) for {fmt.describe()}; got {np.shape(v)}")
    if not np.all(np.isfinite(scales)) or np.any(scales < 0):
        raise QuantError("encode_binary: scales must be finite and >= 0")
    residual = rows.copy()
    planes = np.empty((fmt.k, *rows.shape), dtype=np.int8)
    for i in range(fmt.k):  # type: ignore[arg-type]
        planes[i] = np.where(residual >= 0, 1, -1)
        residual -= scales[:, i:i + 1] * planes[i]
    return BinaryParams(scales, _planes_to_shape(planes, np.shape(x), fmt), fmt)


def _planes_to_shape(planes: np.ndarray, shape: tuple[int, ...], fmt: BinaryFormat) -> np.ndarray:
    """(k, rows, n) planes -> (k, *shape), undoing ``_as_rows``."""
    if fmt.axis is None:
        return planes.reshape((fmt.k, *shape))
    moved = (shape[fmt.axis], *shape[:fmt.axis], *shape[fmt.axis + 1:])
    return np.moveaxis(planes.reshape((fmt.k, *moved)), 1, fmt.axis + 1)


@functools.cache
def _ste_function() -> Any:
    """The autograd Function, built on first use so importing this module never imports torch."""
    import torch

    class _BinarySTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, fmt: BinaryFormat) -> torch.Tensor:
            x_np = x.detach().to("cpu", torch.float64).numpy()
            x_hat = fit_binary(x_np, fmt).dequantize()
            return torch.from_numpy(x_hat).to(device=x.device, dtype=x.dtype)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
            return grad, None

    return _BinarySTE


def binary_fake_quant(x: torch.Tensor, fmt: BinaryFormat) -> torch.Tensor:
    """Straight-through fake quantization: forward ``fit_binary(x).dequantize()`` (cast to
    ``x.dtype``), backward the identity (d out / d x = 1).  ``x`` any shape; rows per ``fmt``.
    The scales are refitted on every call (per-sample activations, or weights during training).
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise QuantError(f"binary_fake_quant expects a torch.Tensor; got {type(x).__name__}")
    if not isinstance(fmt, BinaryFormat):
        raise QuantError(f"binary_fake_quant needs a BinaryFormat; got {type(fmt).__name__}")
    if not x.is_floating_point():
        raise QuantError(f"binary_fake_quant expects a floating-point tensor; got {x.dtype}")
    return _ste_function().apply(x, fmt)

"""256-entry lookup tables over 8-bit codes, as ONNX Runtime computes them (float32), and the
lookup itself.

ONNX Runtime's QLinearSigmoid and QLinearLeakyRelu (com.microsoft contrib ops) and each input
of QLinearConcat map every possible input code through a table built once in float32
(`hwsim.kernels.mlas_float` gives each step's order):

    T[c] = QuantizeLinear_y(fn(f32(s_x · f32(c - zp_x))))      for the 256 codes c

with fn = logistic (Sigmoid), v >= 0 ? v : alpha·v (LeakyRelu) or the identity (Concat's
requantization). A table is indexed here by ``c - qmin`` (entry 0 is the lowest code).
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import KernelError
from hwsim.kernels.mlas_float import (dequantize_f32, leaky_relu_f32, logistic_f32,
                                      quantize_linear_f32)

TABLE_FNS = ("sigmoid", "leaky_relu", "identity")
TABLE_SIZE = 256


def _codes(qmin: int, qmax: int) -> np.ndarray:
    if qmax - qmin + 1 != TABLE_SIZE:
        raise KernelError(f"lookup tables cover 8-bit codes: [qmin, qmax] must span 256 codes; "
                          f"got [{qmin}, {qmax}].")
    return np.arange(qmin, qmax + 1, dtype=np.int64)


def activation_table(fn: str, *, x_scale, x_zero_point: int, y_scale, y_zero_point: int,
                     qmin: int, qmax: int, alpha: float = 0.0) -> np.ndarray:
    """The table T (256,) of output codes, int64, for input and output codes in [qmin, qmax]
    (both 8-bit, the same type): T[c - qmin] = Q_y(fn(DQ_x(c))). fn: 'sigmoid', 'leaky_relu'
    (with ``alpha``, float32) or 'identity'; scales are float32."""
    if fn not in TABLE_FNS:
        raise KernelError(f"activation_table: fn must be one of {TABLE_FNS}; got {fn!r}.")
    x = dequantize_f32(_codes(qmin, qmax), x_scale, x_zero_point)
    if fn == "sigmoid":
        y = logistic_f32(x)
    elif fn == "leaky_relu":
        y = leaky_relu_f32(x, alpha)
    else:
        y = x
    return quantize_linear_f32(y, y_scale, y_zero_point, qmin, qmax)


def lookup(codes: np.ndarray, table: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """table[codes - qmin] for integer codes (any shape) in [qmin, qmax], in the table's dtype."""
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise KernelError(f"lookup: codes must be integers; got dtype {codes.dtype}.")
    table = np.asarray(table)
    if table.shape != (qmax - qmin + 1,):
        raise KernelError(f"lookup: the table must have {qmax - qmin + 1} entries; got shape "
                          f"{table.shape}.")
    if codes.size and (codes.min() < qmin or codes.max() > qmax):
        raise KernelError(f"lookup: codes must lie in [{qmin}, {qmax}]; got "
                          f"[{codes.min()}, {codes.max()}].")
    return table[codes.astype(np.int64) - qmin]

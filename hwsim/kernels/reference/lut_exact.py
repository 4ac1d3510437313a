"""Definition of an ``activation_lut`` node with arithmetic "exact": every output code
recomputed from the node's attributes with the exactly rounded function
(``hwsim.kernels.lut_exact.exact_activation_code``), instead of read from its table."""

from __future__ import annotations

import numpy as np

from hwsim.kernels.lut_exact import exact_activation_code


def exact_activation_lut_reference(codes: np.ndarray, fn: str, *, x_scale: float,
                                   x_zero_point: int, y_scale: float, y_zero_point: int,
                                   qmin: int, qmax: int) -> np.ndarray:
    """``exact_activation_code`` of every code (any shape; each distinct code computed once):
    int64 output codes in [qmin, qmax]."""
    codes = np.asarray(codes)
    out = np.empty(codes.shape, dtype=np.int64)
    done: dict[int, int] = {}
    for idx in np.ndindex(codes.shape):
        c = int(codes[idx])
        if c not in done:
            done[c] = exact_activation_code(c, fn, x_scale=x_scale, x_zero_point=x_zero_point,
                                            y_scale=y_scale, y_zero_point=y_zero_point,
                                            qmin=qmin, qmax=qmax)
        out[idx] = done[c]
    return out

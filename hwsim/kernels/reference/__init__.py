"""The int64 / Python-int definitions of every integer kernel, in one place.

Each fast kernel in ``hwsim.kernels`` is tested against its definition here for exact equality:
``dense`` (conv/linear accumulation, requantization, pooling, quantized add), ``shift_add``
(APoT weights as shifted input terms in a narrow adder).
"""

from hwsim.kernels.reference.dense import (
    add_requantize_dyadic_reference,
    add_requantize_float32_reference,
    conv2d_int_reference,
    linear_int_reference,
    max_pool2d_reference,
    requantize_dyadic_reference,
    requantize_float32_reference,
    sum_pool2d_reference,
)
from hwsim.kernels.reference.shift_add import (
    conv2d_shift_add_reference,
    linear_shift_add_reference,
)

__all__ = [
    "add_requantize_dyadic_reference",
    "add_requantize_float32_reference",
    "conv2d_int_reference",
    "conv2d_shift_add_reference",
    "linear_int_reference",
    "linear_shift_add_reference",
    "max_pool2d_reference",
    "requantize_dyadic_reference",
    "requantize_float32_reference",
    "sum_pool2d_reference",
]

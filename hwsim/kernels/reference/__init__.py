"""The int64 / Python-int definitions of every integer kernel, in one place.

Each fast kernel in ``hwsim.kernels`` is tested against its definition here for exact equality:
``dense`` (conv/linear accumulation, requantization, pooling, quantized add), ``shift_add``
(APoT weights as shifted input terms in a narrow adder), ``pairs`` (the int16-pairs accumulator
mode), ``binary`` (XNOR/popcount products of ±1 operands, bit-plane products).
"""

from hwsim.kernels.reference.binary import (
    binary_conv2d_reference,
    binary_linear_reference,
    bitplane_matmul_reference,
    pack_signs_reference,
    xnor_popcount_matmul_reference,
)
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
from hwsim.kernels.reference.pairs import (
    conv2d_int_pairs_reference,
    linear_int_pairs_reference,
)
from hwsim.kernels.reference.shift_add import (
    conv2d_shift_add_reference,
    linear_shift_add_reference,
)

__all__ = [
    "add_requantize_dyadic_reference",
    "add_requantize_float32_reference",
    "binary_conv2d_reference",
    "binary_linear_reference",
    "bitplane_matmul_reference",
    "conv2d_int_pairs_reference",
    "conv2d_int_reference",
    "conv2d_shift_add_reference",
    "linear_int_pairs_reference",
    "linear_int_reference",
    "linear_shift_add_reference",
    "max_pool2d_reference",
    "pack_signs_reference",
    "requantize_dyadic_reference",
    "requantize_float32_reference",
    "sum_pool2d_reference",
    "xnor_popcount_matmul_reference",
]

from hwsim.kernels.reference.multipoint import (  # noqa: E402  (multipoint weights)
    conv2d_rows_reference,
    linear_rows_reference,
    requantize_rows_reference,
)

__all__ += ["conv2d_rows_reference", "linear_rows_reference", "requantize_rows_reference"]

from hwsim.kernels.reference.qlinear import (  # noqa: E402  (ONNX Runtime's float32 ops)
    activation_lut_reference,
    qlinear_add_reference,
    qlinear_mul_reference,
)
from hwsim.kernels.reference.qlinear_reduce import (  # noqa: E402
    average_pool2d_f32_reference,
    qlinear_softmax_reference,
)
from hwsim.kernels.reference.resize import (  # noqa: E402
    resize_linear_reference,
    resize_nearest_reference,
)

__all__ += [
    "activation_lut_reference",
    "average_pool2d_f32_reference",
    "qlinear_add_reference",
    "qlinear_mul_reference",
    "qlinear_softmax_reference",
    "resize_nearest_reference",
]

from hwsim.kernels.reference.lut_exact import exact_activation_lut_reference  # noqa: E402
from hwsim.kernels.reference.mul import mul_requantize_dyadic_reference  # noqa: E402

__all__ += ["exact_activation_lut_reference", "mul_requantize_dyadic_reference",
            "resize_linear_reference"]

from hwsim.kernels.reference.conv_transpose import conv_transpose2d_int_reference  # noqa: E402

__all__ += ["conv_transpose2d_int_reference"]

"""Exact integer kernels (torch-free): conv2d / linear accumulators, requantization, pooling,
quantized add; the int16-pairs accumulator mode; XNOR/popcount binary and shift-add (APoT)
products. Each fast kernel has an int64/Python-int definition in ``hwsim.kernels.reference``."""

from hwsim.kernels.binary import (
    BinaryLinearResult,
    binary_conv2d,
    binary_linear,
    bitplane_matmul,
    pack_signs,
    unpack_signs,
    xnor_popcount_matmul,
)
from hwsim.kernels.conv import conv2d_int, linear_int
from hwsim.kernels.fused import (
    PreparedConv,
    PreparedLinear,
    prepare_conv2d,
    prepare_linear,
    conv2d_requantize_dyadic,
    conv2d_requantize_float32,
    linear_requantize_dyadic,
    linear_requantize_float32,
)
from hwsim.kernels.pool import global_sum_pool, max_pool2d, sum_pool2d
from hwsim.kernels.reference import (
    add_requantize_dyadic_reference,
    add_requantize_float32_reference,
    binary_conv2d_reference,
    binary_linear_reference,
    bitplane_matmul_reference,
    conv2d_int_reference,
    linear_int_reference,
    max_pool2d_reference,
    pack_signs_reference,
    requantize_dyadic_reference,
    requantize_float32_reference,
    sum_pool2d_reference,
    xnor_popcount_matmul_reference,
)
from hwsim.kernels.requant import (
    add_requantize_dyadic,
    add_requantize_float32,
    dyadic_multiplier,
    dyadic_multiplier_pair,
    ort_output_scale,
    requantize_dyadic,
    requantize_float32,
)
from hwsim.kernels._requant_checks import output_dtype
from hwsim.kernels.types import AccumResult, AccumulatorSpec, PoolSumResult, RequantResult

__all__ = [
    "BinaryLinearResult",
    "binary_conv2d",
    "binary_conv2d_reference",
    "binary_linear",
    "binary_linear_reference",
    "bitplane_matmul",
    "bitplane_matmul_reference",
    "pack_signs",
    "pack_signs_reference",
    "unpack_signs",
    "xnor_popcount_matmul",
    "xnor_popcount_matmul_reference",
    "PreparedConv",
    "PreparedLinear",
    "prepare_conv2d",
    "prepare_linear",
    "AccumResult",
    "AccumulatorSpec",
    "PoolSumResult",
    "RequantResult",
    "conv2d_requantize_dyadic",
    "conv2d_requantize_float32",
    "linear_requantize_dyadic",
    "linear_requantize_float32",
    "add_requantize_dyadic",
    "add_requantize_dyadic_reference",
    "add_requantize_float32",
    "add_requantize_float32_reference",
    "conv2d_int",
    "conv2d_int_reference",
    "dyadic_multiplier",
    "dyadic_multiplier_pair",
    "global_sum_pool",
    "linear_int",
    "linear_int_reference",
    "max_pool2d",
    "max_pool2d_reference",
    "ort_output_scale",
    "output_dtype",
    "requantize_dyadic",
    "requantize_dyadic_reference",
    "requantize_float32",
    "requantize_float32_reference",
    "sum_pool2d",
    "sum_pool2d_reference",
]

from hwsim.kernels.pairs import (  # noqa: E402  (appended: accumulator mode "int16_pairs")
    Int16PairsAccumulator,
    PreparedPairsLayer,
    conv2d_int_pairs,
    linear_int_pairs,
    prepare_conv2d_pairs,
    prepare_linear_pairs,
)
from hwsim.kernels.reference import (  # noqa: E402
    conv2d_int_pairs_reference,
    linear_int_pairs_reference,
)

__all__ += [
    "Int16PairsAccumulator",
    "PreparedPairsLayer",
    "conv2d_int_pairs",
    "conv2d_int_pairs_reference",
    "linear_int_pairs",
    "linear_int_pairs_reference",
    "prepare_conv2d_pairs",
    "prepare_linear_pairs",
]

from hwsim.kernels.shift_add import (  # noqa: E402  (APoT weights on a shift-add datapath)
    conv2d_shift_add,
    linear_shift_add,
    shift_add_terms,
)
from hwsim.kernels.reference import (  # noqa: E402
    conv2d_shift_add_reference,
    linear_shift_add_reference,
)

__all__ += [
    "conv2d_shift_add",
    "conv2d_shift_add_reference",
    "linear_shift_add",
    "linear_shift_add_reference",
    "shift_add_terms",
]

from hwsim.kernels.multipoint import (  # noqa: E402  (multipoint weights: extra rows)
    PreparedRows,
    RowRequant,
    conv2d_rows,
    linear_rows,
    multipoint_multipliers,
    prepare_conv2d_rows,
    requantize_rows,
)
from hwsim.kernels.reference import (  # noqa: E402
    conv2d_rows_reference,
    linear_rows_reference,
    requantize_rows_reference,
)

__all__ += [
    "PreparedRows",
    "RowRequant",
    "conv2d_rows",
    "conv2d_rows_reference",
    "linear_rows",
    "linear_rows_reference",
    "multipoint_multipliers",
    "prepare_conv2d_rows",
    "requantize_rows",
    "requantize_rows_reference",
]

# ONNX Runtime's float32 QLinear ops (tables, element-wise, softmax, average pool) and the
# nearest resize of codes
from hwsim.kernels.avgpool_f32 import average_pool2d_f32  # noqa: E402
from hwsim.kernels.eltwise import add_path, mul_ratio, qlinear_add, qlinear_mul  # noqa: E402
from hwsim.kernels.lut import activation_table, lookup  # noqa: E402
from hwsim.kernels.resize import gather_hw, nearest_indices  # noqa: E402
from hwsim.kernels.softmax_table import (  # noqa: E402
    exp_table,
    inverse_scale_floor,
    qlinear_softmax,
)
from hwsim.kernels.reference import (  # noqa: E402
    activation_lut_reference,
    average_pool2d_f32_reference,
    qlinear_add_reference,
    qlinear_mul_reference,
    qlinear_softmax_reference,
    resize_nearest_reference,
)

__all__ += [
    "activation_lut_reference",
    "activation_table",
    "add_path",
    "average_pool2d_f32",
    "average_pool2d_f32_reference",
    "exp_table",
    "gather_hw",
    "inverse_scale_floor",
    "lookup",
    "mul_ratio",
    "nearest_indices",
    "qlinear_add",
    "qlinear_add_reference",
    "qlinear_mul",
    "qlinear_mul_reference",
    "qlinear_softmax",
    "qlinear_softmax_reference",
    "resize_nearest_reference",
]

# quant's element-wise ops: exactly rounded activation tables, the integer-only product
from hwsim.kernels.eltwise import mul_requantize_dyadic  # noqa: E402
from hwsim.kernels.lut_exact import (  # noqa: E402
    EXACT_FNS,
    exact_activation_code,
    exact_activation_table,
)
from hwsim.kernels.reference import (  # noqa: E402
    exact_activation_lut_reference,
    mul_requantize_dyadic_reference,
    resize_linear_reference,
)
from hwsim.kernels.resize import LINEAR_FRAC_BITS, linear_taps, resize_linear  # noqa: E402

__all__ += [
    "EXACT_FNS",
    "exact_activation_code",
    "exact_activation_lut_reference",
    "exact_activation_table",
    "LINEAR_FRAC_BITS",
    "linear_taps",
    "mul_requantize_dyadic",
    "mul_requantize_dyadic_reference",
    "resize_linear",
    "resize_linear_reference",
]

from hwsim.kernels.conv_transpose import (  # noqa: E402  (transposed conv, hwsim.ops.conv_transpose)
    conv_transpose2d_int,
    prepare_conv_transpose2d,
)
from hwsim.kernels.reference import conv_transpose2d_int_reference  # noqa: E402

__all__ += ["conv_transpose2d_int", "conv_transpose2d_int_reference",
            "prepare_conv_transpose2d"]

"""The integer program's operations: one table says what each op needs.

The verifier (`check.py`) and the executor (`hwsim.executor`) both read this table, so adding an
op means adding one entry here and one handler in the executor.

Requantizing ops carry `attrs["requant"]` = {"mode": "dyadic" | "float32", "clamp": [lo, hi]}
and, per mode, arrays `rq_multiplier` + `rq_shift` (dyadic: real multiplier = m * 2^-shift,
int64, one per output channel or one per input for add/concat) or `rq_scale_f32` (float32).
"""
from __future__ import annotations

from dataclasses import dataclass

REQUANT_MODES = ("dyadic", "float32")
ACCUMULATOR_MODES = ("wrap", "saturate", "int16_pairs")  # int16_pairs: hwsim.kernels.pairs

# Binary (XNOR/popcount) layers: `input_binarizer` = {"method", "k", "scaling"} with scaling
# "per_sample" (scales fitted on each sample's codes at run time) or "running" (static scales,
# array `input_scales` (k_a,) in input code units); `output_clamp` = [lo, hi] codes.
BINARY_LAYER_ATTRS = ("input_zero_point", "input_scale", "input_binarizer", "output_clamp")
BINARY_SCALINGS = ("per_sample", "running")


@dataclass(frozen=True)
class OpSpec:
    """What a node of this op must carry. `arity` None means one or more inputs."""

    name: str
    arity: int | None
    attrs: tuple[str, ...]
    arrays: tuple[str, ...]
    requantizes: bool
    doc: str


_SPECS = [
    OpSpec("input", 0, (), (), False, "The program input: integer codes of shape out_shape."),
    OpSpec("conv2d", 1, ("stride", "padding", "dilation", "groups", "accumulator", "requant",
                         "input_zero_point"),
           ("weight", "weight_zero_point"), True,
           "acc = bias + sum (x - zp_x)(w - zp_w) over (c, r, s); padding (top, left, bottom, right) "
           "is zero in the real domain; then requantize per output channel."),
    OpSpec("linear", 1, ("accumulator", "requant", "input_zero_point"),
           ("weight", "weight_zero_point"), True,
           "acc = bias + (x - zp_x) @ (w - zp_w)^T; then requantize per output feature."),
    OpSpec("add", 2, ("requant", "input_zero_points"), (), True,
           "y = clamp(round((a - zp_a) M_a + (b - zp_b) M_b) + zp_y): residual add with rescaling."),
    OpSpec("maxpool2d", 1, ("kernel", "stride", "padding", "dilation", "ceil_mode"), (), False,
           "Max over windows of codes (exact; output quantization = input quantization)."),
    OpSpec("avgpool2d", 1, ("kernel", "stride", "padding", "global", "input_zero_point",
                            "requant"), (), True,
           "Window sum of (x - zp_x) requantized with M = s_x / (count s_y)."),
    OpSpec("flatten", 1, ("start_dim",), (), False, "Reshape; codes unchanged."),
    OpSpec("concat", None, ("axis", "requant", "input_zero_points"), (), True,
           "Each input requantized to the output scale with M_i = s_i / s_y, then concatenated."),
    OpSpec("clamp", 1, ("requant", "input_zero_point"), (), True,
           "Requantize (x - zp_x) with M = s_x / s_y, clamped to the activation range."),
    OpSpec("binary_conv2d", 1, BINARY_LAYER_ATTRS + ("stride", "padding", "dilation", "groups"),
           ("weight_planes", "weight_scales"), False,
           "Least-squares binary conv: the input codes (x - zp_x) are binarized into k_a sign "
           "planes with scales (per sample, or static); y = sum_i sum_j (v_a[n,i] s_x v_w[k,j]) "
           "dot(b_a,i, b_w,j) + bias (zero padding contributes 0), in float64; "
           "code = clamp(round_half_even(y / s_y) + zp_y, output_clamp)."),
    OpSpec("binary_linear", 1, BINARY_LAYER_ATTRS, ("weight_planes", "weight_scales"), False,
           "Least-squares binary linear layer; as binary_conv2d with a (N, C) input."),
    OpSpec("matmul", 2, ("accumulator", "requant", "input_zero_points"), (), True,
           "acc = (a - zp_a) @ (b - zp_b) over the last two dims (equal leading dims): the exact "
           "sum, wrapped (wrap) or clipped once (saturate) to the accumulator width; then "
           "requantize per tensor with M = s_a s_b / s_y."),
    OpSpec("vector_op", 1, ("fn", "params", "input_zero_point", "input_scale", "output_clamp"),
           (), False,
           "A float op of the vector unit (fn: layernorm with arrays gamma, beta; gelu; "
           "softmax): dequantize to float32, fn in float32, round to the output codes "
           "(hwsim.kernels.vector)."),
    OpSpec("reshape", 1, ("shape",), (), False,
           "Reshape to attrs shape (its first dim -1: the leading dim may vary); codes unchanged."),
    OpSpec("transpose", 1, ("perm",), (), False, "Permute the dims; codes unchanged."),
]

OPS: dict[str, OpSpec] = {spec.name: spec for spec in _SPECS}

"""Local response normalization (``lrn``): a vector-unit op run in float64 on dequantized codes
and requantized (hwsim.kernels.lrn)."""
from __future__ import annotations

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node

_NOT_COSTED = ("local response norm is a vector-unit op (float64: squares, window sum, power, "
               "divide), not a compute unit's GEMM")
_ATTRS = ("size", "alpha", "beta", "k", "input_zero_point", "input_scale", "output_clamp")


def _run(node: Node, args: list, reference: bool) -> tuple:
    from hwsim.kernels.lrn import lrn_codes, lrn_codes_reference

    a = node.attrs
    fn = lrn_codes_reference if reference else lrn_codes
    out = fn(args[0], float(a["input_scale"]), int(a["input_zero_point"]), int(a["size"]),
             float(a["alpha"]), float(a["beta"]), float(a["k"]), float(node.out.scale),
             int(node.out.zero_point), tuple(a["output_clamp"]), node.out.dtype)
    return out, None


def _check(node: Node) -> list[str]:
    a, errs = node.attrs, []
    size = a["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        errs.append(f"size must be an int >= 1, got {size!r}")
    clamp = a["output_clamp"]
    if not (isinstance(clamp, (list, tuple)) and len(clamp) == 2 and clamp[0] <= clamp[1]):
        errs.append(f"output_clamp must be [lo, hi] with lo <= hi, got {clamp!r}")
    if len(node.out_shape) != 4:
        errs.append(f"lrn output must be (N, C, H, W), got {node.out_shape}")
    return errs


register_op(OpDef(
    "lrn", 1, _ATTRS, (),
    "Local response norm across channels (torch's F.local_response_norm): x = (c - zp_x) s_x, "
    "y = x / (k + alpha/size · Σ_window x²)^beta in float64, code = clamp(round_half_even("
    "y / s_y) + zp_y, output_clamp).",
    lambda node, args: _run(node, args, False), lambda node, args: _run(node, args, True),
    check=_check, not_costed=_NOT_COSTED))

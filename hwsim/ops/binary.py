"""binary_conv2d / binary_linear: least-squares sign-plane weights on XNOR/popcount products.

Fast: ``hwsim.kernels.binary_layer`` (XNOR/popcount on 64-bit words where it applies);
reference: the same layer on the int64 reference products.
"""
from __future__ import annotations

import numpy as np

from hwsim.ir.check import clamp_errors
from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ops._common import CONV_ATTRS, conv_geometry, conv_geometry_errors, layer_shape

# `input_binarizer` = {"method", "k", "scaling"} with scaling "per_sample" (scales fitted on
# each sample's codes at run time) or "running" (static scales, array `input_scales` (k_a,) in
# input code units); `output_clamp` = [lo, hi] codes.
BINARY_ATTRS = ("input_zero_point", "input_scale", "input_binarizer", "output_clamp")
BINARY_OPTIONAL_ATTRS = ("output_scale", "weight_format", "weight_bits", "input_bits")
BINARY_SCALINGS = ("per_sample", "running")


def _run(node: Node, args: list, fast: bool) -> tuple:
    # imported here: the binarizer is quant's (torch-free) fitting code, loaded only by
    # programs that have binary layers
    from hwsim.kernels.binary_layer import BinaryLayer, binary_layer_forward

    a = node.attrs
    layer = BinaryLayer(
        weight_planes=node.arrays["weight_planes"], weight_scales=node.arrays["weight_scales"],
        bias=node.arrays.get("bias_f64"), binarizer=a["input_binarizer"],
        input_scales=node.arrays.get("input_scales"), input_zero_point=int(a["input_zero_point"]),
        input_scale=float(a["input_scale"]), output_scale=float(node.out.scale),
        output_zero_point=int(node.out.zero_point), output_clamp=tuple(a["output_clamp"]),
        conv=conv_geometry(node) if node.op == "binary_conv2d" else None)
    return binary_layer_forward(layer, args[0], fast=fast), None


def _check(node: Node) -> list[str]:
    errs = conv_geometry_errors(node) if node.op == "binary_conv2d" else []
    planes, scales = node.arrays["weight_planes"], node.arrays["weight_scales"]
    ndim = 5 if node.op == "binary_conv2d" else 3
    if planes.dtype != np.int8 or planes.ndim != ndim or not np.all(np.abs(planes) == 1):
        errs.append(f"weight_planes must be int8 -1/+1 of {ndim} dims (k_w, K, ...), got "
                    f"{planes.dtype} of shape {planes.shape}")
    elif scales.shape != (planes.shape[1], planes.shape[0]) or not np.all(np.isfinite(scales)):
        errs.append(f"weight_scales must be finite of shape (K, k_w) = "
                    f"{(planes.shape[1], planes.shape[0])}, got {scales.shape}")
    b = node.attrs["input_binarizer"]
    if b is not None:
        if not isinstance(b, dict) or b.get("scaling") not in BINARY_SCALINGS:
            errs.append(f"input_binarizer must be null or {{method, k, scaling in "
                        f"{BINARY_SCALINGS}}}, got {b!r}")
        elif b["scaling"] == "running":
            v = node.arrays.get("input_scales")
            if v is None or v.shape != (b.get("k"),):
                errs.append(f"running binarizer needs array 'input_scales' of shape "
                            f"({b.get('k')},), got {None if v is None else v.shape}")
    return errs + clamp_errors(node, node.attrs["output_clamp"], "output_clamp")


def _workload(program, node: Node, batch: int):
    """A binary layer runs at its planes' widths: act_bits = k_a (the input codes' width when
    it has no binarizer), weight_bits = k_w."""
    planes = node.arrays["weight_planes"]
    binarizer = node.attrs["input_binarizer"]
    src = program.node(node.inputs[0])
    act_bits = src.out.bits if binarizer is None else int(binarizer["k"])
    common = dict(out_channels=planes.shape[1], weight_bits=planes.shape[0], act_bits=act_bits,
                  weight_format="binary", act_format="int" if binarizer is None else "binary")
    if node.op == "binary_conv2d":
        return layer_shape(program, node, batch, kernel=planes.shape[3:], **common)
    return layer_shape(program, node, batch, kernel=None, **common)


_DOC = ("Least-squares binary {what}: the input codes (x - zp_x) are binarized into k_a sign "
        "planes with scales (per sample, or static); y = sum_i sum_j (v_a[n,i] s_x v_w[k,j]) "
        "dot(b_a,i, b_w,j) + bias (zero padding contributes 0), in float64; "
        "code = clamp(round_half_even(y / s_y) + zp_y, output_clamp).")
for _name, _attrs in (("binary_conv2d", BINARY_ATTRS + CONV_ATTRS), ("binary_linear", BINARY_ATTRS)):
    register_op(OpDef(
        _name, 1, _attrs, ("weight_planes", "weight_scales"),
        _DOC.format(what="conv" if _name == "binary_conv2d" else "linear layer"),
        lambda node, args: _run(node, args, True), lambda node, args: _run(node, args, False),
        optional_attrs=BINARY_OPTIONAL_ATTRS, optional_arrays=("bias_f64", "input_scales"),
        check=_check, workload=_workload))

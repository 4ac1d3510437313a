"""Pieces shared by the op modules: requantization with a node's constants, conv geometry, the
node's accumulator, weight checks and the cost-model layer shape of a conv / linear node."""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from hwsim.ir.program import IntProgram, Node
from hwsim.ir.specs import AccumulatorConfig, AccumulatorMode, RequantMode, RequantSpec
from hwsim.workloads.layer import LayerShape


def requantize(node: Node, acc: np.ndarray, *, axis: int, reference: bool,
               index: int | None = None) -> np.ndarray:
    """Requantize int64 accumulators with the node's constants. `index` picks one entry of the
    per-input constants (concat); otherwise constants are per channel along `axis` or scalar."""
    from hwsim import kernels as k

    rq = RequantSpec.from_attrs(node.attrs)
    lo, hi = rq.clamp
    zp = node.out.zero_point

    def pick(a: np.ndarray):
        if index is not None:
            return a[index]
        return a.reshape(()) if a.size == 1 else a  # per-tensor constants as scalars
    if rq.mode is RequantMode.DYADIC:
        fn = k.requantize_dyadic_reference if reference else k.requantize_dyadic
        return fn(acc, pick(node.arrays["rq_multiplier"]), pick(node.arrays["rq_shift"]), zp,
                  lo, hi, axis=axis)
    fn = k.requantize_float32_reference if reference else k.requantize_float32
    return fn(acc, pick(node.arrays["rq_scale_f32"]), zp, lo, hi, axis=axis)


def requant_constants(node: Node) -> dict[str, Any]:
    """Keyword arguments of the prepared (fused) layers: clamp, zero point, mode, constants."""
    rq = RequantSpec.from_attrs(node.attrs)
    lo, hi = rq.clamp
    if rq.mode is RequantMode.DYADIC:
        constants = {"m": node.arrays["rq_multiplier"], "shift": node.arrays["rq_shift"]}
    else:
        constants = {"scale_f32": node.arrays["rq_scale_f32"]}
    return dict(out_zero_point=node.out.zero_point, qmin=lo, qmax=hi, requant=rq.mode.value,
                **constants)


# Prepared layers (validated, weights centred and cast), one per node, built on the node's first
# run. Keyed by the node's identity and the repr of its attrs, so a node whose attrs were
# changed is prepared afresh; an entry leaves when its node is freed.
_PREPARED: dict[int, tuple] = {}


def prepared(node: Node, build: Callable[[Node], Any]) -> Any:
    """`build(node)`, computed once per node (see above)."""
    fingerprint = repr(node.attrs)
    hit = _PREPARED.get(id(node))
    if hit is not None and hit[0]() is node and hit[1] == fingerprint:
        return hit[2]
    layer = build(node)
    key = id(node)
    _PREPARED[key] = (weakref.ref(node, lambda _, key=key: _PREPARED.pop(key, None)),
                      fingerprint, layer)
    return layer


def accumulator(node: Node):
    """The node's accumulator as the kernels take it (AccumulatorSpec or Int16PairsAccumulator)."""
    from hwsim.kernels import AccumulatorSpec, Int16PairsAccumulator

    config = AccumulatorConfig.from_attrs(node.attrs)
    if config.mode is AccumulatorMode.INT16_PAIRS:
        return Int16PairsAccumulator(bits=config.bits)
    return AccumulatorSpec(bits=config.bits, mode=config.mode.value)


def conv_geometry(node: Node) -> tuple:
    """(stride, padding (top, left, bottom, right), dilation, groups) of a conv node."""
    a = node.attrs
    return (tuple(a["stride"]), tuple(a["padding"]), tuple(a["dilation"]), int(a["groups"]))


CONV_ATTRS = ("stride", "padding", "dilation", "groups")


def _ints(value, n: int, lo: int) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == n
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= lo for v in value))


def conv_geometry_errors(node: Node) -> list[str]:
    """stride and dilation two ints >= 1, padding four ints >= 0 (top, left, bottom, right),
    groups an int >= 1."""
    a, errs = node.attrs, []
    for name, n, lo in (("stride", 2, 1), ("dilation", 2, 1), ("padding", 4, 0)):
        if not _ints(a[name], n, lo):
            errs.append(f"{name} must be {n} ints >= {lo}, got {a[name]!r}")
    groups = a["groups"]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        errs.append(f"groups must be an int >= 1, got {groups!r}")
    return errs


def integer_weight_errors(node: Node, weight: str = "weight", conv: bool | None = None) -> list[str]:
    """Integer weight codes of the right rank; zero points and bias per output channel."""
    w = node.arrays[weight]
    errs = []
    if not np.issubdtype(w.dtype, np.integer):
        errs.append(f"{weight} must hold integer codes, got dtype {w.dtype}")
    conv = node.op.endswith("conv2d") if conv is None else conv
    ndim = 4 if conv else 2
    if w.ndim != ndim:
        errs.append(f"{node.op} {weight} must be {ndim}-D, got shape {w.shape}")
        return errs
    k = w.shape[0]
    zp = node.arrays.get("weight_zero_point")
    if zp is not None and zp.shape not in ((), (k,)):
        errs.append(f"weight_zero_point must be a scalar or ({k},), got {zp.shape}")
    if "bias" in node.arrays and node.arrays["bias"].shape != (k,):
        errs.append(f"bias must have shape ({k},), got {node.arrays['bias'].shape}")
    bits = node.attrs.get("weight_bits")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
        errs.append(f"weight_bits must be an int in [1, 32], got {bits!r}")
    if conv:
        errs += conv_geometry_errors(node)
        groups = node.attrs["groups"]
        if not errs and w.shape[0] % groups:
            errs.append(f"{w.shape[0]} output channels are not divisible by groups={groups}")
    return errs


def layer_shape(program: IntProgram, node: Node, batch: int, *, out_channels: int,
                kernel: tuple[int, int] | None, weight_bits: int, act_bits: int,
                weight_format: str, act_format: str = "int") -> LayerShape:
    """The cost-model shape of a conv (``kernel`` given) or linear node, read from the node and
    its input node; widths and formats are passed explicitly (nothing defaults)."""
    src = program.node(node.inputs[0])
    common = dict(name=node.name, out_channels=int(out_channels), batch=int(batch),
                  act_bits=int(act_bits), weight_bits=int(weight_bits),
                  weight_format=weight_format, act_format=act_format)
    if kernel is None:
        return LayerShape(kind="linear", in_h=1, in_w=1, in_channels=int(src.out_shape[-1]),
                          kernel_h=1, kernel_w=1, **common)
    a = node.attrs
    pt, pl, pb, pr = (int(p) for p in a["padding"])
    return LayerShape(kind="conv", in_h=int(src.out_shape[2]), in_w=int(src.out_shape[3]),
                      in_channels=int(src.out_shape[1]), kernel_h=int(kernel[0]),
                      kernel_w=int(kernel[1]), stride_h=int(a["stride"][0]),
                      stride_w=int(a["stride"][1]), pad_top=pt, pad_left=pl, pad_bottom=pb,
                      pad_right=pr, dilation_h=int(a["dilation"][0]),
                      dilation_w=int(a["dilation"][1]), groups=int(a["groups"]), **common)

"""Bit-accurate execution of an integer program.

Each op's semantics lives in one handler below (registered in `_HANDLERS`); the kernels come from
`hwsim.kernels` (fast: BLAS where a bound proves it exact, numba elsewhere) or
`hwsim.kernels.reference` (slow int64 definition). Both give identical codes and overflow counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import weakref
from types import SimpleNamespace
from typing import Callable

import numpy as np

from hwsim.errors import ProgramError
from hwsim.ir import IntProgram, Node, check_program
from hwsim.kernels.matmul import matmul_int, matmul_int_reference
from hwsim.kernels.vector import vector_op

BACKENDS = ("fast", "reference")
_TORCH_ENGINES = ("qnnpack", "onednn", "fbgemm")  # hwsim.lower.PYTORCH_ENGINES


@dataclass
class ExecutionResult:
    """Outputs of one execution.

    `output`: codes of the program's output node. `tensors`: every node's output codes, by node
    name (only when run with record=True). `overflow_counts`: per accumulating node, the number of
    output elements whose accumulation overflowed the accumulator (wrap or saturate).
    """

    output: np.ndarray
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    overflow_counts: dict[str, int] = field(default_factory=dict)

    @property
    def total_overflows(self) -> int:
        return int(sum(self.overflow_counts.values()))


def execute(program: IntProgram, input_codes: np.ndarray, *, record: bool = False,
            backend: str = "fast", check: bool = True) -> ExecutionResult:
    """Run `program` on integer input codes of shape (N, ...) matching the input node's shape
    (any batch size N). Returns the output codes, and all intermediate codes if `record`."""
    if backend not in BACKENDS:
        raise ProgramError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if check:
        check_program(program)
    kernels = _kernels(backend)
    inp = program.input
    x = _checked_input(program, inp, input_codes)
    values: dict[str, np.ndarray] = {inp.name: x}
    consumers_left = {n: program.graph.out_degree(n) for n in program.graph.nodes}
    result = ExecutionResult(output=x)
    for node in program.nodes():
        if node.op == "input":
            continue
        args = [values[src] for src in node.inputs]
        out, overflows = _HANDLERS[node.op](node, args, kernels)
        values[node.name] = out.astype(node.out.dtype, copy=False)
        if overflows is not None:
            result.overflow_counts[node.name] = int(overflows)
        if not record:  # free tensors nobody reads any more
            for src in node.inputs:
                consumers_left[src] -= 1
                if consumers_left[src] == 0 and src != program.output_name:
                    values.pop(src, None)
    result.output = values[program.output_name]
    if record:
        result.tensors = values
    return result


def execute_node(node: Node, inputs: list[np.ndarray], *, backend: str = "fast"
                 ) -> tuple[np.ndarray, int | None]:
    """Run one node on given input codes (e.g. another model's codes, to check a layer in
    isolation). Returns (output codes in the node's dtype, overflow count or None)."""
    if backend not in BACKENDS:
        raise ProgramError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if node.op == "input":
        return np.asarray(inputs[0]).astype(node.out.dtype, copy=False), None
    out, overflows = _HANDLERS[node.op](node, list(inputs), _kernels(backend))
    return out.astype(node.out.dtype, copy=False), overflows


def _checked_input(program: IntProgram, inp: Node, codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    where = f"program {program.name!r}, input {inp.name!r}"
    if not np.issubdtype(codes.dtype, np.integer):
        raise ProgramError(f"{where}: expected integer codes, got dtype {codes.dtype}")
    if codes.ndim != len(inp.out_shape) or codes.shape[1:] != tuple(inp.out_shape[1:]):
        raise ProgramError(f"{where}: expected shape (N, {', '.join(map(str, inp.out_shape[1:]))}), "
                           f"got {codes.shape}")
    if codes.size and (codes.min() < inp.out.qmin or codes.max() > inp.out.qmax):
        raise ProgramError(f"{where}: codes must lie in [{inp.out.qmin}, {inp.out.qmax}], got "
                           f"[{codes.min()}, {codes.max()}]")
    return codes.astype(inp.out.dtype, copy=False)


def _kernels(backend: str) -> SimpleNamespace:
    """The kernel set of a backend, under one set of names."""
    from hwsim import kernels as k

    if backend == "fast":
        return SimpleNamespace(
            fused=True, prepare_conv2d=k.prepare_conv2d, prepare_linear=k.prepare_linear,
            AccumulatorSpec=k.AccumulatorSpec, conv2d_int=k.conv2d_int, linear_int=k.linear_int,
            requantize_dyadic=k.requantize_dyadic, requantize_float32=k.requantize_float32,
            add_requantize_dyadic=k.add_requantize_dyadic,
            add_requantize_float32=k.add_requantize_float32, max_pool2d=k.max_pool2d,
            sum_pool2d=k.sum_pool2d, global_sum_pool=k.global_sum_pool,
            Int16PairsAccumulator=k.Int16PairsAccumulator, conv2d_int_pairs=k.conv2d_int_pairs,
            linear_int_pairs=k.linear_int_pairs, prepare_conv2d_pairs=k.prepare_conv2d_pairs,
            prepare_linear_pairs=k.prepare_linear_pairs)
    return SimpleNamespace(
        fused=False, AccumulatorSpec=k.AccumulatorSpec, conv2d_int=k.conv2d_int_reference,
        linear_int=k.linear_int_reference, requantize_dyadic=k.requantize_dyadic_reference,
        requantize_float32=k.requantize_float32_reference,
        add_requantize_dyadic=k.add_requantize_dyadic_reference,
        add_requantize_float32=k.add_requantize_float32_reference,
        max_pool2d=k.max_pool2d_reference, sum_pool2d=k.sum_pool2d_reference,
        global_sum_pool=lambda x, zp: k.sum_pool2d_reference(x, zp, kernel=tuple(x.shape[2:])),
        Int16PairsAccumulator=k.Int16PairsAccumulator,
        conv2d_int_pairs=k.conv2d_int_pairs_reference,
        linear_int_pairs=k.linear_int_pairs_reference)


# --------------------------------------------------------------------------------------------
# Requantization shared by every requantizing op

def _requantize(node: Node, acc: np.ndarray, k, *, axis: int, index: int | None = None) -> np.ndarray:
    """Requantize int64 accumulators with the node's constants. `index` picks one entry of the
    per-input constants (concat); otherwise constants are per channel along `axis` or scalar."""
    rq = node.attrs["requant"]
    lo, hi = rq["clamp"]
    zp = node.out.zero_point

    def pick(a: np.ndarray):
        if index is not None:
            return a[index]
        return a.reshape(()) if a.size == 1 else a  # per-tensor constants as scalars
    if rq["mode"] == "dyadic":
        return k.requantize_dyadic(acc, pick(node.arrays["rq_multiplier"]),
                                   pick(node.arrays["rq_shift"]), zp, lo, hi, axis=axis)
    return k.requantize_float32(acc, pick(node.arrays["rq_scale_f32"]), zp, lo, hi, axis=axis)


def _accumulator(node: Node, k):
    """The node's accumulator: an AccumulatorSpec ("wrap", "saturate") or, for "int16_pairs",
    an Int16PairsAccumulator (raw product pairs saturated to int16; hwsim.kernels.pairs)."""
    acc = node.attrs["accumulator"]
    if acc["mode"] == "int16_pairs":
        return k.Int16PairsAccumulator(bits=int(acc["bits"]))
    return k.AccumulatorSpec(bits=int(acc["bits"]), mode=acc["mode"])


# --------------------------------------------------------------------------------------------
# Op handlers: (node, input codes, kernels) -> (output codes, overflow count or None)

def _dense_operands(node: Node, args) -> tuple:
    return (args[0], int(node.attrs["input_zero_point"]), node.arrays["weight"],
            node.arrays["weight_zero_point"], node.arrays.get("bias"))


def _conv_geometry(node: Node) -> tuple:
    a = node.attrs
    return (tuple(a["stride"]), tuple(a["padding"]), tuple(a["dilation"]), int(a["groups"]))


def _torch_engine(node: Node, x: np.ndarray) -> np.ndarray:
    """A conv2d / linear node computed as PyTorch's quantized engine attrs["engine"] does
    (hwsim.engines.pytorch), then clamped to the node's requantization range."""
    from hwsim.engines.pytorch import torch_quantized_conv2d, torch_quantized_linear

    a, arr = node.attrs, node.arrays
    common = dict(x_scale=float(a["input_scale"]), x_zp=int(a["input_zero_point"]),
                  w=arr["weight"], w_scale=arr["weight_scale"], w_zp=arr["weight_zero_point"],
                  bias_f32=arr.get("bias_f32"), y_scale=float(node.out.scale),
                  y_zp=int(node.out.zero_point))
    flags = dict(engine=a["engine"], int16_pairs=bool(a["engine_int16_pairs"]))
    if node.op == "conv2d":
        top, left, _, _ = a["padding"]
        y = torch_quantized_conv2d(x, **common, stride=tuple(a["stride"]), padding=(top, left),
                                   dilation=tuple(a["dilation"]), groups=int(a["groups"]), **flags)
    else:
        y = torch_quantized_linear(x, **common, **flags)
    lo, hi = a["requant"]["clamp"]
    return np.clip(y, lo, hi)


def _conv2d(node: Node, args, k):
    if node.attrs.get("engine") in _TORCH_ENGINES:
        return _torch_engine(node, args[0]), None
    if k.fused:  # accumulate + requantize in one pass; bit-identical to the unfused pair
        res = _prepared_layer(node, k)(args[0], int(node.attrs["input_zero_point"]))
        return res.codes, res.overflow_count
    acc = _accumulator(node, k)
    conv = k.conv2d_int_pairs if isinstance(acc, k.Int16PairsAccumulator) else k.conv2d_int
    res = conv(*_dense_operands(node, args), *_conv_geometry(node), acc=acc)
    return _requantize(node, res.values, k, axis=1), res.overflow_count


def _linear(node: Node, args, k):
    if node.attrs.get("engine") in _TORCH_ENGINES:
        return _torch_engine(node, args[0]), None
    if k.fused:
        res = _prepared_layer(node, k)(args[0], int(node.attrs["input_zero_point"]))
        return res.codes, res.overflow_count
    acc = _accumulator(node, k)
    linear = k.linear_int_pairs if isinstance(acc, k.Int16PairsAccumulator) else k.linear_int
    res = linear(*_dense_operands(node, args), acc=acc)
    return _requantize(node, res.values, k, axis=1), res.overflow_count


# Prepared (validated, weights centred and cast) conv/linear layers, one per node, built on the
# node's first run. Keyed by the node's identity and the repr of its attrs, so a node whose attrs
# were changed is prepared afresh; an entry leaves when its node is freed.
_PREPARED_LAYERS: dict[int, tuple] = {}


def _prepared_layer(node: Node, k):
    fingerprint = repr(node.attrs)
    hit = _PREPARED_LAYERS.get(id(node))
    if hit is not None and hit[0]() is node and hit[1] == fingerprint:
        return hit[2]
    rq = node.attrs["requant"]
    lo, hi = rq["clamp"]
    constants = ({"m": node.arrays["rq_multiplier"], "shift": node.arrays["rq_shift"]}
                 if rq["mode"] == "dyadic" else {"scale_f32": node.arrays["rq_scale_f32"]})
    common = dict(out_zero_point=node.out.zero_point, qmin=lo, qmax=hi, requant=rq["mode"],
                  **constants)
    w, w_zp, bias = node.arrays["weight"], node.arrays["weight_zero_point"], node.arrays.get("bias")
    acc = _accumulator(node, k)
    pairs = isinstance(acc, k.Int16PairsAccumulator)  # no one-pass fused kernel for this mode
    if node.op == "conv2d":
        prepare = k.prepare_conv2d_pairs if pairs else k.prepare_conv2d
        layer = prepare(w, w_zp, bias, *_conv_geometry(node), acc, **common)
    else:
        prepare = k.prepare_linear_pairs if pairs else k.prepare_linear
        layer = prepare(w, w_zp, bias, acc, **common)
    key = id(node)
    _PREPARED_LAYERS[key] = (weakref.ref(node, lambda _, key=key: _PREPARED_LAYERS.pop(key, None)),
                             fingerprint, layer)
    return layer


def _add(node: Node, args, k):
    rq = node.attrs["requant"]
    lo, hi = rq["clamp"]
    zp_a, zp_b = node.attrs["input_zero_points"]
    zp = node.out.zero_point
    if rq["mode"] == "dyadic":
        m = node.arrays["rq_multiplier"]
        shift = int(node.arrays["rq_shift"].reshape(-1)[0])
        out = k.add_requantize_dyadic(args[0], zp_a, int(m[0]), args[1], zp_b, int(m[1]), shift,
                                      zp, lo, hi)
    else:
        s = node.arrays["rq_scale_f32"]
        out = k.add_requantize_float32(args[0], zp_a, s[0], args[1], zp_b, s[1], zp, lo, hi)
    return out, None


def _maxpool2d(node: Node, args, k):
    a = node.attrs
    x = args[0]
    out = k.max_pool2d(x, kernel=tuple(a["kernel"]), stride=tuple(a["stride"]),
                       padding=tuple(a["padding"]), dilation=tuple(a["dilation"]),
                       ceil_mode=bool(a["ceil_mode"]), pad_value=int(np.iinfo(x.dtype).min))
    return out, None


def _avgpool2d(node: Node, args, k):
    a = node.attrs
    zp = int(a["input_zero_point"])
    if a["global"]:
        sums = k.global_sum_pool(args[0], zp)
    else:
        sums = k.sum_pool2d(args[0], zp, kernel=tuple(a["kernel"]), stride=tuple(a["stride"]),
                            padding=tuple(a["padding"]), count_include_pad=True)
    return _requantize(node, sums.values, k, axis=1), None


def _flatten(node: Node, args, k):
    x = args[0]
    start = int(node.attrs["start_dim"])
    return x.reshape(x.shape[:start] + (-1,)), None


def _concat(node: Node, args, k):
    zps = node.attrs["input_zero_points"]
    parts = [_requantize(node, x.astype(np.int64) - int(zp), k, axis=1, index=i)
             for i, (x, zp) in enumerate(zip(args, zps))]
    return np.concatenate(parts, axis=int(node.attrs["axis"])), None


def _clamp(node: Node, args, k):
    acc = args[0].astype(np.int64) - int(node.attrs["input_zero_point"])
    return _requantize(node, acc, k, axis=1), None


def _binary_layer(node: Node, args, k):
    """binary_conv2d / binary_linear: binarize the input codes, XNOR-popcount products combined
    with the scales in float64, one rounding to the output codes (see hwsim.ir.ops)."""
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
        conv=_conv_geometry(node) if node.op == "binary_conv2d" else None)
    return binary_layer_forward(layer, args[0], fast=bool(k.fused)), None


def _matmul(node: Node, args, k):
    zp_a, zp_b = node.attrs["input_zero_points"]
    acc = (matmul_int if k.fused else matmul_int_reference)(args[0], zp_a, args[1], zp_b)
    spec = _accumulator(node, k)  # the exact sum, wrapped or clipped to the accumulator width
    lo, hi = spec.min_value, spec.max_value
    overflows = int(np.count_nonzero((acc < lo) | (acc > hi)))
    if overflows and spec.mode == "wrap":
        span = 1 << spec.bits
        acc = (acc - lo) % span + lo
    elif overflows:
        acc = np.clip(acc, lo, hi)
    return _requantize(node, acc, k, axis=-1), overflows


def _vector_op(node: Node, args, k):
    a = node.attrs
    return vector_op(args[0], a["fn"], input_zero_point=int(a["input_zero_point"]),
                     input_scale=float(a["input_scale"]), output_scale=float(node.out.scale),
                     output_zero_point=int(node.out.zero_point),
                     clamp=tuple(a["output_clamp"]), params=a["params"],
                     gamma=node.arrays.get("gamma"), beta=node.arrays.get("beta")), None


def _reshape(node: Node, args, k):
    return args[0].reshape(tuple(node.attrs["shape"])), None


def _transpose(node: Node, args, k):
    return np.ascontiguousarray(args[0].transpose(tuple(node.attrs["perm"]))), None


_HANDLERS: dict[str, Callable] = {
    "conv2d": _conv2d, "linear": _linear, "add": _add, "maxpool2d": _maxpool2d,
    "avgpool2d": _avgpool2d, "flatten": _flatten, "concat": _concat, "clamp": _clamp,
    "binary_conv2d": _binary_layer, "binary_linear": _binary_layer, "matmul": _matmul,
    "vector_op": _vector_op, "reshape": _reshape, "transpose": _transpose,
}

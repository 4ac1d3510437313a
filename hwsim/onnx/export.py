"""hwsim integer program -> int8 ONNX model (QOperator form) that ONNX Runtime computes bit for
bit like `hwsim.execute`.

The model is built from the integer program alone (no torch). Mapping, per program node:

    input      graph input of uint8/int8 codes, shape (N, ...) with a symbolic batch N
               (float_input=True: a float graph input and ONNX Runtime's QuantizeLinear)
    conv2d     QLinearConv: int32 bias = the node's bias codes, per-channel weight scales and
               zero points
    linear     com.microsoft QGemm (transB=1, the weight as (out, in), int32 bias C)
    add        com.microsoft QLinearAdd
    maxpool2d  MaxPool on the codes
    avgpool2d  com.microsoft QLinearGlobalAveragePool (global pooling only)
    flatten    Flatten (axis 1)
    mul        com.microsoft QLinearMul (float32 requantization: hwsim's float32 mul is ONNX
               Runtime's formula; broadcasting as numpy)
    concat, concat_lut
               com.microsoft QLinearConcat, when ONNX Runtime's per-input table
               Q_y(f32(s_i · (c - zp_i))) gives hwsim's codes for all 256 codes of every input
    activation_lut
               com.microsoft QLinearSigmoid (fn sigmoid) / QLinearLeakyRelu (fn leaky_relu),
               when ONNX Runtime's float32 table (hwsim.kernels.lut) equals the node's table
               entry for entry (the form ONNX Runtime users expect); every other table
               (hardswish, hardsigmoid, SiLU, tanh, a sigmoid table QLinearSigmoid rounds
               otherwise) as Cast -> Gather of the node's own table (hwsim.onnx._export_tables),
               exact by construction
    conv_transpose2d
               zero insertion on the codes (Unsqueeze / Pad with the input zero point /
               Reshape / Slice) then QLinearConv with the flipped weights
               (hwsim.onnx._export_conv_transpose); ONNX Runtime's CPU provider has no
               QLinearConvTranspose kernel
    resize_nearest
               Resize (mode nearest) on the codes, with the node's scales and modes
    resize_linear
               the node's integer bilinear arithmetic in float64 ops that are exact (Gather,
               Mul, Add, Round, Clip; hwsim.onnx._export_resize_linear): ONNX Runtime's
               Resize (mode linear) rounds otherwise

Codes: uint8 or int8 activations; conv / linear take u8 x s8, u8 x u8 or s8 x s8 (activations
x weights; any weight zero points) and write their input's type, as ONNX Runtime's CPU kernels
do. A requantization clamp narrower than the code type (a fused ReLU / ReLU6 that is not the
natural saturation, 7-bit codes stored in 8 bits) becomes a Clip on the codes after the op (and
after the input QuantizeLinear). ONNX Runtime clamps to the full type range before rounding;
rounding half to even is monotone and keeps integer bounds, so clamping afterwards gives the
same codes as hwsim's clamp before rounding. (`load_onnx_program` does not read Clip yet, nor
the plain integer / float64 constructions of Gather tables, zero-inserted transposed convs and
bilinear resizes: such a model runs in ONNX Runtime but does not import back.)

ONNX Runtime derives each requantization constant from the tensors' float32 scales (formulas in
`hwsim.onnx.ort_semantics`). The export writes the program's scales as float32 and checks, per
node, that ONNX Runtime's formula gives back exactly the node's constant; for a conv / linear
node it looks for float32 weight scales that do (the node's `weight_scale` when present). It
also checks that every conv / linear accumulates as ONNX Runtime does on the target CPU: int32,
with u8 x s8 product pairs saturated to int16 where this CPU's kernels do it
(`ort_cpu.pairs_decision`; depthwise convs are exact). `with_ort_accumulators` gives the
program with those accumulators, as `lower(qm, requant="float32", engine="ort")` builds it
(nodes lowered for a PyTorch engine are refused). Every problem of every node is reported in one
OnnxExportError.

Tensor names: each node's codes are the ONNX tensor named after the node, so ONNX Runtime's
intermediate values can be compared with `execute(..., record=True).tensors` by name.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from hwsim.engines.table import is_pytorch_engine
from hwsim.errors import ProgramError
from hwsim.ir import IntProgram, Node, check_program
from hwsim.ir.specs import AccumulatorMode, RequantMode
from hwsim.kernels import activation_table, mul_ratio, nearest_indices, ort_output_scale
from hwsim.kernels import requantize_float32
from hwsim.onnx import ort_semantics as ort
from hwsim.onnx._deps import require
from hwsim.onnx._export_conv_transpose import emit_zero_inserted, flipped_weight
from hwsim.onnx._export_resize_linear import emit_resize_linear, resize_linear_errors
from hwsim.onnx._export_tables import emit_gather_table
from hwsim.onnx.ort_cpu import pairs_decision

OPSET = 17  # MaxPool and Clip on int8/uint8 need >= 12; per-axis Q/DQ >= 13
IR_VERSION = 9
ORT_ACCUMULATOR_BITS = 32
EXPORTABLE_OPS = ("input", "conv2d", "linear", "conv_transpose2d", "add", "maxpool2d",
                  "avgpool2d (global)", "flatten", "mul", "concat", "concat_lut",
                  "activation_lut", "resize_nearest", "resize_linear")
_CODE_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))
_DENSE_TYPES = (("uint8", "int8"), ("uint8", "uint8"), ("int8", "int8"))  # ORT's CPU kernels
_F32 = np.float32
_ULP_SEARCH = 64  # how far (in float32 ulps) to look for a weight scale that ORT maps exactly


class OnnxExportError(ProgramError):
    """An integer program cannot be written as an ONNX model that ONNX Runtime computes bit for
    bit: the message names every offending node, its op and what was expected."""


def export_onnx(program: IntProgram, path: str | Path, *, float_input: bool = False,
                float_output: bool = False, intermediate_outputs: bool = False,
                int16_pairs: bool | None = None) -> Path:
    """Write `program` as a QOperator ONNX model at `path` (module docstring); return the path.

    program: requantizing in float32 with accumulators as ONNX Runtime's: built by
        `lower(qm, requant="float32", engine="ort")`, imported by `load_onnx_program`, or
        passed through `with_ort_accumulators`.
    float_input: the graph input is float32 (N, ...) quantized by ONNX Runtime's
        QuantizeLinear (`hwsim.onnx.quantize_input` computes the same codes); default: the
        graph input takes the program's uint8/int8 input codes.
    float_output: the graph output is DequantizeLinear of the output codes (float32);
        default: the output codes themselves (uint8/int8).
    intermediate_outputs: also output every node's codes, each named after its node.
    int16_pairs: the target CPU saturates u8 x s8 product pairs to int16 (None: measure this
        machine's ONNX Runtime).

    A model with float input, float output and no intermediate outputs is what
    `load_onnx_program` imports back (when it has no Clip and none of the plain-op
    constructions: Gather tables, transposed convs, bilinear resizes; module docstring).
    """
    model = onnx_model(program, float_input=float_input, float_output=float_output,
                       intermediate_outputs=intermediate_outputs, int16_pairs=int16_pairs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def onnx_model(program: IntProgram, *, float_input: bool = False, float_output: bool = False,
               intermediate_outputs: bool = False, int16_pairs: bool | None = None):
    """The onnx.ModelProto that `export_onnx` writes (same arguments)."""
    onnx = require("onnx", "export_onnx")
    check_program(program)
    errors: list[str] = []
    for node in program.nodes():
        errors += [f"node {node.name!r} ({node.op}): {e}"
                   for e in _node_errors(program, node, int16_pairs)]
    if errors:
        raise OnnxExportError(f"program {program.name!r} cannot be exported to ONNX bit-exactly:"
                              "\n  " + "\n  ".join(errors))
    graph = _GraphBuilder(onnx, program)
    graph.input(float_input)
    for node in program.nodes():
        if node.op != "input":
            _EMIT[node.op](graph, node)
    graph.outputs(float_output, intermediate_outputs)
    helper = onnx.helper
    model = helper.make_model(
        helper.make_graph(graph.nodes, program.name, graph.graph_inputs, graph.graph_outputs,
                          initializer=graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
        producer_name="hwsim")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def with_ort_accumulators(program: IntProgram, *, int16_pairs: bool | None = None) -> IntProgram:
    """A copy of `program` whose conv2d / linear nodes accumulate as ONNX Runtime's CPU kernels
    do: int32, and "int16_pairs" for u8 x s8 convs (not depthwise) and GEMMs when the target CPU
    saturates pairs (`int16_pairs` None: this machine). The reason is recorded in
    attrs["accumulator_reason"]. Nodes keep their arrays (shared, read-only)."""
    out = IntProgram(program.name)
    for node in program.nodes():
        if node.op in ("conv2d", "linear") and _eight_bit(program, node):
            mode, reason = _ort_accumulator(program, node, int16_pairs)
            attrs = {**node.attrs, "accumulator": {"bits": ORT_ACCUMULATOR_BITS, "mode": mode},
                     "accumulator_reason": reason}
            node = dataclasses.replace(node, attrs=attrs, arrays=dict(node.arrays))
        out.add(node)
    out.output_name = program.output_name
    check_program(out)
    return out


# ------------------------------------------------------------------------------------------------
# Validation: what ONNX Runtime would compute differently

def _node_errors(program: IntProgram, node: Node, int16_pairs: bool | None) -> list[str]:
    if node.op not in _EMIT and node.op != "input":
        return [f"op {node.op!r} has no bit-exact ONNX Runtime (QOperator) mapping; exportable "
                f"ops: {', '.join(EXPORTABLE_OPS)}"]
    errs = []
    if node.out.dtype not in _CODE_DTYPES:
        errs.append(f"codes must be uint8 or int8 for ONNX Runtime's quantized ops; this node's "
                    f"range [{node.out.qmin}, {node.out.qmax}] needs {node.out.dtype}")
    rq = node.attrs.get("requant")
    if rq is not None and rq["mode"] != RequantMode.FLOAT32:
        errs.append(f"requantization mode {rq['mode']!r}: ONNX Runtime requantizes in float32; "
                    "lower the model with requant='float32'")
    if errs or node.op == "input":
        return errs
    ins = [program.node(s) for s in node.inputs]
    if any(p.out.dtype not in _CODE_DTYPES for p in ins):
        return [f"reads {node.inputs}, whose codes are not uint8/int8"]
    return _CHECKS.get(node.op, lambda *a: [])(program, node, ins, int16_pairs)


def _eight_bit(program: IntProgram, node: Node) -> bool:
    return (node.arrays["weight"].dtype in _CODE_DTYPES
            and program.node(node.inputs[0]).out.dtype in _CODE_DTYPES)


def _depthwise(node: Node) -> bool:
    w = node.arrays["weight"]
    groups = int(node.attrs.get("groups", 1))
    return (node.op in ("conv2d", "conv_transpose2d") and groups > 1 and groups == w.shape[0]
            and w.shape[1] == 1)


def _ort_accumulator(program: IntProgram, node: Node, int16_pairs: bool | None) -> tuple[str, str]:
    x_dtype = program.node(node.inputs[0]).out.dtype
    return pairs_decision(x_dtype, node.arrays["weight"].dtype, _depthwise(node), int16_pairs)


def _same_accumulation(program: IntProgram, node: Node, int16_pairs: bool | None) -> bool:
    """The node's accumulator gives ONNX Runtime's sums: the same setting, or int32 with
    "wrap" vs "int16_pairs" where no product pair can leave int16 (e.g. 7-bit activations)."""
    acc = node.attrs["accumulator"]
    mode, _ = _ort_accumulator(program, node, int16_pairs)
    if acc.get("bits") != ORT_ACCUMULATOR_BITS or acc.get("mode") not in (AccumulatorMode.WRAP, AccumulatorMode.INT16_PAIRS):
        return False
    if acc["mode"] == mode:
        return True
    x = program.node(node.inputs[0]).out
    w = node.arrays["weight"]
    largest_pair = 2 * max(abs(x.qmin), abs(x.qmax)) * int(np.abs(w.astype(np.int64)).max(initial=0))
    return largest_pair <= np.iinfo(np.int16).max


def _zero_point_errors(node: Node, producers: list[Node], zps: list[int]) -> list[str]:
    return [f"input zero point {zp} differs from the zero point {p.out.zero_point} of the codes "
            f"it reads ({p.name!r})"
            for p, zp in zip(producers, zps) if int(zp) != p.out.zero_point]


def _check_dense(program: IntProgram, node: Node, ins: list[Node], int16_pairs) -> list[str]:
    x = ins[0]
    w = node.arrays["weight"]
    ort_op = "QGemm" if node.op == "linear" else "QLinearConv"
    errs = _zero_point_errors(node, ins, [node.attrs["input_zero_point"]])
    if (x.out.dtype.name, w.dtype.name) not in _DENSE_TYPES:
        errs.append(f"{ort_op} on this CPU takes {', '.join(' x '.join(t) for t in _DENSE_TYPES)}"
                    f" (activations x weights); got {x.out.dtype} x {w.dtype}")
    if node.op == "linear" and len(x.out_shape) != 2:
        errs.append(f"QGemm multiplies (N, in) inputs; the input has shape {x.out_shape}")
    if x.out.dtype != node.out.dtype:
        errs.append(f"{ort_op} writes codes of its input's type {x.out.dtype}; the node's output "
                    f"is {node.out.dtype}")
    bias = node.arrays.get("bias")
    if bias is not None and (bias.min() < -2**31 or bias.max() >= 2**31):
        errs.append(f"bias codes must fit int32; got [{bias.min()}, {bias.max()}]")
    zp_w = np.asarray(node.arrays["weight_zero_point"])
    if w.dtype in _CODE_DTYPES and (zp_w.min() < np.iinfo(w.dtype).min
                                    or zp_w.max() > np.iinfo(w.dtype).max):
        errs.append(f"weight zero points must fit {w.dtype}; got [{zp_w.min()}, {zp_w.max()}]")
    engine = node.attrs.get("engine")
    if is_pytorch_engine(engine):  # nodes ORT computes otherwise
        errs.append(f"computed as PyTorch's {engine} engine (float bias, its own requantization); "
                    "lower with engine='ort' (or requant='float32') for ONNX Runtime")
    if w.dtype in _CODE_DTYPES and not _same_accumulation(program, node, int16_pairs):
        mode, reason = _ort_accumulator(program, node, int16_pairs)
        fix = ("lower with requant='float32', engine='ort', or pass the program through "
               "hwsim.onnx.with_ort_accumulators")
        if node.op == "conv_transpose2d":
            fix = ("lower with an int32 wrapping accumulator (requant='float32', engine='ort')"
                   if mode == AccumulatorMode.WRAP else
                   "conv_transpose2d is exported as a QLinearConv and does not model int16 "
                   "pairs; use int8 activations or uint8 weights")
        errs.append(f"accumulator {node.attrs['accumulator']} but ONNX Runtime accumulates as "
                    f"{{'bits': 32, 'mode': {mode!r}}} here ({reason}); {fix}")
    if not errs and _weight_scales(program, node) is None:
        errs.append("no float32 weight scales make ONNX Runtime's requantization scale "
                    "f32(f32(s_x s_w) / s_y) equal the node's rq_scale_f32")
    return errs


def _check_add(program: IntProgram, node: Node, ins: list[Node], int16_pairs) -> list[str]:
    errs = _zero_point_errors(node, ins, node.attrs["input_zero_points"])
    if not ins[0].out.dtype == ins[1].out.dtype == node.out.dtype:
        errs.append(f"QLinearAdd needs one code type for A, B and C; got {ins[0].out.dtype}, "
                    f"{ins[1].out.dtype}, {node.out.dtype}")
    if ins[0].out_shape[1:] != ins[1].out_shape[1:]:
        errs.append(f"operands of shapes {ins[0].out_shape} and {ins[1].out_shape}: hwsim adds "
                    "equal shapes only")
    want = ort.add_ratios(ins[0].out.scale, ins[1].out.scale, node.out.scale)
    if not _same_f32(node.arrays["rq_scale_f32"], want):
        errs.append(f"rq_scale_f32 {node.arrays['rq_scale_f32'].tolist()} differs from "
                    f"QLinearAdd's ratios f32(s_a / s_c), f32(s_b / s_c) = {want.tolist()}")
    return errs


def _check_avgpool(program: IntProgram, node: Node, ins: list[Node], int16_pairs) -> list[str]:
    if not node.attrs["global"]:
        return ["only global average pooling has a bit-exact ONNX Runtime op "
                "(QLinearGlobalAveragePool)"]
    x = ins[0]
    errs = _zero_point_errors(node, ins, [node.attrs["input_zero_point"]])
    if x.out.dtype != node.out.dtype:
        errs.append(f"QLinearGlobalAveragePool keeps the code type {x.out.dtype}; the node "
                    f"writes {node.out.dtype}")
    count = int(math.prod(x.out_shape[2:]))
    want = ort.global_avgpool_scale(x.out.scale, node.out.scale, count)
    if not _same_f32(node.arrays["rq_scale_f32"], np.array([want])):
        errs.append(f"rq_scale_f32 {node.arrays['rq_scale_f32'].tolist()} differs from "
                    f"QLinearGlobalAveragePool's f32(s_x / f32(s_y * {count})) = {float(want)}")
    return errs


def _check_maxpool(program: IntProgram, node: Node, ins: list[Node], int16_pairs) -> list[str]:
    a = node.attrs
    if not a["ceil_mode"]:
        return []
    h, w = ins[0].out_shape[2:]
    sizes = [_ceil_pool_size(n, k, s, p0 + p1, d) for n, k, s, p0, p1, d in
             zip((h, w), a["kernel"], a["stride"], a["padding"][:2], a["padding"][2:],
                 a["dilation"])]
    if tuple(sizes) != tuple(node.out_shape[2:]):
        return [f"with ceil_mode ONNX MaxPool gives {tuple(sizes)} outputs, the node "
                f"{tuple(node.out_shape[2:])}"]
    return []


def _ceil_pool_size(n: int, k: int, s: int, pads: int, d: int) -> int:
    """ONNX MaxPool's output size along one axis with ceil_mode=1."""
    return -(-(n + pads - d * (k - 1) - 1) // s) + 1


def _check_flatten(program: IntProgram, node: Node, ins: list[Node], int16_pairs) -> list[str]:
    if int(node.attrs["start_dim"]) != 1:
        return [f"start_dim {node.attrs['start_dim']}: ONNX Flatten keeps only the batch "
                "dimension (start_dim 1)"]
    return []


def _same_type_errors(ort_op: str, ins: list[Node], node: Node) -> list[str]:
    types = [p.out.dtype for p in ins] + [node.out.dtype]
    if len(set(types)) != 1:
        return [f"{ort_op} needs one code type for its inputs and output; got "
                f"{', '.join(str(t) for t in types)}"]
    return []


def _full_range(node: Node, ins: list[Node], ort_op: str) -> list[str]:
    """Inputs and output use their type's whole range (ONNX Runtime's tables cover it)."""
    info = np.iinfo(node.out.dtype)
    bad = [p.name for p in [*ins, node] if (p.out.qmin, p.out.qmax) != (info.min, info.max)]
    if bad:
        return [f"{ort_op} works on the full {node.out.dtype} range; the codes of {bad} use a "
                "narrower one"]
    return []


def _table_mismatch(ours: np.ndarray, theirs: np.ndarray, first_code: int) -> str:
    diff = np.flatnonzero(np.asarray(ours, np.int64) != np.asarray(theirs, np.int64))
    codes = ", ".join(str(first_code + int(i)) for i in diff[:4])
    return (f"{diff.size} of {ours.size} table entries differ (input codes {codes}"
            f"{', ...' if diff.size > 4 else ''})")


def _ort_table(fn: str, x: Node, node: Node, alpha: float = 0.0) -> np.ndarray:
    """ONNX Runtime's table over x's codes at the exported (float32) scales, with the node's
    requantization clamp applied after it (the Clip the export adds)."""
    info = np.iinfo(node.out.dtype)
    table = activation_table(fn, x_scale=_F32(x.out.scale), x_zero_point=x.out.zero_point,
                             y_scale=_F32(node.out.scale), y_zero_point=node.out.zero_point,
                             qmin=int(info.min), qmax=int(info.max), alpha=_F32(alpha))
    lo, hi = _clamp_of(node)
    return np.clip(table, lo, hi)


def _clamp_of(node: Node) -> tuple[int, int]:
    rq = node.attrs.get("requant")
    return tuple(rq["clamp"]) if rq is not None else (node.out.qmin, node.out.qmax)


def _qlinear_activation_errors(program: IntProgram, node: Node) -> list[str]:
    """Why ONNX Runtime's QLinearSigmoid / QLinearLeakyRelu would not give the node's codes
    ([] when it does). No activation_lut is refused: where this is not [], the export writes a
    Gather of the node's own table."""
    a = node.attrs
    fn = a["fn"]
    ins = [program.node(node.inputs[0])]
    ort_op = {"sigmoid": "QLinearSigmoid", "leaky_relu": "QLinearLeakyRelu"}.get(fn)
    if ort_op is None:
        return [f"fn {fn!r} has no ONNX Runtime quantized op"]
    errs = _zero_point_errors(node, ins, [a["input_zero_point"]])
    errs += _same_type_errors(ort_op, ins, node) or _full_range(node, ins, ort_op)
    if errs:
        return errs
    theirs = _ort_table(fn, ins[0], node, float(a.get("alpha", 0.0)))
    if not np.array_equal(node.arrays["table"].astype(np.int64), theirs):
        info = np.iinfo(node.out.dtype)
        errs.append(f"{ort_op} computes its table in float32 (ONNX Runtime's {fn}); at these "
                    f"scales it is not this node's: "
                    f"{_table_mismatch(node.arrays['table'], theirs, int(info.min))}")
    return errs


def _check_mul(program: IntProgram, node: Node, ins: list[Node], int16_pairs) -> list[str]:
    if "constant" in node.arrays:
        return ["a mul with a constant operand is not exported (only products of two "
                "activations)"]
    errs = _zero_point_errors(node, ins, node.attrs["input_zero_points"])
    errs += _same_type_errors("QLinearMul", ins, node)
    want = mul_ratio(ins[0].out.scale, ins[1].out.scale, node.out.scale)
    if not _same_f32(node.arrays["rq_scale_f32"], np.array([want])):
        errs.append(f"rq_scale_f32 {node.arrays['rq_scale_f32'].tolist()} differs from "
                    f"QLinearMul's f32(f32(s_a s_b) / s_c) = {float(want)}")
    return errs


def _concat_codes(node: Node, i: int, x: Node) -> np.ndarray:
    """hwsim's output codes for every code of input i (the node's own arithmetic)."""
    codes = np.arange(x.out.qmin, x.out.qmax + 1, dtype=np.int64)
    if node.op == "concat_lut":
        return np.asarray(node.arrays["tables"][i], dtype=np.int64)
    lo, hi = _clamp_of(node)
    ratio = np.asarray(node.arrays["rq_scale_f32"], dtype=_F32).reshape(-1)[i]
    return requantize_float32(codes - int(node.attrs["input_zero_points"][i]), ratio,
                              node.out.zero_point, lo, hi).astype(np.int64)


def _check_concat(program: IntProgram, node: Node, ins: list[Node], int16_pairs) -> list[str]:
    errs = _zero_point_errors(node, ins, node.attrs["input_zero_points"])
    errs += _same_type_errors("QLinearConcat", ins, node) or _full_range(node, ins,
                                                                         "QLinearConcat")
    if errs:
        return errs
    if int(node.attrs["axis"]) == 0:
        return ["QLinearConcat along the batch axis is not exported"]
    for i, x in enumerate(ins):
        ours = _concat_codes(node, i, x)
        if _F32(x.out.scale) == _F32(node.out.scale) and x.out.zero_point == node.out.zero_point:
            theirs = np.clip(np.arange(x.out.qmin, x.out.qmax + 1), *_clamp_of(node))
        else:  # ONNX Runtime requantizes input i through a table
            theirs = _ort_table("identity", x, node)
        if not np.array_equal(ours, theirs):
            errs.append(f"input {i} ({x.name!r}): QLinearConcat's requantization table "
                        f"Q_y(f32(s_i · (c - zp_i))) is not this node's: "
                        f"{_table_mismatch(ours, theirs, x.out.qmin)}")
    return errs


def _check_resize(program: IntProgram, node: Node, ins: list[Node], int16_pairs) -> list[str]:
    a = node.attrs
    (h, w), (oh, ow) = ins[0].out_shape[2:], node.out_shape[2:]
    s_h, s_w = (_F32(v) for v in a["scales"])
    errs = []
    if (int(np.floor(_F32(h) * s_h)), int(np.floor(_F32(w) * s_w))) != (oh, ow):
        errs.append(f"Resize with scales ({float(s_h)}, {float(s_w)}) outputs "
                    f"floor(in · scale), not the node's {oh}x{ow}")
    mode, nearest = a["coordinate_transformation_mode"], a["nearest_mode"]
    for key, n_in, n_out, scale in (("rows", h, oh, s_h), ("cols", w, ow, s_w)):
        if not np.array_equal(node.arrays[key], nearest_indices(n_in, n_out, scale, mode, nearest)):
            errs.append(f"the node's source {key} are not ONNX Resize's ({mode}, {nearest})")
    return errs


def _check_resize_linear(program: IntProgram, node: Node, ins: list[Node],
                        int16_pairs) -> list[str]:
    return resize_linear_errors(node, ins[0])


_CHECKS = {"conv2d": _check_dense, "conv_transpose2d": _check_dense, "linear": _check_dense,
           "add": _check_add, "avgpool2d": _check_avgpool, "maxpool2d": _check_maxpool,
           "flatten": _check_flatten, "mul": _check_mul, "concat": _check_concat,
           "concat_lut": _check_concat, "resize_nearest": _check_resize,
           "resize_linear": _check_resize_linear}  # activation_lut: always exported


def _same_f32(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=_F32).reshape(-1), np.asarray(b, dtype=_F32).reshape(-1)
    return a.shape == b.shape and bool(np.all(a.view(np.int32) == b.view(np.int32)))


def _weight_scales(program: IntProgram, node: Node) -> np.ndarray | None:
    """Float32 weight scales (K,) with ort_output_scale(s_x, s_w, s_y) == rq_scale_f32 exactly
    (per channel or broadcast), or None. The node's `weight_scale` is tried first; otherwise,
    or where it does not fit, the float32 values within _ULP_SEARCH ulps of
    rq_scale * s_y / s_x, nearest first."""
    k = node.arrays["weight"].shape[0]
    if np.size(node.arrays["rq_scale_f32"]) not in (1, k):
        return None
    s_x, s_y = _F32(program.node(node.inputs[0]).out.scale), _F32(node.out.scale)
    target = np.broadcast_to(np.asarray(node.arrays["rq_scale_f32"], dtype=_F32).reshape(-1), (k,))
    found = np.zeros(k, dtype=bool)
    scales = np.zeros(k, dtype=_F32)
    given = node.arrays.get("weight_scale")
    if given is not None and np.size(given) in (1, k):
        cand = np.broadcast_to(np.asarray(given, dtype=_F32).reshape(-1), (k,))
        found = _same_each(ort_output_scale(s_x, cand, s_y), target)
        scales[found] = cand[found]
    start = (target.astype(np.float64) * float(s_y) / float(s_x)).astype(_F32).view(np.int32)
    for step in sorted(range(-_ULP_SEARCH, _ULP_SEARCH + 1), key=abs):
        if found.all():
            break
        cand = (start + np.int32(step)).view(_F32)
        ok = ~found & (cand > 0) & _same_each(ort_output_scale(s_x, cand, s_y), target)
        scales[ok], found = cand[ok], found | ok
    return scales if found.all() else None


def _same_each(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=_F32).view(np.int32) == np.asarray(b, dtype=_F32).view(np.int32)


# ------------------------------------------------------------------------------------------------
# Building the graph

class _GraphBuilder:
    """Accumulates ONNX nodes, initializers and graph inputs/outputs for one program."""

    def __init__(self, onnx, program: IntProgram) -> None:
        self.onnx, self.program = onnx, program
        self.nodes: list = []
        self.initializers: list = []
        self.graph_inputs: list = []
        self.graph_outputs: list = []
        self._constants: set[str] = set()
        self._node_names: set[str] = set()

    def const(self, name: str, value) -> str:
        if name not in self._constants:
            self._constants.add(name)
            self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def qparams(self, tensor: str) -> list[str]:
        """[scale, zero point] initializers of a program node's codes (float32, code type)."""
        q = self.program.node(tensor).out
        dtype = q.dtype
        return [self.const(f"{tensor}.scale", _F32(q.scale)),
                self.const(f"{tensor}.zero_point", np.asarray(q.zero_point, dtype=dtype))]

    def op(self, op_type: str, inputs: list[str], output: str, source: Node, *,
           domain: str = "", **attrs) -> str:
        """Append one ONNX node writing `output`, named "<program node>/<op type>" (or
        "<output>/<op type>" when a program node needs several of one type)."""
        name = f"{source.name}/{op_type}"
        if name in self._node_names:
            name = f"{output}/{op_type}"
        while name in self._node_names:
            name += "'"
        self._node_names.add(name)
        self.nodes.append(self.onnx.helper.make_node(
            op_type, inputs, [output], name=name, domain=domain, **attrs))
        return output

    def value_info(self, name: str, elem_type: int, shape: tuple[int, ...]):
        dims = ["N", *[int(d) for d in shape[1:]]]
        return self.onnx.helper.make_tensor_value_info(name, elem_type, dims)

    def code_info(self, node: Node):
        return self.value_info(node.name, self.onnx.helper.np_dtype_to_tensor_dtype(node.out.dtype),
                               node.out_shape)

    def clamped(self, node: Node, op_type: str, inputs: list[str], bounds=None, **attrs) -> None:
        """The op writing the node's codes, then a Clip when their bounds (default: the
        requantization clamp) are narrower than the code type's range."""
        lo, hi = node.attrs["requant"]["clamp"] if bounds is None else bounds
        info = np.iinfo(node.out.dtype)
        if (lo, hi) == (info.min, info.max):
            self.op(op_type, inputs, node.name, node, **attrs)
            return
        raw = self.op(op_type, inputs, f"{node.name}.unclipped", node, **attrs)
        limits = [self.const(f"{node.name}.clip_{side}", np.asarray(v, dtype=node.out.dtype))
                  for side, v in (("min", lo), ("max", hi))]
        self.op("Clip", [raw, *limits], node.name, node)

    def input(self, float_input: bool) -> None:
        node = self.program.input
        if not float_input:
            self.graph_inputs.append(self.code_info(node))
            return
        x = f"{node.name}.float"
        self.graph_inputs.append(self.value_info(x, self.onnx.TensorProto.FLOAT, node.out_shape))
        self.clamped(node, "QuantizeLinear", [x, *self.qparams(node.name)],
                     bounds=(node.out.qmin, node.out.qmax))

    def outputs(self, float_output: bool, intermediate: bool) -> None:
        out = self.program.output
        if float_output:
            y = self.op("DequantizeLinear", [out.name, *self.qparams(out.name)],
                        f"{out.name}.float", out)
            self.graph_outputs.append(self.value_info(y, self.onnx.TensorProto.FLOAT,
                                                      out.out_shape))
        else:
            self.graph_outputs.append(self.code_info(out))
        if intermediate:
            skip = {out.name} if not float_output else set()
            skip |= {i.name for i in self.graph_inputs}
            self.graph_outputs += [self.code_info(n) for n in self.program.nodes()
                                   if n.name not in skip]


def _emit_conv(g: _GraphBuilder, node: Node) -> None:
    x, a = node.inputs[0], node.attrs
    ins = [x, *g.qparams(x), *_weight_inputs(g, node), *g.qparams(node.name)]
    if "bias" in node.arrays:
        ins.append(g.const(f"{node.name}.bias", node.arrays["bias"].astype(np.int32)))
    w = node.arrays["weight"]
    g.clamped(node, "QLinearConv", ins, kernel_shape=list(w.shape[2:]),
              strides=list(a["stride"]), pads=list(a["padding"]), dilations=list(a["dilation"]),
              group=int(a["groups"]))


def _emit_conv_transpose(g: _GraphBuilder, node: Node) -> None:
    x, a = node.inputs[0], node.attrs
    conv_input = emit_zero_inserted(g, node)
    w = flipped_weight(node)
    ins = [conv_input, *g.qparams(x), *_weight_inputs(g, node, w), *g.qparams(node.name)]
    if "bias" in node.arrays:
        ins.append(g.const(f"{node.name}.bias", node.arrays["bias"].astype(np.int32)))
    g.clamped(node, "QLinearConv", ins, kernel_shape=list(w.shape[2:]), strides=[1, 1],
              pads=[0, 0, 0, 0], dilations=list(a["dilation"]), group=int(a["groups"]))


def _emit_linear(g: _GraphBuilder, node: Node) -> None:
    x = node.inputs[0]
    bias = ""
    if "bias" in node.arrays:
        bias = g.const(f"{node.name}.bias", node.arrays["bias"].astype(np.int32))
    ins = [x, *g.qparams(x), *_weight_inputs(g, node), bias, *g.qparams(node.name)]
    g.clamped(node, "QGemm", ins, domain="com.microsoft", transB=1, alpha=1.0)


def _weight_inputs(g: _GraphBuilder, node: Node, w: np.ndarray | None = None) -> list[str]:
    """[weight codes (`w`, default the node's), per-channel float32 scales, per-channel zero
    points] initializers."""
    w = node.arrays["weight"] if w is None else w
    k = w.shape[0]
    zp = np.broadcast_to(np.asarray(node.arrays["weight_zero_point"]).reshape(-1), (k,))
    return [g.const(f"{node.name}.weight", w),
            g.const(f"{node.name}.weight_scale", _weight_scales(g.program, node)),
            g.const(f"{node.name}.weight_zero_point", zp.astype(w.dtype))]


def _emit_add(g: _GraphBuilder, node: Node) -> None:
    a, b = node.inputs
    g.clamped(node, "QLinearAdd", [a, *g.qparams(a), b, *g.qparams(b), *g.qparams(node.name)],
              domain="com.microsoft")


def _emit_avgpool(g: _GraphBuilder, node: Node) -> None:
    x = node.inputs[0]
    g.clamped(node, "QLinearGlobalAveragePool", [x, *g.qparams(x), *g.qparams(node.name)],
              domain="com.microsoft", channels_last=0)


def _emit_maxpool(g: _GraphBuilder, node: Node) -> None:
    a = node.attrs
    g.op("MaxPool", [node.inputs[0]], node.name, node, kernel_shape=list(a["kernel"]),
         strides=list(a["stride"]), pads=list(a["padding"]), dilations=list(a["dilation"]),
         ceil_mode=int(bool(a["ceil_mode"])))


def _emit_flatten(g: _GraphBuilder, node: Node) -> None:
    g.op("Flatten", [node.inputs[0]], node.name, node, axis=1)


def _emit_activation(g: _GraphBuilder, node: Node) -> None:
    if _qlinear_activation_errors(g.program, node):
        emit_gather_table(g, node)
        return
    x = node.inputs[0]
    ins = [x, *g.qparams(x), *g.qparams(node.name)]
    if node.attrs["fn"] == "sigmoid":
        g.clamped(node, "QLinearSigmoid", ins, bounds=_clamp_of(node), domain="com.microsoft")
    else:
        g.clamped(node, "QLinearLeakyRelu", ins, bounds=_clamp_of(node), domain="com.microsoft",
                  alpha=float(node.attrs["alpha"]))


def _emit_mul(g: _GraphBuilder, node: Node) -> None:
    a, b = node.inputs
    g.clamped(node, "QLinearMul", [a, *g.qparams(a), b, *g.qparams(b), *g.qparams(node.name)],
              domain="com.microsoft")


def _emit_concat(g: _GraphBuilder, node: Node) -> None:
    ins = [*g.qparams(node.name)]
    for x in node.inputs:
        ins += [x, *g.qparams(x)]
    g.clamped(node, "QLinearConcat", ins, bounds=_clamp_of(node), domain="com.microsoft",
              axis=int(node.attrs["axis"]))


def _emit_resize(g: _GraphBuilder, node: Node) -> None:
    a = node.attrs
    scales = np.array([1.0, 1.0, *a["scales"]], dtype=_F32)
    roi = g.const(f"{node.name}.roi", np.zeros(0, dtype=_F32))
    g.op("Resize", [node.inputs[0], roi, g.const(f"{node.name}.scales", scales)], node.name,
         node, mode="nearest", coordinate_transformation_mode=a["coordinate_transformation_mode"],
         nearest_mode=a["nearest_mode"])


_EMIT = {"conv2d": _emit_conv, "conv_transpose2d": _emit_conv_transpose, "linear": _emit_linear,
         "add": _emit_add,
         "avgpool2d": _emit_avgpool, "maxpool2d": _emit_maxpool, "flatten": _emit_flatten,
         "activation_lut": _emit_activation, "mul": _emit_mul, "concat": _emit_concat,
         "concat_lut": _emit_concat, "resize_nearest": _emit_resize,
         "resize_linear": emit_resize_linear}

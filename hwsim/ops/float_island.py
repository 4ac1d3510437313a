"""A float island: ONNX float ops that ONNX Runtime runs in float32 between DequantizeLinear
and QuantizeLinear (HardSigmoid, HardSwish, squeeze-excite gates, BatchNormalization, ...),
kept in the integer program as one node that dequantizes its input codes, runs the ops in
float32 exactly as ONNX Runtime does (hwsim.kernels.float_island states each op's order) and
quantizes the result. On an accelerator this is work for the vector unit, in float: reports
mark these nodes "vector-unit / float island".

Attrs:
- ``nodes``: the ONNX nodes, in topological order, as ``{"name", "op", "inputs", "outputs",
  "attrs"}`` (ONNX attribute values; tensor names are the ONNX model's).
- ``inputs``: one ``{"tensor", "scale", "zero_point"}`` per node input: the ONNX tensor the
  DequantizeLinear of that input's codes produces, with its float32 scale and zero point.
- ``output``: the ONNX tensor the island's QuantizeLinear reads (quantized with ``out``).
- ``constants``: ``{"name", "dtype", "shape", "offset"}`` for float32 constants stored in the
  array ``constants`` (flat, from ``offset``), ``{"name", "dtype", "shape", "values"}`` for
  integer ones (shapes, axes).
- ``ort_batch``: the model's static batch (ONNX Runtime runs that many samples at a time), 0
  for a symbolic batch; ReduceMean's summation order depends on where rows sit in the tensor.
"""
from __future__ import annotations

import math

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node
from hwsim.ops._common import prepared

FLOAT_ISLAND_UNIT = "vector-unit / float island"
NOT_COSTED = (f"{FLOAT_ISLAND_UNIT}: float32 ops (dequantize, the ONNX float ops, quantize) of "
              "the vector unit, not a compute unit's MACs; the accelerator models do not price "
              "them yet (an island's ConvTranspose is priced, as an 8-bit transposed conv)")
_NODE_KEYS = ("name", "op", "inputs", "outputs", "attrs")


def constants(node: Node) -> dict[str, np.ndarray]:
    """The island's constants by ONNX tensor name (float32 from the array, integers inline)."""
    flat = node.arrays["constants"]
    out = {}
    for c in node.attrs["constants"]:
        shape = tuple(int(d) for d in c["shape"])
        if c["dtype"] == "float32":
            start = int(c["offset"])
            out[c["name"]] = flat[start:start + math.prod(shape)].reshape(shape)
        else:
            out[c["name"]] = np.asarray(c["values"], dtype=c["dtype"]).reshape(shape)
    return out


def _nodes(node: Node) -> list[dict]:
    """The ONNX nodes, ReduceMean's told the batch ONNX Runtime runs at once."""
    batch = int(node.attrs.get("ort_batch", 0))
    return [dict(n, attrs=dict(n["attrs"], ort_batch=batch)) if n["op"] == "ReduceMean" else n
            for n in node.attrs["nodes"]]


def _prepare(node: Node) -> tuple:
    return _nodes(node), constants(node)


def _run(node: Node, args: list, reference: bool) -> tuple:
    from hwsim.kernels.float_island import float_island

    nodes, consts = prepared(node, _prepare)
    out = node.out
    return float_island(args, nodes=nodes, inputs=node.attrs["inputs"], constants=consts,
                        output=node.attrs["output"], y_scale=np.float32(out.scale),
                        y_zero_point=out.zero_point, qmin=out.qmin, qmax=out.qmax,
                        reference=reference), None


def _check(node: Node) -> list[str]:
    from hwsim.kernels.float_island import FLOAT_OPS

    a, errs = node.attrs, []
    nodes, inputs, consts = a["nodes"], a["inputs"], a["constants"]
    if not isinstance(nodes, list) or not nodes:
        return [f"nodes must be a non-empty list of ONNX nodes; got {nodes!r:.80}"]
    if not isinstance(inputs, list) or len(inputs) != len(node.inputs):
        return [f"inputs must list one {{tensor, scale, zero_point}} per node input "
                f"({len(node.inputs)}); got {inputs!r:.80}"]
    known: set[str] = set()
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict) or set(spec) != {"tensor", "scale", "zero_point"}:
            errs.append(f"inputs[{i}] must be {{tensor, scale, zero_point}}; got {spec!r:.80}")
            continue
        s = spec["scale"]
        if not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
            errs.append(f"inputs[{i}] scale must be finite and positive; got {s!r}")
        if isinstance(spec["zero_point"], bool) or not isinstance(spec["zero_point"], int):
            errs.append(f"inputs[{i}] zero_point must be an int; got {spec['zero_point']!r}")
        known.add(spec["tensor"])
    flat = node.arrays["constants"]
    if flat.dtype != np.float32 or flat.ndim != 1:
        errs.append(f"the constants array must be 1-D float32; got {flat.dtype} {flat.shape}")
    for c in consts if isinstance(consts, list) else [consts]:
        if not isinstance(c, dict) or not {"name", "dtype", "shape"} <= set(c):
            errs.append(f"a constant must be {{name, dtype, shape, offset | values}}; got "
                        f"{c!r:.80}")
            continue
        size = math.prod(int(d) for d in c["shape"])
        if c["dtype"] == "float32":
            off = c.get("offset")
            if not isinstance(off, int) or off < 0 or off + size > flat.size:
                errs.append(f"constant {c['name']!r}: offset {off!r} + {size} values lie "
                            f"outside the constants array ({flat.size})")
        elif c["dtype"] not in ("int64", "int32") or np.size(c.get("values")) != size:
            errs.append(f"constant {c['name']!r}: integer constants need dtype int64/int32 "
                        f"and {size} values")
        known.add(c["name"])
    for n in nodes:
        if not isinstance(n, dict) or set(n) != set(_NODE_KEYS):
            errs.append(f"an island node must be {{{', '.join(_NODE_KEYS)}}}; got {n!r:.80}")
            continue
        label = f"island node {n['name']!r} ({n['op']})"
        spec = FLOAT_OPS.get(n["op"])
        if spec is None:
            errs.append(f"{label}: op not supported in float islands; supported: "
                        f"{', '.join(sorted(FLOAT_OPS))}")
        elif not spec.fewest <= len(n["inputs"]) <= spec.most:
            errs.append(f"{label}: takes {spec.fewest} to {spec.most} inputs, got "
                        f"{len(n['inputs'])}")
        missing = [t for t in n["inputs"] if t and t not in known]
        if missing:
            errs.append(f"{label}: inputs {missing} are neither island inputs, constants nor "
                        "outputs of earlier island nodes")
        if len(n["outputs"]) != 1:
            errs.append(f"{label}: must have one output; got {n['outputs']}")
        known.update(n["outputs"])
    if a["output"] not in known:
        errs.append(f"output {a['output']!r} is computed by no island node")
    batch = a.get("ort_batch", 0)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        errs.append(f"ort_batch must be an int >= 0; got {batch!r}")
    return errs


def _island_layers(program, node: Node, batch: int) -> list:
    """The island's ConvTranspose nodes as cost-model layers (`conv_transpose_layer`: the GEMM
    of the scatter form), priced at the island input's code width and 8-bit weights, what an
    accelerator running the quantized model would do (ONNX Runtime runs them in float32). A
    ConvTranspose whose input is not one of the island's dequantized inputs has no known shape
    here: WorkloadError naming it, never dropped."""
    from hwsim.errors import WorkloadError
    from hwsim.workloads.conv_transpose import conv_transpose_layer

    layers = []
    sources = {spec["tensor"]: i for i, spec in enumerate(node.attrs["inputs"])}
    consts = None
    for n in node.attrs["nodes"]:
        if n["op"] != "ConvTranspose":
            continue
        consts = constants(node) if consts is None else consts
        x_tensor, w_tensor = n["inputs"][0], n["inputs"][1]
        if x_tensor not in sources or w_tensor not in consts:
            raise WorkloadError(f"node {node.name!r} (float_island): ConvTranspose "
                                f"{n['name']!r} reads {x_tensor!r} / {w_tensor!r}, not an island "
                                "input and a constant weight: its shape is not known here, so "
                                "it cannot be priced")
        src = program.node(node.inputs[sources[x_tensor]])
        _, c, h, w = (int(d) for d in src.out_shape)
        wshape = consts[w_tensor].shape
        groups = int(n["attrs"].get("group", 1))
        layers.append(conv_transpose_layer(
            f"{node.name}/{n['name'].lstrip('/')}", batch=batch, in_h=h, in_w=w, in_channels=c,
            out_channels=int(wshape[1]) * groups, kernel=tuple(wshape[2:4]), groups=groups,
            act_bits=int(src.out.bits), weight_bits=8))
    return layers


register_op(OpDef(
    "float_island", None, ("nodes", "inputs", "output", "constants"), ("constants",),
    "ONNX float ops run in float32 as ONNX Runtime runs them (a float island): x_i = "
    "f32(f32(c_i - zp_i) · s_i); the nodes in order (hwsim.kernels.float_island); y = "
    "saturate(round_half_even(f32(out / s_y)) + zp_y).",
    lambda node, args: _run(node, args, False),
    lambda node, args: _run(node, args, True),
    optional_attrs=("ort_batch", "onnx_ops"), check=_check, workload=_island_layers,
    not_costed=NOT_COSTED))

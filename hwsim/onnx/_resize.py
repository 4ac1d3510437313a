"""ONNX Resize (opset 11+) on quantized tensors.

Mode "nearest": on codes in QOperator form (quantize_static leaves Resize on the 8-bit tensor),
and DequantizeLinear -> Resize -> QuantizeLinear with the same parameters in QDQ form (ONNX
Runtime drops that Q/DQ pair). It moves codes, so it is exact whatever the engine: a
`resize_nearest` node.

Mode "linear" (bilinear, `hwsim.kernels.resize_linear_ort`):
- QDQ form: ONNX Runtime keeps DequantizeLinear -> Resize -> QuantizeLinear and interpolates in
  float32 (the same formula in NCHW and NHWC): a float island (`_float_island`).
- QOperator form: Resize runs on the codes, with a kernel that depends on the layout ONNX
  Runtime's NHWC transformer gives the node: NhwcUpsampleBilinearInteger (10-bit integer
  weights, truncating) in NHWC, a float formula truncated to the code type in NCHW. Measured
  (onnxruntime 1.32): a Resize whose codes all come from QLinearConv outputs, directly or
  through QLinearAdd / QLinearMul / QLinearConcat / QLinearLeakyRelu / QLinearSigmoid /
  QLinearAveragePool / MaxPool / Resize, runs in NHWC; a QLinearConcat of conv codes and the
  quantized model input runs it in NCHW. Cases other than the first are refused (the layout
  is not pinned). The node is a `float_island` holding the Resize on the codes
  (input scale 1, zero point 0); its note and the Resize's attrs["hwsim_kernel"] name the
  ONNX Runtime kernel.
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels import nearest_indices
from hwsim.onnx._model import attributes
from hwsim.onnx._values import CODE_DTYPES, Dequantized, FloatOp, QTensor

_DEFAULTS = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
             "nearest_mode": "round_prefer_floor", "antialias": 0,
             "keep_aspect_ratio_policy": "stretch"}


def resize(imp, node, ins):
    """Resize handler: on codes (QOperator); on a dequantized tensor, mode "linear" (or a
    Resize read by float ops) starts a float island, and mode "nearest" read by QuantizeLinear
    only waits for it (that folds it: only the data operand is kept, so that ONNX Runtime's
    dropping of the Q/DQ pair is followed)."""
    if isinstance(ins[0], Dequantized):
        if _opset(imp) < 11:
            raise imp.model.fail(node, "Resize before opset 11 is not supported")
        readers = [n.op_type for n in imp.model.graph.node if node.output[0] in n.input]
        if attributes(node).get("mode", "nearest") == "linear" or \
                any(op != "QuantizeLinear" for op in readers):
            from hwsim.onnx import _float_island  # it imports this module
            return [_float_island.extend(imp, node, ins)]
        return [FloatOp(node, (ins[0],))]
    return [emit_resize(imp, node, imp.activation(node, ins[0], "X"), ins[1:], node.output[0])]


def _opset(imp) -> int:
    return next((int(o.version) for o in imp.model.proto.opset_import
                 if o.domain in ("", "ai.onnx")), 11)


def emit_resize(imp, node, x: QTensor, params: list, out_name: str) -> QTensor:
    """The resize_nearest node of Resize(x, roi, scales, sizes)."""
    if _opset(imp) < 11:
        raise imp.model.fail(node, "Resize before opset 11 is not supported")
    if not params:  # a folded nearest Resize (`resize`): its constants by name
        params = [imp.value(node, name) for name in node.input[1:]]
    attrs = {**_DEFAULTS, **attributes(node)}
    if attrs["mode"] == "linear":
        return _emit_linear_codes(imp, node, x, list(params), out_name, attrs)
    for key in ("mode", "antialias", "keep_aspect_ratio_policy"):
        if attrs[key] != _DEFAULTS[key]:
            raise imp.model.fail(node, f"only {key}={_DEFAULTS[key]!r} is supported; got "
                                 f"{attrs[key]!r}")
    if "axes" in attrs:
        raise imp.model.fail(node, "the 'axes' attribute is not supported")
    if len(x.shape) != 4:
        raise imp.model.fail(node, f"only (N, C, H, W) inputs are supported; got {x.shape}")
    _, scales, sizes = (list(params) + [None, None, None])[:3]
    n, c, h, w = x.shape
    if sizes is not None and np.asarray(imp.constant(node, sizes, "sizes")).size:
        sizes = [int(v) for v in np.asarray(imp.constant(node, sizes, "sizes")).reshape(-1)]
        if len(sizes) != 4:
            raise imp.model.fail(node, f"sizes must have 4 entries; got {sizes}")
        s = [np.float32(o) / np.float32(i) for o, i in zip(sizes, x.shape)]
        out = sizes
    elif scales is not None:
        s = [np.float32(v) for v in np.asarray(imp.constant(node, scales, "scales")).reshape(-1)]
        if len(s) != 4:
            raise imp.model.fail(node, f"scales must have 4 entries; got {s}")
        out = [int(np.floor(np.float32(d) * v)) for d, v in zip(x.shape, s)]
    else:
        raise imp.model.fail(node, "either scales or sizes must be given")
    if s[0] != 1 and sizes is None or out[1] != c or min(out[2:]) < 1:  # sizes fix N: not read
        raise imp.model.fail(node, f"only H and W may be resized, to at least 1; {x.shape} -> "
                             f"{tuple(out)}")
    mode, nearest = attrs["coordinate_transformation_mode"], attrs["nearest_mode"]
    try:
        rows = nearest_indices(h, out[2], s[2], mode, nearest)
        cols = nearest_indices(w, out[3], s[3], mode, nearest)
    except Exception as exc:  # an unknown mode: the kernel's message names it
        raise imp.model.fail(node, str(exc).replace("resize: ", "")) from None
    node_attrs = {"scales": [float(s[2]), float(s[3])], "coordinate_transformation_mode": mode,
                  "nearest_mode": nearest}
    return imp.builder._emit(node, out_name, "resize_nearest", (x.node,), (n, c, out[2], out[3]),
                             x.quant, node_attrs, {"rows": rows, "cols": cols})


# --- mode "linear" on codes (QOperator) ---------------------------------------------------------

_NHWC_SOURCES = {"QLinearConv"}  # measured: their output feeds Resize in NHWC
# ops the NHWC layout passes through (measured), with their data inputs (None: every third
# input from 2, QLinearConcat's)
_NHWC_PASSES = {"QLinearAdd": (0, 3), "QLinearMul": (0, 3), "QLinearConcat": None,
                "QLinearLeakyRelu": (0,), "QLinearSigmoid": (0,), "QLinearAveragePool": (0,),
                "MaxPool": (0,), "Resize": (0,)}


def _code_sources(imp, name: str, producer: dict, seen: set) -> set[str]:
    """The op types (or "the model input") where the codes of tensor `name` start, followed
    back through `_NHWC_PASSES` ops; constants are left out."""
    if name in imp.model.constants:
        return set()
    p = producer.get(name)
    if p is None:
        return {"the model input"}
    if p.op_type not in _NHWC_PASSES:
        return {p.op_type}
    if id(p) in seen:
        return set()
    seen.add(id(p))
    slots = _NHWC_PASSES[p.op_type]
    slots = range(2, len(p.input), 3) if slots is None else slots
    return set().union(*(_code_sources(imp, p.input[i], producer, seen)
                         for i in slots if i < len(p.input) and p.input[i]))


def _ort_code_kernel(imp, node) -> str:
    """The ONNX Runtime kernel of a bilinear Resize on codes (module docstring), or a refusal.
    Measured: codes that all start at QLinearConv outputs reach Resize in NHWC; a QLinearConcat
    joining them with the quantized model input runs Resize in NCHW (not pinned in general)."""
    producer = {o: n for n in imp.model.graph.node for o in n.output}
    sources = _code_sources(imp, node.input[0], producer, set())
    if sources and sources <= _NHWC_SOURCES:
        return "nhwc_integer"
    what = ", ".join(sorted(s if s.startswith("the ") else f"a {s}" for s in sources))
    raise imp.model.fail(node, f"a bilinear Resize on codes that come from {what}: the layout "
                         "ONNX Runtime runs it in (NHWC integer or NCHW float kernel) is not "
                         "pinned; supported: codes that all come from QLinearConv outputs, "
                         "directly or through " + ", ".join(sorted(_NHWC_PASSES)))


def _emit_linear_codes(imp, node, x: QTensor, params: list, out_name: str, attrs: dict
                       ) -> QTensor:
    """A float_island node holding the Resize on codes, then (code - zp) · scale, which the
    island's QuantizeLinear (with x's parameters) maps back to the same codes exactly."""
    from hwsim.errors import KernelError
    from hwsim.kernels.float_island import float_island
    from hwsim.onnx._float_island import _pack

    if x.dtype not in CODE_DTYPES or len(x.shape) != 4:
        raise imp.model.fail(node, f"a bilinear Resize takes (N, C, H, W) uint8/int8 codes; got "
                             f"{x.dtype} {x.shape}")
    kernel = _ort_code_kernel(imp, node)
    q = x.quant
    consts = [(name, imp.constant(node, v, what))
              for name, v, what in zip(node.input[1:], params, ("roi", "scales", "sizes"))
              if name and v is not None]
    name = node.name or out_name
    zp_c, s_c, codes_t = f"{name}.hwsim_zero_point", f"{name}.hwsim_scale", f"{name}.hwsim_codes"
    consts += [(zp_c, np.float32(q.zero_point)), (s_c, np.float32(q.scale))]
    island_attrs = {k: v for k, v in attributes(node).items()}
    island_attrs.update(hwsim_kernel=kernel, hwsim_code_range=[int(q.qmin), int(q.qmax)])
    nodes = [{"name": name, "op": "Resize", "inputs": list(node.input), "outputs": [codes_t],
              "attrs": island_attrs},
             {"name": f"{name}.centre", "op": "Sub", "inputs": [codes_t, zp_c],
              "outputs": [f"{name}.centred"], "attrs": {}},
             {"name": f"{name}.scale", "op": "Mul", "inputs": [f"{name}.centred", s_c],
              "outputs": [out_name], "attrs": {}}]
    spec = [{"tensor": node.input[0], "scale": 1.0, "zero_point": 0}]
    described, flat = _pack(consts)
    try:
        probe = float_island([np.full(x.shape, q.zero_point, np.int64)], nodes=nodes,
                             inputs=spec, constants=dict(consts), output=out_name,
                             y_scale=np.float32(q.scale), y_zero_point=q.zero_point,
                             qmin=q.qmin, qmax=q.qmax)
    except KernelError as exc:
        raise imp.model.fail(node, str(exc)) from None
    ort_name = {"nhwc_integer": "NhwcUpsampleBilinearInteger (NHWC)",
                "nchw_cast": "UpsampleBilinear<8-bit> (NCHW)"}[kernel]
    node_attrs = {"nodes": nodes, "inputs": spec, "output": out_name, "constants": described,
                  "ort_batch": 0, "onnx_ops": ["Resize"],
                  "note": "ONNX Resize (linear) on codes as ONNX Runtime's " + ort_name +
                          " computes it; the codes keep their scale and zero point"}
    return imp.builder._emit(node, out_name, "float_island", (x.node,), probe.shape, q,
                             node_attrs, {"constants": flat})


HANDLERS = {("", "Resize"): (resize, 1, 4)}

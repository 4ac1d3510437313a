"""torch ``nn.Module`` -> ``LayerGraph`` via torch.fx symbolic tracing and shape propagation.

What is captured (see ``LayerRecord`` for attributes):

* Conv2d (zeros padding; stride, dilation, groups) -> conv2d; Linear on (N, F) -> linear.
* ConvTranspose2d (zeros padding; stride, padding, output_padding, dilation, groups; not called
  with output_size) -> conv_transpose2d, its weight stored output-channel major (LayerRecord).
  F.conv2d / F.conv_transpose2d with a parameter (or constant) weight and bias -> the same
  records as the modules.
* BatchNorm2d is folded into the conv2d / conv_transpose2d it directly follows (per output
  channel), when it is that conv's only consumer (and has no fused activation); any other
  BatchNorm2d of an (N, C, H, W) tensor is a per-channel affine step (below).
* Per-channel affine steps ``a_c x + b_c``: a standalone BatchNorm2d, and tensor * + - / a
  constant (a Python number, or a parameter / buffer / tensor constant that broadcasts over the
  channel axis only: a scalar, (C, 1, 1) or (1, C, 1, 1)); ``c - x`` too, ``c / x`` is not
  affine.  Folded into the conv2d / conv_transpose2d (or, on (N, F), linear) producing x when
  it is that layer's only consumer and has no fused activation, else a depthwise 1x1 conv2d
  record (groups C, weight a (C, 1, 1, 1), bias b): the existing integer kernels, verification
  and cost.  Other constant operands: a constant record (below).
* ReLU / ReLU6 / Hardtanh / F.relu / F.relu6 / F.hardtanh / clamp: fused into the producing
  conv2d / linear / add as ``activation`` when that producer has no other consumer; otherwise a
  standalone ``clamp`` record.
* tensor + tensor (operator.add, torch.add, Tensor.add) -> add (same shapes, alpha 1); a
  constant operand is a per-channel affine step (above).  tensor - tensor (operator.sub,
  torch.sub, Tensor.sub) -> sub (same shapes, alpha 1).
* Any other constant operand of * + - / (a full-tensor constant such as a detection head's
  anchor grid, or a scalar / per-channel constant on a tensor that is not (N, C, H, W) and does
  not fold into its producer) -> a ``constant`` record (its value broadcast to the tensor's shape
  after the batch, quantized like an activation; one record per distinct value) and add / sub /
  mul of two tensors:
  ``x + C``, ``C + x``, ``x - C`` (add of -C), ``C - x`` (sub), ``x * C``, ``x / C`` (mul by
  1/C).  ``C / x`` and a constant varying over the batch raise ``UnsupportedOpError``.
* MaxPool2d / AvgPool2d / AdaptiveAvgPool2d (output 1×1 -> global avgpool2d; other output sizes
  only when they divide the input evenly) and their functional forms.
* torch.flatten / nn.Flatten / Tensor.flatten, and view / reshape to (N, -1) -> flatten.
* torch.cat -> concat.  Dropout (eval mode), Identity and contiguous() are removed.
* torch.split / torch.chunk / Tensor.split / Tensor.chunk along a dim after the batch: each
  output read (``getitem``) -> slice (``axis``, ``start``, ``stop``); basic slicing
  ``x[:, a:b]`` of one dim after the batch with step 1 -> slice (a full slice is the tensor).
* nn.LocalResponseNorm / F.local_response_norm of an (N, C, H, W) tensor -> lrn (``size``,
  ``alpha``, ``beta``, ``k``): run in float on a vector unit, like layernorm.
* Transformer blocks: Linear on (T, F) token rows, torch.matmul / ``@`` / Tensor.matmul of two
  activations -> matmul; LayerNorm over the last dim -> layernorm; nn.GELU / F.gelu -> gelu;
  F.softmax / torch.softmax / Tensor.softmax -> softmax; view / reshape to other shapes ->
  reshape (first dim -1); Tensor.transpose / permute / torch.transpose -> transpose.
* Element-wise nonlinearities -> pointwise (attrs ``fn``): nn.Sigmoid / torch.sigmoid /
  Tensor.sigmoid, nn.Hardsigmoid / F.hardsigmoid, nn.Hardswish / F.hardswish, nn.SiLU / F.silu,
  nn.Tanh / torch.tanh / Tensor.tanh.  Quantized, each is a lookup table over the input codes
  (``quant.pointwise``).
* tensor * tensor (operator.mul, torch.mul, Tensor.mul) -> mul, with numpy broadcasting between
  operands of equal rank and batch dimension (a squeeze-excite gate (N, C, 1, 1) times the
  feature map (N, C, H, W)); ``Tensor.expand_as`` / ``expand`` feeding only such products is the
  same broadcast and is looked through.  A ReLU / clamp after a mul fuses into it.  Multiplying
  by a constant is a per-channel affine step (above).
* F.interpolate / nn.Upsample / nn.UpsamplingNearest2d / nn.UpsamplingBilinear2d of an
  (N, C, H, W) tensor -> resize.  Mode "nearest" / "nearest-exact": the source row and column
  of every output position, read off torch's own interpolation of an index grid, and the same
  indices in ONNX Resize's terms (``scales``, coordinate transformation "asymmetric" /
  "tf_half_pixel_for_nn", nearest mode "floor").  Mode "bilinear" (align_corners False or
  True): the call's arguments, ``scales`` and the coordinate transformation ("half_pixel" /
  "align_corners") from which the integer program derives its taps.  Other modes (bicubic,
  area, ...) and antialias raise ``UnsupportedOpError``.
* Tensor.unsqueeze / torch.unsqueeze (not of the batch dim) -> reshape.
* ``torch.ao.quantization.QuantStub`` -> a clamp record with infinite bounds: an explicit
  requantization point, so one tensor can feed its consumers in two formats (e.g. a 16-bit
  residual stream and an 8-bit copy for the matmuls).

Anything else raises ``UnsupportedOpError`` naming the op and the module path.  The model is put
in eval mode while tracing (so BatchNorm statistics are not updated) and its per-module training
flags are restored afterwards.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
from torch import fx, nn
from torch.ao.quantization import QuantStub
from torch.fx.passes.shape_prop import ShapeProp

from quant._capture_affine_ops import AffineOps
from quant._capture_args import bind, conv_padding, pair, to_numpy_f32
from quant._capture_conv import ConvOps
from quant._capture_core import _Rec, _tensor_meta
from quant._capture_kinds import (_FUNC_KINDS, _METHOD_KINDS, _POINTWISE_MODULES, _SELF_BINDING,
                                  _UPSAMPLE_MODULES)
from quant._capture_math import MathOps
from quant._capture_shape import RESIZE_MODES, ShapeOps  # noqa: F401 (re-export)
from quant.errors import UnsupportedOpError
from quant.graph import POINTWISE_FNS, LayerGraph, LayerRecord


class _Capture(ShapeOps, AffineOps, ConvOps, MathOps):
    """Walks a shape-propagated fx graph once, building records: dispatches every fx node to
    the handler of its op family (the bases), whose bookkeeping is ``CaptureCore``."""

    def module(self, node: fx.Node) -> None:
        path = str(node.target)
        m = self.gm.get_submodule(path)
        arg = node.args[0]
        mtype = type(m)
        if self.is_passthrough(node):
            self.alias[node] = self.src(node, arg)
        elif mtype is nn.Conv2d:
            if m.padding_mode != "zeros":
                raise self.unsupported(node, f"padding_mode={m.padding_mode!r}, expected 'zeros'")
            attrs = {"stride": pair(m.stride), "padding": conv_padding(m),
                     "dilation": pair(m.dilation), "groups": int(m.groups)}
            self.add(node, self.unique(path), "conv2d", (self.src(node, arg),), attrs=attrs,
                     weight=to_numpy_f32(m.weight), bias=to_numpy_f32(m.bias))
        elif mtype is nn.ConvTranspose2d:
            self.conv_transpose(node, path, m, arg)
        elif mtype is nn.Linear:
            if len(self.shape(arg)) != 2:
                raise self.unsupported(node, f"Linear on a tensor of shape {self.shape(arg)}; "
                                             "only (N, features) (tokens as rows)")
            self.add(node, self.unique(path), "linear", (self.src(node, arg),),
                     weight=to_numpy_f32(m.weight), bias=to_numpy_f32(m.bias))
        elif mtype is nn.BatchNorm2d:
            self.batchnorm(node, m)
        elif mtype is nn.ReLU:
            self.activation(node, arg, 0.0, float("inf"), self.unique(path))
        elif mtype in (nn.ReLU6, nn.Hardtanh):
            self.activation(node, arg, m.min_val, m.max_val, self.unique(path))
        elif mtype is nn.MaxPool2d:
            a = {"input": arg, "kernel_size": m.kernel_size, "stride": m.stride,
                 "padding": m.padding, "dilation": m.dilation, "ceil_mode": m.ceil_mode,
                 "return_indices": m.return_indices}
            self.pool(node, self.unique(path), "max_pool2d", a)
        elif mtype is nn.AvgPool2d:
            a = {"input": arg, "kernel_size": m.kernel_size, "stride": m.stride,
                 "padding": m.padding, "ceil_mode": m.ceil_mode,
                 "count_include_pad": m.count_include_pad, "divisor_override": m.divisor_override}
            self.pool(node, self.unique(path), "avg_pool2d", a)
        elif mtype is nn.AdaptiveAvgPool2d:
            self.adaptive_avg(node, self.unique(path), arg, m.output_size)
        elif mtype is nn.Flatten:
            self.flatten(node, self.unique(path), arg, m.start_dim, m.end_dim)
        elif isinstance(m, QuantStub):  # an explicit requantization point (identity in float)
            self.add(node, self.unique(path), "clamp", (self.src(node, arg),),
                     attrs={"min": float("-inf"), "max": float("inf")})
        elif mtype is nn.LayerNorm:
            if len(m.normalized_shape) != 1 or m.normalized_shape[0] != self.shape(arg)[-1]:
                raise self.unsupported(node, f"LayerNorm over {tuple(m.normalized_shape)}; only "
                                             "over the last dim")
            if not m.elementwise_affine:
                raise self.unsupported(node, "LayerNorm without elementwise_affine")
            self.add(node, self.unique(path), "layernorm", (self.src(node, arg),),
                     attrs={"eps": float(m.eps)}, weight=to_numpy_f32(m.weight),
                     bias=to_numpy_f32(m.bias))
        elif mtype is nn.GELU:
            self.add(node, self.unique(path), "gelu", (self.src(node, arg),),
                     attrs={"approximate": str(m.approximate)})
        elif mtype is nn.Softmax:
            self.add(node, self.unique(path), "softmax", (self.src(node, arg),),
                     attrs={"dim": int(m.dim) % len(self.shape(node))})
        elif mtype in _POINTWISE_MODULES:
            self.pointwise(node, self.unique(path), _POINTWISE_MODULES[mtype], arg)
        elif mtype is nn.LocalResponseNorm:
            self.lrn(node, self.unique(path), arg, m.size, m.alpha, m.beta, m.k)
        elif mtype in _UPSAMPLE_MODULES:
            a = {"input": arg, "size": m.size, "scale_factor": m.scale_factor, "mode": m.mode,
                 "align_corners": m.align_corners,
                 "recompute_scale_factor": m.recompute_scale_factor, "antialias": False}
            self.interpolate(node, self.unique(path), a)
        else:
            raise self.unsupported(node)

    def function(self, node: fx.Node, kind: str, a: dict) -> None:
        name_kind = {"max_pool2d": "maxpool", "avg_pool2d": "avgpool", "interpolate": "resize",
                     "adaptive_avg_pool2d": "avgpool", "relu6": "relu6", "hardtanh": "hardtanh"}
        name = self.func_name(node, name_kind.get(kind, kind))
        if kind in ("relu", "relu6", "hardtanh", "clamp"):
            lo, hi = {"relu": (0.0, float("inf")), "relu6": (0.0, 6.0),
                      "hardtanh": (a.get("min_val"), a.get("max_val")),
                      "clamp": (a.get("min"), a.get("max"))}[kind]
            bounds = (lo, hi)
            if any(isinstance(b, fx.Node) for b in bounds):
                raise self.unsupported(node, "clamp with tensor bounds")
            lo = -np.inf if lo is None else lo
            hi = np.inf if hi is None else hi
            self.activation(node, a["input"], lo, hi, name)
        elif kind == "dropout":
            if a["training"]:
                raise self.unsupported(node, "dropout with training=True (call model.eval() "
                                             "or pass training=self.training)")
            self.alias[node] = self.src(node, a["input"])
        elif kind in ("add", "mul", "sub", "div") and self.affine(node, name, kind, a):
            return
        elif kind == "sub":
            self.add_op(node, name, a, "sub")
        elif kind == "div":
            raise self.unsupported(node, "div of two tensors; only a tensor divided by a "
                                         "constant is captured")
        elif kind == "add":
            self.add_op(node, name, a)
        elif kind in ("conv2d", "conv_transpose2d"):
            self.functional_conv(node, name, kind, a)
        elif kind == "lrn":
            self.lrn(node, name, a["input"], a["size"], a["alpha"], a["beta"], a["k"])
        elif kind == "cat":
            rank = len(self.shape(node))
            srcs = tuple(self.src(node, t) for t in a["tensors"])
            self.add(node, name, "concat", srcs, attrs={"axis": int(a["dim"]) % rank})
        elif kind == "flatten":
            self.flatten(node, name, a["input"], int(a["start_dim"]), int(a["end_dim"]))
        elif kind in ("max_pool2d", "avg_pool2d"):
            self.pool(node, name, kind, a)
        elif kind == "adaptive_avg_pool2d":
            self.adaptive_avg(node, name, a["input"], a["output_size"])
        elif kind == "reshape":
            self.reshape(node, name, node.args[0])  # type: ignore[arg-type]
        elif kind in ("transpose", "permute"):
            self.transpose(node, name, kind)
        elif kind == "matmul":
            self.matmul(node, name)
        elif kind == "softmax":
            self.softmax(node, name)
        elif kind == "gelu":
            a = bind("gelu", node.args, dict(node.kwargs))
            self.add(node, name, "gelu", (self.src(node, a["input"]),),
                     attrs={"approximate": str(a["approximate"])})
        elif kind in POINTWISE_FNS:
            self.pointwise(node, name, kind, a["input"])
        elif kind == "mul":
            self.mul_op(node, name, a)
        elif kind == "interpolate":
            self.interpolate(node, name, a)
        elif kind == "unsqueeze":
            self.unsqueeze(node, name, a)
        else:  # pragma: no cover - every kind in the tables is handled above
            raise self.unsupported(node)

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if self.input_name is not None:
                raise self.unsupported(node, "models with more than one input")
            self.input_name = self.unique(node.name)
            self.add(node, self.input_name, "input", ())
        elif node.op == "call_module":
            self.module(node)
        elif node.op in ("call_function", "call_method"):
            if node.target is operator.getitem and isinstance(node.args[0], fx.Node) and (
                    node.args[0] in self.splits or _tensor_meta(node) is not None):
                self.getitem(node)
                return
            if _tensor_meta(node) is None and node.target in (
                    "size", getattr, operator.getitem, operator.mul, operator.floordiv):
                return  # shape arithmetic (x.size(0), x.shape[0], c * h) feeding a reshape
            if node.op == "call_function":
                kind = _FUNC_KINDS.get(node.target)  # type: ignore[arg-type]
                arg_kind = {"relu6": "relu", "max_pool2d": "max_pool2d"}.get(kind, kind)
            else:
                kind = _METHOD_KINDS.get(str(node.target))
                arg_kind = kind
            if kind in POINTWISE_FNS:
                arg_kind = "pointwise"
            if kind is None:
                raise self.unsupported(node)
            if kind == "identity":
                self.alias[node] = self.src(node, node.args[0])
                return
            if kind == "expand":
                self.expand(node)
                return
            if kind in ("split", "chunk"):
                self.split(node)
                return
            a = ({} if kind in _SELF_BINDING else bind(arg_kind, node.args, dict(node.kwargs)))
            self.function(node, kind, a)
        elif node.op == "get_attr":  # read by its consumers (weights, affine constants)
            self.consts[node] = _attr_value(self.gm, str(node.target))


def _attr_value(gm: fx.GraphModule, target: str) -> torch.Tensor:
    obj: object = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, torch.Tensor):
        raise UnsupportedOpError(f"get_attr {target!r} is a {type(obj).__name__}, not a tensor")
    return obj


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping QuantStub as a module call (fx would trace through it)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, QuantStub) or super().is_leaf_module(m, qualname)


def _freeze(rec: _Rec) -> LayerRecord:
    return LayerRecord(name=rec.name, op=rec.op, inputs=rec.inputs, module_path=rec.module_path,
                       attrs=dict(rec.attrs), weight=rec.weight, bias=rec.bias,
                       activation=rec.activation, out_shape=rec.out_shape)


def capture(model: nn.Module, example_input: torch.Tensor) -> LayerGraph:
    """Trace ``model`` with torch.fx and return its ``LayerGraph``.

    Args:
        model: a torch module built from the supported ops (see module docstring).
        example_input: float tensor (N, C, H, W) or (N, F); sets every record's ``out_shape``.

    Raises:
        UnsupportedOpError: an op or configuration that has no record; names op and module path.
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedOpError(f"capture expects a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise UnsupportedOpError("capture expects example_input to be a torch.Tensor; got "
                                 f"{type(example_input).__name__}")
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        try:
            gm = fx.GraphModule(model, _Tracer().trace(model))
        except Exception as exc:  # fx raises many types for data-dependent control flow
            raise UnsupportedOpError(
                f"torch.fx could not trace {type(model).__name__}: {exc}") from exc
        with torch.no_grad():
            ShapeProp(gm).propagate(example_input.detach().to(torch.float32))
        cap = _Capture(gm)
        output_name = None
        for node in gm.graph.nodes:
            if node.op == "output":
                out = node.args[0]
                if not isinstance(out, fx.Node):
                    raise UnsupportedOpError(
                        f"model output must be a single tensor; got {type(out).__name__}")
                output_name = cap.src(node, out)
            else:
                cap.visit(node)
    finally:
        for m, flag in flags.items():
            m.training = flag
    if cap.input_name is None or output_name is None:
        raise UnsupportedOpError("the traced graph has no input or no output")
    records = {name: _freeze(rec) for name, rec in cap.recs.items()}
    return LayerGraph(records=records, input_name=cap.input_name, output_name=output_name)


__all__ = ["capture"]

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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.ao.quantization import QuantStub
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from quant._capture_affine import (affine_of, batchnorm_affine, channel_vector, depthwise_weight,
                                   fold_affine)
from quant._capture_args import (bind, conv_padding, fold_batchnorm, pads4, pair, to_numpy_f32,
                                 transposed_to_output_major)
from quant.errors import UnsupportedOpError
from quant.graph import FUSABLE_OPS, POINTWISE_FNS, LayerGraph, LayerRecord

_DROPOUT_FUNCS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout)
_FUNC_KINDS: dict[Callable, str] = {
    operator.add: "add", operator.iadd: "add", torch.add: "add",
    operator.sub: "sub", operator.isub: "sub", torch.sub: "sub", torch.subtract: "sub",
    operator.truediv: "div", operator.itruediv: "div", torch.div: "div", torch.divide: "div",
    F.conv2d: "conv2d", F.conv_transpose2d: "conv_transpose2d",
    torch.split: "split", torch.chunk: "chunk", F.local_response_norm: "lrn",
    torch.relu: "relu", F.relu: "relu", F.relu6: "relu6", F.hardtanh: "hardtanh",
    torch.clamp: "clamp", torch.clip: "clamp",
    torch.flatten: "flatten", torch.cat: "cat", torch.concat: "cat",
    F.max_pool2d: "max_pool2d", F.avg_pool2d: "avg_pool2d",
    F.adaptive_avg_pool2d: "adaptive_avg_pool2d",
    torch.matmul: "matmul", operator.matmul: "matmul", torch.bmm: "matmul",
    F.gelu: "gelu", F.softmax: "softmax", torch.softmax: "softmax",
    torch.transpose: "transpose", torch.permute: "permute",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh",
    F.hardsigmoid: "hardsigmoid", F.hardswish: "hardswish", F.silu: "silu",
    F.interpolate: "interpolate", torch.unsqueeze: "unsqueeze",
    **{f: "dropout" for f in _DROPOUT_FUNCS},
}
_METHOD_KINDS = {
    "relu": "relu", "relu_": "relu", "clamp": "clamp", "clamp_": "clamp", "clip": "clamp",
    "clip_": "clamp", "add": "add", "add_": "add", "flatten": "flatten", "view": "reshape",
    "reshape": "reshape", "contiguous": "identity", "matmul": "matmul", "softmax": "softmax",
    "transpose": "transpose", "permute": "permute", "mul": "mul", "mul_": "mul",
    "sigmoid": "sigmoid", "tanh": "tanh", "unsqueeze": "unsqueeze", "expand_as": "expand",
    "expand": "expand", "split": "split", "chunk": "chunk", "sub": "sub", "sub_": "sub",
    "div": "div", "div_": "div",
}
# Kinds whose handler reads node.args itself.
_SELF_BINDING = ("reshape", "transpose", "permute", "matmul", "softmax", "gelu", "expand",
                 "split", "chunk")
_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_POINTWISE_MODULES: dict[type, str] = {nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid",
                                       nn.Hardswish: "hardswish", nn.SiLU: "silu",
                                       nn.Tanh: "tanh"}
_UPSAMPLE_MODULES = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
# interpolate modes with an integer lowering -> ONNX Resize's coordinate transformation giving
# the same source indices (with nearest_mode "floor")
RESIZE_MODES = {"nearest": "asymmetric", "nearest-exact": "tf_half_pixel_for_nn",
                "bilinear": "half_pixel"}


@dataclass
class _Rec:
    """Mutable record under construction; ``tail`` is the fx node whose value it outputs."""

    name: str
    op: str
    inputs: tuple[str, ...]
    module_path: str
    tail: fx.Node
    attrs: dict = field(default_factory=dict)
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    activation: tuple[float, float] | None = None
    out_shape: tuple[int, ...] = ()


def _tensor_meta(node: fx.Node) -> TensorMetadata | None:
    meta = node.meta.get("tensor_meta")
    return meta if isinstance(meta, TensorMetadata) else None


def _module_path_of(node: fx.Node) -> str:
    """Dotted path of the module a functional node was called from ("" = the root)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack)) if stack else ""


def _op_name(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    mod = getattr(target, "__module__", None) or ""
    return f"{mod}.{getattr(target, '__name__', str(target))}".lstrip(".")


class _Capture:
    """Walks a shape-propagated fx graph once, building records."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.recs: dict[str, _Rec] = {}
        self.alias: dict[fx.Node, str] = {}
        self.input_name: str | None = None
        self._used_names: set[str] = set()
        self.consts: dict[fx.Node, torch.Tensor] = {}  # get_attr nodes: parameters, buffers
        # split / chunk nodes: (source record, axis, axis size, [(start, stop)] per output)
        self.splits: dict[fx.Node, tuple[str, int, int, list[tuple[int, int]]]] = {}
        # constant records by (shape, float32 bytes) of their value
        self.constants: dict[tuple[tuple[int, ...], bytes], str] = {}

    # ---- helpers -------------------------------------------------------------------------
    def unsupported(self, node: fx.Node, why: str = "") -> UnsupportedOpError:
        path = _module_path_of(node)
        msg = (f"unsupported op {_op_name(node, self.gm)!r} at module path "
               f"{path or '<root>'!r} (fx node {node.name!r})")
        return UnsupportedOpError(msg + (f": {why}" if why else ""))

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self._used_names:
            name, i = f"{base}_{i}", i + 1
        self._used_names.add(name)
        return name

    def func_name(self, node: fx.Node, kind: str) -> str:
        path = _module_path_of(node)
        return self.unique(f"{path}.{kind}" if path else kind)

    def src(self, node: fx.Node, arg: object) -> str:
        """Record name producing tensor argument ``arg`` of ``node``."""
        if isinstance(arg, fx.Node) and arg in self.alias:
            return self.alias[arg]
        if isinstance(arg, fx.Node) and arg in self.consts:
            raise self.unsupported(node, f"parameter or buffer {arg.target!r} used directly "
                                         "(only through supported modules, as a weight of "
                                         "F.conv2d / F.conv_transpose2d, or as a per-channel "
                                         "constant of * + - /)")
        what = "a constant" if not isinstance(arg, fx.Node) else f"non-tensor value {arg.name!r}"
        raise self.unsupported(node, f"an input is {what}, expected a tensor")

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        meta = _tensor_meta(node)
        if meta is None:
            raise self.unsupported(node, "the op does not produce a single tensor")
        return tuple(int(d) for d in meta.shape)

    def is_passthrough(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(self.gm.get_submodule(str(node.target)),
                              (nn.Identity, *_DROPOUT_MODULES))
        if node.op == "call_function":
            return _FUNC_KINDS.get(node.target) == "dropout"  # type: ignore[arg-type]
        return node.op == "call_method" and node.target == "contiguous"

    def canonical(self, node: fx.Node) -> fx.Node:
        while self.is_passthrough(node):
            node = node.args[0]  # type: ignore[assignment]
        return node

    def tensor_users(self, node: fx.Node) -> set[fx.Node]:
        """Users reading ``node`` as a tensor, looking through pass-through ops."""
        users: set[fx.Node] = set()
        for user in node.users:
            if self.is_passthrough(user):
                users |= self.tensor_users(user)
            elif user.op == "output" or _tensor_meta(user) is not None:
                users.add(user)
        return users

    def add(self, node: fx.Node, name: str, op: str, inputs: tuple[str, ...], **kw) -> _Rec:
        rec = _Rec(name=name, op=op, inputs=inputs, module_path=_module_path_of(node),
                   tail=node, out_shape=self.shape(node), **kw)
        self.recs[name] = rec
        self.alias[node] = name
        return rec

    def fusable_producer(self, node: fx.Node, arg: fx.Node, ops: tuple[str, ...]) -> _Rec | None:
        """The record ``node`` may fuse into: it outputs ``arg`` and ``node`` is its only user."""
        if not isinstance(arg, fx.Node) or arg not in self.alias:
            return None
        rec = self.recs[self.alias[arg]]
        if rec.op not in ops or rec.tail is not self.canonical(arg):
            return None
        return rec if self.tensor_users(rec.tail) == {node} else None

    # ---- op handlers ---------------------------------------------------------------------
    def activation(self, node: fx.Node, arg: fx.Node, lo: float, hi: float, name: str) -> None:
        lo, hi = float(lo), float(hi)
        rec = self.fusable_producer(node, arg, FUSABLE_OPS)
        if rec is not None:
            if rec.activation is None:
                rec.activation = (lo, hi)
            else:
                new_lo, new_hi = max(rec.activation[0], lo), min(rec.activation[1], hi)
                rec = rec if new_lo <= new_hi else None
                if rec is not None:
                    rec.activation = (new_lo, new_hi)
        if rec is not None:
            rec.tail = node
            self.alias[node] = rec.name
            return
        self.add(node, name, "clamp", (self.src(node, arg),), attrs={"min": lo, "max": hi})

    def batchnorm(self, node: fx.Node, bn: nn.BatchNorm2d) -> None:
        if bn.running_mean is None or bn.running_var is None:
            raise self.unsupported(node, "BatchNorm2d without running statistics")
        rec = self.fusable_producer(node, node.args[0],  # type: ignore[arg-type]
                                    ("conv2d", "conv_transpose2d"))
        if rec is not None and rec.activation is None:
            rec.weight, rec.bias = fold_batchnorm(rec.weight, rec.bias, bn)
            rec.tail = node
            self.alias[node] = rec.name
            return
        if len(self.shape(node)) != 4:
            raise self.unsupported(node, f"standalone BatchNorm2d of a tensor of shape "
                                         f"{self.shape(node)}; expected (N, C, H, W)")
        a, b = batchnorm_affine(bn)  # not after a conv: a depthwise 1x1 conv of its own
        self.depthwise_affine(node, self.unique(str(node.target)), node.args[0], a, b)

    # ---- per-channel affine steps (constants) ----------------------------------------------
    def const_value(self, v: object) -> np.ndarray | None:
        """A constant operand (Python number, parameter / buffer, tensor) as float64, else None."""
        if isinstance(v, bool):
            return None
        if isinstance(v, (int, float)):
            return np.asarray(float(v))
        if isinstance(v, fx.Node) and v in self.consts:
            return self.consts[v].detach().cpu().double().numpy()
        if isinstance(v, torch.Tensor):
            return v.detach().cpu().double().numpy()
        return None

    def depthwise_affine(self, node: fx.Node, name: str, arg: object, a: np.ndarray,
                         b: np.ndarray) -> None:
        """``a_c x + b_c`` as a depthwise 1x1 conv2d record (weight a, bias b)."""
        channels = int(a.shape[0])
        attrs = {"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1),
                 "groups": channels}
        self.add(node, name, "conv2d", (self.src(node, arg),), attrs=attrs,
                 weight=depthwise_weight(a), bias=np.asarray(b, np.float64).astype(np.float32))

    def affine(self, node: fx.Node, name: str, kind: str, a: dict) -> bool:
        """``x op c`` / ``c op x`` with a constant ``c`` (kind mul / add / sub / div): folded into
        the conv / linear producing x (its only consumer, no fused activation), else a
        depthwise 1x1 conv2d. False if neither operand is a constant."""
        x, y = a["input"], a["other"]
        cx, cy = self.const_value(x), self.const_value(y)
        if cx is None and cy is None:
            return False
        if cx is not None and cy is not None:
            raise self.unsupported(node, f"{kind} of two constants (computed in the graph)")
        if a.get("rounding_mode") is not None:
            raise self.unsupported(node, f"div with rounding_mode={a['rounding_mode']!r}")
        const_first = cx is not None
        arg, c = (y, cx) if const_first else (x, cy)
        alpha = a.get("alpha", 1)
        if isinstance(alpha, fx.Node) or isinstance(arg, fx.Node) and arg in self.consts:
            raise self.unsupported(node, f"{kind} with a tensor alpha or of two constants")
        x_shape = self.shape(arg)  # type: ignore[arg-type]
        vec = channel_vector(c, x_shape) if len(x_shape) >= 2 else None
        if vec is None or self.shape(node) != x_shape:
            self.constant_operand(node, name, kind, arg, c, const_first, float(alpha))
            return True
        ab = affine_of(kind, vec, const_first, float(alpha))
        if ab is None:
            raise self.unsupported(node, "a constant divided by a tensor is not affine in it")
        rec = self.fusable_producer(node, arg, ("conv2d", "conv_transpose2d", "linear"))
        if rec is not None and rec.activation is None and (rec.op == "linear") == (
                len(x_shape) == 2):
            rec.weight, rec.bias = fold_affine(rec.weight, rec.bias, *ab)
            rec.tail = node
            self.alias[node] = rec.name
            return True
        if len(x_shape) != 4:  # (N, F) or (N, C, L): no depthwise conv; a constant operand
            self.constant_operand(node, name, kind, arg, c, const_first, float(alpha))
            return True
        self.depthwise_affine(node, name, arg, *ab)
        return True

    def constant_operand(self, node: fx.Node, name: str, kind: str, arg: fx.Node, c: np.ndarray,
                         const_first: bool, alpha: float) -> None:
        """``x op C`` with a constant ``C`` that is no per-channel affine (a full-tensor constant,
        or any constant on a tensor that is not (N, C, H, W)): ``C`` (broadcast to x's shape
        after the batch) becomes a ``constant`` record, quantized like an activation, and the op
        an add / sub / mul of two tensors: x + C, x - C (as x + (-C)), C - x, x * C,
        x / C (as x * (1/C))."""
        x_shape, out_shape = self.shape(arg), self.shape(node)
        try:
            fits = tuple(np.broadcast_shapes(np.shape(c), x_shape)) == x_shape
        except ValueError:
            fits = False
        if len(x_shape) < 2 or out_shape != x_shape or not fits or (
                np.ndim(c) == len(x_shape) and np.shape(c)[0] != 1):
            raise self.unsupported(node, f"{kind} of a tensor {x_shape} and a constant of shape "
                                         f"{tuple(np.shape(c))}: the constant must broadcast onto "
                                         "the tensor without varying over the batch")
        if const_first and kind == "div":
            raise self.unsupported(node, "a constant divided by a tensor (c / x) is not captured")
        if const_first and alpha != 1:
            raise self.unsupported(node, f"{kind} of a constant and alpha {alpha:g} times a tensor")
        value = np.asarray(c, dtype=np.float64)
        if kind == "div":
            if not np.all(value != 0):
                raise self.unsupported(node, "division by a constant holding zeros")
            value = 1.0 / value
        elif kind in ("add", "sub") and not const_first:
            value = value * (alpha if kind == "add" else -alpha)
        full = np.broadcast_to(value, (1, *x_shape[1:])).astype(np.float32)
        if not np.all(np.isfinite(full)):
            raise self.unsupported(node, f"{kind} with a constant holding NaN or inf")
        assert self.input_name is not None
        key = (full.shape, full.tobytes())
        const_name = self.constants.get(key)  # one record per distinct constant
        if const_name is None:
            const_name = self.constants[key] = self.func_name(node, "constant")
            self.recs[const_name] = _Rec(name=const_name, op="constant",
                                         inputs=(self.input_name,),
                                         module_path=_module_path_of(node), tail=node,
                                         weight=np.ascontiguousarray(full), out_shape=x_shape)
        x = self.src(node, arg)
        if kind == "sub" and const_first:
            self.add(node, name, "sub", (const_name, x))
        else:
            op = "mul" if kind in ("mul", "div") else "add"
            self.add(node, name, op, (x, const_name) if not const_first or op == "mul"
                     else (const_name, x))

    # ---- split / chunk / slicing, local response norm ------------------------------------------
    def split(self, node: fx.Node) -> None:
        """torch.split / chunk / Tensor.split / chunk: the sections along the split axis, read off
        the traced output shapes; each ``getitem`` of the result becomes a slice record."""
        x = node.args[0]
        if node.op == "call_function":
            kind = _FUNC_KINDS[node.target]  # type: ignore[index]
        else:
            kind = str(node.target)
        a = bind(kind, node.args, dict(node.kwargs))
        in_shape = self.shape(x)  # type: ignore[arg-type]
        axis = int(a["dim"]) % len(in_shape)
        metas = node.meta.get("tensor_meta")
        if axis == 0 or not isinstance(metas, (tuple, list)) or not all(
                isinstance(m, TensorMetadata) for m in metas):
            raise self.unsupported(node, f"{kind} along dim {axis} of a tensor {in_shape}; only "
                                         "along a dim after the batch")
        bounds, start = [], 0
        for m in metas:
            stop = start + int(m.shape[axis])
            bounds.append((start, stop))
            start = stop
        self.splits[node] = (self.src(node, x), axis, int(in_shape[axis]), bounds)

    def getitem(self, node: fx.Node) -> None:
        """One output of a split, or basic slicing ``x[:, a:b, c:d]`` (dims after the batch,
        step 1) -> slice records, one per cut dim (a full slice is the tensor itself)."""
        base, index = node.args[0], node.args[1]
        if isinstance(base, fx.Node) and base in self.splits:
            src, axis, size, bounds = self.splits[base]
            start, stop = bounds[int(index)]  # type: ignore[call-overload]
            cuts = [] if (start, stop) == (0, size) else [(axis, start, stop)]
        else:
            src = self.src(node, base)
            cuts = self.slice_cuts(node, index, self.recs[src].out_shape)
        shape = list(self.recs[src].out_shape)
        for i, (axis, start, stop) in enumerate(cuts):
            shape[axis] = stop - start
            rec = self.add(node, self.func_name(node, "slice"), "slice", (src,),
                           attrs={"axis": int(axis), "start": int(start), "stop": int(stop)})
            rec.out_shape = tuple(shape)
            src = rec.name
        self.alias[node] = src

    def slice_cuts(self, node: fx.Node, index: object,
                   shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
        """(axis, start, stop) of every dim ``index`` narrows; refuses anything but slices with
        step 1 of dims after the batch."""
        items = index if isinstance(index, tuple) else (index,)
        plain = len(items) <= len(shape) and all(
            isinstance(it, slice) and not any(isinstance(v, fx.Node)
                                              for v in (it.start, it.stop, it.step))
            for it in items)
        if not plain:
            raise self.unsupported(node, f"indexing {index!r}: only slices with step 1 of dims "
                                         "after the batch (x[:, a:b]) are captured")
        cuts = []
        for axis, it in enumerate(items):
            start, stop, step = it.indices(int(shape[axis]))  # type: ignore[union-attr]
            if (start, stop, step) == (0, int(shape[axis]), 1):
                continue
            if axis == 0 or step != 1 or stop <= start:
                raise self.unsupported(node, f"indexing {index!r}: only non-empty slices with "
                                             "step 1 of dims after the batch are captured")
            cuts.append((axis, start, stop))
        return cuts

    def lrn(self, node: fx.Node, name: str, arg: object, size: int, alpha: float, beta: float,
            k: float) -> None:
        shape = self.shape(arg)  # type: ignore[arg-type]
        if len(shape) != 4:
            raise self.unsupported(node, f"local response norm of a tensor {shape}; only "
                                         "(N, C, H, W)")
        self.add(node, name, "lrn", (self.src(node, arg),),
                 attrs={"size": int(size), "alpha": float(alpha), "beta": float(beta),
                        "k": float(k)})

    def functional_conv(self, node: fx.Node, name: str, kind: str, a: dict) -> None:
        """F.conv2d / F.conv_transpose2d with a parameter (constant) weight and bias."""
        w, b = self.const_value(a["weight"]), a["bias"]
        bias = None if b is None else self.const_value(b)
        if w is None or w.ndim != 4 or (b is not None and bias is None):
            raise self.unsupported(node, f"F.{kind} whose weight / bias is not a parameter or "
                                         "constant tensor (weight 4-D)")
        w32 = w.astype(np.float32)
        b32 = None if bias is None else bias.reshape(-1).astype(np.float32)
        stride, dilation, groups = pair(a["stride"]), pair(a["dilation"]), int(a["groups"])
        if kind == "conv2d":
            geometry = _ConvGeometry(a["padding"], tuple(w.shape[2:]), dilation)
            attrs = {"stride": stride, "padding": conv_padding(geometry),  # type: ignore[arg-type]
                     "dilation": dilation, "groups": groups}
            self.add(node, name, "conv2d", (self.src(node, a["input"]),), attrs=attrs,
                     weight=w32, bias=b32)
            return
        self.transposed_conv(node, name, a["input"], w32, b32, stride, a["padding"],
                             pair(a["output_padding"]), dilation, groups)

    def pool(self, node: fx.Node, name: str, kind: str, a: dict) -> None:
        src = self.src(node, a["input"])
        kernel = pair(a["kernel_size"])
        stride = pair(a["stride"]) if a["stride"] not in (None, [], ()) else kernel
        attrs = {"kernel": kernel, "stride": stride, "padding": pads4(a["padding"]),
                 "ceil_mode": bool(a["ceil_mode"]), "global": False}
        if kind == "max_pool2d":
            if pair(a["dilation"]) != (1, 1) or a["return_indices"]:
                raise self.unsupported(node, "max pooling with dilation or return_indices")
            attrs["count_include_pad"] = False
            self.add(node, name, "maxpool2d", (src,), attrs=attrs)
        else:
            if a["divisor_override"] is not None:
                raise self.unsupported(node, "avg pooling with divisor_override")
            attrs["count_include_pad"] = bool(a["count_include_pad"])
            self.add(node, name, "avgpool2d", (src,), attrs=attrs)

    def adaptive_avg(self, node: fx.Node, name: str, arg: fx.Node, output_size: object) -> None:
        in_shape = self.shape(arg)
        h, w = in_shape[-2], in_shape[-1]
        size = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
        oh, ow = (h if size[0] is None else int(size[0])), (w if size[-1] is None else int(size[-1]))
        if (oh, ow) == (1, 1) or (h % oh == 0 and w % ow == 0):
            kernel = (h // oh, w // ow)
            attrs = {"kernel": kernel, "stride": kernel, "padding": (0, 0, 0, 0),
                     "ceil_mode": False, "count_include_pad": True, "global": (oh, ow) == (1, 1)}
            self.add(node, name, "avgpool2d", (self.src(node, arg),), attrs=attrs)
            return
        raise self.unsupported(node, f"adaptive avg pooling from {h}x{w} to {oh}x{ow} "
                                     "is not a plain pooling")

    def flatten(self, node: fx.Node, name: str, arg: fx.Node, start: int, end: int) -> None:
        rank = len(self.shape(arg))
        start, end = start % rank, end % rank
        if start == 0 or end != rank - 1:
            raise self.unsupported(node, f"flatten(start_dim={start}, end_dim={end}) of a rank "
                                         f"{rank} tensor; only start_dim >= 1 to the last dim")
        if start == rank - 1:
            self.alias[node] = self.src(node, arg)
            return
        self.add(node, name, "flatten", (self.src(node, arg),), attrs={"start_dim": start})

    def reshape(self, node: fx.Node, name: str, arg: fx.Node) -> None:
        in_shape, out_shape = self.shape(arg), self.shape(node)
        if out_shape == in_shape:
            self.alias[node] = self.src(node, arg)
        elif out_shape == (in_shape[0], int(np.prod(in_shape[1:]))) and len(in_shape) > 2:
            self.flatten(node, name, arg, 1, -1)
        else:
            self.general_reshape(node, name, arg)

    def general_reshape(self, node: fx.Node, name: str, arg: fx.Node) -> None:
        out_shape = self.shape(node)
        self.add(node, name, "reshape", (self.src(node, arg),),
                 attrs={"shape": (-1, *out_shape[1:])})

    def transpose(self, node: fx.Node, name: str, kind: str) -> None:
        arg = node.args[0]
        rank = len(self.shape(arg))  # type: ignore[arg-type]
        if kind == "transpose":
            a = bind("transpose", node.args, dict(node.kwargs))
            d0, d1 = int(a["dim0"]) % rank, int(a["dim1"]) % rank
            perm = list(range(rank))
            perm[d0], perm[d1] = perm[d1], perm[d0]
        else:
            dims = node.args[1:] if node.op == "call_method" else node.args[1]
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = dims[0]
            perm = [int(d) % rank for d in dims]
        if sorted(perm) != list(range(rank)):
            raise self.unsupported(node, f"permutation {perm} of a rank {rank} tensor")
        self.add(node, name, "transpose", (self.src(node, arg),), attrs={"perm": tuple(perm)})

    def matmul(self, node: fx.Node, name: str) -> None:
        x, y = node.args[0], node.args[1]
        if not all(isinstance(v, fx.Node) and _tensor_meta(v) is not None for v in (x, y)):
            raise self.unsupported(node, "matmul with a constant; use nn.Linear for weights")
        sx, sy = self.shape(x), self.shape(y)  # type: ignore[arg-type]
        if len(sx) < 2 or len(sx) != len(sy) or sx[:-2] != sy[:-2] or sx[-1] != sy[-2]:
            raise self.unsupported(node, f"matmul {sx} @ {sy}: expected (..., M, K) @ (..., K, N) "
                                         "with equal leading dims (no broadcasting)")
        self.add(node, name, "matmul", (self.src(node, x), self.src(node, y)))

    def softmax(self, node: fx.Node, name: str) -> None:
        a = bind("softmax", node.args, dict(node.kwargs))
        if a.get("dtype") is not None:
            raise self.unsupported(node, "softmax with a dtype")
        rank = len(self.shape(node))
        self.add(node, name, "softmax", (self.src(node, a["input"]),),
                 attrs={"dim": int(a["dim"]) % rank})

    def add_op(self, node: fx.Node, name: str, a: dict, op: str = "add") -> None:
        """add / sub of two tensors of equal shapes (alpha 1)."""
        x, y = a["input"], a["other"]
        if not all(isinstance(v, fx.Node) and _tensor_meta(v) is not None for v in (x, y)):
            raise self.unsupported(node, f"{op} of a tensor and a constant")
        if a["alpha"] != 1:
            raise self.unsupported(node, f"{op} with alpha != 1")
        if self.shape(x) != self.shape(y):
            raise self.unsupported(node, f"{op} with broadcasting {self.shape(x)}, "
                                         f"{self.shape(y)}; only equal shapes")
        self.add(node, name, op, (self.src(node, x), self.src(node, y)))

    def pointwise(self, node: fx.Node, name: str, fn: str, arg: object) -> None:
        self.add(node, name, "pointwise", (self.src(node, arg),), attrs={"fn": fn})

    def mul_op(self, node: fx.Node, name: str, a: dict) -> None:
        x, y = a["input"], a["other"]
        if not all(isinstance(v, fx.Node) and _tensor_meta(v) is not None for v in (x, y)):
            raise self.unsupported(node, "mul of a tensor and a constant; only the element-wise "
                                         "product of two activations is captured (fold a constant "
                                         "factor into a neighbouring layer's weights)")
        srcs = (self.src(node, x), self.src(node, y))
        sa, sb = (self.recs[s].out_shape for s in srcs)
        out = self.shape(node)
        try:
            shape = tuple(int(d) for d in np.broadcast_shapes(sa, sb))
        except ValueError:
            shape = None
        if len(sa) != len(sb) or sa[0] != sb[0] or shape != out:
            raise self.unsupported(node, f"mul {sa} * {sb}: the operands must have equal rank "
                                         f"and batch dimension and broadcast to the output {out}")
        self.add(node, name, "mul", srcs)

    def expand(self, node: fx.Node) -> None:
        """expand / expand_as whose every consumer is a mul: the mul's broadcasting does it."""
        users = self.tensor_users(node)
        muls = all(u.op != "output" and (
            (u.op == "call_function" and _FUNC_KINDS.get(u.target) == "mul")  # type: ignore
            or (u.op == "call_method" and _METHOD_KINDS.get(str(u.target)) == "mul"))
            for u in users)
        if not users or not muls:
            raise self.unsupported(node, "expand / expand_as is captured only as the operand of "
                                         "an element-wise multiply (where broadcasting does it)")
        self.alias[node] = self.src(node, node.args[0])

    def unsqueeze(self, node: fx.Node, name: str, a: dict) -> None:
        rank = len(self.shape(node))
        if int(a["dim"]) % rank == 0:
            raise self.unsupported(node, "unsqueeze(0) adds a dimension before the batch")
        self.general_reshape(node, name, a["input"])

    def interpolate(self, node: fx.Node, name: str, a: dict) -> None:
        mode = a["mode"]
        if mode not in RESIZE_MODES:
            raise self.unsupported(node, f"interpolate mode {mode!r} is not supported: only "
                                         "modes 'nearest', 'nearest-exact' (an index gather) "
                                         "and 'bilinear' have an integer lowering")
        if a.get("antialias"):
            raise self.unsupported(node, "interpolate with antialias=True")
        x = a["input"]
        in_shape, out_shape = self.shape(x), self.shape(node)
        if len(in_shape) != 4:
            raise self.unsupported(node, f"interpolate of a tensor of shape {in_shape}; only "
                                         "(N, C, H, W)")
        sf = a["scale_factor"]
        seq = sf if isinstance(sf, (tuple, list)) else (sf,)
        if any(isinstance(v, fx.Node) for v in seq):
            raise self.unsupported(node, "interpolate with a scale_factor computed in the graph")
        (h, w), (oh, ow) = in_shape[2:], out_shape[2:]
        kw: dict = {"mode": mode}
        if sf is not None:
            factors = tuple(float(v) for v in seq)
            factors = factors * 2 if len(factors) == 1 else factors
            kw.update(scale_factor=factors, recompute_scale_factor=a["recompute_scale_factor"])
            scales = (oh / h, ow / w) if a["recompute_scale_factor"] else factors
        else:
            kw["size"] = (oh, ow)
            scales = (oh / h, ow / w)
        if mode == "bilinear":
            corners = bool(a["align_corners"])
            attrs = {"mode": mode, "align_corners": corners, "size": (oh, ow),
                     "scale_factor": kw.get("scale_factor"),
                     "recompute_scale_factor": a["recompute_scale_factor"],
                     "scales": tuple(float(v) for v in scales),
                     "coordinate_transformation_mode": "align_corners" if corners
                     else "half_pixel"}
            self.add(node, name, "resize", (self.src(node, x),), attrs=attrs)
            return
        with torch.no_grad():  # torch's own interpolation of an index grid gives its gather
            grid = torch.arange(h * w, dtype=torch.float64).reshape(1, 1, h, w)
            probe = F.interpolate(grid, **kw)[0, 0].to(torch.int64)
        rows, cols = probe[:, 0] // w, probe[0, :] % w
        if tuple(probe.shape) != (oh, ow) or not torch.equal(probe, rows[:, None] * w + cols):
            raise self.unsupported(node, "interpolate is not a row / column gather to the traced "
                                         f"output size {(oh, ow)}")
        attrs = {"mode": mode, "rows": tuple(rows.tolist()), "cols": tuple(cols.tolist()),
                 "scales": tuple(float(v) for v in scales),
                 "coordinate_transformation_mode": RESIZE_MODES[mode], "nearest_mode": "floor"}
        self.add(node, name, "resize", (self.src(node, x),), attrs=attrs)

    def conv_transpose(self, node: fx.Node, path: str, m: nn.ConvTranspose2d,
                       arg: fx.Node) -> None:
        """nn.ConvTranspose2d -> conv_transpose2d, its weight output-channel major."""
        if m.padding_mode != "zeros":
            raise self.unsupported(node, f"ConvTranspose2d with padding_mode="
                                         f"{m.padding_mode!r}; only 'zeros' is supported")
        if len(node.args) > 1 or node.kwargs:
            raise self.unsupported(node, "ConvTranspose2d called with output_size; set "
                                         "output_padding on the module instead")
        self.transposed_conv(node, self.unique(path), arg, to_numpy_f32(m.weight),
                             to_numpy_f32(m.bias), pair(m.stride), m.padding,
                             pair(m.output_padding), pair(m.dilation), int(m.groups))

    def transposed_conv(self, node: fx.Node, name: str, arg: object, weight: np.ndarray,
                        bias: np.ndarray | None, stride: tuple[int, int], padding: object,
                        output_padding: tuple[int, int], dilation: tuple[int, int],
                        groups: int) -> None:
        """A conv_transpose2d record from torch's (C, K/groups, R, S) float32 weight."""
        for v, s, d in zip(output_padding, stride, dilation):
            if v >= max(s, d):
                raise self.unsupported(node, f"ConvTranspose2d output_padding {output_padding} "
                                             f"must be smaller than max(stride, dilation) "
                                             f"on each axis; stride {stride}, dilation {dilation}")
        attrs = {"stride": stride, "padding": pads4(padding), "output_padding": output_padding,
                 "dilation": dilation, "groups": groups}
        self.add(node, name, "conv_transpose2d", (self.src(node, arg),), attrs=attrs,
                 weight=transposed_to_output_major(weight, groups), bias=bias)

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


@dataclass(frozen=True)
class _ConvGeometry:
    """What ``conv_padding`` reads of a Conv2d, for F.conv2d."""

    padding: object
    kernel_size: tuple[int, ...]
    dilation: tuple[int, int]


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

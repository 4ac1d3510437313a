"""Capture handlers for per-channel affine steps: BatchNorm2d (folded into its conv, or a
depthwise 1x1 conv2d), tensor * + - / a constant (folded, depthwise, or a ``constant`` record).

The arithmetic lives in ``quant._capture_affine``; this module decides which record results.
"""

from __future__ import annotations

import numpy as np
from torch import fx, nn

from quant._capture_affine import (affine_of, batchnorm_affine, channel_vector, depthwise_weight,
                                   fold_affine)
from quant._capture_args import fold_batchnorm
from quant._capture_core import CaptureCore, _module_path_of, _Rec


class AffineOps(CaptureCore):
    """BatchNorm2d and the constant operands of * + - /."""

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

"""Capture handlers for the remaining computing ops: ReLU / clamp (fused into the producer or
a clamp record), add / sub / mul of two tensors, matmul, softmax, local response norm and the
element-wise nonlinearities (pointwise)."""

from __future__ import annotations

import numpy as np
from torch import fx

from quant._capture_args import bind
from quant._capture_core import CaptureCore, _tensor_meta
from quant.graph import FUSABLE_OPS


class MathOps(CaptureCore):
    """Activations, element-wise arithmetic of two tensors, matmul, softmax and lrn."""

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

    def lrn(self, node: fx.Node, name: str, arg: object, size: int, alpha: float, beta: float,
            k: float) -> None:
        shape = self.shape(arg)  # type: ignore[arg-type]
        if len(shape) != 4:
            raise self.unsupported(node, f"local response norm of a tensor {shape}; only "
                                         "(N, C, H, W)")
        self.add(node, name, "lrn", (self.src(node, arg),),
                 attrs={"size": int(size), "alpha": float(alpha), "beta": float(beta),
                        "k": float(k)})

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

"""Bookkeeping of capture: records under construction, naming, tensor sources and shapes,
pass-through ops, fusion into a producer, and the ``UnsupportedOpError`` naming an fx node.

``CaptureCore`` holds the state of one walk over a shape-propagated fx graph; the op families
(``quant._capture_shape``, ``_capture_affine_ops``, ``_capture_conv``, ``_capture_math``) are
its subclasses and ``quant.capture`` combines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

from quant._capture_kinds import _DROPOUT_MODULES, _FUNC_KINDS
from quant.errors import UnsupportedOpError


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

class CaptureCore:
    """State of one walk over a shape-propagated fx graph, and the helpers every handler uses."""

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

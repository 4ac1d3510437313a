"""The program input and the ops that move codes without changing them."""
from __future__ import annotations

import numpy as np

from hwsim.ir.ops import OpDef, register_op
from hwsim.ir.program import Node

_MOVES = "moves codes; no arithmetic to price"


def _input(node: Node, args: list) -> tuple:
    return np.asarray(args[0]), None


def _flatten(node: Node, args: list) -> tuple:
    x = args[0]
    start = int(node.attrs["start_dim"])
    return x.reshape(x.shape[:start] + (-1,)), None


def _reshape(node: Node, args: list) -> tuple:
    return args[0].reshape(tuple(node.attrs["shape"])), None


def _transpose(node: Node, args: list) -> tuple:
    return np.ascontiguousarray(args[0].transpose(tuple(node.attrs["perm"]))), None


def _slice(node: Node, args: list) -> tuple:
    axis, start, stop = (int(node.attrs[k]) for k in ("axis", "start", "stop"))
    step = int(node.attrs.get("step", 1))
    index = [slice(None)] * args[0].ndim
    index[axis] = slice(start, stop, step)
    return np.ascontiguousarray(args[0][tuple(index)]), None


def _slice_check(node: Node) -> list[str]:
    axis, start, stop = (node.attrs[k] for k in ("axis", "start", "stop"))
    step = node.attrs.get("step", 1)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (axis, start, stop, step)):
        return [f"axis, start, stop and step must be ints; got {axis!r}, {start!r}, {stop!r}, "
                f"{step!r}"]
    if axis < 1 or not 0 <= start < stop or step < 1:
        return [f"axis must be >= 1 (not the batch), 0 <= start < stop and step >= 1; got "
                f"axis {axis}, {start}:{stop}:{step}"]
    return []


for _name, _arity, _attrs, _optional, _fn, _doc in (
    ("input", 0, (), ("onnx_input", "quantize"), _input,
     "The program input: integer codes of shape out_shape."),
    ("flatten", 1, ("start_dim",), (), _flatten, "Reshape; codes unchanged."),
    ("reshape", 1, ("shape",), (), _reshape,
     "Reshape to attrs shape (its first dim -1: the leading dim may vary); codes unchanged."),
    ("transpose", 1, ("perm",), (), _transpose, "Permute the dims; codes unchanged."),
):
    register_op(OpDef(_name, _arity, _attrs, (), _doc, _fn, _fn, optional_attrs=_optional,
                      not_costed="the program input" if _name == "input" else _MOVES))

register_op(OpDef("slice", 1, ("axis", "start", "stop"), (),
                  "The entries start:stop:step (step >= 1, default 1) along attrs axis (one "
                  "output of an ONNX Split, one axis of a Slice); codes unchanged.", _slice,
                  _slice, optional_attrs=("step",), check=_slice_check, not_costed=_MOVES))

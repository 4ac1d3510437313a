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

"""The integer codes an imported program takes: the model's input QuantizeLinear, applied as
ONNX Runtime applies it."""

from __future__ import annotations

import os

import numpy as np

from hwsim.ir import IntProgram
from hwsim.onnx._model import ModelSource
from hwsim.onnx.errors import OnnxImportError
from hwsim.onnx.ort_semantics import quantize_linear


def quantize_input(source: IntProgram | ModelSource, x: np.ndarray) -> np.ndarray:
    """Codes of the float input `x` for the program `load_onnx_program` builds.

    source: that program (no onnx package needed), or the model itself (path, bytes,
        ModelProto), which is imported first.
    x: float array (N, ...) with the model input's shape; any batch size N.
    Returns codes (N, ...) in the input's dtype (uint8 or int8):
    saturate(round_half_even(f32(x) / scale) + zero_point), computed in float32 exactly as
    ONNX Runtime's QuantizeLinear (`hwsim.onnx.ort_semantics.quantize_linear`).
    """
    if isinstance(source, IntProgram):
        program = source
    else:
        from hwsim.onnx.importer import load_onnx_program

        program = load_onnx_program(source)
    inp = program.input
    x = np.asarray(x)
    if x.ndim != len(inp.out_shape) or tuple(x.shape[1:]) != tuple(inp.out_shape[1:]):
        raise OnnxImportError(
            f"program {program.name!r}, input {inp.attrs.get('onnx_input', inp.name)!r}: "
            f"expected a float array of shape (N, {', '.join(map(str, inp.out_shape[1:]))}); "
            f"got {x.shape}")
    if x.dtype.kind != "f":
        raise OnnxImportError(f"program {program.name!r}: quantize_input takes the float input; "
                              f"got dtype {x.dtype}")
    q = inp.out
    codes = quantize_linear(x, np.float32(q.scale), q.zero_point, q.qmin, q.qmax)
    return codes.astype(q.dtype)


def input_shape_of(inputs) -> tuple[int, ...] | None:
    """The shape of float inputs given as an array or as the path of a .npy file (read from its
    header), to resolve a model's symbolic input dimensions (`load_onnx_program(...,
    input_shape=...)`); None for anything else, or a file that cannot be read (reported where
    the inputs are loaded)."""
    if isinstance(inputs, np.ndarray):
        return tuple(inputs.shape)
    if isinstance(inputs, (str, os.PathLike)):
        try:
            return tuple(np.load(inputs, mmap_mode="r", allow_pickle=False).shape)
        except Exception:  # not a readable .npy array: load_inputs names the problem
            return None
    return None

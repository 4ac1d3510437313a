"""Single-node ONNX models for comparing hwsim with ONNX Runtime, built with onnx.helper.

Every model takes the quantized tensors (activations, weights) as graph inputs and the scales,
zero points and bias as initializers, so one session runs many activation batches. Tensors are
numpy arrays; the ONNX element type is taken from their dtype.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 21  # QLinearMatMul per-column scales and int32 ConvInteger need opset >= 10; 21 is current


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _input(name: str, arr: np.ndarray) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
    return helper.make_tensor_value_info(name, elem, list(arr.shape))


def _output(name: str, dtype: np.dtype, rank: int) -> onnx.ValueInfoProto:
    dims = [f"{name}_d{i}" for i in range(rank)]  # symbolic: ONNX Runtime infers the sizes
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), dims)


def _model(node: onnx.NodeProto, inputs, initializers, out_dtype) -> bytes:
    rank = len(inputs[0].type.tensor_type.shape.dim)
    graph = helper.make_graph([node], f"single_{node.op_type}", inputs, [_output("y", out_dtype, rank)],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _conv_attrs(stride, pads, dilation, group) -> dict:
    return {"strides": list(stride), "pads": list(pads), "dilations": list(dilation), "group": int(group)}


def qlinear_conv_model(x: np.ndarray, w: np.ndarray, x_scale, x_zp, w_scale, w_zp, y_scale, y_zp,
                       bias, stride, pads, dilation, group) -> bytes:
    """QLinearConv with inputs x (N, C, H, W) and w (K, C/group, R, S); the rest initializers.
    pads: (top, left, bottom, right) as ONNX orders them. bias: None or int32 (K,)."""
    inits = [
        _init("x_scale", np.float32(x_scale)), _init("x_zp", x_zp),
        _init("w_scale", np.asarray(w_scale, dtype=np.float32)), _init("w_zp", w_zp),
        _init("y_scale", np.float32(y_scale)), _init("y_zp", y_zp),
    ]
    names = ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp"]
    if bias is not None:
        inits.append(_init("b", np.asarray(bias, dtype=np.int32)))
        names.append("b")
    node = helper.make_node("QLinearConv", names, ["y"], **_conv_attrs(stride, pads, dilation, group))
    return _model(node, [_input("x", x), _input("w", w)], inits, np.asarray(y_zp).dtype)


def qlinear_matmul_model(a: np.ndarray, b: np.ndarray, a_scale, a_zp, b_scale, b_zp, y_scale, y_zp) -> bytes:
    """QLinearMatMul with inputs a (M, K) and b (K, N); b_scale / b_zp scalar or per column (N,)."""
    inits = [
        _init("a_scale", np.float32(a_scale)), _init("a_zp", a_zp),
        _init("b_scale", np.asarray(b_scale, dtype=np.float32)), _init("b_zp", b_zp),
        _init("y_scale", np.float32(y_scale)), _init("y_zp", y_zp),
    ]
    node = helper.make_node("QLinearMatMul", ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"], ["y"])
    return _model(node, [_input("a", a), _input("b", b)], inits, np.asarray(y_zp).dtype)


def conv_integer_model(x: np.ndarray, w: np.ndarray, x_zp, w_zp, stride, pads, dilation, group) -> bytes:
    """ConvInteger (int32 output); x_zp scalar, w_zp scalar or per output channel (K,)."""
    inits = [_init("x_zp", x_zp), _init("w_zp", w_zp)]
    node = helper.make_node("ConvInteger", ["x", "w", "x_zp", "w_zp"], ["y"], **_conv_attrs(stride, pads, dilation, group))
    return _model(node, [_input("x", x), _input("w", w)], inits, np.int32)


def matmul_integer_model(a: np.ndarray, b: np.ndarray, a_zp, b_zp) -> bytes:
    """MatMulInteger (int32 output); a_zp scalar, b_zp scalar or per column (N,)."""
    inits = [_init("a_zp", a_zp), _init("b_zp", b_zp)]
    node = helper.make_node("MatMulInteger", ["a", "b", "a_zp", "b_zp"], ["y"])
    return _model(node, [_input("a", a), _input("b", b)], inits, np.int32)


def run(model: bytes, **feeds: np.ndarray) -> np.ndarray:
    """Run a single-output model on one thread with all graph optimizations off."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]

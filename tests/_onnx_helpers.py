"""Small ONNX model builders shared by the ONNX Runtime op tests."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import helper, numpy_helper

MS = "com.microsoft"


def elem(dtype) -> int:
    """The ONNX tensor element type of a numpy dtype."""
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def model_bytes(nodes, inputs, outputs, inits: dict, opset: int = 17) -> bytes:
    """A serialized model of ``nodes`` (default domain at ``opset``, com.microsoft v1), with
    ``inits`` (name -> array) as initializers."""
    graph = helper.make_graph(
        nodes, "g", inputs, outputs,
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(MS, 1)])
    model.ir_version = 9
    return model.SerializeToString()


def session(model: bytes) -> ort.InferenceSession:
    """A one-thread CPU session, warnings silenced."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

"""Small ONNX model builders shared by the ONNX Runtime op tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import helper, numpy_helper

# (form name, QuantFormat name, activation QuantType name) for `quantize_forms`.
FORMS = {"qdq-u8": ("QDQ", "QUInt8"), "qdq-s8": ("QDQ", "QInt8"),
         "qoperator-u8": ("QOperator", "QUInt8"), "qoperator-s8": ("QOperator", "QInt8")}

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


def quantize_forms(pre: Path, out_stem: Path, calib: np.ndarray, forms, **kwargs) -> dict:
    """``quantize_static`` of the pre-processed float model ``pre`` in each of ``forms`` (names
    of ``FORMS``), calibrated on ``calib`` one sample at a time, per-channel int8 weights;
    ``kwargs`` go to ``quantize_static``.  Returns form -> path ``{out_stem}.{form}.onnx``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    class Reader:
        def __init__(self) -> None:
            self.it = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    paths = {}
    for form in forms:
        fmt, act = FORMS[form]
        paths[form] = Path(f"{out_stem}.{form}.onnx")
        quantize_static(str(pre), str(paths[form]), Reader(), quant_format=QuantFormat[fmt],
                        per_channel=True, activation_type=QuantType[act],
                        weight_type=QuantType.QInt8, **kwargs)
    return paths

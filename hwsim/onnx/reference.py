"""Run a model in ONNX Runtime and read any of its tensors: the reference an imported program
is checked against."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from hwsim.onnx._deps import require
from hwsim.onnx._model import ModelSource, load_model
from hwsim.onnx.errors import OnnxImportError


def ort_reference_outputs(source: ModelSource, x: np.ndarray, names: Iterable[str] = (), *,
                          optimize: bool = True) -> dict[str, np.ndarray]:
    """ONNX Runtime's values of the model output(s) and of the intermediate tensors `names`
    (e.g. the names of an imported program's nodes, which are ONNX tensor names) on float
    input x (N, ...).

    Runs the CPU execution provider on one thread; `optimize` False turns graph optimizations
    off (default: on, as a deployment runs). Returns {tensor name: array}, the model outputs
    included. Unknown names raise OnnxImportError.
    """
    ort = require("onnxruntime", "ort_reference_outputs")
    onnx = require("onnx", "ort_reference_outputs")
    model = load_model(source)
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    known = {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
    wanted = [n for n in dict.fromkeys(names)]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise OnnxImportError(f"{model.label}: no tensor named {unknown[:5]} in the model")
    outputs = [o.name for o in proto.graph.output]
    for name in wanted:
        if name not in outputs:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed_name = model.graph_input().name
    names_out = [o.name for o in sess.get_outputs()]
    values = sess.run(names_out, {feed_name: np.asarray(x, dtype=np.float32)})
    return dict(zip(names_out, values))

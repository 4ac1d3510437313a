"""Run a model in ONNX Runtime and read any of its tensors: the reference an imported program
is checked against."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from hwsim.onnx._deps import require
from hwsim.onnx._model import ModelSource, OnnxModel, load_model
from hwsim.onnx.errors import OnnxImportError


def ort_reference_outputs(source: ModelSource, x: np.ndarray, names: Iterable[str] = (), *,
                          optimize: bool = True) -> dict[str, np.ndarray]:
    """ONNX Runtime's values of the model output(s) and of the intermediate tensors `names`
    (e.g. the names of an imported program's nodes, which are ONNX tensor names) on float
    input x (N, ...).

    Runs the CPU execution provider on one thread; `optimize` False turns graph optimizations
    off (default: on, as a deployment runs). Returns {tensor name: array}, the model outputs
    included. Unknown names raise OnnxImportError.

    A model whose input has a static batch B (torch.onnx.export's default B = 1) runs in
    chunks of B inputs, the results joined along the batch dimension (`ort_batch`); a model
    ONNX Runtime refuses raises OnnxImportError with ORT's message.
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
    x = np.asarray(x, dtype=np.float32)
    chunk = ort_batch(model, x.shape)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # errors reach the user as one line of ours, not ORT's log
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    feed_name = model.graph_input().name
    try:
        sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        names_out = [o.name for o in sess.get_outputs()]
        runs = [sess.run(names_out, {feed_name: x[i: i + chunk]})
                for i in range(0, len(x), chunk)]
    except Exception as exc:  # ORT's own errors, and what its bindings raise on odd models
        raise OnnxImportError(f"{model.label}: ONNX Runtime cannot run the model "
                              f"({type(exc).__name__}: {_first_line(exc)})") from None
    if len(runs) == 1:
        return dict(zip(names_out, runs[0]))
    try:
        return {name: np.concatenate([np.asarray(r[k]) for r in runs])
                for k, name in enumerate(names_out)}
    except ValueError:
        raise OnnxImportError(f"{model.label}: the model has a static batch of {chunk}, and "
                              "its outputs cannot be joined along the batch dimension to run "
                              f"{len(x)} inputs; export it with a dynamic batch") from None


def ort_batch(source: ModelSource, shape: tuple[int, ...]) -> int:
    """How many inputs of `shape` (N, ...) one ONNX Runtime run takes: N when the model's input
    has a symbolic batch dimension (or a static one equal to N), else the static batch B (1 for
    the usual torch.onnx.export), when N is a multiple of it. The other static dimensions must
    match `shape`. Raises OnnxImportError naming the input and both shapes otherwise."""
    model = source if isinstance(source, OnnxModel) else load_model(source)
    value = model.graph_input()
    t = value.type.tensor_type
    dims = list(t.shape.dim) if t.HasField("shape") else []
    n = int(shape[0]) if len(shape) else 0
    if not dims:
        return max(n, 1)
    declared = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0
                     else (d.dim_param or "?") for d in dims)
    shown = "(" + ", ".join(map(str, declared)) + ")"
    if len(declared) != len(shape) or any(isinstance(d, int) and d != s
                                          for d, s in zip(declared[1:], shape[1:])):
        raise OnnxImportError(f"{model.label}: input {value.name!r} is declared {shown}; the "
                              f"inputs have shape {tuple(shape)}")
    batch = declared[0]
    if not isinstance(batch, int) or batch == n:
        return max(n, 1)
    if n % batch:
        raise OnnxImportError(f"{model.label}: input {value.name!r} has a static batch of "
                              f"{batch} {shown}; {n} inputs are not a multiple of it (export "
                              "the model with a dynamic batch, or pass a multiple)")
    return batch


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__

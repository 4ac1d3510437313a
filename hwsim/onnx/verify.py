"""An int8 ONNX model imported into an integer program, run by hwsim and by ONNX Runtime on the
same float inputs, and compared layer by layer on the codes (`hwsim verify --onnx`).

Inputs are checked against the model's input first (rank, sizes, float dtype, finite values):
a mismatch is one HwsimError naming the file (or flag) and the model's input, with the shape
expected and the one given.  hwsim runs the N inputs as one batch; ONNX Runtime runs them in
chunks of the model's static batch B when it has one (`ort_batch`: N must be a multiple of B).
A model that declares a dynamic batch but refuses a batch of N (e.g. a Reshape to a constant
batch of 1) is run by ONNX Runtime one input at a time, as if declared with a batch of 1."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwsim.engines.table import is_pytorch_engine
from hwsim.errors import HwsimError
from hwsim.executor import ExecutionResult, execute
from hwsim.ir import IntProgram
from hwsim.onnx.errors import OnnxImportError
from hwsim.verify import sqnr_db

ZOO_INPUT = (3, 224, 224)
_NPY_MAGIC = b"\x93NUMPY"
COLUMNS = ["layer", "op", "unit", "outputs", "mismatches", "max_lsb_diff", "sqnr_db"]


@dataclass
class OnnxVerification:
    """`per_layer`: one row per program node whose codes ONNX Runtime exposes (COLUMNS);
    `summary`: whole-model figures; `program`, `codes`, `run`: what hwsim ran."""

    per_layer: pd.DataFrame
    summary: dict[str, Any]
    program: IntProgram
    codes: np.ndarray
    run: ExecutionResult


def check_engine(engine: str | None) -> None:
    """--onnx compares with ONNX Runtime only; the PyTorch engine modes belong to --model."""
    if is_pytorch_engine(engine):
        raise HwsimError(f"--engine {engine}: engine modes (qnnpack, onednn, fbgemm) apply to "
                         "--model; an ONNX model is verified against ONNX Runtime (--engine ort)")


def load_inputs(path: str, program: IntProgram) -> np.ndarray:
    """Float inputs (N, ...) from a .npy file, checked against the program's input shape."""
    try:
        with open(path, "rb") as f:
            if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                raise HwsimError(f"--inputs {path}: not a .npy file (no NumPy array header); "
                                 "save the inputs with numpy.save")
            f.seek(0)
            x = np.load(f, allow_pickle=False)
    except FileNotFoundError:
        raise HwsimError(f"--inputs {path}: no such file") from None
    except IsADirectoryError:
        raise HwsimError(f"--inputs {path}: is a directory, not a .npy file") from None
    except PermissionError:
        raise HwsimError(f"--inputs {path}: cannot read (permission denied)") from None
    except (OSError, ValueError, EOFError) as exc:
        raise HwsimError(f"--inputs {path}: unreadable .npy array ({exc})") from None
    return check_inputs(x, program, f"--inputs {path}")


def check_inputs(x: Any, program: IntProgram, where: str) -> np.ndarray:
    """`x` as float32 inputs (N, ...) of the program's input, N >= 1, all finite; otherwise a
    one-line HwsimError starting with `where` (e.g. "--inputs x.npy") that names the model's
    input and says what was expected and what `x` is."""
    inp = program.input
    want = tuple(inp.out_shape[1:])
    label = f"the model input {inp.attrs.get('onnx_input', inp.name)!r}"
    if not isinstance(x, np.ndarray) or x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        shape = tuple(x.shape) if isinstance(x, np.ndarray) else None
        got = f"shape {shape}" if shape is not None else f"a {type(x).__name__}"
        hint = ("; it looks like one input without the batch dimension: save x[None]"
                if shape == want else "")
        raise HwsimError(f"{where}: expected a float array of shape "
                         f"(N, {', '.join(map(str, want))}) like {label}; got {got}{hint}")
    if x.dtype.kind != "f":
        raise HwsimError(f"{where}: expected float inputs (the model quantizes them) for {label}; "
                         f"got dtype {x.dtype}")
    if x.shape[0] < 1:
        raise HwsimError(f"{where}: the array holds no inputs (N = 0)")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise HwsimError(f"{where}: {int(np.size(x) - np.isfinite(x).sum())} values are "
                         "NaN or infinite (or overflow float32); expected finite inputs")
    return x


def default_inputs(program: IntProgram) -> np.ndarray:
    """The zoo's 50 evaluation images when the model takes (N, 3, 224, 224) inputs."""
    shape = tuple(program.input.out_shape[1:])
    if shape != ZOO_INPUT:
        raise HwsimError(f"the model input is (N, {', '.join(map(str, shape))}), not an image "
                         f"batch (N, 3, 224, 224): pass float inputs with --inputs FILE.npy")
    from hwsim.zoo import sample_images

    return sample_images("eval").numpy()


def verify_onnx(model: str | Path, inputs: np.ndarray | str | None = None, *,
                images: int | None = None, backend: str = "fast") -> OnnxVerification:
    """Import `model`, run it in hwsim and in ONNX Runtime on float `inputs` (an array (N, ...),
    or the path of a .npy file holding one; default: the zoo's evaluation images), the first
    `images` of them, and compare every program node's codes that the ONNX model names
    (mismatches, largest difference in LSBs, SQNR in dB of hwsim's dequantized codes against
    ONNX Runtime's)."""
    from hwsim.onnx import load_onnx_program, quantize_input
    from hwsim.onnx.inputs import input_shape_of
    from hwsim.onnx.reference import ort_batch

    program = load_onnx_program(model, input_shape=input_shape_of(inputs))  # symbolic H, W
    if inputs is None:
        x = default_inputs(program)
    elif isinstance(inputs, np.ndarray):
        x = check_inputs(inputs, program, "inputs")
    else:
        x = load_inputs(str(inputs), program)
    if images is not None:
        if images < 1:
            raise HwsimError(f"--images must be at least 1, got {images}")
        if images > len(x):
            where = "the zoo's evaluation images" if inputs is None else (
                "the inputs" if isinstance(inputs, np.ndarray) else f"--inputs {inputs}")
            raise HwsimError(f"--images {images}: only {len(x)} inputs are available "
                             f"({where})")
        x = x[:images]
    if len(x) < 1:
        raise HwsimError("no inputs to verify on (a batch of 0)")
    ort_batch(model, x.shape)  # a model with a static batch ORT cannot run on x: fail now
    codes = quantize_input(program, x)
    run = execute(program, codes, record=True, backend=backend)
    names = _exposed(model, program)
    ref = _ort_outputs(model, x, names)
    rows = [_row(program, name, run.tensors[name], ref[name]) for name in names]
    per_layer = pd.DataFrame(rows, columns=COLUMNS)
    return OnnxVerification(per_layer, _summary(model, program, run, ref, per_layer, len(x)),
                            program, codes, run)


def _static_batch(model) -> int | None:
    """The model input's static batch size, or None when the batch dimension is symbolic."""
    from hwsim.onnx._model import load_model

    dims = load_model(model).graph_input().type.tensor_type.shape.dim
    if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
        return int(dims[0].dim_value)
    return None


def _ort_outputs(model, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """ONNX Runtime's values of `names` on `x`; a model declaring a dynamic batch that ONNX
    Runtime cannot run on len(x) > 1 inputs at once is run one input at a time (declared with
    batch 1); if that fails too, the first error is raised."""
    import hwsim.onnx

    try:
        return hwsim.onnx.ort_reference_outputs(model, x, names)
    except OnnxImportError as first:
        if len(x) == 1 or _static_batch(model) is not None:
            raise
        try:
            return hwsim.onnx.ort_reference_outputs(_with_batch_one(model), x, names)
        except OnnxImportError:
            raise first from None


def _with_batch_one(model):
    """A copy of the model (a ModelProto) whose input declares a static batch of 1."""
    import onnx

    from hwsim.onnx._model import load_model

    loaded = load_model(model)
    proto = onnx.ModelProto()
    proto.CopyFrom(loaded.proto)
    name = loaded.graph_input().name
    value = next(v for v in proto.graph.input if v.name == name)
    value.type.tensor_type.shape.dim[0].dim_value = 1
    return proto


def _exposed(model, program: IntProgram) -> list[str]:
    """Program nodes (in program order) whose codes are a tensor of the ONNX model."""
    from hwsim.onnx._model import load_model

    graph = load_model(model).graph
    tensors = {o for n in graph.node for o in n.output}
    return [n.name for n in program.nodes() if n.name in tensors]


def _row(program: IntProgram, name: str, ours: np.ndarray, theirs: np.ndarray) -> dict:
    node = program.node(name)
    if ours.shape != theirs.shape:
        raise HwsimError(f"node {name!r}: hwsim computed shape {ours.shape}, ONNX Runtime "
                         f"{theirs.shape}")
    diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
    return {"layer": name, "op": node.op, "unit": _unit(node), "outputs": int(diff.size),
            "mismatches": int(np.count_nonzero(diff)),
            "max_lsb_diff": int(diff.max()) if diff.size else 0,
            "sqnr_db": sqnr_db(node.out.dequantize(theirs), node.out.dequantize(ours))}


def _unit(node) -> str:
    """Where a node runs: a compute unit (ops the cost model prices), the vector unit, or the
    vector unit in float32 (a float island: ONNX float ops ONNX Runtime did not quantize)."""
    from hwsim.ir.ops import op_def
    from hwsim.ops.float_island import FLOAT_ISLAND_UNIT

    if node.op == "float_island":
        return FLOAT_ISLAND_UNIT
    return "compute unit" if op_def(node.op).workload is not None else "vector unit"


def _summary(model, program: IntProgram, run: ExecutionResult, ref: dict, per_layer: pd.DataFrame,
             n_inputs: int) -> dict[str, Any]:
    import onnxruntime

    exact = int((per_layer["mismatches"] == 0).sum())
    summary: dict[str, Any] = {
        "model": str(model), "engine": f"onnxruntime {onnxruntime.__version__}",
        "inputs": n_inputs, "layers_bit_exact": f"{exact}/{len(per_layer)}",
        "outputs_compared": int(per_layer["outputs"].sum()),
        "total_mismatches": int(per_layer["mismatches"].sum()),
        "max_lsb_diff": int(per_layer["max_lsb_diff"].max()) if len(per_layer) else 0,
        "accumulator_overflows": run.total_overflows,  # hwsim's, e.g. saturated int16 pairs
    }
    out = program.output
    if out.name in ref and run.output.ndim == 2 and run.output.shape[1] > 1:
        ours, theirs = (out.out.dequantize(v) for v in (run.output, ref[out.name]))
        summary["output_top1_agreement"] = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    return summary

"""`hwsim verify --onnx MODEL --inputs X.npy` on models exported with a static batch of 1 and
quantized by ONNX Runtime's quantize_static, as users bring them: a batch of N > 1 is verified
(ONNX Runtime runs it in chunks the model accepts), and every input that does not fit the
model is one line naming the file and the model's input, expected vs got, exit status 2."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")
torch = pytest.importorskip("torch")

import onnx  # noqa: E402
from torch import nn  # noqa: E402

import hwsim.onnx  # noqa: E402
from hwsim.cli import main  # noqa: E402
from tests._cli_helpers import one_error_line  # noqa: E402
from hwsim.errors import HwsimError  # noqa: E402
from hwsim.onnx import OnnxImportError, verify_onnx  # noqa: E402

SHAPE = (3, 8, 8)


class _Net(nn.Module):
    """conv -> ReLU -> flatten -> linear; `view1`: flattened with view(1, -1), a Reshape to a
    constant batch of 1 (runs on one input at a time only)."""

    def __init__(self, view1: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)
        self.view1 = view1

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(y.view(1, -1) if self.view1 else torch.flatten(y, 1))


class _Calibration:
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self._it = iter([{"input": rng.normal(size=(1, *SHAPE)).astype(np.float32)}
                         for _ in range(4)])

    def get_next(self):
        return next(self._it, None)


def _export(folder, name: str, view1: bool = False, dynamic: bool = False) -> str:
    """A float model exported by torch.onnx (batch 1, or dynamic), quantized by ONNX Runtime
    (QDQ, per-channel s8 weights, u8 activations)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    torch.manual_seed(0)
    fp, q = folder / f"{name}.float.onnx", folder / f"{name}.int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            torch.onnx.export(_Net(view1).eval(), torch.randn(1, *SHAPE), str(fp),
                              opset_version=17, dynamo=False, input_names=["input"],
                              output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}} if dynamic
                              else None)
            quantize_static(str(fp), str(q), _Calibration(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
    return str(q)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify_onnx_inputs")
    paths = {"static1": _export(folder, "static1"),
             "view1": _export(folder, "view1", view1=True, dynamic=True)}
    m = onnx.load(paths["static1"])
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 2
    paths["static2"] = str(folder / "static2.int8.onnx")
    onnx.save(m, paths["static2"])
    return {"folder": folder, **paths}


def _npy(folder, name: str, array: np.ndarray) -> str:
    path = folder / f"{name}.npy"
    np.save(path, array, allow_pickle=array.dtype == object)
    return str(path)


def _inputs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)


def verify(*args: str) -> int:
    return main(["verify", *args])


def _summary(models, model: str, inputs: str) -> dict:
    js = models["folder"] / "r.json"
    assert verify("--onnx", model, "--inputs", inputs, "--json", str(js)) == 0
    return json.loads(js.read_text())["summary"]


@pytest.mark.parametrize("n", [1, 2, 5])
def test_static_batch_1_model_verifies_any_batch(models, n, capsys):
    inputs = _npy(models["folder"], f"batch{n}", _inputs(n))
    summary = _summary(models, models["static1"], inputs)
    capsys.readouterr()
    assert summary["inputs"] == n and summary["total_mismatches"] == 0


def test_float64_and_float16_inputs_are_taken_as_float32(models, capsys):
    for dtype in (np.float64, np.float16):
        inputs = _npy(models["folder"], f"as_{np.dtype(dtype).name}", _inputs(2).astype(dtype))
        assert _summary(models, models["static1"], inputs)["inputs"] == 2
    capsys.readouterr()


def test_a_dynamic_batch_model_that_runs_one_input_at_a_time(models, capsys):
    """Declared with a dynamic batch, but a Reshape to (1, -1) inside: ONNX Runtime refuses a
    batch of 3, so it runs them one at a time; hwsim's codes equal ONNX Runtime's."""
    inputs = _npy(models["folder"], "batch3", _inputs(3))
    summary = _summary(models, models["view1"], inputs)
    capsys.readouterr()
    assert summary["inputs"] == 3 and summary["total_mismatches"] == 0


@pytest.mark.parametrize("name, array, needles", [
    ("channels", np.zeros((2, 4, 8, 8), np.float32), ["(N, 3, 8, 8)", "got shape (2, 4, 8, 8)"]),
    ("spatial", np.zeros((2, 3, 9, 9), np.float32), ["(N, 3, 8, 8)", "got shape (2, 3, 9, 9)"]),
    ("no_batch", np.zeros((3, 8, 8), np.float32),
     ["(N, 3, 8, 8)", "got shape (3, 8, 8)", "without the batch dimension"]),
    ("rank5", np.zeros((1, 2, 3, 8, 8), np.float32), ["(N, 3, 8, 8)", "got shape (1, 2, 3, 8, 8)"]),
    ("scalar", np.float32(1.0).reshape(()), ["(N, 3, 8, 8)", "got shape ()"]),
    ("ints", np.zeros((2, 3, 8, 8), np.int8), ["expected float inputs", "got dtype int8"]),
    ("bools", np.zeros((2, 3, 8, 8), bool), ["expected float inputs", "got dtype bool"]),
    ("complex", np.zeros((2, 3, 8, 8), np.complex64), ["expected float inputs", "complex64"]),
    ("empty", np.zeros((0, 3, 8, 8), np.float32), ["no inputs (N = 0)"]),
    ("nan", np.full((2, 3, 8, 8), np.nan, np.float32), ["384 values are NaN or infinite"]),
    ("objects", np.array([{"a": 1}], dtype=object), ["unreadable .npy array"]),
])
def test_inputs_that_do_not_fit_are_one_line(models, name, array, needles, capsys):
    inputs = _npy(models["folder"], name, array)
    for model in (models["static1"], models["view1"]):
        assert verify("--onnx", model, "--inputs", inputs) == 2
        line = one_error_line(capsys)
        assert f"--inputs {inputs}: " in line
        if "shape" in needles[0] or "float inputs" in needles[0]:
            assert "the model input 'input'" in line
        for needle in needles:
            assert needle in line, line


def test_a_static_batch_that_the_inputs_do_not_fill(models, capsys):
    inputs = _npy(models["folder"], "three", _inputs(3))
    assert verify("--onnx", models["static2"], "--inputs", inputs) == 2
    line = one_error_line(capsys)
    assert models["static2"] in line and "input 'input' has a static batch of 2" in line
    assert "3 inputs are not a multiple of it" in line
    four = _npy(models["folder"], "four", _inputs(4))
    assert _summary(models, models["static2"], four)["inputs"] == 4
    capsys.readouterr()


def test_an_onnx_runtime_failure_is_its_first_error(models, monkeypatch, capsys):
    """When ONNX Runtime fails on the batch and on one input at a time too, the error of the
    first run is the one line; a static-batch model is not run a second time."""
    calls = []

    def fail(model, x, names=(), **kw):
        calls.append(len(x))
        raise OnnxImportError(f"{model if isinstance(model, str) else '<in-memory model>'}: "
                              f"ONNX Runtime cannot run the model (run {len(calls)})")

    monkeypatch.setattr(hwsim.onnx, "ort_reference_outputs", fail)
    inputs = _npy(models["folder"], "batch2", _inputs(2))
    assert verify("--onnx", models["view1"], "--inputs", inputs) == 2
    line = one_error_line(capsys)
    assert line.endswith(f"{models['view1']}: ONNX Runtime cannot run the model (run 1)")
    assert calls == [2, 2]
    calls.clear()
    assert verify("--onnx", models["static1"], "--inputs", inputs) == 2
    assert "(run 1)" in one_error_line(capsys) and calls == [2]


def test_the_python_api_checks_an_array_too(models):
    with pytest.raises(HwsimError, match=r"^inputs: expected a float array of shape \(N, 3, 8, 8\) "
                                         r"like the model input 'input'; got shape \(2, 3, 9, 9\)"):
        verify_onnx(models["static1"], np.zeros((2, 3, 9, 9), np.float32))
    with pytest.raises(HwsimError, match="inputs: expected float inputs"):
        verify_onnx(models["static1"], np.zeros((2, *SHAPE), np.int64))
    result = verify_onnx(models["static1"], _inputs(3).astype(np.float64))
    assert result.summary["inputs"] == 3 and result.codes.shape == (3, *SHAPE)

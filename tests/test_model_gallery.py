"""The model gallery (README "Model gallery", tests/_gallery.py): each float ONNX CNN of the onnx
wheel's backend test data and the pretrained networks shipped in the 'gallery' wheels, through
ONNX Runtime's quantizer + `hwsim verify --onnx`, hwsim's own int8 flow and the cost model.

Each test computes its model's row and checks it: ONNX Runtime's QDQ model, where hwsim imports
it, equals hwsim bit for bit; hwsim's integer program is within 1 LSB of its fake-quant model
at every layer; costs are positive and finite; and the row equals the README table's row
(`python scripts/readme_figures.py gallery` regenerates the table). A refusal (an op hwsim or
capture does not support) is the row's expected result, as the README states it.

All models: about 85 s on two cores (vgg19 alone 35 s), peak memory about 7 GB (vgg19).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

from tests import _gallery  # noqa: E402

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True)
def _one_thread():
    import onnxruntime
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    onnxruntime.set_default_logger_severity(3)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list(_gallery.MODELS))
def test_gallery_model(name):
    try:
        _gallery.model_file(_gallery.MODELS[name])
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    row = _gallery.row(name)
    ort_cell = row["ONNX Runtime QDQ vs hwsim"]
    assert ort_cell.startswith(("bit-exact", "refused: ")), ort_cell
    flow_cell = row["hwsim int8 flow: max LSB, vs float"]
    lsb = re.match(r"(\d+) LSB", flow_cell)
    assert lsb is not None or flow_cell.startswith(("refused: ", "not run: ")), flow_cell
    if lsb is not None:
        assert int(lsb.group(1)) <= 1, flow_cell
    for column in ("MACs", "cycles (int8 systolic)"):
        if row[column] != "—" and not row[column].startswith("not priced"):
            value = float(row[column].split()[0])
            assert value > 0 and math.isfinite(value), row
    committed = _gallery.readme_rows(README.read_text()).get(row["model"])
    assert committed == _gallery.format_row(row), (
        f"README.md's gallery row for {row['model']!r} is stale; run `python "
        f"scripts/readme_figures.py gallery`:\nREADME:  {committed}\nnow:     "
        f"{_gallery.format_row(row)}")

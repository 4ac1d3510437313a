"""examples/train_binary_digits.py in quick mode: the float model learns digits, every LS
activation quantizer trains to a finite accuracy, the fake-quant layers really quantize, the
trained networks run through hwsim's integer executor with the fake-quant model's predictions on
the whole test split, and bad flags raise QuantError naming the flag."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from quant.errors import QuantError

_SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_binary_digits.py"


@pytest.fixture(scope="module")
def digits():
    spec = importlib.util.spec_from_file_location("train_binary_digits", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_quick_mode_trains_float_and_every_quantizer(digits, capsys):
    table = digits.main(["--epochs", "3", "--seeds", "1"])
    out = capsys.readouterr().out
    acts = [*digits.ACT_FORMATS, digits.BASELINE]
    assert list(table["act"]) == acts
    for label in ("1-bit (LS-1)", "ternary (LS-T)", "GF-2", "LS-2", "float weights"):
        assert label in out
    acc = dict(zip(table["act"], table["mean_acc"]))
    assert all(np.isfinite(a) and 0.0 <= a <= 1.0 for a in acc.values()), acc
    assert acc["baseline"] > 0.8, acc  # chance is 0.1
    assert acc["float"] > 0.5, acc     # LS-1 weights, float activations
    assert (table["seeds"] == 1).all()
    deployed = table[table["act"] != digits.BASELINE]
    # every trained quantized network, lowered to an integer program: its predictions on all
    # 450 test images equal the fake-quant model's
    assert (deployed["images"] == 450).all()
    assert (deployed["agree"] == deployed["images"]).all(), deployed
    assert (deployed["max_lsb"] <= 1).all(), deployed
    assert (abs(deployed["int_acc"] - deployed["fake_acc"]) < 1e-12).all()
    assert "450/450" in out


def test_running_scale_deployment_matches_fake_quant_on_the_whole_test_split(digits):
    settings = digits.TrainSettings(epochs=2)
    data = digits.load_split(settings)
    model = digits.train_model("ls2", 0, data, settings)
    result = digits.deploy(model, data, scaling="running")
    assert result["images"] == len(data[2]) == 450
    assert result["agree"] == 450, result
    assert result["int_acc"] > 0.5, result


def test_binarized_conv_input_takes_the_format_levels(digits, monkeypatch):
    """With LS-1 activations the binarized conv sees, per sample, exactly two values +-v;
    with LS-2 at most four; weights are +-v per output channel."""
    torch.manual_seed(0)
    x = torch.rand(5, 1, 8, 8)
    seen = {}
    for act in ("ls1", "ls2", "float"):
        net = digits.DigitsNet(act).eval()
        captured = []
        orig = torch.nn.functional.conv2d

        def spy(inp, w, *args, **kwargs):
            captured.append((inp.detach(), w.detach()))
            return orig(inp, w, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(digits.F, "conv2d", spy)
            net(x)
        inp, w = captured[1]  # conv2: the first binarized conv
        seen[act] = [len(torch.unique(inp[n])) for n in range(len(x))]
        for k in range(w.shape[0]):
            vals = torch.unique(w[k].abs())
            assert len(vals) == 1, f"{act}: conv2 channel {k} has |w| levels {vals}"
    assert seen["ls1"] == [2] * len(x)
    assert all(n <= 4 for n in seen["ls2"])
    assert all(n > 4 for n in seen["float"])


def test_same_seed_same_accuracy(digits):
    settings = digits.TrainSettings(epochs=1)
    data = digits.load_split(settings)
    a = digits.train_one("ls1", 3, data, settings)
    b = digits.train_one("ls1", 3, data, settings)
    assert a == b


@pytest.mark.parametrize("argv, needle", [
    (["--acts", "ls1,bogus"], "--acts"),
    (["--widths", "8,16"], "--widths"),
    (["--epochs", "0"], "--epochs"),
])
def test_bad_flags_raise_quant_error_naming_the_flag(digits, argv, needle):
    with pytest.raises(QuantError, match=needle):
        digits.main(argv)

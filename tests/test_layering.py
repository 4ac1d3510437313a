"""The one-way dependency rules of DESIGN.md, checked in fresh interpreters."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports_in_fresh_python(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


# The core may use quant's torch-free number formats (the names of format families, e.g. to check
# an accelerator's routing rules) but none of its torch-facing modules.
TORCH_FACING_QUANT = ("quant.model", "quant.capture", "quant.calibrate")


def _assert_torch_free(mods: set[str]) -> None:
    assert "torch" not in mods
    assert not any(m.startswith("torch.") for m in mods)
    for name in TORCH_FACING_QUANT:
        assert name not in mods, name


def test_hwsim_core_never_imports_torch():
    mods = _imports_in_fresh_python(
        "import hwsim, hwsim.ir, hwsim.kernels, hwsim.executor, hwsim.arch, hwsim.cost, "
        "hwsim.workloads, hwsim.lower, hwsim.verify, hwsim.engines, hwsim.analysis, hwsim.cli.main")
    _assert_torch_free(mods)


def test_loading_a_config_with_format_rules_uses_only_torch_free_quant():
    # A rule naming a format makes the loader check it against quant.formats (torch-free).
    mods = _imports_in_fresh_python(
        "from hwsim.arch import accelerator_from_dict\n"
        "import yaml\n"
        "raw = yaml.safe_load(open('hw_configs/hetero_int8_xnor.yaml'))\n"
        "raw['assign']['rules'].append({'unit': 'binary', 'format': 'binary'})\n"
        "accel = accelerator_from_dict(raw)\n"
        "assert accel.rules[-1].format == 'binary'")
    assert "quant.formats" in mods
    _assert_torch_free(mods)


def test_quant_never_imports_hwsim():
    mods = _imports_in_fresh_python("import quant")
    assert not any(m == "hwsim" or m.startswith("hwsim.") for m in mods)


def test_no_source_file_of_quant_mentions_an_hwsim_import():
    for path in (ROOT / "quant").rglob("*.py"):
        text = path.read_text()
        assert "import hwsim" not in text and "from hwsim" not in text, path

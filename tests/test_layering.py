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


def test_hwsim_core_never_imports_torch():
    mods = _imports_in_fresh_python(
        "import hwsim, hwsim.ir, hwsim.kernels, hwsim.executor, hwsim.arch, hwsim.cost, "
        "hwsim.workloads, hwsim.lower, hwsim.verify, hwsim.engines, hwsim.analysis, hwsim.cli.main")
    assert "torch" not in mods
    assert "quant" not in mods


def test_quant_never_imports_hwsim():
    mods = _imports_in_fresh_python("import quant")
    assert not any(m == "hwsim" or m.startswith("hwsim.") for m in mods)


def test_no_source_file_of_quant_mentions_an_hwsim_import():
    for path in (ROOT / "quant").rglob("*.py"):
        text = path.read_text()
        assert "import hwsim" not in text and "from hwsim" not in text, path

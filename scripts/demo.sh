#!/usr/bin/env bash
# Installs hwsim into .venv and runs the demo: MobileNetV2 (real ImageNet weights) quantized to
# int8, executed bit-accurately, compared with float, and costed on hw_configs/int8_systolic.yaml.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh" data
venv="${HWSIM_VENV:-$root/.venv}"
cd "$root"
exec "$venv/bin/hwsim" demo "$@"

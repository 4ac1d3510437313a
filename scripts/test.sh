#!/usr/bin/env bash
# Installs hwsim with its test extras into .venv and runs the whole test suite (slow tests too).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh" test
venv="${HWSIM_VENV:-$root/.venv}"
cd "$root"
exec "$venv/bin/python" -m pytest -q --durations=25 "$@"

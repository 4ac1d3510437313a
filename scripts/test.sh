#!/usr/bin/env bash
# Installs hwsim with its test extras into .venv and runs the whole test suite (slow tests too).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh" test
venv="${HWSIM_VENV:-$root/.venv}"
cd "$root"
# two workers (pytest-xdist): the suite is mostly single-threaded numpy / numba and ONNX Runtime
# one-thread sessions, so two cores take about half the time; HWSIM_TEST_WORKERS=0 runs it in one
# process
exec "$venv/bin/python" -m pytest -q --durations=25 -n "${HWSIM_TEST_WORKERS:-2}" "$@"

#!/usr/bin/env bash
# Installs hwsim with its test extras into .venv and runs the whole test suite (slow tests too).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh" test
venv="${HWSIM_VENV:-$root/.venv}"
cd "$root"
# two workers (pytest-xdist): the suite is mostly single-threaded numpy / numba and ONNX Runtime
# one-thread sessions, so two cores take about half the time; HWSIM_TEST_WORKERS=0 runs it in one
# process. Whole files go to a worker (--dist loadfile), the README figure blocks' file first
# (tests/conftest.py), so one worker runs those blocks from the start.
workers="${HWSIM_TEST_WORKERS:-2}"
dist=()
if [ "$workers" != "0" ]; then dist=(--dist loadfile); fi
exec "$venv/bin/python" -m pytest -q --durations=25 -n "$workers" "${dist[@]}" "$@"

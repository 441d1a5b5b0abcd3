#!/usr/bin/env bash
# Runs the test suite. Creates .venv and installs everything on first use. Extra arguments go to pytest,
# e.g. `scripts/test.sh -k splits`, `scripts/test.sh -m "not slow"`, or `scripts/test.sh -m bench_processes`
# (the benchmark's process-measurement smoke runs, left out by default: pytest.ini). Two worker processes by default
# (TEST_WORKERS=0 runs in this process): most tests wait on subprocesses that leave a core idle part of the time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_venv.sh"
cd "$ROOT"
exec "$PY" -m pytest -n "${TEST_WORKERS:-2}" --dist load "$@"

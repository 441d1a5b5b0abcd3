#!/usr/bin/env bash
# Runs the test suite. Creates .venv and installs everything on first use. Extra arguments go to pytest,
# e.g. `scripts/test.sh -k splits`, or `scripts/test.sh -m bench_processes` (the benchmark's process-measurement
# smoke runs, left out by default: pytest.ini). The fast loop while editing: `scripts/test.sh -m "not slow"` (no
# extraction through Beam, no training, nothing over about 5 s: the `slow` marker). Two worker processes by default
# (TEST_WORKERS=0 runs in this process): most tests wait on subprocesses that leave a core idle part of the time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_venv.sh"
cd "$ROOT"
# The diagnosis page is tested in a real browser: Debian's Chromium, driven by Playwright (tests/tools/test_report.py).
if ! command -v chromium >/dev/null 2>&1; then
  echo "[setup] installing Debian's chromium for the browser test (apt-get)"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
exec "$PY" -m pytest -n "${TEST_WORKERS:-2}" --dist load "$@"

#!/usr/bin/env bash
# Runs the test suite. Creates .venv and installs everything on first use. Extra arguments go to pytest,
# e.g. `scripts/test.sh -k splits` or `scripts/test.sh -m "not slow"`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_venv.sh"
cd "$ROOT"
exec "$PY" -m pytest "$@"

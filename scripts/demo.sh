#!/usr/bin/env bash
# The demo in one command: bootstrap, then app/demo.py: every example in-process, then distributed
# on a private redis-server and workers it starts and stops (arguments are passed on).
# Usage: bash scripts/demo.sh [demo args...]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
exec "$ROOT/.venv/bin/python" -m app.demo "$@"

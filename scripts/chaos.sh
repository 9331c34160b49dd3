#!/usr/bin/env bash
# Baton's chaos suite, in one command: bootstrap, then mixed runs under worker kills, Redis
# restarts and freezes, and poison messages, on a private redis-server and workers.
# Usage: bash scripts/chaos.sh            the long setting (2,000 runs, 12 faults, both fsyncs)
#        bash scripts/chaos.sh --short    the CI setting (80 runs, one fault of each kind)
# Any other arguments go to the suite (`bash scripts/chaos.sh --help`). Exit 1: a headline
# count was not 0 (the table says which; the work dir with the logs is kept).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
exec "$ROOT/.venv/bin/python" -m tests.chaos.suite "$@"

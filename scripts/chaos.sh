#!/usr/bin/env bash
# Baton's chaos suite, in one command: bootstrap, then mixed runs under worker kills, Redis
# restarts and freezes, and poison messages, on a private redis-server and workers.
# Usage: bash scripts/chaos.sh            the long setting (2,000 runs, 12 faults, both fsyncs)
#        bash scripts/chaos.sh --short    the CI setting (80 runs, one fault of each kind)
#        bash scripts/chaos.sh --short --state cluster   the same with a Redis Cluster as the
#                                  state store and RabbitMQ as the broker (tests/cluster/)
# Any other arguments go to the suite (`bash scripts/chaos.sh --help`). Exit 1: a headline
# count was not 0 (the table says which; the work dir with the logs is kept).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
suite=tests.chaos.suite
for arg in "$@"; do
    [[ "$arg" == --state* ]] && suite=tests.cluster.chaos_on_cluster  # it takes --state too
done
exec "$ROOT/.venv/bin/python" -m "$suite" "$@"

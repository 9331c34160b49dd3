#!/usr/bin/env bash
# The long acceptance tests the default run leaves out (marker ``long``): the browser tests of
# Flower and the dashboard, the llama-agents-client compatibility run, `baton up` twice, the
# demo, a killed worker's registry expiry, a reaper backlog, the RabbitMQ and Redis Cluster
# harnesses' own tests, and the short chaos suite on a Redis Cluster state store
# (tests/cluster/test_chaos_on_cluster.py). Same checks as scripts/test.sh.
# Usage: bash scripts/long.sh [pytest args...]
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/test.sh" -m long "$@"

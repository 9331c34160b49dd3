#!/usr/bin/env bash
# Every check, in one command: bootstrap, ruff format, ruff lint, mypy, import contracts, pytest.
# Usage: bash scripts/test.sh [pytest args...]   e.g. bash scripts/test.sh tests/unit -k codec
# All checks run even when one fails, so one run shows every problem; the exit code is non-zero
# if any failed. pytest runs last, so the output ends with its summary line.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
bash scripts/bootstrap.sh || exit 1

BIN="$ROOT/.venv/bin"
failed=()

check() {  # check NAME CMD...: run one static check, remember its failure
    local name="$1"
    shift
    echo "== $name" >&2
    "$@" || failed+=("$name")
}

check "ruff format" "$BIN/ruff" format --check --output-format concise .
check "ruff check" "$BIN/ruff" check --output-format concise .
check "mypy" "$BIN/mypy"
check "import contracts" "$BIN/lint-imports" --no-logo --no-cache

if ((${#failed[@]})); then
    echo "== static checks FAILED: ${failed[*]} (running tests anyway; exit will be non-zero)" >&2
fi

echo "== pytest" >&2
# Exit 5 (no tests collected) is non-zero, so it fails the run like any other pytest failure.
"$BIN/python" -m pytest -p no:cacheprovider "$@"
status=$?

if ((status == 0 && ${#failed[@]})); then
    status=1
fi
exit "$status"

#!/usr/bin/env bash
# Make this checkout ready to run: uv, the project's .venv (dev tools included), redis-server
# and chromium (for the browser tests).
# Idempotent and quiet on success; safe to run before every test or demo run.
# Needs Python 3.11 and pip; installs redis-server and chromium (for tests/browser) with apt-get
# when run as root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/baton-tools"   # private venv holding uv, if we install it

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

have() {  # an executable of that name is on PATH
    local path
    path="$(command -v "$1" 2>/dev/null)" && [[ -x "$path" ]]
}

quietly() {  # run a command; show its output only if it fails
    local log rc=0
    log="$(mktemp)"
    "$@" >"$log" 2>&1 || rc=$?
    ((rc == 0)) || cat "$log" >&2
    rm -f "$log"
    return "$rc"
}

ensure_uv() {
    have uv && return
    if [[ -x "$TOOLS/bin/uv" ]]; then
        export PATH="$TOOLS/bin:$PATH"
        return
    fi
    local py
    py="$(command -v python3.11 || command -v python3 || true)"
    [[ -n "$py" ]] || die "python3 not found: install Python 3.11 first"
    # A venv of its own: never touches the system Python (PEP 668) or ~/.local.
    "$py" -m venv "$TOOLS" >/dev/null 2>&1 || die "cannot create $TOOLS (apt-get install python3-venv?)"
    quietly "$TOOLS/bin/python" -m pip install --disable-pip-version-check uv \
        || die "pip install uv failed"
    export PATH="$TOOLS/bin:$PATH"
}

sync_venv() {
    # Always the checkout's .venv (the scripts call .venv/bin/...); never download a Python.
    export UV_PROJECT_ENVIRONMENT="$ROOT/.venv"
    export UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}"
    (cd "$ROOT" && uv sync --frozen --quiet) \
        || die "uv sync --frozen failed (is Python 3.11 installed? is uv.lock in step with pyproject.toml?)"
}

ensure_redis() {
    have redis-server && return
    [[ "$(id -u)" == 0 ]] || die "redis-server not found: install it (Debian: sudo apt-get install redis-server)"
    say "installing redis-server with apt-get"
    # Only the binary is wanted (tests and `baton up` start their own servers): keep the
    # package from starting a system daemon, which may clash with a Redis already on :6379.
    local policy=/usr/sbin/policy-rc.d added=""
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update && quietly apt-get install -y --no-install-recommends redis-server \
        || rc=$?
    [[ -z "$added" ]] || rm -f "$policy"
    [[ "$rc" == 0 ]] || die "apt-get install redis-server failed"
    have redis-server || die "redis-server still not on PATH after apt-get"
}

ensure_chromium() {
    # tests/browser drive Debian's chromium through Playwright, which never downloads a browser.
    [[ -x /usr/bin/chromium ]] && return
    [[ "$(id -u)" == 0 ]] || die "/usr/bin/chromium not found: install it (Debian: sudo apt-get install chromium)"
    say "installing chromium with apt-get"
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update && quietly apt-get install -y --no-install-recommends chromium || rc=$?
    [[ "$rc" == 0 ]] || die "apt-get install chromium failed"
    [[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium still missing after apt-get"
}

ensure_uv
sync_venv
ensure_redis
ensure_chromium

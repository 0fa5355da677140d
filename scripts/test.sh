#!/usr/bin/env bash
# Runs every check and test, failing fast; what CI runs (.ci/run).
#   scripts/test.sh [pytest args...]
# Stages: setup, format, lint, types, import contracts, pytest, smoke test of
# scripts/up.sh (the server must answer /healthz with 200 within 60 s).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage() {
    printf '\n==> %s\n' "$*"
}

fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    exit 1
}

smoke_pid=""
smoke_home=""
smoke_log=""
cleanup() {
    if [[ -n "$smoke_pid" ]]; then
        # The smoke server runs in its own process group: end all of it.
        kill -TERM -- "-$smoke_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 -- "-$smoke_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$smoke_pid" 2>/dev/null || true
        wait "$smoke_pid" 2>/dev/null || true
        smoke_pid=""
    fi
    [[ -n "$smoke_home" ]] && rm -rf "$smoke_home"
    [[ -n "$smoke_log" ]] && rm -f "$smoke_log"
    smoke_home=""
    smoke_log=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stage "setup (scripts/setup.sh)"
bash scripts/setup.sh || fail "setup"

stage "format (ruff format --check)"
.venv/bin/ruff format --check --output-format concise . || fail "formatting: run .venv/bin/ruff format ."

stage "lint (ruff check)"
.venv/bin/ruff check . || fail "lint"

stage "types (mypy)"
.venv/bin/mypy || fail "types"

stage "import contracts (lint-imports)"
# The cache goes inside .venv, which git ignores.
.venv/bin/lint-imports --no-logo --cache-dir .venv/.import_linter_cache || fail "import contracts"

stage "tests (pytest${*:+ $*})"
rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if ((rc == 5)); then
    fail "pytest collected no tests (exit 5)"
elif ((rc != 0)); then
    fail "pytest (exit $rc)"
fi

stage "smoke test (scripts/up.sh, GET /healthz)"
smoke_home="$(mktemp -d)"
smoke_log="$(mktemp)"
port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
set -m # the background job gets its own process group (pgid = its pid)
bash scripts/up.sh --home "$smoke_home" --port "$port" </dev/null >"$smoke_log" 2>&1 &
smoke_pid=$!
set +m
url="http://127.0.0.1:$port/healthz"
code=""
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
    if ! kill -0 "$smoke_pid" 2>/dev/null; then
        tail -n 40 "$smoke_log" >&2
        fail "scripts/up.sh exited before answering $url"
    fi
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" || true)"
    [[ "$code" == "200" ]] && break
    sleep 1
done
if [[ "$code" != "200" ]]; then
    tail -n 40 "$smoke_log" >&2
    fail "GET $url answered '${code:-nothing}' within 60 s, expected 200"
fi
echo "GET $url -> 200"
cleanup

stage "all checks passed"

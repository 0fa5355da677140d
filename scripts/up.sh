#!/usr/bin/env bash
# Sets up and starts Sceau on this machine, all services in one process:
#   scripts/up.sh [--home DIR] [--port N] [other `sceau serve` options]
# Installs what is missing (scripts/setup.sh), runs the idempotent development key
# ceremony (`sceau init`), then replaces itself with `sceau serve`, which prints the
# base URL and the next steps. The home defaults to $SCEAU_HOME, else ./.sceau in the
# repository root. A relative --home or $SCEAU_HOME is taken from the directory you
# run this from.
set -euo pipefail

caller_pwd="$(pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$caller_pwd/$1" ;;
    esac
}

init_args=()
serve_args=()
while (($# > 0)); do
    case "$1" in
        --home)
            (($# >= 2)) || { echo "up.sh: --home needs a directory" >&2; exit 2; }
            home="$(abspath "$2")"
            init_args+=(--home "$home")
            serve_args+=(--home "$home")
            shift 2
            ;;
        --home=*)
            home="$(abspath "${1#--home=}")"
            init_args+=(--home "$home")
            serve_args+=(--home "$home")
            shift
            ;;
        --port)
            (($# >= 2)) || { echo "up.sh: --port needs a number" >&2; exit 2; }
            serve_args+=(--port "$2")
            shift 2
            ;;
        *)
            serve_args+=("$1")
            shift
            ;;
    esac
done

if [[ -n "${SCEAU_HOME:-}" ]]; then
    SCEAU_HOME="$(abspath "$SCEAU_HOME")"
    export SCEAU_HOME
fi

bash scripts/setup.sh
.venv/bin/sceau init "${init_args[@]}"
exec .venv/bin/sceau serve "${serve_args[@]}"

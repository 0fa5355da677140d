#!/usr/bin/env bash
# Installs what Sceau needs on Debian 12, idempotently and quietly:
#   - Debian packages (SoftHSM2, OpenSC's pkcs11-tool, OpenSSL, PostgreSQL, curl, and
#     Chromium, in which the officer and auditor UIs are tested),
#     only when one is missing (so a re-run never touches apt);
#   - the virtualenv .venv in the repository root;
#   - the project itself, editable, with its dev extras, only when pyproject.toml
#     changed since the last install (stamp: .venv/.sceau-installed).
# Safe to re-run from any directory. Exits non-zero with a message on failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

die() {
    echo "setup.sh: error: $*" >&2
    exit 1
}

# --- Debian packages ---------------------------------------------------------
apt_packages=(softhsm2 opensc openssl postgresql curl chromium)
missing=()
for pkg in "${apt_packages[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} > 0)); then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "setup.sh: missing Debian packages: ${missing[*]}" >&2
        echo "setup.sh: install them as root:" >&2
        echo "    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    command -v apt-get >/dev/null || die "apt-get not found; this script supports Debian 12 only"
    echo "setup.sh: installing Debian packages: ${missing[*]}"
    apt_log="$(mktemp)"
    if ! apt-get update -qq >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        rm -f "$apt_log"
        die "apt-get update failed"
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_packages[@]}" >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        rm -f "$apt_log"
        die "apt-get install failed"
    fi
    rm -f "$apt_log"
fi

# --- virtualenv ----------------------------------------------------------------
venv="$root/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    command -v python3 >/dev/null || die "python3 not found"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Python >= 3.11 required, found $(python3 --version 2>&1)"
    echo "setup.sh: creating virtualenv $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (on Debian's own python3: apt-get install python3-venv)"
fi

# --- the project, editable, with dev tools ---------------------------------------
stamp="$venv/.sceau-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
# The stamp alone could lie if the venv was tampered with; the entry point is a cheap check.
if [[ "$want" != "$have" || ! -x "$venv/bin/sceau" ]]; then
    echo "setup.sh: installing the project and its dev tools into .venv (pip install -e '.[dev]')"
    pip_log="$(mktemp)"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q -e '.[dev]' \
        >"$pip_log" 2>&1; then
        tail -n 40 "$pip_log" >&2
        rm -f "$pip_log"
        rm -f "$stamp"
        die "pip install -e '.[dev]' failed (last 40 lines of its output above)"
    fi
    rm -f "$pip_log"
    echo "$want" >"$stamp"
fi

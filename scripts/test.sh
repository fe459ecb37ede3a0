#!/usr/bin/env bash
# ParanoIM's test command (the README's, and what .ci/run calls).
#
# On a fresh Debian 12 machine, run as root: installs the Debian packages the interop and
# browser tests drive (Prosody, profanity, poezio, finch, tor, microsocks, Chromium, ...),
# creates .venv with the project and its test extras, creates the unprivileged user that
# programs refusing root run as, then runs ruff, mypy and pytest (tests/bench excluded).
# As a non-root user without sudo it skips the Debian part and says so; tests whose
# programs are missing then skip locally and fail when CI is set.
#
# Usage: scripts/test.sh [pytest arguments...]     e.g. scripts/test.sh -k prosody -x
# Environment: PYTHON (default python3), CI (set: missing programs fail instead of skip),
#              PARANOIM_SKIP_APT=1 (never touch apt).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv
TEST_USER=paranoim-test
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

APT_PACKAGES=(
    prosody prosody-modules          # XMPP server; mod_privilege for component tests
    ejabberd                         # the other XMPP server component mode is tested with
    profanity poezio finch           # real Jabber clients nobody here wrote
    libpurple-bin dbus tmux          # purple-remote, dbus-run-session, terminal driving
    chromium                         # headless browser for the web UI tests
    tor microsocks                   # onion services (ADD_ONION) and a SOCKS5 server
    zbar-tools                       # zbarimg: a second QR decoder
    xvfb                             # an X display for the tray icon test
)

START=$(date +%s.%N)
TIMINGS=()
FAILED=()

say() { printf '\n==> %s\n' "$*"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# run_step NAME COMMAND...: run, time, remember a failure but carry on to the next step.
run_step() {
    local name=$1 t0 rc=0
    shift
    say "$name"
    t0=$(date +%s.%N)
    "$@" || rc=$?
    TIMINGS+=("$(printf '%-8s %6ss  %s' "$name" "$(elapsed "$t0")" "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
    [ $rc -eq 0 ] || FAILED+=("$name")
    return 0
}

# --- 1. Debian packages ----------------------------------------------------------------

missing_packages() {
    local pkg status
    for pkg in "${APT_PACKAGES[@]}" "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = installed ] || echo "$pkg"
    done
}

install_packages() {
    local extra=() sudo=() missing policy_created=0
    # Debian's python3 has no venv/ensurepip without python3-venv.
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        extra+=(python3-venv python3-pip)
    fi
    mapfile -t missing < <(missing_packages "${extra[@]}")
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all Debian packages already installed; skipping apt"
        return 0
    fi
    if [ "${PARANOIM_SKIP_APT:-}" = 1 ]; then
        echo "PARANOIM_SKIP_APT=1: not installing ${missing[*]}"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "not root and no passwordless sudo: skipping apt."
            echo "missing: ${missing[*]} — tests needing them will skip (or fail with CI set)."
            return 0
        fi
    fi
    echo "installing: ${missing[*]}"
    # Keep package scripts from starting system-wide prosody/tor services (they would hold
    # ports and data the tests do not use). Only a policy file we created is removed.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    local rc=0
    "${sudo[@]}" apt-get update -q || rc=$?
    if [ $rc -eq 0 ]; then
        "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
    fi
    if [ $policy_created = 1 ]; then
        "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    fi
    return $rc
}

# --- 2. the unprivileged user for programs that refuse root (poezio, Prosody) ---------

ensure_test_user() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root: programs run as $(id -un) itself"
        return 0
    fi
    if id "$TEST_USER" >/dev/null 2>&1; then
        echo "user $TEST_USER exists"
    else
        useradd --system --user-group --create-home --home-dir "/var/lib/$TEST_USER" \
            --shell /bin/sh "$TEST_USER"
        echo "created user $TEST_USER"
    fi
}

# --- 3. the virtual environment --------------------------------------------------------

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        echo "creating $VENV with $("$PYTHON" --version 2>&1)"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    # Reinstall only when the project's metadata changed since the last install.
    local stamp=$VENV/.paranoim-test-install want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$VENV/bin/python" -c 'import bridge, pytest, slixmpp, playwright' 2>/dev/null; then
        echo "venv up to date with pyproject.toml"
        return 0
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    echo "$want" >"$stamp"
}

# --- run -------------------------------------------------------------------------------

run_step apt install_packages
run_step user ensure_test_user
run_step venv ensure_venv
if [ ! -x "$VENV/bin/python" ]; then
    echo "no usable virtual environment; cannot run the checks" >&2
    exit 1
fi
export PATH=$VENV/bin:$PATH

run_step ruff ruff check .
run_step mypy mypy
# With no test paths among the arguments, run everything under tests/ but the benchmarks.
TARGETS=(tests)
for arg in "$@"; do
    case $arg in
        -*) ;;
        *) if [ -e "${arg%%::*}" ]; then TARGETS=(); fi ;;
    esac
done
run_step pytest python -m pytest "${TARGETS[@]}" --ignore=tests/bench -ra --durations=10 \
    --timeout=600 "$@"

say "summary (CI=${CI:-unset}, user $(id -un))"
printf '  %s\n' "${TIMINGS[@]}"
echo "  total    $(elapsed "$START")s"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
echo "all passed"

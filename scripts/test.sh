#!/usr/bin/env bash
# ParanoIM's test command (the README's, and what .ci/run calls).
#
# On a fresh Debian 12 machine, run as root: installs the Debian packages the interop and
# browser tests drive (Prosody, profanity, poezio, finch, tor, microsocks, Chromium, ...),
# creates .venv with the project and its test extras, creates the unprivileged user that
# programs refusing root run as, then runs ruff, mypy and pytest (tests/bench excluded).
# Then it runs the unit and integration tests again (but the slow end-to-end ones) on each
# other supported Python (3.12 and 3.13), each in its own .venv-3.X: an interpreter already on PATH or under
# pyenv, else Debian's python3.X package where the distribution has one.
# As a non-root user without sudo it skips the Debian part and says so; tests whose
# programs are missing, and Pythons that cannot be found, then skip locally and fail when
# CI is set.
#
# Usage: scripts/test.sh [pytest arguments...]     e.g. scripts/test.sh -k prosody -x
#   Test paths given are run on the other Pythons too when they lie in tests/unit or
#   tests/integration; options go to every run.
# Environment: PYTHON (default python3), CI (set: missing programs fail instead of skip),
#              PARANOIM_SKIP_APT=1 (never touch apt),
#              PARANOIM_EXTRA_PYTHONS (default "3.12 3.13"; "" runs only PYTHON),
#              PARANOIM_EXTRA_SERIAL=1 (run those one after the other, not side by side).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv
TEST_USER=paranoim-test
read -r -a EXTRA_PYTHONS <<<"${PARANOIM_EXTRA_PYTHONS-3.12 3.13}"
# What the other Pythons run: unit and integration tests but those marked slow (whole
# daemons end to end, the same code paths the fast ones reach, run once on PYTHON).
EXTRA_TESTS=(tests/unit tests/integration)
APT_UPDATED=0
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
    gajim                            # GTK client: rejoins its bookmarked room (Xvfb)
    dino-im xdotool                  # GTK 4 client (Xvfb) and what clicks and types in it
)

START=$(date +%s.%N)
TIMINGS=()
FAILED=()
STEP_NOTE=  # a step may set this to say what it did instead of plain "ok"

say() { printf '\n==> %s\n' "$*"; }
between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
elapsed() { between "$1" "$(date +%s.%N)"; }

# run_step NAME COMMAND...: run, time, remember a failure but carry on to the next step.
run_step() {
    local name=$1 t0 rc=0 result
    shift
    say "$name"
    t0=$(date +%s.%N)
    STEP_NOTE=
    "$@" || rc=$?
    if [ $rc -ne 0 ]; then
        result="FAILED ($rc)${STEP_NOTE:+: $STEP_NOTE}"
        FAILED+=("$name")
    else
        result=${STEP_NOTE:-ok}
    fi
    TIMINGS+=("$(printf '%-12s %6ss  %s' "$name" "$(elapsed "$t0")" "$result")")
    return 0
}

# can_install: true when apt may be used (root or passwordless sudo, not PARANOIM_SKIP_APT).
SUDO=()
can_install() {
    [ "${PARANOIM_SKIP_APT:-}" != 1 ] || return 1
    [ "$(id -u)" -ne 0 ] || return 0
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
        return 0
    fi
    return 1
}

apt_update_once() {
    [ $APT_UPDATED = 1 ] && return 0
    "${SUDO[@]}" apt-get update -q && APT_UPDATED=1
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
    if ! can_install; then
        echo "not root and no passwordless sudo: skipping apt."
        echo "missing: ${missing[*]} — tests needing them will skip (or fail with CI set)."
        return 0
    fi
    sudo=("${SUDO[@]}")
    echo "installing: ${missing[*]}"
    # Keep package scripts from starting system-wide prosody/tor services (they would hold
    # ports and data the tests do not use). Only a policy file we created is removed.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    local rc=0
    apt_update_once || rc=$?
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

# --- 3. the virtual environments -------------------------------------------------------

# make_venv DIR PYTHON: DIR holds the project and its test extras, installed with PYTHON;
# reinstalled only when pyproject.toml changed since the last install.
make_venv() {
    local venv=$1 python=$2
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        echo "creating $venv with $("$python" --version 2>&1)"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    local stamp=$venv/.paranoim-test-install want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$venv/bin/python" -c 'import bridge, pytest, slixmpp, playwright' 2>/dev/null; then
        echo "$venv up to date with pyproject.toml ($("$venv/bin/python" --version))"
        return 0
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[test]'
    echo "$want" >"$stamp"
}

ensure_venv() { make_venv "$VENV" "$PYTHON"; }

# find_python X.Y: print the path of a working Python X.Y with venv and ensurepip, or fail.
find_python() {
    local version=$1 candidate
    local candidates=("$(command -v "python$version" || true)"
        "/usr/bin/python$version" "/usr/local/bin/python$version")
    # pyenv builds, newest patch release first
    candidates+=($(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".*/bin/"python$version" \
        2>/dev/null | sort -rV))
    for candidate in "${candidates[@]}"; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        if "$candidate" -c "import sys, venv, ensurepip
assert '%d.%d' % sys.version_info[:2] == '$version'" >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# install_python X.Y: Debian's python3.X and its venv module, where the distribution has them.
install_python() {
    local version=$1 candidate
    can_install || { echo "cannot use apt here to install python$version"; return 1; }
    apt_update_once || return 1
    candidate=$(apt-cache policy "python$version" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
        echo "this distribution has no python$version package"
        return 1
    fi
    echo "installing Debian's python$version $candidate"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
        "python$version" "python$version-venv"
}

# ensure_extra_venv X.Y: .venv-X.Y from a Python X.Y found or installed. Without one the
# step fails when CI is set and is skipped (and says so) otherwise.
ensure_extra_venv() {
    local version=$1 python
    python=$(find_python "$version") || { install_python "$version" \
        && python=$(find_python "$version"); } || python=
    if [ -z "$python" ]; then
        if [ -n "${CI:-}" ]; then
            STEP_NOTE="no Python $version"
            echo "no usable Python $version (on PATH, under pyenv or from apt)" >&2
            return 1
        fi
        STEP_NOTE="skipped: no Python $version"
        echo "no usable Python $version (on PATH, under pyenv or from apt): skipping it"
        return 0
    fi
    echo "using $python ($("$python" --version 2>&1))"
    make_venv "$ROOT/.venv-$version" "$python"
}

# run_other_pythons X.Y...: pytest with each .venv-X.Y on EXTRA_TARGETS and EXTRA_ARGS, all at
# once (they mostly wait on daemons and sockets; PARANOIM_EXTRA_SERIAL=1 runs one at a time),
# each into its own log, printed whole when all are done. Exit code 5 (nothing collected)
# fails a full run; in a run narrowed by arguments it only means that Python had nothing to do.
run_other_pythons() {
    local logs version rc result
    logs=$(mktemp -d)
    for version in "$@"; do
        say "pytest $version: started, its output follows when the runs are done"
        (
            date +%s.%N >"$logs/$version.start"
            rc=0
            "$ROOT/.venv-$version/bin/python" -m pytest "${EXTRA_TARGETS[@]}" -ra --durations=5 \
                --timeout=600 -m "not slow" "${EXTRA_ARGS[@]}" >"$logs/$version.log" 2>&1 || rc=$?
            echo $rc >"$logs/$version.rc"
            date +%s.%N >"$logs/$version.end"
        ) &
        if [ "${PARANOIM_EXTRA_SERIAL:-}" = 1 ]; then wait $!; fi
    done
    wait
    for version in "$@"; do
        say "pytest $version (output)"
        cat "$logs/$version.log"
        rc=$(cat "$logs/$version.rc" 2>/dev/null || echo 1)
        if [ "$rc" -eq 0 ]; then
            result=ok
        elif [ "$rc" -eq 5 ] && [ "$NARROWED" = 1 ]; then
            result="no test selected"
        else
            result="FAILED ($rc)"
            FAILED+=("pytest $version")
        fi
        TIMINGS+=("$(printf '%-12s %6ss  %s' "pytest $version" \
            "$(between "$(cat "$logs/$version.start")" "$(cat "$logs/$version.end")")" "$result")")
    done
    rm -rf "$logs"
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
MAIN_VERSION=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
run_step "pytest $MAIN_VERSION" python -m pytest "${TARGETS[@]}" --ignore=tests/bench -ra \
    --durations=10 --timeout=600 "$@"

# The other Pythons run the unit and integration tests: those among the paths given, or all
# of them when no path (or tests/ itself) was given. Options are passed on unchanged.
NARROWED=$(( $# > 0 ))
EXTRA_ARGS=()
EXTRA_TARGETS=()
for arg in "$@"; do
    case $arg in
        -*) EXTRA_ARGS+=("$arg"); continue ;;
    esac
    if [ ! -e "${arg%%::*}" ]; then
        EXTRA_ARGS+=("$arg")  # an option's value, such as the expression after -k
        continue
    fi
    case $(realpath -m "${arg%%::*}") in
        "$ROOT" | "$ROOT/tests") EXTRA_TARGETS+=("${EXTRA_TESTS[@]}") ;;
        "$ROOT/tests/unit" | "$ROOT/tests/unit/"* | "$ROOT/tests/integration" \
            | "$ROOT/tests/integration/"*) EXTRA_TARGETS+=("$arg") ;;
    esac
done
if [ ${#TARGETS[@]} -gt 0 ]; then
    EXTRA_TARGETS=("${EXTRA_TESTS[@]}")  # no path given: run them all
fi
# Their venvs one at a time (an editable install writes the project's egg-info), then the tests.
READY=()
for version in "${EXTRA_PYTHONS[@]}"; do
    [ "$version" != "$MAIN_VERSION" ] || continue
    if [ ${#EXTRA_TARGETS[@]} -eq 0 ]; then
        TIMINGS+=("$(printf '%-12s %6ss  %s' "pytest $version" 0.0 \
            "skipped: no unit or integration tests among the paths given")")
        continue
    fi
    failures=${#FAILED[@]}
    run_step "venv $version" ensure_extra_venv "$version"
    if [ ${#FAILED[@]} -eq "$failures" ] && [ -z "$STEP_NOTE" ]; then
        READY+=("$version")
    fi  # else the venv step said why
done
if [ ${#READY[@]} -gt 0 ]; then
    run_other_pythons "${READY[@]}"
fi

say "summary (CI=${CI:-unset}, user $(id -un))"
printf '  %s\n' "${TIMINGS[@]}"
printf '  %-12s %6ss\n' total "$(elapsed "$START")"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
echo "all passed"

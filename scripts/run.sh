#!/usr/bin/env bash
# Run ParanoIM from this source tree on a fresh machine: creates .venv if missing,
# installs the project into it (again only when pyproject.toml changed), then runs
# the daemon in the foreground. Arguments go to `paranoim run`, e.g.
#   scripts/run.sh --xmpp-port 5223 --peer 192.0.2.7:45069
# Needs only Python 3.11+ and access to the package index.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=$PWD/.venv
STAMP=$VENV/.paranoim-installed

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "ParanoIM needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV …" >&2
    "$PYTHON" -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/paranoim" ] || [ ! -e "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    echo "Installing ParanoIM and its dependencies into $VENV …" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e .
    touch "$STAMP"
fi
exec "$VENV/bin/paranoim" run "$@"

#!/usr/bin/env bash
# python-socketio interop tests (sync socketio.Client and socketio.AsyncClient):
# test_service.py against the riptide binary in service mode, test_interop.py
# against examples/interop. Creates a venv under <repo>/target/pyvenv,
# installs requirements.txt into it (again only when that file changed), and
# runs the tests; conftest.py starts its own servers on free ports and kills
# them afterwards. Extra arguments go to pytest (e.g. `-k refresh`).
# RIPTIDE_BIN overrides the service binary (default
# <repo>/target/debug/riptide), RIPTIDE_INTEROP_BIN the interop server
# (default <repo>/target/debug/examples/interop).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
venv="$repo/target/pyvenv"
export RIPTIDE_BIN="${RIPTIDE_BIN:-$repo/target/debug/riptide}"
export RIPTIDE_INTEROP_BIN="${RIPTIDE_INTEROP_BIN:-$repo/target/debug/examples/interop}"
if [ ! -x "$RIPTIDE_BIN" ]; then
  echo "run.sh: no riptide binary at $RIPTIDE_BIN (cargo build --bin riptide first, or set RIPTIDE_BIN)" >&2
  exit 1
fi
if [ ! -x "$RIPTIDE_INTEROP_BIN" ]; then
  echo "run.sh: no interop server at $RIPTIDE_INTEROP_BIN (cargo build --example interop first, or set RIPTIDE_INTEROP_BIN)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.interop-requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi
cd "$here"
export PYTHONDONTWRITEBYTECODE=1
# The test files, one a line.
tests=(
  test_service.py
  test_interop.py
  test_msgpack.py
)
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" "${tests[@]}"

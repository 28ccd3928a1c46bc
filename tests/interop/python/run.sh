#!/usr/bin/env bash
# python-socketio interop tests of service mode (sync socketio.Client and
# socketio.AsyncClient) against the real riptide binary. Creates a venv under
# <repo>/target/pyvenv, installs requirements.txt into it (again only when
# that file changed), and runs the tests; conftest.py starts its own server
# on a free port and kills it afterwards. Extra arguments go to pytest
# (e.g. `-k refresh`). RIPTIDE_BIN overrides the binary
# (default <repo>/target/debug/riptide).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
venv="$repo/target/pyvenv"
export RIPTIDE_BIN="${RIPTIDE_BIN:-$repo/target/debug/riptide}"
if [ ! -x "$RIPTIDE_BIN" ]; then
  echo "run.sh: no riptide binary at $RIPTIDE_BIN (cargo build first, or set RIPTIDE_BIN)" >&2
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
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" test_service.py test_msgpack.py

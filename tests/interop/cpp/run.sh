#!/usr/bin/env bash
# The official C++ Socket.IO client (github.com/socketio/socket.io-client-cpp,
# 3.x: Socket.IO v5 over Engine.IO v4, WebSocket only) against the interop
# server (examples/interop.rs).
#
#   tests/interop/cpp/run.sh
#
# 1. Takes the client's sources at the pinned commit: from SIO_CPP_SRC (a
#    checkout of that commit), or else from the git directory SIO_CPP_GIT
#    (default: the mirror /work/.mirror/socketio+socket.io-client-cpp/repo
#    that the session tooling's `fetch github:socketio/socket.io-client-cpp`
#    makes) into <repo>/target/interop-cpp/. They are third-party code (MIT)
#    and never committed; without them this fails and says how to get them.
# 2. Builds the library and interop_client.cpp with g++ against Debian's
#    libwebsocketpp-dev, libasio-dev (standalone) and rapidjson-dev (the
#    upstream CMake's system-package mode wants an asio CMake config that
#    Debian does not ship, hence the plain compiler lines). Objects are kept
#    per commit; the test program is rebuilt when its source changes.
# 3. Starts the server ($RIPTIDE_INTEROP_BIN, default
#    <repo>/target/debug/examples/interop) on a free port, runs the program,
#    kills and restarts the server when the program asks ("@@ kill-server",
#    "@@ start-server" on its stdout; "ok" on its stdin), and stops the
#    server at the end, whatever happens. Exits non-zero on any failure.
#    CPP_INTEROP_TIMEOUT bounds the program's run (default 180 s).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"

# socket.io-client-cpp master of 2025-05-22: the 3.1.0 release plus its fixes
# since (on_any, the namespace sid, a crash on a non-numeric ack id, #440).
SIO_CPP_COMMIT=18b04350abab14d9b6706d51b7eaf52866a58ab4
SIO_CPP_GIT="${SIO_CPP_GIT:-/work/.mirror/socketio+socket.io-client-cpp/repo}"
SERVER_BIN="${RIPTIDE_INTEROP_BIN:-$repo/target/debug/examples/interop}"
CXX="${CXX:-g++}"
HEALTH_TIMEOUT_S=20
CLIENT_TIMEOUT_S="${CPP_INTEROP_TIMEOUT:-180}"

die() {
  echo "cpp/run.sh: $*" >&2
  exit 1
}

build="$repo/target/interop-cpp"
mkdir -p "$build"

# ---- 1. the client's sources -------------------------------------------------

how_to_get() { # what was tried
  cat >&2 <<EOF
cpp/run.sh: the socket.io-client-cpp sources (commit $SIO_CPP_COMMIT) are missing:
$1.
They are third-party code and not committed here. Either
  git clone https://github.com/socketio/socket.io-client-cpp /path/to/sio-cpp
  git -C /path/to/sio-cpp checkout $SIO_CPP_COMMIT
  SIO_CPP_SRC=/path/to/sio-cpp tests/interop/cpp/run.sh
or point SIO_CPP_GIT at a (bare) git directory that has that commit
(default: /work/.mirror/socketio+socket.io-client-cpp/repo).
SKIPPED: nothing was run (exit status 3).
EOF
  exit 3
}

if [ -n "${SIO_CPP_SRC:-}" ]; then
  src="$(cd "$SIO_CPP_SRC" 2>/dev/null && pwd)" || how_to_get "SIO_CPP_SRC=$SIO_CPP_SRC is not a directory"
  [ -f "$src/src/sio_client.h" ] || how_to_get "SIO_CPP_SRC=$SIO_CPP_SRC has no src/sio_client.h"
  if head="$(git -C "$src" rev-parse HEAD 2>/dev/null)" && [ "$head" != "$SIO_CPP_COMMIT" ]; then
    die "$src is at $head, not at the pinned $SIO_CPP_COMMIT (git -C $src checkout $SIO_CPP_COMMIT)"
  fi
else
  src="$build/socket.io-client-cpp-$SIO_CPP_COMMIT"
  if [ ! -f "$src/src/sio_client.h" ]; then
    git --git-dir="$SIO_CPP_GIT" cat-file -e "$SIO_CPP_COMMIT^{commit}" 2>/dev/null ||
      how_to_get "SIO_CPP_GIT=$SIO_CPP_GIT is not a git directory with that commit"
    rm -rf "$src.tmp" && mkdir -p "$src.tmp"
    git --git-dir="$SIO_CPP_GIT" archive "$SIO_CPP_COMMIT" src LICENSE | tar -x -C "$src.tmp"
    mv "$src.tmp" "$src"
  fi
fi

# ---- 2. build ------------------------------------------------------------------

for header in websocketpp/version.hpp asio.hpp rapidjson/document.h; do
  [ -f "/usr/include/$header" ] ||
    die "/usr/include/$header is missing: apt-get install libwebsocketpp-dev libasio-dev rapidjson-dev"
done
command -v "$CXX" >/dev/null || die "no C++ compiler '$CXX': apt-get install g++"

# The defines the upstream CMakeLists sets: standalone asio, C++11 std:: in
# websocketpp.
flags=(-std=c++17 -O1 -g -pthread
  -DBOOST_DATE_TIME_NO_LIB -DBOOST_REGEX_NO_LIB -DASIO_STANDALONE
  -D_WEBSOCKETPP_CPP11_STL_ -D_WEBSOCKETPP_CPP11_FUNCTIONAL_
  -D_WEBSOCKETPP_CPP11_TYPE_TRAITS_ -D_WEBSOCKETPP_CPP11_CHRONO_
  -I"$src/src")
objdir="$build/obj-$SIO_CPP_COMMIT-$(printf '%s\n' "$CXX" "${flags[@]}" | sha256sum | cut -c1-12)"
mkdir -p "$objdir"
objects=()
for unit in sio_client sio_socket internal/sio_client_impl internal/sio_packet; do
  obj="$objdir/$(basename "$unit").o"
  if [ ! -f "$obj" ]; then
    echo "compiling socket.io-client-cpp $unit.cpp"
    "$CXX" "${flags[@]}" -c "$src/src/$unit.cpp" -o "$obj.tmp"
    mv "$obj.tmp" "$obj"
  fi
  objects+=("$obj")
done
client="$objdir/interop_client"
if [ ! -x "$client" ] || [ "$here/interop_client.cpp" -nt "$client" ]; then
  echo "compiling interop_client.cpp"
  "$CXX" "${flags[@]}" -Wall -Wextra -Werror "$here/interop_client.cpp" "${objects[@]}" -o "$client.tmp"
  mv "$client.tmp" "$client"
fi

# ---- 3. run against the server -------------------------------------------------

[ -x "$SERVER_BIN" ] ||
  die "no interop server at $SERVER_BIN (cargo build --example interop first, or set RIPTIDE_INTEROP_BIN)"
command -v curl >/dev/null || die "curl is required"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp "${TMPDIR:-/tmp}/riptide-cpp-interop.XXXXXX.log")"
server_pid=""
client_pid=""

stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
on_exit() {
  if [ -n "$client_pid" ]; then kill -KILL "$client_pid" 2>/dev/null || true; fi
  stop_server
}
trap on_exit EXIT

start_server() {
  (cd "$repo" && PORT="$port" exec "$SERVER_BIN") >>"$log" 2>&1 </dev/null &
  server_pid=$!
  local deadline=$((SECONDS + HEALTH_TIMEOUT_S)) code=""
  while ((SECONDS < deadline)); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid" 2>/dev/null || true
      server_pid=""
      echo "cpp/run.sh: the server exited before answering /health" >&2
      return 1
    fi
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null || true)"
    [ "$code" = 200 ] && return 0
    sleep 0.05
  done
  echo "cpp/run.sh: GET /health did not answer 200 within ${HEALTH_TIMEOUT_S}s (last: ${code:-none})" >&2
  return 1
}

kill_server() {
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

print_server_log() {
  echo "---- last 40 lines of the server output ($log) ----" >&2
  tail -n 40 "$log" >&2
  echo "----" >&2
}

start_server || { print_server_log; exit 1; }
echo "server: $SERVER_BIN on port $port"

# The program's stdout and stdin through two FIFOs: its lines are read
# here, the "@@" requests answered on its stdin.
fifos="$(mktemp -d "${TMPDIR:-/tmp}/riptide-cpp-interop.XXXXXX")"
mkfifo "$fifos/out" "$fifos/in"
timeout --kill-after=5 "$CLIENT_TIMEOUT_S" "$client" "http://127.0.0.1:$port" <"$fifos/in" >"$fifos/out" &
client_pid=$!
exec {to_client}>"$fifos/in" {from_client}<"$fifos/out"
while IFS= read -r line <&"$from_client"; do
  case "$line" in
    "@@ kill-server")
      kill_server
      echo ok >&"$to_client"
      ;;
    "@@ start-server")
      if start_server; then echo ok >&"$to_client"; else echo failed >&"$to_client"; fi
      ;;
    *) echo "$line" ;;
  esac
done
exec {to_client}>&- {from_client}<&-
rm -rf "$fifos"
rc=0
wait "$client_pid" || rc=$?
client_pid=""

if [ "$rc" -eq 0 ] && [ -z "$server_pid" ]; then
  echo "cpp/run.sh: the server was not running at the end" >&2
  rc=1
fi
if [ "$rc" -ne 0 ]; then
  if [ "$rc" -eq 124 ]; then echo "cpp/run.sh: the client timed out after ${CLIENT_TIMEOUT_S}s" >&2; fi
  print_server_log
  echo "cpp interop: FAILED (exit status $rc)" >&2
  exit "$rc"
fi
rm -f "$log"
echo "cpp interop: passed"

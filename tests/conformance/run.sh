#!/usr/bin/env bash
# Runs the official Engine.IO v4 and Socket.IO v5 protocol test suites
# (vendored from the socketio organisation, see NOTICE) against a server binary.
#
#   tests/conformance/run.sh <path-to-conformance-server-binary> [suite...]
#
# suite: engine.io-protocol and/or socket.io-protocol (default: both).
#
# For each suite: pick a free port, start the binary with PORT=<port>, wait (20 s
# max) for GET /health = 200, run mocha with the same PORT, stop the server. The
# server is always stopped (trap), also on failure or Ctrl-C. Exits non-zero if
# a suite failed or could not run. The server's own output goes to a log file,
# whose tail is printed when its suite does not pass.
#
# The binary must serve a plain Engine.IO echo endpoint at /engine.io/ and
# Socket.IO at /socket.io/ (namespaces / and /custom), with pingInterval 300 ms,
# pingTimeout 200 ms, connectTimeout 1000 ms and maxPayload 1000000.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  echo "usage: $0 <path-to-conformance-server-binary> [engine.io-protocol|socket.io-protocol ...]" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
bin=$1
shift
[[ -f $bin && -x $bin ]] || { echo "run.sh: '$bin' is not an executable file" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

if [[ $# -gt 0 ]]; then
  suites=("$@")
else
  suites=(engine.io-protocol socket.io-protocol)
fi
for suite in "${suites[@]}"; do
  [[ -f $here/$suite/package.json ]] || { echo "run.sh: unknown suite '$suite'" >&2; usage; }
done

for tool in node npm curl timeout; do
  command -v "$tool" >/dev/null || { echo "run.sh: '$tool' is required" >&2; exit 2; }
done

HEALTH_TIMEOUT_S=20
SUITE_TIMEOUT_S=${CONFORMANCE_SUITE_TIMEOUT:-600}

logdir=$(mktemp -d "${TMPDIR:-/tmp}/riptide-conformance.XXXXXX")
server_pid=""
mocha_pid=""

stop_pid() { # pid: TERM, then KILL after 5 s
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  return 0
}

stop_server() {
  if [[ -n $server_pid ]]; then
    stop_pid "$server_pid"
    server_pid=""
  fi
}

# Signals only record themselves and forward SIGTERM to the children (builtins
# only, no waiting inside the trap); the main flow stops everything at the next
# check point. The EXIT trap SIGKILLs whatever is still running.
interrupted=""
on_signal() {
  interrupted=$1
  [[ -n $mocha_pid ]] && kill -TERM "$mocha_pid" 2>/dev/null
  [[ -n $server_pid ]] && kill -TERM "$server_pid" 2>/dev/null
  return 0
}
check_interrupted() {
  if [[ -n $interrupted ]]; then
    echo "run.sh: interrupted (signal $interrupted), stopping" >&2
    [[ -n $mocha_pid ]] && stop_pid "$mocha_pid"
    mocha_pid=""
    stop_server
    exit $((128 + interrupted))
  fi
}
on_exit() {
  [[ -n $mocha_pid ]] && kill -KILL "$mocha_pid" 2>/dev/null
  [[ -n $server_pid ]] && kill -KILL "$server_pid" 2>/dev/null
  return 0
}
trap on_exit EXIT
trap 'on_signal 2' INT
trap 'on_signal 15' TERM
trap 'on_signal 1' HUP

free_port() {
  node -e '
    const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
  '
}

# start_server <suite> <port>: returns 0 once GET /health answers 200
start_server() {
  local suite=$1 port=$2 log=$logdir/$1.server.log code deadline
  PORT=$port RUST_LOG=off RUST_BACKTRACE=1 NO_COLOR=1 "$bin" >"$log" 2>&1 </dev/null &
  server_pid=$!
  deadline=$((SECONDS + HEALTH_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    [[ -n $interrupted ]] && return 1
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid" 2>/dev/null
      echo "run.sh: the server exited (status $?) before answering /health" >&2
      server_pid=""
      return 1
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://localhost:$port/health" 2>/dev/null)
    [[ $code == 200 ]] && return 0
    sleep 0.1
  done
  echo "run.sh: GET http://localhost:$port/health did not answer 200 within ${HEALTH_TIMEOUT_S}s (last: ${code:-none})" >&2
  return 1
}

print_server_log() {
  local log=$logdir/$1.server.log
  [[ -s $log ]] || return 0
  echo "---- last 40 lines of the server output ($log) ----"
  tail -n 40 "$log"
  echo "----"
}

declare -A summary
overall=0

for suite in "${suites[@]}"; do
  check_interrupted
  dir=$here/$suite
  echo "==== $suite"

  # The suites are third-party code and are not committed (README.md says
  # where to get them): without them the suite is reported as skipped.
  if [[ ! -f $dir/test-suite.js || ! -f $dir/node-imports.js ]]; then
    echo "SKIPPED: $dir/test-suite.js and node-imports.js are not present (see tests/conformance/README.md)"
    summary[$suite]="SKIPPED: suite files not present"
    continue
  fi
  # Point the suite at our port, whatever URL line the upstream file has.
  sed -E 's#^const URL = .*#const URL = `http://localhost:${process.env.PORT}`;#' \
    "$dir/test-suite.js" >"$dir/.run-test-suite.js"

  # Installed once per lock file: a stamp of the lock it was installed from
  # makes a changed lock (a pinned version moved) install again.
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.riptide-installed-lock"; then
    echo "installing test dependencies (npm ci) in $dir"
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error &&
      cp package-lock.json node_modules/.riptide-installed-lock); then
      check_interrupted
      summary[$suite]="ERROR: npm ci failed"
      overall=1
      continue
    fi
  fi

  port=$(free_port)
  if [[ -z $port ]]; then
    summary[$suite]="ERROR: no free port"
    overall=1
    continue
  fi
  echo "server: $bin on port $port"

  if ! start_server "$suite" "$port"; then
    check_interrupted
    print_server_log "$suite"
    stop_server
    summary[$suite]="ERROR: server did not start"
    overall=1
    continue
  fi

  out=$logdir/$suite.mocha.log
  # --exit: the suites leave some sockets open on purpose; do not wait for them.
  (cd "$dir" && PORT=$port NO_COLOR=1 exec timeout --foreground --kill-after=10 "$SUITE_TIMEOUT_S" \
    node node_modules/mocha/bin/mocha --exit --no-colors .run-test-suite.js) >"$out" 2>&1 &
  mocha_pid=$!
  wait "$mocha_pid"
  rc=$?
  while kill -0 "$mocha_pid" 2>/dev/null; do # wait was interrupted by a signal
    check_interrupted
    wait "$mocha_pid"
    rc=$?
  done
  mocha_pid=""
  check_interrupted

  cat "$out"

  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run.sh: the server was no longer running at the end of the suite" >&2
    [[ $rc -eq 0 ]] && rc=1
  fi
  stop_server

  passing=$(grep -Eo '^ *[0-9]+ passing' "$out" | grep -Eo '[0-9]+' | tail -n 1)
  failing=$(grep -Eo '^ *[0-9]+ failing' "$out" | grep -Eo '[0-9]+' | tail -n 1)
  pending=$(grep -Eo '^ *[0-9]+ pending' "$out" | grep -Eo '[0-9]+' | tail -n 1)
  line="${passing:-0} passing, ${failing:-0} failing"
  [[ -n $pending ]] && line="$line, $pending pending"
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    line="$line (TIMED OUT after ${SUITE_TIMEOUT_S}s)"
  fi
  if [[ $rc -ne 0 ]]; then
    summary[$suite]="FAIL: $line (mocha exit status $rc)"
    overall=1
    print_server_log "$suite"
  else
    summary[$suite]="PASS: $line"
  fi
done

echo
echo "==== conformance summary"
for suite in "${suites[@]}"; do
  printf '%-20s %s\n' "$suite" "${summary[$suite]:-not run}"
done
echo "logs: $logdir"
exit "$overall"

#!/usr/bin/env bash
# Smoke-run every single-node load scenario of ../shared/FIXTURE.md against
# one Riptide bench_fixture node, through riptide-bench.
#
#   benches/run-quick.sh --quick     small N, short runs: about 1 minute once built
#   benches/run-quick.sh             the same scenarios at the FIXTURE.md sizes
#
# Builds release, starts one node on a free port, runs idle, fanout, echo,
# slow and reconnect-storm, checks that each printed its JSON line with ok
# true, no loss/duplicate/reordering in fanout (and for slow's healthy
# receivers), every echo answered and every client back after the restart;
# stops the node. Exit status non-zero on any failure. The JSON lines are kept
# in $RESULTS (default target/bench-quick/results.jsonl). No process is left
# behind: the node (also the one restarted by reconnect-storm) is stopped on
# any exit, Ctrl-C included.
#
# cross-node needs two clustered nodes and a broker: the comparison runner
# drives it.
set -euo pipefail

QUICK=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run-quick.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
command -v jq >/dev/null || { echo "run-quick.sh: needs jq (apt-get install jq)" >&2; exit 1; }
OUT_DIR=target/bench-quick
RESULTS=${RESULTS:-$OUT_DIR/results.jsonl}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d)
PID_FILE=$WORK/server.pid
SERVER_LOG=$OUT_DIR/server.log
: > "$SERVER_LOG"
: > "$RESULTS"

stop_node() {
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_node
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 20000))
  if port_free "$p"; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { echo "run-quick.sh: no free port found" >&2; exit 1; }
URL=http://127.0.0.1:$PORT

echo "== building (release)" >&2
cargo build --release --workspace --bin riptide-bench --example bench_fixture >&2
BENCH=target/release/riptide-bench

# The start command writes the node's PID to $PID_FILE; reconnect-storm's
# restart command reuses it, so the trap always knows the live node.
# Every connection of the generator comes from 127.0.0.1, and the publisher
# sends one event per message: the per-IP and per-socket rate limits (abuse
# protection, which peers like Node socket.io do not have) are lifted; the
# per-connection queue limits, which the slow scenario exercises, are not.
cat > "$WORK/start-node.sh" <<EOF
#!/bin/sh
export PORT=$PORT RIPTIDE__LOG__LEVEL=warning RIPTIDE__SERVER__MAX_CONNECTIONS=30000
export RIPTIDE__LIMITS__MAX_CONNECTIONS_PER_IP=1000000
export RIPTIDE__LIMITS__CONNECTION_RATE_PER_IP=1000000 RIPTIDE__LIMITS__CONNECTION_BURST_PER_IP=1000000
export RIPTIDE__LIMITS__EVENT_RATE=1000000 RIPTIDE__LIMITS__EVENT_BURST=1000000
"$PWD/target/release/examples/bench_fixture" >>"$PWD/$SERVER_LOG" 2>&1 </dev/null &
echo \$! > "$PID_FILE"
EOF
cat > "$WORK/restart-node.sh" <<EOF
#!/bin/sh
old=\$(cat "$PID_FILE")
kill -TERM "\$old"
while kill -0 "\$old" 2>/dev/null; do sleep 0.05; done
exec sh "$WORK/start-node.sh"
EOF

wait_ready() {
  for _ in $(seq 1 100); do
    if ! port_free "$PORT"; then return 0; fi
    sleep 0.1
  done
  echo "run-quick.sh: the node did not start; see $SERVER_LOG" >&2
  return 1
}

sh "$WORK/start-node.sh"
wait_ready
echo "== node on $URL (pid $(cat "$PID_FILE"))" >&2

if [ "$QUICK" = 1 ]; then
  IDLE=(--conns 500,1000 --settle-ms 1000)
  FANOUT=(--receivers 200 --rate 1000 --duration 3)
  ECHO=(--sockets 50 --duration 3)
  SLOW=(--receivers 100 --rate 1000 --payload-bytes 1000 --duration 5)
  STORM=(--clients 500)
else
  IDLE=(--conns 5000,10000)
  FANOUT=(--receivers 1000 --rate 1000 --duration 10)
  ECHO=(--sockets 100 --duration 10)
  SLOW=(--receivers 1000 --rate 1000 --payload-bytes 1000 --duration 20)
  STORM=(--clients 5000)
fi

FAILED=0
# run NAME CHECK... -- ARGS...: one riptide-bench run; each CHECK is a jq
# expression that must be true of its JSON line.
run() {
  local name=$1; shift
  local checks=()
  while [ "$1" != -- ]; do checks+=("$1"); shift; done
  shift
  echo "== $name" >&2
  local line rc=0
  line=$("$BENCH" "$@" --url "$URL" --label riptide --server-pid "$(cat "$PID_FILE")") || rc=$?
  if [ "$(printf '%s\n' "$line" | grep -c .)" != 1 ]; then
    echo "FAIL $name: expected one JSON line on stdout (exit $rc)" >&2
    FAILED=1
    return
  fi
  printf '%s\n' "$line" >> "$RESULTS"
  for c in '.ok == true' "${checks[@]}"; do
    if ! printf '%s\n' "$line" | jq -e "$c" >/dev/null; then
      echo "FAIL $name: $c" >&2
      FAILED=1
    fi
  done
  printf '%s\n' "$line" | jq -c '{scenario,
      conn_per_s: (.connect.conn_per_s // .steps[-1].connect.conn_per_s // .initial.conn_per_s),
      rss_per_conn_bytes: (.steps[-1].server[0].rss_per_conn_bytes // null),
      deliveries_per_s: (.delivery.deliveries_per_s // null),
      round_trips_per_s: (.echo.round_trips_per_s // null),
      p50_us: (.latency_us.p50 // null), p99_us: (.latency_us.p99 // null),
      slow_closed: .slow.server_closed,
      all_back_ms: (.storm.all_back_after_restart_ms // null),
      generator_saturated: .generator.saturated}' >&2
}

run idle \
  '[.steps[].connect.failed] | add == 0' \
  '.dropped.total == 0' \
  -- idle "${IDLE[@]}"
run fanout \
  '.delivery.loss == 0' '.delivery.duplicates == 0' '.delivery.out_of_order == 0' \
  '.connect.failed == 0' \
  -- fanout "${FANOUT[@]}"
run echo \
  '.echo.unanswered == 0' '.echo.mismatched == 0' '.echo.acked > 0' \
  -- echo "${ECHO[@]}"
run slow \
  '.delivery.loss == 0' '.delivery.duplicates == 0' '.delivery.out_of_order == 0' \
  '.slow | has("server_closed")' \
  -- slow "${SLOW[@]}"
run reconnect-storm \
  '.storm.all_back == true' '.new_server.pid != null' \
  -- reconnect-storm "${STORM[@]}" --timeout-s 60 \
  --restart-cmd "sh $WORK/restart-node.sh" --server-pid-file "$PID_FILE"

if [ "$FAILED" != 0 ]; then
  echo "== FAILED (results in $RESULTS, node log in $SERVER_LOG)" >&2
  exit 1
fi
echo "== all scenarios passed (results in $RESULTS)" >&2

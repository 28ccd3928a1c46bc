#!/usr/bin/env bash
# The operations checks: the Prometheus alert rules and the Grafana dashboard
# in deploy/ against the real binary.
#
#   tests/ops/run.sh        (from anywhere; needs a built target/debug/riptide)
#
# 1. `promtool check rules` on deploy/prometheus/alerts.yml, and
#    `promtool test rules` with tests/ops/alerts_test.yml (every alert fires
#    on what it is about; run on a copy of the rules without annotations);
#    every alert has a test there.
# 2. Starts the `riptide` binary ($RIPTIDE_BIN, default target/debug/riptide)
#    twice on free loopback ports: with the in-memory adapter, and with a
#    `nats-server` of its own ($NATS_SERVER, default /usr/sbin/nats-server)
#    and adapter.kind = nats; drives each with a client (exercise.py) so the
#    labelled series exist, and saves their /metrics.
# 3. check_metric_names.py: every metric name the rules and the dashboard use
#    is in those scrapes, under its OpenMetrics sample name; then the same
#    check on a dashboard with wrong names added must fail (the check can).
#
# Needs: promtool (Debian package `prometheus`), nats-server (`nats-server`),
# python3. Every process it starts is killed when it exits, whatever the
# reason. About 10 s.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
rules=$root/deploy/prometheus/alerts.yml
dashboard=$root/deploy/grafana/riptide.json
bin=${RIPTIDE_BIN:-$root/target/debug/riptide}
nats=${NATS_SERVER:-/usr/sbin/nats-server}

die() {
  echo "tests/ops: $*" >&2
  exit 1
}

command -v promtool >/dev/null ||
  die "promtool not found: install Debian's prometheus package (apt-get install prometheus)"
command -v python3 >/dev/null || die "python3 not found"
[ -x "$bin" ] || die "no riptide binary at $bin: run cargo build --bin riptide (or set RIPTIDE_BIN)"
[ -x "$nats" ] || die "no nats-server at $nats: apt-get install nats-server (or set NATS_SERVER)"

work=$(mktemp -d "${TMPDIR:-/tmp}/riptide-ops.XXXXXX")
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -s "$log" ] || continue
      echo "--- $(basename "$log") (last lines)" >&2
      tail -n 20 "$log" >&2
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== promtool check rules"
promtool check rules "$rules"

echo "== promtool test rules"
# The same rules without their annotations: the tests name labels only.
awk '
  /^[ ]*annotations:[ ]*$/ { ind = match($0, /[^ ]/); skip = 1; next }
  skip { if ($0 ~ /^[ ]*$/) next; if (match($0, /[^ ]/) > ind) next; skip = 0 }
  { print }
' "$rules" >"$work/alerts.yml"
cp "$here/alerts_test.yml" "$work/alerts_test.yml"
promtool test rules "$work/alerts_test.yml"
untested=()
while read -r alert; do
  grep -q "alertname: $alert\$" "$here/alerts_test.yml" || untested+=("$alert")
done < <(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' "$rules")
[ "${#untested[@]}" -eq 0 ] || die "alerts without a test in tests/ops/alerts_test.yml: ${untested[*]}"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A riptide node in the background, serving the fixture on 127.0.0.1:$1;
# further arguments are NAME=VALUE settings.
start_node() {
  local port=$1 name=$2
  shift 2
  (
    cd "$root"
    exec env -u RIPTIDE_ENV \
      RIPTIDE__SERVER__HOST=127.0.0.1 \
      RIPTIDE__SERVER__PORT="$port" \
      RIPTIDE__SERVER__WORKERS=1 \
      RIPTIDE__LOG__LEVEL=warning \
      RIPTIDE__RECOVERY__ENABLED=true \
      RIPTIDE__SOCKETIO__MAX_ROOMS_PER_SOCKET=2 \
      "$@" "$bin"
  ) >"$work/$name.log" 2>&1 &
  pids+=($!)
}

echo "== scrape a node with the in-memory adapter"
memory_port=$(free_port)
start_node "$memory_port" memory
python3 "$here/exercise.py" "$memory_port" "$work/memory.metrics" --pid "${pids[-1]}"

echo "== scrape a node on NATS"
nats_port=$(free_port)
"$nats" -a 127.0.0.1 -p "$nats_port" >"$work/nats-server.log" 2>&1 &
pids+=($!)
cluster_port=$(free_port)
# The node waits for the broker on its own (it starts degraded, retrying).
start_node "$cluster_port" nats-node \
  RIPTIDE__ADAPTER__KIND=nats \
  RIPTIDE__ADAPTER__URL="nats://127.0.0.1:$nats_port" \
  RIPTIDE__RECOVERY__ENABLED=false
python3 "$here/exercise.py" "$cluster_port" "$work/nats.metrics" --cluster --pid "${pids[-1]}"

echo "== metric names used by the rules and the dashboard"
check() {
  python3 "$here/check_metric_names.py" "$@" "$work/memory.metrics" "$work/nats.metrics"
}
check --rules "$rules" --dashboard "$dashboard"

# The check must be able to fail: a name no node exposes, a counter without
# its _total, a gauge under rate().
python3 - "$dashboard" "$work/broken.json" <<'EOF'
import json, sys
dash = json.load(open(sys.argv[1]))
dash["panels"].append({"type": "timeseries", "title": "broken", "targets": [
    {"refId": "A", "expr": "sum(rate(riptide_no_such_metric_total[5m]))"},
    {"refId": "B", "expr": "rate(riptide_packets[5m])"},
    {"refId": "C", "expr": "rate(riptide_rooms[5m])"},
]})
json.dump(dash, open(sys.argv[2], "w"))
EOF
if check --dashboard "$work/broken.json" >"$work/broken.out" 2>&1; then
  cat "$work/broken.out" >&2
  die "check_metric_names.py passed a dashboard with wrong names"
fi
for want in "riptide_no_such_metric_total is in no scrape" \
  "riptide_packets is in no scrape (exposed as riptide_packets_total" \
  "riptide_rooms is a gauge, inside rate()"; do
  grep -qF "$want" "$work/broken.out" || {
    cat "$work/broken.out" >&2
    die "check_metric_names.py did not report: $want"
  }
done
echo "ok: wrong names are reported"
echo "tests/ops: all passed"

#!/usr/bin/env bash
# WebSocket permessage-deflate, measured against itself off, in one
# invocation: Riptide's bench_fixture with `engine.per_message_deflate = true`
# and riptide-bench with and without `--deflate` (without, the generator
# makes no offer and nothing is compressed: the same server, deflate off for
# that connection), interleaved over --repeat rounds, a fresh server per run.
#
#   benches/compare/deflate.sh [--repeat N] [--payload-bytes N] [--receivers N]
#                              [--messages N] [--conns N] [--out DIR] [--no-build]
#
# Rows: fan-out as fast as possible (deliveries/s, server CPU seconds per
# million deliveries, bytes on the wire per delivery, loss and order) and idle
# memory per WebSocket connection. The payload's `pad` is word text
# (riptide-bench's `client::pad`), which deflate shrinks to about a third,
# not one repeated byte. Results: DIR/results.jsonl (riptide-bench's JSON,
# one line per run) and DIR/report.md (medians and the ratios on/off).
# Default DIR: benches/results/<date>-<machine>-deflate.
set -euo pipefail
cd "$(dirname "$0")/../.."

REPEAT=3
PAYLOAD=2048
RECEIVERS=1000
MESSAGES=500
CONNS=10000
OUT=
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) REPEAT=${2:?}; shift ;;
    --payload-bytes) PAYLOAD=${2:?}; shift ;;
    --receivers) RECEIVERS=${2:?}; shift ;;
    --messages) MESSAGES=${2:?}; shift ;;
    --conns) CONNS=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "deflate.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
OUT=${OUT:-benches/results/$(date -u +%Y-%m-%d)-$(hostname -s)-deflate}
mkdir -p "$OUT/logs"
if [ $BUILD = 1 ]; then
  nice cargo build --release --workspace --bin riptide-bench --example bench_fixture >&2
fi
FIXTURE=target/release/examples/bench_fixture
GEN=target/release/riptide-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One run: a fresh fixture with deflate on, one riptide-bench scenario.
run() { # label scenario args...
  local label=$1; shift
  local port; port=$(free_port)
  RIPTIDE__LOG__LEVEL=warning RIPTIDE__SERVER__MAX_CONNECTIONS=30000 \
  RIPTIDE__LIMITS__MAX_CONNECTIONS_PER_IP=1000000 RIPTIDE__LIMITS__CONNECTION_RATE_PER_IP=1000000 \
  RIPTIDE__LIMITS__CONNECTION_BURST_PER_IP=1000000 RIPTIDE__LIMITS__EVENT_RATE=1000000 \
  RIPTIDE__LIMITS__EVENT_BURST=1000000 RIPTIDE__ENGINE__PER_MESSAGE_DEFLATE=true \
  PORT=$port "$FIXTURE" >"$OUT/logs/$label.server.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  "$GEN" "$@" --url "http://127.0.0.1:$port" --server-pid "$pid" --label "$label" \
    2>"$OUT/logs/$label.gen.log" >>"$OUT/results.jsonl" || echo "deflate.sh: $label failed" >&2
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

: >"$OUT/results.jsonl"
git rev-parse HEAD >"$OUT/commit" 2>/dev/null || true
for round in $(seq "$REPEAT"); do
  for mode in off on; do
    flag=(); [ $mode = on ] && flag=(--deflate)
    echo "round $round/$REPEAT, deflate $mode" >&2
    run "fanout-$mode-$round" fanout --receivers "$RECEIVERS" --rate 0 --messages "$MESSAGES" \
      --drain-ms 60000 --payload-bytes "$PAYLOAD" "${flag[@]}"
    run "idle-$mode-$round" idle --conns "$CONNS" "${flag[@]}"
  done
done

python3 - "$OUT" "$PAYLOAD" "$RECEIVERS" "$MESSAGES" "$CONNS" <<'EOF'
import json, statistics, sys, platform, os
out, payload, receivers, messages, conns = sys.argv[1:]
rows = {}
for line in open(f"{out}/results.jsonl"):
    d = json.loads(line)
    kind, mode, _ = d["label"].split("-")
    rows.setdefault((kind, mode), []).append(d)
med = statistics.median
def fan(mode):
    rs = rows.get(("fanout", mode), [])
    ok = [r for r in rs if r.get("ok")]
    if not ok:
        return None
    dl = [r["delivery"] for r in ok]
    cpu = [r["server"][0]["cpu_s"] / max(x["received"], 1) * 1e6 for r, x in zip(ok, dl)]
    wire = [r["deflate"]["wire_bytes"] / max(x["received"], 1) for r, x in zip(ok, dl) if "deflate" in r]
    return {
        "dps": med(x["deliveries_per_s"] for x in dl),
        "cpu": med(cpu),
        "wire": med(wire) if wire else None,
        "gen_cpu": med(r["generator"]["cpu_user_s"] + r["generator"]["cpu_sys_s"] for r in ok),
        "bad": sum(x["loss"] + x["out_of_order"] + x["duplicates"] for x in dl),
        "runs": len(ok), "of": len(rs),
    }
def idle(mode):
    ok = [r for r in rows.get(("idle", mode), []) if r.get("ok")]
    per = [r["steps"][-1]["server"][0]["rss_per_conn_bytes"] for r in ok]
    return med(per) if per else None
f_off, f_on, i_off, i_on = fan("off"), fan("on"), idle("off"), idle("on")
L = [f"# permessage-deflate on and off (benches/compare/deflate.sh)", "",
     f"Commit {open(out + '/commit').read().strip() if os.path.exists(out + '/commit') else '?'}, "
     f"{platform.node()}, {os.cpu_count()} cores; medians of {f_on and f_on['of']} interleaved rounds; "
     f"one bench_fixture with `engine.per_message_deflate = true` per run, the generator offering the "
     f"extension (on) or not (off). Fan-out: {receivers} receivers, {messages} messages as fast as possible, "
     f"a {payload}-byte word-text pad; idle: {conns} connections.", "",
     "| figure | deflate off | deflate on | on / off |", "|---|---|---|---|"]
def row(name, a, b, fmt):
    r = f"{b / a:.2f}" if a and b else "n/a"
    L.append(f"| {name} | {fmt(a) if a is not None else 'n/a'} | {fmt(b) if b is not None else 'n/a'} | {r} |")
if f_off and f_on:
    row("fan-out deliveries/s", f_off["dps"], f_on["dps"], lambda v: f"{v:,.0f}")
    row("server CPU s per million deliveries", f_off["cpu"], f_on["cpu"], lambda v: f"{v:.2f}")
    wire_off = int(payload) + 60
    row("bytes on the wire per delivery (off: payload + framing, approx.)", wire_off, f_on["wire"], lambda v: f"{v:,.0f}")
    row("generator CPU s (inflating is the client's cost)", f_off["gen_cpu"], f_on["gen_cpu"], lambda v: f"{v:.2f}")
    L.append(f"| loss + reordering + duplicates | {f_off['bad']} | {f_on['bad']} | |")
row("idle RSS per WebSocket connection, bytes", i_off, i_on, lambda v: f"{v:,.0f}")
open(f"{out}/report.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
EOF

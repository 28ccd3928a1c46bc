#!/usr/bin/env bash
# Riptide bench comparison: one command that sets everything up, then starts
# each server configuration in turn on free ports and drives it with
# riptide-bench: Riptide (1 node, 2 through NATS, 2 through Redis), Node.js
# socket.io v4 (1 node, 2 through @socket.io/redis-adapter) and socketioxide.
#
#   benches/compare/run.sh                 full run -> benches/results/<date>-<machine>/
#   benches/compare/run.sh --quick         CI smoke run (< 3 min once built) -> target/bench-compare-quick/
#   options: --servers riptide,node,...    a subset, in the usual order
#            --gen-threads N               generator worker threads (default 1)
#            --repeat N                    every scenario N times, servers interleaved;
#                                          the report shows the median (default 1)
#            --fanout-burst N              messages per as-fast-as-possible fan-out
#                                          (default 1000; 0 = publish for a fixed duration)
#            --out DIR                     output directory
#            --no-build                    use what is built (no cargo / npm)
#            --profile debug               Riptide's debug build (what `cargo test`
#                                          built already): for CI smoke runs only,
#                                          its figures mean nothing
#
# Installs nats-server / redis-server / nodejs / npm with apt-get when missing,
# builds Riptide's fixture, the riptide binary (service mode) and riptide-bench, socketioxide's fixture (its own
# cargo project) and npm-installs the Node peer (in benches/peers/node), makes
# a Python venv with matplotlib in target/bench-venv, raises the open-files
# limit, then runs benches/compare/compare.py. A peer that fails to build is
# reported as "could not start" and the run goes on. Exit status: non-zero
# when the run broke; with --quick also when any Riptide scenario failed or
# showed loss, duplicates or reordering. No process is left behind, Ctrl-C
# included. See benches/compare/README.md.
set -euo pipefail

QUICK=0
SERVERS=
GEN_THREADS=1
BURST=1000
REPEAT=1
OUT=
BUILD=1
PROFILE=release
ARGS=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --servers) SERVERS=${2:?--servers needs a list}; shift ;;
    --servers=*) SERVERS=${1#*=} ;;
    --gen-threads) GEN_THREADS=${2:?--gen-threads needs a number}; shift ;;
    --fanout-burst) BURST=${2:?--fanout-burst needs a number}; shift ;;
    --repeat) REPEAT=${2:?--repeat needs a number}; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    --no-build) BUILD=0 ;;
    --profile) PROFILE=${2:?--profile needs release or debug}; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$PROFILE" in
  release|debug) ;;
  *) echo "run.sh: --profile is release or debug, not $PROFILE" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/../.."
ROOT=$PWD
T0=$(date +%s)
export PATH="$PATH:/usr/sbin"
stage() { printf '\n==> %s\n' "$*" >&2; }
selected() { [ -z "$SERVERS" ] || [[ ",$SERVERS," == *",$1,"* ]]; }
selected_any() { local s; for s in "$@"; do selected "$s" && return 0; done; return 1; }

# --- output directory
if [ -z "$OUT" ]; then
  if [ "$QUICK" = 1 ]; then
    OUT=target/bench-compare-quick
  else
    MACHINE=$(hostname -s 2>/dev/null || hostname)
    MACHINE=$(printf '%s' "$MACHINE" | tr -c 'A-Za-z0-9_-' '-' | cut -c1-24)
    OUT=benches/results/$(date +%F)-$MACHINE
    [ -e "$OUT" ] && OUT=$OUT-$(date +%H%M)
  fi
fi
if [ "$QUICK" = 1 ] && [ -d "$OUT" ]; then rm -rf "$OUT"; fi
mkdir -p "$OUT/logs"
LOGS=$OUT/logs

# --- cleanup: compare.py stops what it starts; this trap is the safety net
# for a compare.py that died. It lists the PIDs of live servers and brokers in
# $REGISTRY, each started with RIPTIDE_COMPARE_RUN=$RUN_ID in its environment:
# only a process carrying it is stopped (a recycled PID is left alone).
RUN_ID="$$-$(date +%s%N)"
REGISTRY=$OUT/.pids
: > "$REGISTRY"
ours() { { tr '\0' '\n' < "/proc/$1/environ"; } 2>/dev/null | grep -qx "RIPTIDE_COMPARE_RUN=$RUN_ID"; }
cleanup() {
  local rc=$? pid left=()
  trap - EXIT INT TERM
  if [ -s "$REGISTRY" ]; then
    while read -r pid; do
      [ -n "$pid" ] && ours "$pid" && { kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; left+=("$pid"); }
    done < "$REGISTRY"
    if [ ${#left[@]} -gt 0 ]; then
      sleep 3
      for pid in "${left[@]}"; do
        ours "$pid" && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; }
      done
    fi
  fi
  rm -f "$REGISTRY"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- system packages (like scripts/test-all.sh)
need=()
if ! command -v python3 >/dev/null; then
  need+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  need+=(python3-venv)   # Debian's python3 ships venv without ensurepip
fi
if selected riptide-nats; then command -v nats-server >/dev/null || need+=(nats-server); fi
if selected_any riptide-redis node-redis node-redis-streams; then command -v redis-server >/dev/null || need+=(redis-server); fi
if selected_any node node-redis node-redis-streams; then
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
fi
if [ ${#need[@]} -gt 0 ]; then
  stage "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # A failure here is not fatal: the configurations that needed the package
  # are reported as "could not start".
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"; } >&2 \
    || echo "run.sh: apt-get install ${need[*]} failed; going on without" >&2
fi

# --- open files: 10k connections in the generator and in a server
HARD=$(ulimit -Hn)
WANT=20000
if [ "$HARD" != unlimited ] && [ "$HARD" -lt "$WANT" ]; then WANT=$HARD; fi
ulimit -Sn "$WANT" || echo "run.sh: could not raise the open-files limit to $WANT (at $(ulimit -n))" >&2

# --- Python venv with matplotlib (charts)
VENV=target/bench-venv
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  stage "python venv with matplotlib in $VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check matplotlib >&2
fi

# --- builds. Riptide's failing breaks the run; a peer's failing is recorded
# in $LOGS/build-<peer>.status for the report, and the run goes on.
if [ "$BUILD" = 1 ]; then
  # The riptide binary too: the service-publish case runs it in service mode.
  stage "building riptide-bench, bench_fixture and riptide ($PROFILE)"
  if [ "$PROFILE" = release ]; then
    nice cargo build --release --workspace --bin riptide-bench --bin riptide --example bench_fixture >&2
  else
    nice cargo build --workspace --bin riptide-bench --bin riptide --example bench_fixture >&2
  fi
  if selected socketioxide; then
    stage "building the socketioxide peer (benches/peers/socketioxide)"
    if [ -f benches/peers/socketioxide/Cargo.toml ]; then
      if (cd benches/peers/socketioxide && nice cargo build --release) > "$LOGS/build-socketioxide.log" 2>&1; then
        echo ok > "$LOGS/build-socketioxide.status"
      else
        echo "cargo build --release failed (exit $?)" > "$LOGS/build-socketioxide.status"
      fi
    else
      echo "benches/peers/socketioxide/Cargo.toml is missing" > "$LOGS/build-socketioxide.status"
    fi
  fi
  if selected_any node node-redis node-redis-streams; then
    if [ ! -f benches/peers/node/package-lock.json ]; then
      echo "benches/peers/node/package-lock.json is missing" > "$LOGS/build-node.status"
    elif [ ! -d benches/peers/node/node_modules ]; then
      stage "npm ci in benches/peers/node"
      if ! command -v npm >/dev/null; then
        echo "npm is not installed" > "$LOGS/build-node.status"
      elif (cd benches/peers/node && npm ci --no-audit --no-fund --loglevel=error) > "$LOGS/build-node.log" 2>&1; then
        echo ok > "$LOGS/build-node.status"
      else
        echo "npm ci failed (exit $?)" > "$LOGS/build-node.status"
      fi
    fi
  fi
fi
[ -x "target/$PROFILE/riptide-bench" ] || { echo "run.sh: target/$PROFILE/riptide-bench is not built" >&2; exit 1; }
export RIPTIDE_PROFILE=$PROFILE

# --- the run
stage "running ($([ "$QUICK" = 1 ] && echo quick || echo full)) -> $OUT"
PY_ARGS=(run --out "$OUT" --gen-threads "$GEN_THREADS" --fanout-burst "$BURST" --repeat "$REPEAT" --registry "$REGISTRY" --run-id "$RUN_ID"
         --build-dir "$LOGS" --command "benches/compare/run.sh ${ARGS[*]}")
[ "$QUICK" = 1 ] && PY_ARGS+=(--quick)
[ -n "$SERVERS" ] && PY_ARGS+=(--servers "$SERVERS")
export RIPTIDE_COMPARE_RUN=$RUN_ID
rc=0
"$VENV/bin/python" benches/compare/compare.py "${PY_ARGS[@]}" || rc=$?
echo "run.sh: total $(( $(date +%s) - T0 )) s including setup; report: $OUT/report.md" >&2
exit "$rc"

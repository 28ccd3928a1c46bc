#!/usr/bin/env bash
# Checks the deployment files (deploy/README.md): the systemd unit with
# `systemd-analyze verify` (any warning fails) and its offline security
# score, the Kubernetes manifests against the Kubernetes schemas in strict
# mode (kubernetes-validate) and through `kubectl kustomize`, the NATS config
# with `nats-server -t`, the Dockerfile statically (no Docker daemon needed)
# and with hadolint, the files' agreement with each other and with
# config/default.toml, and a smoke run of the binary configured as the image
# and as the manifests configure it (loopback only).
#
#   tests/deploy/run.sh
#
# Needs (Debian): systemd (systemd-analyze), python3 with venv
# (python3-venv), nats-server, and a Rust toolchain. The first run creates
# target/deploy-venv and pip-installs tests/deploy/requirements.txt; later
# runs reuse it (rebuilt when requirements.txt changes). Uses the riptide
# binary at $RIPTIDE_BIN, else target/debug/riptide, else builds it.
# Prints PASS/FAIL per check, "deploy: N passed, N failed" at the end, and
# exits non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Kubernetes versions whose schemas every manifest must satisfy: the oldest
# release the manifests target and the newest kubernetes-validate bundles.
K8S_VERSIONS=(1.30.0 1.37.0)
# `systemd-analyze security --offline` exposure, in tenths (20 = 2.0, "OK").
SYSTEMD_EXPOSURE_THRESHOLD=20

VENV=target/deploy-venv
WORK=target/deploy-check
passed=0
failed=0

stage() { printf '\n== %s\n' "$*"; }
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

# Runs a checker that prints PASS/FAIL lines; counts them, and counts one
# failure more if it exits non-zero without having printed one.
run_checker() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  printf '%s\n' "$out"
  local p f
  p=$(grep -c '^PASS ' <<<"$out" || true)
  f=$(grep -c '^FAIL ' <<<"$out" || true)
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    fail "$* exited $rc"
  fi
}

stage "prerequisites"
missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
NATS_SERVER=$(command -v nats-server || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; } || true)
[ -n "$NATS_SERVER" ] || missing+=(nats-server)
command -v cargo >/dev/null || missing+=("a Rust toolchain (rustup)")
if [ ${#missing[@]} -gt 0 ]; then
  fail "missing: ${missing[*]} (apt-get install systemd python3-venv nats-server)"
  echo "deploy: $passed passed, $failed failed"
  exit 1
fi
pass "systemd-analyze, python3 -m venv, $NATS_SERVER, cargo"
binary=${RIPTIDE_BIN:-target/debug/riptide}
if [ ! -x "$binary" ]; then
  echo "building $binary"
  cargo build --locked --bin riptide
fi

stage "systemd unit (systemd-analyze verify)"
# verify loads the unit as PID 1 would, under --root: the shipped file,
# unmodified, in <root>/etc/systemd/system; the host's system units (for
# sysinit.target, network-online.target, ...); and an executable at
# ExecStart's path, since verify fails on a missing one. Nothing outside
# target/ is touched.
root="$WORK/systemd-root"
rm -rf "$root"
mkdir -p "$root/etc/systemd/system" "$root/usr/local/bin" "$root/usr/lib/systemd"
cp -a "$(readlink -f /lib/systemd/system)" "$root/usr/lib/systemd/system"
cp deploy/systemd/riptide.service "$root/etc/systemd/system/riptide.service"
ln "$binary" "$root/usr/local/bin/riptide" 2>/dev/null || cp "$binary" "$root/usr/local/bin/riptide"
rc=0
out=$(systemd-analyze verify --recursive-errors=yes --root="$root" riptide.service 2>&1) || rc=$?
if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
  pass "deploy/systemd/riptide.service: systemd-analyze verify (no warning)"
else
  fail "deploy/systemd/riptide.service: systemd-analyze verify exited $rc"
  printf '%s\n' "$out" | sed 's/^/    /'
fi
rc=0
out=$(systemd-analyze security --offline=yes --threshold="$SYSTEMD_EXPOSURE_THRESHOLD" \
  --root="$root" riptide.service 2>&1) || rc=$?
level=$(grep -o 'Overall exposure level for riptide.service: .*' <<<"$out" || echo "no exposure level")
if [ "$rc" -eq 0 ]; then
  pass "deploy/systemd/riptide.service: systemd-analyze security --offline ($level)"
else
  fail "deploy/systemd/riptide.service: systemd-analyze security over $SYSTEMD_EXPOSURE_THRESHOLD ($level)"
  grep '✗' <<<"$out" | sed 's/^/    /' || true
fi

stage "Python venv ($VENV)"
stamp="$VENV/.requirements.sha256"
want=$(sha256sum tests/deploy/requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/deploy/requirements.txt
  echo "$want" >"$stamp"
  pass "$VENV created from tests/deploy/requirements.txt"
else
  pass "$VENV reused (requirements.txt unchanged)"
fi
PY="$VENV/bin/python"

stage "Kubernetes manifests (strict schemas of ${K8S_VERSIONS[*]}, kustomize, nats.conf)"
run_checker "$PY" tests/deploy/check_k8s.py --kubectl "$VENV/bin/kubectl" \
  --nats-server "$NATS_SERVER" "${K8S_VERSIONS[@]}"

stage "Dockerfile (static checks, hadolint, dependency-stage dry run)"
run_checker "$PY" tests/deploy/check_dockerfile.py --dry-run-deps
rc=0
out=$("$VENV/bin/hadolint" --no-color Dockerfile 2>&1) || rc=$?
if [ "$rc" -eq 0 ]; then
  pass "Dockerfile: hadolint $("$VENV/bin/hadolint" --version | grep -o '[0-9][0-9.]*' | head -1)"
else
  fail "Dockerfile: hadolint"
  printf '%s\n' "$out" | sed 's/^/    /'
fi

stage "consistency between the files and config/default.toml"
run_checker "$PY" tests/deploy/check_consistency.py

stage "smoke run of the binary, configured as the image and as the manifests"
run_checker "$PY" tests/deploy/smoke.py --binary "$binary" --nats-server "$NATS_SERVER"

echo
echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

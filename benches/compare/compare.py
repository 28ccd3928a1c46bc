#!/usr/bin/env python3
"""Riptide bench comparison: drives every server configuration through the
same riptide-bench scenarios, then writes the report and charts.

    compare.py run --out DIR [--quick] [--servers a,b] [--gen-threads N] ...
    compare.py report DIR        # rebuild report.md, summary.md and charts

`benches/compare/run.sh` is the one command people run: it installs and
builds what is missing, then calls `compare.py run`. See README.md next to
this file.

Stdlib only, except matplotlib for the charts (imported lazily, so `run`
still records results when matplotlib is missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Riptide's build profile: release, or debug for CI smoke runs (run.sh --profile).
PROFILE = os.environ.get("RIPTIDE_PROFILE", "release")
BENCH = ROOT / f"target/{PROFILE}/riptide-bench"
RIPTIDE_FIXTURE = ROOT / f"target/{PROFILE}/examples/bench_fixture"
# The service binary, for the service-publish case (app.mode = "service").
RIPTIDE_BIN = ROOT / f"target/{PROFILE}/riptide"
NODE_DIR = ROOT / "benches/peers/node"
SIOX_DIR = ROOT / "benches/peers/socketioxide"
SIOX_BIN = SIOX_DIR / "target/release/socketioxide-fixture"
README = Path(__file__).resolve().parent / "README.md"

# ---------------------------------------------------------------------------
# Server configurations


@dataclass(frozen=True)
class ServerConfig:
    name: str
    title: str
    kind: str  # riptide | node | socketioxide
    broker: str | None = None  # nats | redis
    nodes: int = 1

    @property
    def is_riptide(self) -> bool:
        return self.kind == "riptide"

    @property
    def cluster(self) -> bool:
        return self.nodes > 1


CONFIGS = [
    ServerConfig("riptide", "Riptide, 1 node (bench_fixture; the riptide binary in service mode for "
                 "service-publish)", "riptide"),
    ServerConfig("riptide-nats", "Riptide, 2 nodes through NATS", "riptide", "nats", 2),
    ServerConfig("riptide-redis", "Riptide, 2 nodes through Redis", "riptide", "redis", 2),
    ServerConfig("node", "Node.js socket.io v4, 1 node", "node"),
    ServerConfig("node-redis", "Node.js socket.io v4, 2 nodes, @socket.io/redis-adapter", "node", "redis", 2),
    ServerConfig("node-redis-streams", "Node.js socket.io v4, 2 nodes, @socket.io/redis-streams-adapter, "
                 "connection state recovery on", "node", "redis", 2),
    ServerConfig("socketioxide", "socketioxide, 1 node (axum + tokio)", "socketioxide"),
]
CONFIG_BY_NAME = {c.name: c for c in CONFIGS}

# One colour per configuration in every chart.
COLORS = {
    "riptide": "#1f77b4",
    "riptide-nats": "#17becf",
    "riptide-redis": "#9467bd",
    "node": "#2ca02c",
    "node-redis": "#8c564b",
    "node-redis-streams": "#e377c2",
    "socketioxide": "#ff7f0e",
}

# ---------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Case:
    id: str  # unique per configuration, e.g. "fanout-max-1000"
    group: str  # idle | fanout-max | fanout-rate | echo | slow | reconnect-storm | cross-max | cross-rate
    scenario: str  # riptide-bench scenario
    args: tuple[str, ...]
    timeout_s: float
    point: dict = field(default_factory=dict, hash=False, compare=False)
    # Why this configuration does not run the case (recorded as "skipped").
    skip: str | None = None


def as_fast_as_possible(quick: bool, burst: int, receivers: int) -> tuple[tuple[str, ...], float]:
    """riptide-bench arguments (and the time they may take) for a fan-out
    "as fast as possible" at --rate 0.

    burst > 0: publish `burst` messages back to back, then wait for every
    delivery; deliveries/s = receivers x burst / (first publish .. last
    delivery). The burst stays below every server's per-connection queue
    bound (Riptide's max_queued_frames is 1024), so a server that keeps up
    loses nothing and the figure is its fan-out throughput.
    burst = 0: publish for a fixed duration. The publisher then outruns any
    server's fan-out by far, so the run measures the backlog and the
    slow-consumer policy (receivers closed, "loss" still queued at the end of
    the drain) rather than throughput.
    """
    if burst > 0:
        drain = 20000 if quick else 60000
        return ("--messages", str(burst), "--drain-ms", str(drain)), drain / 1000
    dur, drain = (2, 2000) if quick else (8, 5000)
    return ("--duration", str(dur), "--drain-ms", str(drain)), dur + drain / 1000


# Receivers of the as-fast-as-possible fan-out cases, quick and full.
FANOUT_SIZES = {True: (50, 100), False: (100, 500, 1000, 10000)}


def single_node_cases(quick: bool, burst: int) -> list[Case]:
    dur = 2 if quick else 8
    drain = 2000 if quick else 5000
    base_t = 45 if quick else 150
    cases = []
    conns = "500,1000" if quick else "5000,10000"
    settle = ["--settle-ms", "1000"] if quick else []
    cases.append(Case("idle", "idle", "idle", ("--conns", conns, *settle), base_t + 30,
                      {"conns": int(conns.split(",")[-1])}))
    # 10,000 in one room (full mode): the cost must not grow faster than the
    # work, so the goal is held at 1,000 and at 10,000.
    for n in FANOUT_SIZES[quick]:
        args, t = as_fast_as_possible(quick, burst, n)
        cases.append(Case(
            f"fanout-max-{n}", "fanout-max", "fanout", ("--receivers", str(n), "--rate", "0", *args),
            base_t + t, {"receivers": n, "rate": 0, "messages": burst or None}))
    rate, recv = (100, 100) if quick else (1000, 1000)
    cases.append(Case(
        f"fanout-{rate}x{recv}", "fanout-rate", "fanout",
        ("--receivers", str(recv), "--rate", str(rate), "--duration", str(dur), "--drain-ms", str(drain)),
        base_t + dur, {"receivers": recv, "rate": rate}))
    socks = 20 if quick else 100
    cases.append(Case("echo", "echo", "echo",
                      ("--sockets", str(socks), "--duration", str(dur), "--drain-ms", str(drain)),
                      base_t + dur, {"sockets": socks}))
    recv, rate, sdur = (100, 50, 3) if quick else (1000, 100, 8)
    # 1 kB payloads (as benches/run-quick.sh) so the slow receiver's TCP window
    # and the server's send buffer fill within the run.
    cases.append(Case("slow", "slow", "slow",
                      ("--receivers", str(recv), "--rate", str(rate), "--duration", str(sdur),
                       "--payload-bytes", "1000", "--drain-ms", str(drain)),
                      base_t + sdur + 15, {"receivers": recv, "rate": rate}))
    clients, storm_t = (100, 30) if quick else (1000, 60)
    cases.append(Case("reconnect-storm", "reconnect-storm", "reconnect-storm",
                      ("--clients", str(clients), "--timeout-s", str(storm_t)),
                      base_t + 2 * storm_t, {"clients": clients}))
    return cases


# How long the cross-outage case keeps the broker down.
OUTAGE_S = 3


def cluster_cases(cfg: ServerConfig, quick: bool, burst: int) -> list[Case]:
    dur = 2 if quick else 8
    drain = 2000 if quick else 5000
    base_t = 45 if quick else 150
    recv = 50 if quick else 500
    args, t = as_fast_as_possible(quick, burst, recv)
    rolling = []
    if cfg.is_riptide or cfg.name == "node-redis-streams":
        # The reconnect storm on node A of a cluster (its peer present), so
        # that the peer with recovery across nodes is measured in the same
        # invocation as Riptide's cluster configurations.
        clients, storm_t = (100, 30) if quick else (1000, 60)
        rolling.append(Case("reconnect-storm", "reconnect-storm", "reconnect-storm",
                            ("--clients", str(clients), "--timeout-s", str(storm_t)),
                            base_t + 2 * storm_t, {"clients": clients}))
        # A deploy under load with connection state recovery: Riptide, and
        # Node with the adapter that recovers across nodes (its
        # @socket.io/redis-adapter does not; socketioxide runs on one node
        # here).
        clients, gap, rr_t = (100, 2, 30) if quick else (1000, 3, 60)
        rolling.append(Case("rolling-restart", "rolling-restart", "rolling-restart",
                            ("--clients", str(clients), "--rate", "100", "--gap-s", str(gap),
                             "--drain-ms", str(drain), "--timeout-s", str(rr_t)),
                            base_t + 3 * gap + 2 * rr_t + drain / 1000,
                            {"clients": clients, "rate": 100}))
    # The broker killed for OUTAGE_S mid-run, then started again: the
    # delivery gap and how long after its return cross-node delivery resumed
    # (and, with recovery on, that nothing published meanwhile is lost).
    odur, orecv = (6, 50) if quick else (9, 200)
    outage_args = ("--receivers", str(orecv), "--rate", "200", "--duration", str(odur),
                   "--outage-at-s", "2", "--drain-ms", str(drain))
    outages = [Case("cross-outage", "cross-outage", "cross-node", outage_args,
                    base_t + odur + OUTAGE_S, {"receivers": orecv, "rate": 200, "recovery": False})]
    if cfg.is_riptide:
        outages.append(Case("cross-outage-recovery", "cross-outage", "cross-node", outage_args,
                            base_t + odur + OUTAGE_S, {"receivers": orecv, "rate": 200, "recovery": True}))
    return rolling + outages + [
        Case("cross-max", "cross-max", "cross-node", ("--receivers", str(recv), "--rate", "0", *args),
             base_t + t, {"receivers": recv, "rate": 0, "messages": burst or None}),
        Case("cross-200", "cross-rate", "cross-node",
             ("--receivers", str(recv), "--rate", "200", "--duration", str(dur), "--drain-ms", str(drain)),
             base_t + dur, {"receivers": recv, "rate": 200}),
    ]


# The cases run against the `riptide` binary in service mode.
SERVICE_CASES = ("service-publish", "service-idle")

# Rooms per POST /api/publish in the service-publish case.
SERVICE_ROOMS_PER_REQUEST = 100


def service_cases(cfg: ServerConfig, quick: bool, burst: int) -> list[Case]:
    """Service mode (shared/SERVICE.md) on one node: the `riptide` binary with
    app.mode = "service", clients with their own JWTs in their user rooms, the
    generator publishing through POST /api/publish; and, as its baseline, the
    fixture fan-out to as many receivers, run in the same invocation. The
    peers have no service mode: the case is recorded as skipped for them."""
    # As fast as the API answers, except in quick mode: the API answers before
    # delivery, so an unpaced publisher builds a backlog, and 200 clients in 2
    # batches would each be sent more notifications than the server's
    # per-connection queue bound (max_queued_frames, 1024) holds: slow-consumer
    # closes in a smoke run. 250 requests/s for 2 s is at most 250 per client
    # (about full speed for the debug build). At full size a client gets one
    # notification per 100 requests: under the bound below 12,800 requests/s.
    clients, dur, drain, rate = (200, 2, 2000, 250) if quick else (10000, 8, 5000, 0)
    base_t = 45 if quick else 150
    point = {"clients": clients, "rooms_per_request": SERVICE_ROOMS_PER_REQUEST, "rate": rate}
    # Idle memory per authenticated socket, as the idle case measures the
    # fixture's: each connection with its own token, in its user's room.
    conns = "500,1000" if quick else "5000,10000"
    idle_args = ("--conns", conns, *(["--settle-ms", "1000"] if quick else []))
    idle_point = {"conns": int(conns.split(",")[-1])}
    if not cfg.is_riptide:
        return [Case("service-publish", "service-publish", "service-publish", (), 0, point,
                     skip="no service mode (Riptide only)"),
                Case("service-idle", "service-idle", "idle", (), 0, idle_point,
                     skip="no service mode (Riptide only)")]
    cases = [
        Case("service-publish", "service-publish", "service-publish",
             ("--clients", str(clients), "--rooms-per-request", str(SERVICE_ROOMS_PER_REQUEST),
              "--rate", str(rate), "--duration", str(dur), "--drain-ms", str(drain)),
             base_t + dur + drain / 1000, point),
        Case("service-idle", "service-idle", "idle", idle_args, base_t + 30, idle_point),
    ]
    if clients not in FANOUT_SIZES[quick]:
        # The fixture fan-out to as many receivers, when the fanout-max cases
        # do not have it already.
        fan_args, fan_t = as_fast_as_possible(quick, burst, clients)
        cases.append(Case(f"fanout-max-{clients}", "service-baseline", "fanout",
                          ("--receivers", str(clients), "--rate", "0", *fan_args),
                          base_t + fan_t, {"receivers": clients, "rate": 0, "messages": burst or None}))
    return cases


def cases_for(cfg: ServerConfig, quick: bool, burst: int) -> list[Case]:
    if cfg.cluster:
        return cluster_cases(cfg, quick, burst)
    return single_node_cases(quick, burst) + service_cases(cfg, quick, burst)


# ---------------------------------------------------------------------------
# Processes: every server and broker runs in its own session (process group),
# so stopping it stops its children too. The PIDs of live ones are kept in a
# registry file that run.sh's exit trap reads, in case this process dies
# without cleaning up; each carries RIPTIDE_COMPARE_RUN in its environment so
# the trap can tell it from an unrelated process that got a recycled PID.


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def proc_state(pid: int) -> str | None:
    """The process state letter, None when gone. A zombie ('Z') has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X")


class Procs:
    def __init__(self, registry: Path, run_id: str):
        self.registry = registry
        self.run_id = run_id
        self.children: dict[int, subprocess.Popen] = {}
        self.others: set[int] = set()  # started by a restart command, not our children
        self._save()

    def _save(self) -> None:
        pids = sorted(set(self.children) | self.others)
        self.registry.write_text("".join(f"{p}\n" for p in pids))

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env["RIPTIDE_COMPARE_RUN"] = self.run_id
        env.update(extra)
        return env

    def start(self, argv: list[str], env: dict[str, str], log_path: Path, header: str) -> subprocess.Popen:
        with open(log_path, "a") as f:
            f.write(f"\n===== {time.strftime('%H:%M:%S')} {header}: {shlex.join(argv)}\n")
        logf = open(log_path, "a")
        try:
            p = subprocess.Popen(argv, cwd=ROOT, env=self.env(env), stdin=subprocess.DEVNULL,
                                 stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            logf.close()
        self.children[p.pid] = p
        self._save()
        return p

    def track(self, pid: int) -> None:
        """A process we wait for ourselves (the generator): listed for the
        exit trap only."""
        self.others.add(pid)
        self._save()

    def untrack(self, pid: int) -> None:
        self.others.discard(pid)
        self._save()

    def adopt(self, pid: int) -> None:
        """A server a restart command started: ours to stop."""
        if pid not in self.children and self.is_ours(pid):
            self.others.add(pid)
            self._save()

    def is_ours(self, pid: int) -> bool:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"RIPTIDE_COMPARE_RUN={self.run_id}".encode() in env

    def stop(self, pid: int, grace_s: float = 5.0) -> None:
        """SIGTERM to the process group, SIGKILL after grace_s."""
        child = self.children.get(pid)
        if child is not None:
            if child.poll() is None:
                self._signal(pid, signal.SIGTERM)
                try:
                    child.wait(grace_s)
                except subprocess.TimeoutExpired:
                    self._signal(pid, signal.SIGKILL)
                    child.wait()
            # Whatever the leader left in its group goes too.
            self._signal(pid, signal.SIGKILL)
            del self.children[pid]
        elif pid in self.others or self.is_ours(pid):
            if self.is_ours(pid):
                self._signal(pid, signal.SIGTERM)
                deadline = time.monotonic() + grace_s
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if alive(pid):
                    self._signal(pid, signal.SIGKILL)
                    while alive(pid):
                        time.sleep(0.05)
                self._signal(pid, signal.SIGKILL)
            self.others.discard(pid)
        self._save()

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def stop_all(self) -> None:
        for pid in list(self.others) + list(self.children):
            self.stop(pid)


# ---------------------------------------------------------------------------
# Ports and readiness

_used_ports: set[int] = set()


def free_port() -> int:
    """A free port below the ephemeral range (the generator's 10k client
    sockets take ephemeral ports), never a broker's standard one."""
    for _ in range(200):
        p = random.randrange(20000, 32000)
        if p in _used_ports or p in (4222, 6379, 6222, 8222):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        _used_ports.add(p)
        return p
    raise RuntimeError("no free port found")


def wait_port(port: int, proc: subprocess.Popen, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with status {proc.returncode} before listening"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return None
        except OSError:
            time.sleep(0.1)
    return f"port {port} not listening after {timeout_s:.0f} s"


def wait_http(port: int, proc: subprocess.Popen, timeout_s: float) -> str | None:
    """Port open and an Engine.IO polling handshake answered with 200."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with status {proc.returncode} before it was ready"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/socket.io/?EIO=4&transport=polling")
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return None
            last = f"HTTP {resp.status} to the polling handshake"
        except OSError as e:
            last = str(e) or type(e).__name__
        time.sleep(0.1)
    return f"not ready after {timeout_s:.0f} s ({last})"


# ---------------------------------------------------------------------------
# Starting configurations


class StartError(Exception):
    def __init__(self, reason: str, log_tail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail


def which(cmd: str) -> str | None:
    for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/usr/local/sbin", "/sbin"]:
        p = Path(d) / cmd
        if d and p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


RIPTIDE_ENV = {
    "RIPTIDE__LOG__LEVEL": "warning",
    "RIPTIDE__SERVER__MAX_CONNECTIONS": "30000",
    # Every generator connection comes from 127.0.0.1 and the publisher sends
    # one event per message: the per-IP and per-socket abuse limits (which the
    # peers do not have) are lifted; the per-connection queue limits, which
    # the slow scenario exercises, are not.
    "RIPTIDE__LIMITS__MAX_CONNECTIONS_PER_IP": "1000000",
    "RIPTIDE__LIMITS__CONNECTION_RATE_PER_IP": "1000000",
    "RIPTIDE__LIMITS__CONNECTION_BURST_PER_IP": "1000000",
    "RIPTIDE__LIMITS__EVENT_RATE": "1000000",
    "RIPTIDE__LIMITS__EVENT_BURST": "1000000",
}


def server_command(cfg: ServerConfig, port: int, broker_url: str | None,
                   recovery: bool = False,
                   service: tuple[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """argv and environment of one node. `service`: (HMAC secret, API key):
    Riptide's service binary in service mode instead of the fixture."""
    env = {"PORT": str(port)}
    if cfg.kind == "riptide":
        env.update(RIPTIDE_ENV)
        if service:
            secret, key = service
            env.update({
                "RIPTIDE__APP__MODE": "service",
                "RIPTIDE__AUTH__HMAC_SECRET": secret,
                "RIPTIDE__API__KEY": key,
                # The binary reads config/ and RIPTIDE__ variables only (PORT is
                # the fixture's): the same host and port through them.
                "RIPTIDE__SERVER__HOST": "127.0.0.1",
                "RIPTIDE__SERVER__PORT": str(port),
            })
        if recovery:
            env["RIPTIDE__RECOVERY__ENABLED"] = "true"
        if broker_url:
            env["RIPTIDE__ADAPTER__KIND"] = cfg.broker
            env["RIPTIDE__ADAPTER__URL"] = broker_url
        return [str(RIPTIDE_BIN if service else RIPTIDE_FIXTURE)], env
    if cfg.kind == "node":
        if broker_url:
            env["REDIS_URL"] = broker_url
        if cfg.name == "node-redis-streams":
            env["ADAPTER"] = "redis-streams"
        return [which("node") or "node", str(NODE_DIR / "fixture.js")], env
    if cfg.kind == "socketioxide":
        return [str(SIOX_BIN)], env
    raise ValueError(cfg.kind)


def preflight(cfg: ServerConfig, build_dir: Path) -> StartError | None:
    """Why this configuration cannot start at all, before trying."""

    def build_failed(peer: str) -> StartError | None:
        status = build_dir / f"build-{peer}.status"
        logp = build_dir / f"build-{peer}.log"
        if status.exists() and status.read_text().strip() != "ok":
            return StartError(f"{peer} setup failed: {status.read_text().strip()} (log: {logp})", tail(logp))
        return None

    if cfg.broker == "nats" and not which("nats-server"):
        return StartError("nats-server not installed (apt-get install nats-server)")
    if cfg.broker == "redis" and not which("redis-server"):
        return StartError("redis-server not installed (apt-get install redis-server)")
    if cfg.kind == "riptide":
        if not RIPTIDE_FIXTURE.exists():
            return StartError(f"{RIPTIDE_FIXTURE.relative_to(ROOT)} not built")
    elif cfg.kind == "node":
        if e := build_failed("node"):
            return e
        if not which("node"):
            return StartError("node not installed (apt-get install nodejs npm)")
        if not (NODE_DIR / "fixture.js").exists():
            return StartError("benches/peers/node/fixture.js is missing")
        if not (NODE_DIR / "node_modules").is_dir():
            return StartError("benches/peers/node/node_modules is missing (npm ci failed or not run)")
    elif cfg.kind == "socketioxide":
        if e := build_failed("socketioxide"):
            return e
        if not SIOX_BIN.exists():
            return StartError(f"{SIOX_BIN.relative_to(ROOT)} not built")
    return None


@dataclass
class Broker:
    pid: int
    url: str
    port: int = 0
    argv: list[str] = field(default_factory=list)
    log: Path | None = None


@dataclass
class Running:
    ports: list[int]
    pids: list[int]
    logs: list[Path]
    commands: list[tuple[list[str], dict[str, str]]]


class Runner:
    def __init__(self, out: Path, procs: Procs, quick: bool, gen_threads: int, burst: int):
        self.out = out
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs = procs
        self.quick = quick
        self.gen_threads = gen_threads
        self.burst = burst
        self.round = 1
        self.results = out / "results.jsonl"
        # Service mode's JWT secret (32 bytes as 64 hex digits) and API key,
        # fresh for every invocation; never written to the results.
        self.service_auth = (secrets.token_hex(32), secrets.token_hex(16))

    # -- brokers and servers

    def start_broker(self, cfg: ServerConfig) -> Broker:
        port = free_port()
        logp = self.logs / f"{cfg.name}-{cfg.broker}.log"
        if cfg.broker == "nats":
            # JetStream on: Riptide's connection state recovery keeps its
            # streams there (the rolling-restart case).
            store = self.logs / f"{cfg.name}-jetstream"
            argv = [which("nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
            url = f"nats://127.0.0.1:{port}"
        else:
            argv = [which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no"]
            url = f"redis://127.0.0.1:{port}"
        p = self.procs.start(argv, {}, logp, f"{cfg.broker} for {cfg.name}")
        if err := wait_port(port, p, 10):
            self.procs.stop(p.pid)
            raise StartError(f"{cfg.broker} broker: {err}", tail(logp))
        return Broker(p.pid, url, port, argv, logp)

    def outage_script(self, cfg: ServerConfig, broker: Broker, pid_file: Path) -> Path:
        """The cross-outage command: kill the broker (SIGKILL), wait
        OUTAGE_S, start it again on the same port, return once it accepts
        connections; its new PID to pid_file."""
        script = self.logs / f"outage-{cfg.name}.sh"
        script.write_text(f"""#!/bin/bash
kill -KILL "$(cat {shlex.quote(str(pid_file))})" 2>/dev/null
sleep {OUTAGE_S}
echo "===== $(date +%T) restarted by cross-outage" >> {shlex.quote(str(broker.log))}
setsid {shlex.join(broker.argv)} >> {shlex.quote(str(broker.log))} 2>&1 < /dev/null &
echo $! >> {shlex.quote(str(self.procs.registry))}
echo $! > {shlex.quote(str(pid_file))}
for i in $(seq 500); do (exec 3<>/dev/tcp/127.0.0.1/{broker.port}) 2>/dev/null && exit 0; sleep 0.01; done
echo "broker not back" >&2; exit 1
""")
        return script

    def start_servers(self, cfg: ServerConfig, broker: Broker | None, case_id: str) -> Running:
        run = Running([], [], [], [])
        try:
            for i in range(cfg.nodes):
                port = free_port()
                suffix = "" if cfg.nodes == 1 else "-" + "ab"[i]
                logp = self.logs / f"{cfg.name}{suffix}.log"
                argv, env = server_command(cfg, port, broker.url if broker else None,
                                           recovery=case_id in ("rolling-restart", "cross-outage-recovery"),
                                           service=self.service_auth if case_id in SERVICE_CASES else None)
                p = self.procs.start(argv, env, logp, f"{cfg.name}{suffix} for {case_id} on port {port}")
                run.ports.append(port)
                run.pids.append(p.pid)
                run.logs.append(logp)
                run.commands.append((argv, env))
            for port, pid, logp in zip(run.ports, run.pids, run.logs):
                if err := wait_http(port, self.procs.children[pid], 30):
                    raise StartError(err, tail(logp))
        except BaseException:
            self.stop_servers(run)
            raise
        return run

    def stop_servers(self, run: Running) -> None:
        for pid in run.pids:
            self.procs.stop(pid)

    def restart_script(self, cfg: ServerConfig, run: Running, pid_file: Path, node: int = 0) -> Path:
        """The reconnect-storm (and rolling-restart) restart command: stop
        node `node` by PID (SIGTERM, SIGKILL after 3 s), start a new one on
        the same port, PID to pid_file."""
        argv, env = run.commands[node]
        env_s = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        suffix = "" if cfg.nodes == 1 else "-" + "ab"[node]
        script = self.logs / f"restart-{cfg.name}{suffix}.sh"
        script.write_text(f"""#!/bin/sh
old=$(cat {shlex.quote(str(pid_file))})
kill -TERM "$old" 2>/dev/null
state() {{ sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -d' ' -f1; }}
i=0
while s=$(state "$old"); [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; do
  i=$((i + 1))
  [ "$i" = 60 ] && kill -KILL "$old" 2>/dev/null
  sleep 0.05
done
cd {shlex.quote(str(ROOT))}
echo "===== $(date +%T) restarted by the bench" >> {shlex.quote(str(run.logs[node]))}
env {env_s} setsid {shlex.join(argv)} >> {shlex.quote(str(run.logs[node]))} 2>&1 < /dev/null &
echo $! >> {shlex.quote(str(self.procs.registry))}
echo $! > {shlex.quote(str(pid_file))}.tmp && mv {shlex.quote(str(pid_file))}.tmp {shlex.quote(str(pid_file))}
echo "restarted: pid $!"
""")
        return script

    # -- one generator run

    def record(self, rec: dict) -> None:
        rec["round"] = self.round
        with open(self.results, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")

    def run_case(self, cfg: ServerConfig, case: Case, run: Running, broker: Broker | None = None) -> dict:
        urls = [f"http://127.0.0.1:{p}" for p in run.ports]
        argv = [str(BENCH), case.scenario, "--url", urls[0], "--label", cfg.name,
                "--threads", str(self.gen_threads), *case.args]
        if case.scenario in ("cross-node", "rolling-restart"):
            # cross-node: publisher on node A, receivers on node B.
            argv += ["--url-b", urls[1]]
        for pid in run.pids:
            argv += ["--server-pid", str(pid)]
        pid_files: list[Path | None] = [None] * len(run.pids)
        if case.scenario == "reconnect-storm":
            pid_files[0] = self.logs / f"{cfg.name}.pid"
            pid_files[0].write_text(f"{run.pids[0]}\n")
            script = self.restart_script(cfg, run, pid_files[0])
            argv += ["--restart-cmd", f"sh {shlex.quote(str(script))}", "--server-pid-file", str(pid_files[0])]
        broker_pid_file = None
        if case.group == "cross-outage" and broker is not None:
            broker_pid_file = self.logs / f"{cfg.name}-broker.pid"
            broker_pid_file.write_text(f"{broker.pid}\n")
            script = self.outage_script(cfg, broker, broker_pid_file)
            argv += ["--outage-cmd", f"bash {shlex.quote(str(script))}"]
        if case.scenario == "rolling-restart":
            for node, flag in ((0, "--restart-cmd"), (1, "--restart-cmd-b")):
                pid_files[node] = self.logs / f"{cfg.name}-{'ab'[node]}.pid"
                pid_files[node].write_text(f"{run.pids[node]}\n")
                script = self.restart_script(cfg, run, pid_files[node], node)
                argv += [flag, f"sh {shlex.quote(str(script))}"]
        shown = [os.path.relpath(argv[0], ROOT), *argv[1:]]
        if case.scenario == "service-publish":
            secret, key = self.service_auth
            argv += ["--jwt-secret", secret, "--api-key", key]
            shown += ["--jwt-secret", "<secret>", "--api-key", "<key>"]
        elif case.id == "service-idle":
            argv += ["--jwt-secret", self.service_auth[0]]
            shown += ["--jwt-secret", "<secret>"]
        gen_log = self.logs / f"{cfg.name}-{case.id}.generator.log"
        rec = {"config": cfg.name, "case": case.id, "group": case.group, "scenario": case.scenario,
               "point": case.point, "argv": shown,
               "status": "failed", "reason": None, "issues": [], "result": None}
        log(f"{cfg.name}: {case.id}" + (f" (round {self.round})" if self.round > 1 else ""))
        t0 = time.monotonic()
        with open(gen_log, "w") as errf:
            p = subprocess.Popen(argv, cwd=ROOT, env=self.procs.env({}), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=errf, start_new_session=True, text=True)
            self.procs.track(p.pid)
            try:
                stdout, _ = p.communicate(timeout=case.timeout_s)
            except subprocess.TimeoutExpired:
                Procs._signal(p.pid, signal.SIGKILL)
                stdout, _ = p.communicate()
                rec["reason"] = f"timeout: no result after {case.timeout_s:.0f} s (killed)"
            except BaseException:
                Procs._signal(p.pid, signal.SIGKILL)
                p.wait()
                raise
            finally:
                self.procs.untrack(p.pid)
        rec["elapsed_s"] = round(time.monotonic() - t0, 1)
        if broker_pid_file is not None and broker is not None:
            # The broker the outage command started replaces ours.
            try:
                new_pid = int(broker_pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                new_pid = None
            if new_pid and new_pid != broker.pid:
                self.procs.adopt(new_pid)
                self.procs.stop(broker.pid)  # killed by the outage: reaps it
                broker.pid = new_pid
        for node, pid_file in enumerate(pid_files):
            if pid_file is None:
                continue
            # The node the restart command started replaces the one we started.
            try:
                new_pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                new_pid = None
            if new_pid and new_pid != run.pids[node]:
                self.procs.adopt(new_pid)
                self.procs.stop(run.pids[node])  # already stopped by the restart: reaps it
                run.pids[node] = new_pid
        lines = [ln for ln in stdout.splitlines() if ln.strip()]
        parsed = None
        if len(lines) == 1:
            try:
                parsed = json.loads(lines[0])
            except json.JSONDecodeError:
                pass
        if parsed is not None:
            rec["result"] = parsed
        if rec["reason"] is None:
            if parsed is None:
                rec["reason"] = (f"exit status {p.returncode}, "
                                 f"{'no' if not lines else len(lines)} JSON line(s) on stdout")
            elif p.returncode != 0 or not parsed.get("ok"):
                rec["reason"] = f"exit status {p.returncode}: {parsed.get('error') or 'ok is false'}"
            else:
                rec["status"] = "ok"
                rec["issues"] = issues(parsed, case.point)
        if rec["status"] != "ok":
            rec["log_tail"] = tail(gen_log, 10)
            for lp in run.logs:
                rec["log_tail"] += f"\n--- {lp.name}\n" + tail(lp, 10)
        self.record(rec)
        summary = rec["reason"] if rec["status"] != "ok" else headline(rec)
        log(f"{cfg.name}: {case.id}: {rec['status']}: {summary}"
            + (f" ISSUES: {', '.join(rec['issues'])}" if rec["issues"] else ""))
        return rec

    # -- one configuration

    def run_config(self, cfg: ServerConfig, build_dir: Path) -> dict:
        """Every case of cfg, each on freshly started nodes (the broker stays
        up for the configuration). Returns the configuration's status."""
        cases = cases_for(cfg, self.quick, self.burst)
        status = {"config": cfg.name, "title": cfg.title, "status": "ran", "reason": None,
                  "log_tail": "", "cases": sum(1 for c in cases if not c.skip), "failed": 0}
        if err := preflight(cfg, build_dir):
            return self.not_started(cfg, cases, status, err)
        broker = None
        try:
            if cfg.broker:
                try:
                    broker = self.start_broker(cfg)
                except StartError as e:
                    return self.not_started(cfg, cases, status, e)
            for i, case in enumerate(cases):
                if case.skip:
                    self.record(self.skipped(cfg, case))
                    continue
                if case.id in SERVICE_CASES and not RIPTIDE_BIN.exists():
                    self.record({"config": cfg.name, "case": case.id, "group": case.group,
                                 "scenario": case.scenario, "point": case.point, "status": "failed",
                                 "reason": f"{os.path.relpath(RIPTIDE_BIN, ROOT)} not built", "issues": [],
                                 "result": None})
                    status["failed"] += 1
                    continue
                try:
                    run = self.start_servers(cfg, broker, case.id)
                except StartError as e:
                    if i == 0:
                        return self.not_started(cfg, cases, status, e)
                    rec = {"config": cfg.name, "case": case.id, "group": case.group,
                           "scenario": case.scenario, "point": case.point, "status": "failed",
                           "reason": f"server could not start: {e.reason}", "log_tail": e.log_tail,
                           "issues": [], "result": None}
                    self.record(rec)
                    status["failed"] += 1
                    continue
                try:
                    rec = self.run_case(cfg, case, run, broker)
                finally:
                    self.stop_servers(run)
                if rec["status"] != "ok":
                    status["failed"] += 1
        finally:
            if broker:
                self.procs.stop(broker.pid)
        return status

    @staticmethod
    def skipped(cfg: ServerConfig, case: Case) -> dict:
        return {"config": cfg.name, "case": case.id, "group": case.group, "scenario": case.scenario,
                "point": case.point, "status": "skipped", "reason": case.skip, "issues": [], "result": None}

    def not_started(self, cfg: ServerConfig, cases: list[Case], status: dict, err: StartError) -> dict:
        log(f"{cfg.name}: could not start: {err.reason}")
        status.update(status="could not start", reason=err.reason, log_tail=err.log_tail,
                      failed=sum(1 for c in cases if not c.skip))
        for case in cases:
            if case.skip:
                self.record(self.skipped(cfg, case))
                continue
            self.record({"config": cfg.name, "case": case.id, "group": case.group, "scenario": case.scenario,
                         "point": case.point, "status": "not-started",
                         "reason": f"could not start: {err.reason}", "issues": [], "result": None})
        return status


def issues(r: dict, point: dict | None = None) -> list[str]:
    """What a run that completed got wrong: loss, duplicates, reordering,
    unanswered echoes, clients not back, a server that died. A broker outage
    without connection state recovery loses what was in flight with the
    broker (Socket.IO broadcasts are at most once): not an issue there."""
    out = []
    d = r.get("delivery")
    expected_loss = bool(r.get("outage")) and not (point or {}).get("recovery")
    if d:
        for key in ("loss", "duplicates", "out_of_order"):
            if key == "loss" and expected_loss:
                continue
            if d.get(key):
                out.append(f"{key} {d[key]}")
    if d and d.get("wrong_room"):
        out.append(f"delivered to the wrong room {d['wrong_room']}")
    c = r.get("connect")
    if c and c.get("failed"):
        out.append(f"connect failed {c['failed']}")
    api = r.get("api")
    if api and api.get("failed"):
        out.append(f"API requests failed {api['failed']}")
    if api is not None and not api.get("acked"):
        out.append("no API request answered ok")
    e = r.get("echo")
    if e:
        if e.get("unanswered"):
            out.append(f"echo unanswered {e['unanswered']}")
        if e.get("mismatched"):
            out.append(f"echo mismatched {e['mismatched']}")
        if not e.get("acked"):
            out.append("no echo answered")
    if r.get("scenario") == "idle":
        failed = sum(s.get("connect", {}).get("failed", 0) for s in r.get("steps", []))
        if failed:
            out.append(f"connect failed {failed}")
        if r.get("dropped", {}).get("total"):
            out.append(f"dropped {r['dropped']['total']}")
    s = r.get("storm")
    if s is not None and not s.get("all_back"):
        out.append(f"not back {s.get('not_back')}")
    for rs in r.get("restarts") or []:
        if rs.get("command") and not rs.get("all_back"):
            out.append(f"node {rs.get('node')}: not back {rs.get('disconnected', 0) - rs.get('back', 0)}")
    if d and d.get("not_recovered"):
        out.append(f"not recovered {d['not_recovered']}")
    if r.get("scenario") not in ("reconnect-storm", "rolling-restart"):
        # (Those two replace their servers on purpose.)
        for srv in r.get("server", []):
            if srv.get("alive_at_end") is False:
                out.append(f"server pid {srv.get('pid')} died")
    return out


def headline(rec: dict) -> str:
    r = rec["result"]
    if r.get("restarts") is not None:
        d = r["delivery"]
        return (f"lost {d['loss']}, duplicated {d['duplicates']}, reordered {d['out_of_order']}, "
                f"recovered {d['recovered']}, not recovered {d['not_recovered']}")
    if r.get("outage"):
        o, d = r["outage"], r["delivery"]
        return (f"lost {d['loss']} of {d['expected']}, gap {o['max_gap_ms']} ms, "
                f"resumed {o['resumed_after_broker_back_ms']} ms after the broker was back")
    if r.get("api"):
        return (f"{r['api']['requests_per_s']:.0f} API requests/s, "
                f"{r['delivery']['deliveries_per_s']:.0f} deliveries/s, "
                f"p99 {fmt_ms(r.get('latency_us', {}).get('p99'))} ms")
    if r.get("delivery"):
        return (f"{r['delivery']['deliveries_per_s']:.0f} deliveries/s, "
                f"p99 {fmt_ms(r.get('latency_us', {}).get('p99'))} ms")
    if r.get("echo"):
        return f"{r['echo']['round_trips_per_s']:.0f} round trips/s"
    if r.get("steps"):
        st = r["steps"][-1]
        return f"{st['conns']} conns, {st['server'][0]['rss_per_conn_bytes']} B/conn"
    if r.get("storm"):
        return f"all back after {r['storm'].get('all_back_after_restart_ms')} ms"
    return "done"


# ---------------------------------------------------------------------------
# Machine and versions


def sh(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def npm_version(pkg: str) -> str | None:
    try:
        return json.loads((NODE_DIR / "node_modules" / pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        lock = json.loads((NODE_DIR / "package-lock.json").read_text())
        return lock["packages"][f"node_modules/{pkg}"]["version"]
    except (OSError, ValueError, KeyError):
        return None


def cargo_lock_version(lock: Path, crate: str) -> str | None:
    try:
        text = lock.read_text()
    except OSError:
        return None
    m = re.search(rf'name = "{re.escape(crate)}"\nversion = "([^"]+)"', text)
    return m.group(1) if m else None


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem_gib = round(kb / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    commit = sh("git", "rev-parse", "--short=12", "HEAD")
    dirty = sh("git", "status", "--porcelain", "--", "src", "examples", "config", "Cargo.toml", "Cargo.lock")
    nats = which("nats-server")
    redis = which("redis-server")
    node = which("node")
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": mem_gib,
        "kernel": platform.release(),
        "riptide_commit": commit + (" (uncommitted changes in src/examples/config)" if dirty else ""),
        "riptide_profile": PROFILE,
        "rustc": sh("rustc", "--version"),
        "node": sh(node, "--version") if node else None,
        "socket.io": npm_version("socket.io"),
        "@socket.io/redis-adapter": npm_version("@socket.io/redis-adapter"),
        "socketioxide": cargo_lock_version(SIOX_DIR / "Cargo.lock", "socketioxide"),
        "nats-server": sh(nats, "--version") if nats else None,
        "redis-server": (sh(redis, "--version").split(" sha=")[0] if redis else None),
        "nofile_limit": sh("sh", "-c", "ulimit -n"),
    }


# ---------------------------------------------------------------------------
# `run`


def cmd_run(a: argparse.Namespace) -> int:
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    build_dir = Path(a.build_dir).resolve() if a.build_dir else out / "logs"
    selected = [s.strip() for s in a.servers.split(",") if s.strip()] if a.servers else [c.name for c in CONFIGS]
    unknown = [s for s in selected if s not in CONFIG_BY_NAME]
    if unknown:
        print(f"compare.py: unknown server configuration(s): {', '.join(unknown)}; "
              f"known: {', '.join(CONFIG_BY_NAME)}", file=sys.stderr)
        return 2
    if not BENCH.exists():
        print(f"compare.py: {BENCH} is not built (run benches/compare/run.sh)", file=sys.stderr)
        return 1
    registry = Path(a.registry) if a.registry else out / ".pids"
    procs = Procs(registry, a.run_id or f"{os.getpid()}-{time.time_ns()}")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too: a shell without job control starts background commands with
    # SIGINT ignored, and Python then keeps it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    (out / "results.jsonl").write_text("")
    started = dt.datetime.now().astimezone()
    meta = {
        "schema": "riptide-compare/1",
        "mode": "quick" if a.quick else "full",
        "command": a.command or shlex.join(sys.argv),
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "gen_threads": a.gen_threads,
        "fanout_burst": a.fanout_burst,
        "repeat": a.repeat,
        "selected": selected,
        "servers": {},
    }
    runner = Runner(out, procs, a.quick, a.gen_threads, a.fanout_burst)
    t0 = time.monotonic()
    interrupted = False
    try:
        for cfg in CONFIGS:
            if cfg.name not in selected:
                meta["servers"][cfg.name] = {"config": cfg.name, "title": cfg.title, "status": "not selected"}
        # Rounds interleave the servers (A B C, A B C, ...), so a change in
        # the machine's load spreads over all of them instead of one.
        for rnd in range(1, a.repeat + 1):
            runner.round = rnd
            for cfg in CONFIGS:
                if cfg.name not in selected:
                    continue
                prev = meta["servers"].get(cfg.name)
                if prev and prev["status"] == "could not start":
                    continue
                st = runner.run_config(cfg, build_dir)
                if prev:
                    st["cases"] += prev["cases"]
                    st["failed"] += prev["failed"]
                meta["servers"][cfg.name] = st
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping every server")
    finally:
        procs.stop_all()
        meta["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        meta["wall_s"] = round(time.monotonic() - t0, 1)
        meta["interrupted"] = interrupted
        (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if interrupted:
        return 130
    write_report(out)
    if meta["mode"] == "full" and not a.servers:
        update_readme(out)
    return ci_verdict(out, meta)


def ci_verdict(out: Path, meta: dict) -> int:
    """Non-zero when the run broke; in quick mode also when any Riptide
    scenario failed or showed loss, duplicates, reordering (or any other
    issue), so CI can rely on the exit status."""
    recs = load_results(out)
    if not recs:
        log("FAILED: no results")
        return 1
    bad = []
    for r in recs:
        cfg = CONFIG_BY_NAME[r["config"]]
        if not cfg.is_riptide:
            continue
        if r["status"] != "ok":
            bad.append(f"{r['config']} {r['case']}: {r['reason']}")
        elif r["issues"] and meta["mode"] == "quick":
            bad.append(f"{r['config']} {r['case']}: {', '.join(r['issues'])}")
    if meta["servers"].get("riptide", {}).get("status") == "could not start":
        log(f"FAILED: Riptide could not start: {meta['servers']['riptide']['reason']}")
        return 1
    if bad and meta["mode"] == "quick":
        log("FAILED (quick mode: every Riptide scenario must pass):\n  " + "\n  ".join(bad))
        return 1
    log(f"done in {meta['wall_s']:.0f} s; report: {out / 'report.md'}")
    return 0


# ---------------------------------------------------------------------------
# Figures


def load_results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def fmt_ms(us) -> str:
    if us is None:
        return "–"
    ms = us / 1000
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_n(x, digits: int = 0) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:,.{digits}f}"
    return str(x)


def fmt_kb(b) -> str:
    return "–" if b is None else f"{b / 1024:.1f}"


def key_figure(r: dict) -> float | None:
    """The figure a case's rounds are ranked by to pick the median one."""
    x = r.get("result") or {}
    try:
        if r["group"] in ("idle", "service-idle"):
            return sum(s["rss_per_conn_bytes"] for s in x["steps"][-1]["server"])
        if r["group"] in ("fanout-max", "cross-max", "service-publish", "service-baseline"):
            return x["delivery"]["deliveries_per_s"]
        if r["group"] in ("fanout-rate", "cross-rate", "slow"):
            return x["latency_us"]["p99"]
        if r["group"] == "echo":
            return x["echo"]["round_trips_per_s"]
        if r["group"] == "reconnect-storm":
            return x["storm"]["all_back_after_restart_ms"]
    except (KeyError, IndexError, TypeError):
        return None
    return None


class Results:
    """Records by configuration and case. With several rounds, `recs` holds
    one per (config, case): the round with the median key figure among the
    ones that ran, with `runs` = {n, ok, min, max} added; `all` keeps every
    round."""

    def __init__(self, recs: list[dict], servers: dict | None = None):
        self.all = recs
        self.servers = servers or {}
        by: dict[tuple[str, str], list[dict]] = {}
        for r in recs:
            by.setdefault((r["config"], r["case"]), []).append(r)
        self.recs = []
        for rounds in by.values():
            ok = [r for r in rounds if r["status"] == "ok" and key_figure(r) is not None]
            if ok:
                ok.sort(key=key_figure)
                rep = dict(ok[len(ok) // 2])
                vals = [key_figure(r) for r in ok]
                rep["runs"] = {"n": len(rounds), "ok": len(ok), "min": vals[0], "max": vals[-1]}
            else:
                rep = dict(rounds[-1])
                rep["runs"] = {"n": len(rounds), "ok": 0}
            self.recs.append(rep)

    def get(self, config: str, case_id: str) -> dict | None:
        for r in self.recs:
            if r["config"] == config and r["case"] == case_id:
                return r
        return None

    def ok(self, config: str, case_id: str) -> dict | None:
        r = self.get(config, case_id)
        return r["result"] if r and r["status"] == "ok" else None

    def group(self, group: str) -> list[dict]:
        return [r for r in self.recs if r["group"] == group]

    def cases(self, group: str) -> list[str]:
        seen = []
        for r in self.group(group):
            if r["case"] not in seen:
                seen.append(r["case"])
        return seen


def spread(r: dict, scale: float = 1.0, fmt: str = "{:,.0f}") -> str:
    """" (3 runs: lo–hi)" when the case ran more than once."""
    runs = r.get("runs") or {}
    if runs.get("n", 1) <= 1:
        return ""
    if not runs.get("ok"):
        return f" ({runs['n']} runs, none ok)"
    lo, hi = fmt.format(runs["min"] * scale), fmt.format(runs["max"] * scale)
    failed = runs["n"] - runs["ok"]
    return f" ({runs['ok']} runs: {lo}–{hi}" + (f", {failed} failed)" if failed else ")")


def gen_cols(res: dict) -> list[str]:
    g = res.get("generator", {})
    return [fmt_n(g.get("phase_cpu_pct")), "**yes**" if g.get("saturated") else "no", fmt_n(g.get("machine_busy_pct"))]


def srv_cpu(res: dict) -> str:
    return " / ".join(fmt_n(s.get("cpu_pct_avg")) for s in res.get("server", [])) or "–"


def srv_rss_peak(res: dict) -> str:
    return " / ".join(fmt_n(s.get("rss_peak_kb") and s["rss_peak_kb"] / 1024, 1) for s in res.get("server", [])) or "–"


def failed_row(r: dict, ncols: int, lead: list[str]) -> list[str]:
    why = r["reason"] or "failed"
    return lead + [f"*{r['status']}: {md_cell(why)}*"] + [""] * (ncols - len(lead) - 1)


def md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


# --- the ratio table: the goals the figures are held to


@dataclass
class Metric:
    value: float | None
    text: str
    clean: bool = True  # no loss / dup / reordering
    saturated: bool = False
    missing: str | None = None  # why there is no value


def m_missing(res: Results, config: str, case_id: str | None) -> Metric:
    r = res.get(config, case_id) if case_id else None
    st = res.servers.get(config, {}).get("status")
    if st in ("not selected", "could not start"):
        why = st
    elif r is None:
        why = "not run"
    elif r["status"] != "ok":
        why = r["status"]
    else:
        why = "no figure"
    return Metric(None, "–", missing=f"{config}: {why}")


def metric_idle(res: Results, config: str, case_id: str = "idle") -> Metric:
    r = res.ok(config, case_id)
    if not r or not r.get("steps"):
        return m_missing(res, config, case_id)
    st = r["steps"][-1]
    b = sum(s["rss_per_conn_bytes"] for s in st["server"])
    return Metric(b, f"{b / 1024:.1f} kB/conn at {st['conns']:,}", saturated=r["generator"].get("saturated", False))


def metric_connect_rate(res: Results, config: str) -> Metric:
    """Connections/s over every step of the idle case: all opened / the time
    the steps took to open them."""
    r = res.ok(config, "idle")
    if not r or not r.get("steps"):
        return m_missing(res, config, "idle")
    opened, secs, prev = 0, 0.0, 0
    for st in r["steps"]:
        rate, n = st["connect"].get("conn_per_s"), st["conns"] - prev
        prev = st["conns"]
        if not rate:
            return Metric(None, "–", missing=f"{config}: no connect rate")
        opened, secs = opened + n, secs + n / rate
    v = opened / secs
    return Metric(v, f"{v:,.0f} connections/s ({opened:,} opened)",
                  saturated=r["generator"].get("saturated", False))


def largest_case(res: Results, config: str, group: str) -> str | None:
    best, best_n = None, -1
    for r in res.group(group):
        if r["config"] == config and r["point"].get("receivers", 0) > best_n:
            best, best_n = r["case"], r["point"]["receivers"]
    return best


def case_with(res: Results, config: str, group: str, receivers: int, at_most: bool = False) -> str | None:
    """The case of `group` with `receivers` receivers (`at_most`: the largest
    with at most that many)."""
    best, best_n = None, -1
    for r in res.group(group):
        n = r["point"].get("receivers", 0)
        if r["config"] == config and (n <= receivers if at_most else n == receivers) and n > best_n:
            best, best_n = r["case"], n
    return best


def metric_cpu_per_million(res: Results, config: str, group: str, receivers: int) -> Metric:
    """Server CPU seconds (every node's, first publish to last delivery) per
    million deliveries in the fan-out case with `receivers` receivers."""
    case_id = case_with(res, config, group, receivers)
    r = res.ok(config, case_id) if case_id else None
    if not r:
        return m_missing(res, config, case_id or f"{group} at {receivers:,}")
    v = r.get("server_phase", {}).get("cpu_s_per_million_deliveries")
    if v is None:
        return Metric(None, "–", False, False, f"{config}: no server CPU figure")
    d = r["delivery"]
    clean = not (d["loss"] or d["duplicates"] or d["out_of_order"])
    return Metric(v, f"{v:.2f} CPU s per million at {d['receivers']:,} receivers", clean,
                  r["generator"].get("saturated", False))


def metric_deliveries(res: Results, config: str, group: str, case_id: str | None = None) -> Metric:
    case_id = case_id or largest_case(res, config, group)
    r = res.ok(config, case_id) if case_id else None
    if not r:
        return m_missing(res, config, case_id)
    d = r["delivery"]
    clean = not (d["loss"] or d["duplicates"] or d["out_of_order"])
    text = f"{d['deliveries_per_s']:,.0f}/s at {d['receivers']:,} receivers"
    if not clean:
        text += f" (loss {d['loss']}, dup {d['duplicates']}, ooo {d['out_of_order']})"
    return Metric(d["deliveries_per_s"], text, clean, r["generator"].get("saturated", False))


def metric_p99(res: Results, config: str, group: str) -> Metric:
    cases = [c for c in res.cases(group)]
    case_id = cases[0] if cases else None
    r = res.ok(config, case_id) if case_id else None
    if not r or not r.get("latency_us", {}).get("count"):
        return m_missing(res, config, case_id)
    d = r["delivery"]
    clean = not (d["loss"] or d["duplicates"] or d["out_of_order"])
    return Metric(r["latency_us"]["p99"], f"{fmt_ms(r['latency_us']['p99'])} ms", clean,
                  r["generator"].get("saturated", False))


def metric_echo(res: Results, config: str) -> Metric:
    r = res.ok(config, "echo")
    if not r:
        return m_missing(res, config, "echo")
    e = r["echo"]
    return Metric(e["round_trips_per_s"], f"{e['round_trips_per_s']:,.0f}/s",
                  not (e["unanswered"] or e["mismatched"]), r["generator"].get("saturated", False))


def metric_storm(res: Results, config: str) -> Metric:
    r = res.ok(config, "reconnect-storm")
    if not r or r["storm"].get("all_back_after_restart_ms") is None:
        return m_missing(res, config, "reconnect-storm")
    ms = r["storm"]["all_back_after_restart_ms"]
    return Metric(ms, f"{ms:,.0f} ms", r["storm"].get("all_back", False), r["generator"].get("saturated", False))


def point_values(res: Results, group: str, key: str) -> list:
    return sorted({r["point"].get(key) for r in res.group(group) if r["point"].get(key) is not None})


def point_desc(res: Results, group: str, key: str) -> str:
    vals = point_values(res, group, key)
    return " / ".join(f"{v:,}" for v in vals) if vals else "?"


def point_max(res: Results, group: str, key: str) -> str:
    vals = point_values(res, group, key)
    return f"{vals[-1]:,}" if vals else "?"


def goal_rows(res: Results, quick: bool) -> list[list[str]]:
    fan_n = point_max(res, "fanout-max", "receivers")
    lat = (point_desc(res, "fanout-rate", "rate"), point_desc(res, "fanout-rate", "receivers"))
    conns = point_max(res, "idle", "conns")
    cross_n = point_desc(res, "cross-max", "receivers")
    full_note = " (quick size; goal is at 1,000 and 10,000)" if quick else ""
    # The fan-out goals hold at 1,000 and 10,000 receivers (the largest size in
    # quick mode).
    sizes = sorted({r["point"].get("receivers", 0) for r in res.group("fanout-max")})
    goal_sizes = [n for n in (1000, 10000) if n in sizes] or sizes[-1:]
    cross_vals = point_values(res, "cross-max", "receivers")
    cross_recv = cross_vals[0] if cross_vals else 0
    # (what, riptide metric, peer metric, peer name, op, target, needs clean riptide, goal?)
    specs = [
        ("Idle memory per connection", lambda c: metric_idle(res, c), "riptide", "node", "<=", 0.25, False, True),
        ("Idle memory per connection", lambda c: metric_idle(res, c), "riptide", "socketioxide", "<", 1.0, False, True),
        ("Connect rate (the idle case's handshakes, 256 in flight)", lambda c: metric_connect_rate(res, c),
         "riptide", "socketioxide", ">=", 1.5, False, True),
        *[(f"Fan-out deliveries/s, {n:,} receivers, as fast as possible, no loss, in order{full_note}",
           lambda c, n=n: metric_deliveries(res, c, "fanout-max", case_with(res, c, "fanout-max", n)),
           "riptide", "socketioxide", ">=", 1.5, True, True) for n in goal_sizes],
        (f"Fan-out deliveries/s, {fan_n} receivers, as fast as possible, no loss, in order{full_note}",
         lambda c: metric_deliveries(res, c, "fanout-max"), "riptide", "node", ">=", 10.0, True, True),
        *[(f"Server CPU seconds per million deliveries, fan-out to {n:,} receivers as fast as possible",
           lambda c, n=n: metric_cpu_per_million(res, c, "fanout-max", n),
           "riptide", "socketioxide", "<=", 0.5, False, True) for n in goal_sizes],
        (f"p99 latency, {lat[0]} msg/s to {lat[1]} receivers",
         lambda c: metric_p99(res, c, "fanout-rate"), "riptide", "socketioxide", "<=", 0.25, False, True),
        ("Echo round trips/s", lambda c: metric_echo(res, c), "riptide", "socketioxide", ">=", 1.5, False, True),
        (f"Cross-node fan-out deliveries/s, {cross_n} receivers on node B: NATS / Redis",
         lambda c: metric_deliveries(res, c, "cross-max", "cross-max"), "riptide-nats", "riptide-redis", ">=", 1.0,
         False, True),
        (f"Cross-node fan-out through NATS / single-node fan-out, {cross_n} receivers, as fast as possible",
         lambda c: (metric_deliveries(res, c, "cross-max", "cross-max") if c == "riptide-nats" else
                    metric_deliveries(res, c, "fanout-max", case_with(res, c, "fanout-max", cross_recv))),
         "riptide-nats", "riptide", ">=", 0.8, False, True),
        # Informational rows: no goal, same figures against the other peer.
        (f"p99 latency, {lat[0]} msg/s to {lat[1]} receivers",
         lambda c: metric_p99(res, c, "fanout-rate"), "riptide", "node", None, None, False, False),
        ("Echo round trips/s", lambda c: metric_echo(res, c), "riptide", "node", None, None, False, False),
        (f"Cross-node fan-out deliveries/s, {cross_n} receivers, through Redis",
         lambda c: metric_deliveries(res, c, "cross-max", "cross-max"), "riptide-redis", "node-redis", None, None,
         False, False),
        ("Reconnect storm: all clients back after the restart (ms)", lambda c: metric_storm(res, c), "riptide",
         "node", None, None, False, False),
        ("Reconnect storm: all clients back after the restart (ms)", lambda c: metric_storm(res, c), "riptide",
         "socketioxide", None, None, False, False),
    ]
    rows = []
    for what, fn, mine, peer, op, target, need_clean, is_goal in specs:
        if conns != "?" and what.startswith("Idle"):
            what = f"Idle memory per connection (RSS growth / open connections, {conns} conns)"
        a, b = fn(mine), fn(peer)
        ratio = a.value / b.value if a.value is not None and b.value not in (None, 0) else None
        ratio_s = "–" if ratio is None else (f"{ratio:.2f}" if ratio < 100 else f"{ratio:.0f}")
        if not is_goal:
            target_s, met = "–", "(info)"
        else:
            target_s = {"<=": "≤", "<": "<", ">=": "≥"}[op] + f" {target:g}"
            if ratio is None:
                met = "n/a: " + "; ".join(x.missing for x in (a, b) if x.missing)
            else:
                ok = {"<=": ratio <= target, "<": ratio < target, ">=": ratio >= target}[op]
                if need_clean and not a.clean:
                    ok = False
                met = "**met**" if ok else "**not met**"
                if need_clean and not a.clean:
                    met += " (loss/dup/reorder)"
            if a.saturated or b.saturated:
                met += " ⚠ generator saturated"
        rows.append([md_cell(what), f"{mine}: {a.text}", f"{peer}: {b.text}", ratio_s, target_s, met])
    return rows


GOAL_HEADER = ["Figure", "Riptide side", "Peer", "Ratio (Riptide / peer)", "Goal", "Met"]


# --- service mode against the fixture


SERVICE_HEADER = ["Figure", "Service mode (`riptide`, app.mode = service)", "Fixture (`bench_fixture`)",
                  "Ratio (service / fixture)"]


def metric_service(res: Results, config: str = "riptide") -> Metric:
    r = res.ok(config, "service-publish")
    if not r:
        return m_missing(res, config, "service-publish")
    d, api = r["delivery"], r["api"]
    clean = not (d["loss"] or d["duplicates"] or d["out_of_order"] or api.get("failed"))
    text = (f"{d['deliveries_per_s']:,.0f}/s to {d['receivers']:,} clients, "
            f"{api['requests_per_s']:,.0f} API requests/s (answer p99 "
            f"{fmt_ms(api.get('answer_us', {}).get('p99'))} ms)")
    if not clean:
        text += (f" (loss {d['loss']}, dup {d['duplicates']}, ooo {d['out_of_order']}, "
                 f"failed requests {api.get('failed', 0)})")
    return Metric(d["deliveries_per_s"], text, clean, r["generator"].get("saturated", False))


def service_rows(res: Results) -> list[list[str]]:
    """Deliveries/s of service-publish beside Riptide's own fixture fan-out
    from the same invocation: to the largest fanout-max room (1,000
    receivers; 100 in quick mode) and to as many receivers as service-publish
    has clients (the service-baseline case); and idle memory per
    authenticated socket (service-idle) beside the fixture's (idle). Empty
    when neither service case ran."""
    rows = idle_service_row(res)
    if res.get("riptide", "service-publish") is None:
        return rows
    svc = metric_service(res)
    r = res.get("riptide", "service-publish")
    pt = r["point"] if r else {}
    # The largest fanout-max room up to 1,000, and the room as large as the
    # service case's clients (a fanout-max case in full mode, the
    # service-baseline case in quick mode).
    baselines = [c for c in (case_with(res, "riptide", "fanout-max", 1000, at_most=True),
                             case_with(res, "riptide", "fanout-max", pt.get("clients", 0)))
                 if c]
    baselines += [r["case"] for r in res.group("service-baseline") if r["config"] == "riptide"]
    baselines = list(dict.fromkeys(baselines))
    for case_id in baselines:
        base = metric_deliveries(res, "riptide", "fanout-max", case_id)
        b = res.get("riptide", case_id)
        what = (f"Deliveries/s, as fast as possible: POST /api/publish to {pt.get('clients', 0):,} user rooms "
                f"({pt.get('rooms_per_request', '?')} per request) / fixture fan-out to "
                f"{(b['point'].get('receivers', 0) if b else 0):,} receivers")
        rows.append(service_row(what, svc, base, case_id))
    return rows


def service_row(what: str, svc: Metric, base: Metric, base_case: str) -> list[str]:
    """One row of the service-mode table: the service figure, the fixture's
    (from case `base_case`) and their ratio."""
    ratio = svc.value / base.value if svc.value is not None and base.value not in (None, 0) else None
    ratio_s = "–" if ratio is None else f"{ratio:.2f}"
    if ratio is None:
        ratio_s += " (" + "; ".join(x.missing for x in (svc, base) if x.missing) + ")"
    if svc.saturated or base.saturated:
        ratio_s += " ⚠ generator saturated"
    return [md_cell(what), svc.text, f"{base.text} (`{base_case}`)", ratio_s]


def idle_service_row(res: Results) -> list[list[str]]:
    if res.get("riptide", "service-idle") is None:
        return []
    svc, base = metric_idle(res, "riptide", "service-idle"), metric_idle(res, "riptide")
    what = ("Idle memory per WebSocket connection (RSS growth / open connections): each with its own "
            "token, in its user's room / the fixture's (no auth, no room of its own)")
    return [service_row(what, svc, base, "idle")]


# --- report


def write_report(out: Path) -> None:
    meta = json.loads((out / "meta.json").read_text())
    recs = load_results(out)
    res = Results(recs, meta.get("servers"))
    quick = meta["mode"] == "quick"
    m = meta["machine"]
    charts = make_charts(out, res, meta)
    L: list[str] = []
    L.append(f"# Riptide bench comparison: {meta['started'][:10]} on {m['hostname']}"
             + (" (quick)" if quick else ""))
    L.append("")
    L.append(f"- Command: `{meta['command']}` ({meta['mode']} mode; wall time {meta['wall_s']:.0f} s, "
             f"started {meta['started']})")
    L.append(f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
             f"open files limit {m.get('nofile_limit')}")
    L.append(f"- Riptide commit {m['riptide_commit']} ({m.get('riptide_profile', 'release')} build); {m.get('rustc') or ''}")
    L.append(f"- Peers: node {m.get('node') or '–'}, socket.io {m.get('socket.io') or '–'}, "
             f"@socket.io/redis-adapter {m.get('@socket.io/redis-adapter') or '–'}, "
             f"socketioxide {m.get('socketioxide') or '–'}")
    L.append(f"- Brokers: {m.get('nats-server') or 'nats-server –'}, {m.get('redis-server') or 'redis-server –'}")
    L.append(f"- Generator: riptide-bench, {meta['gen_threads']} worker thread(s), on the same machine")
    if meta.get("repeat", 1) > 1:
        L.append(f"- Every scenario ran {meta['repeat']} times (servers interleaved); tables and charts show "
                 "the median round by the scenario's key figure, with the range of the rounds that ran")
    if quick:
        L.append("")
        L.append("> **Quick mode**: small sizes to prove the suite works, not figures to hold the goals to.")
    L.append("")
    L.append("## Servers")
    L.append("")
    rows = []
    logs_after = []
    for cfg in CONFIGS:
        st = meta["servers"].get(cfg.name, {"status": "not selected"})
        if st["status"] == "ran":
            s = f"ran {st['cases'] - st['failed']}/{st['cases']} scenarios"
            if st["failed"]:
                s += f" (**{st['failed']} failed**, see below)"
        elif st["status"] == "could not start":
            s = f"**could not start**: {md_cell(st['reason'])}"
            if st.get("log_tail"):
                logs_after.append((cfg.name, st["log_tail"]))
        else:
            s = st["status"]
        rows.append([f"`{cfg.name}`", cfg.title, s])
    L.append(table(["config", "what", "status"], rows))
    for name, lt in logs_after:
        L.append("")
        L.append(f"`{name}`, last log lines:")
        L.append("")
        L.append("```")
        L.append(lt)
        L.append("```")
    L.append("")
    L.append("## Goals: ratios Riptide / peer")
    L.append("")
    L.append(table(GOAL_HEADER, goal_rows(res, quick)))
    L.append("")
    L.append("Lower is better for memory and latency (ratio below the goal), higher for throughput. "
             "“⚠ generator saturated”: the generator used all the CPU its thread can, so that figure "
             "may describe the generator, not the server.")
    L.append("")
    if srows := service_rows(res):
        L.append("## Service mode against Riptide's fixture fan-out")
        L.append("")
        L.append(table(SERVICE_HEADER, srows))
        L.append("")
        L.append("Both from this invocation, one node each. The peers have no service mode (skipped). "
                 "Each publish request names its rooms (one client each) and is answered over HTTP; "
                 "the fixture fan-out is one room with every receiver in it, published by a Socket.IO "
                 "client: the ratio is what the service path (JWT sockets, HTTP API, per-user rooms) "
                 "delivers against the plain fan-out.")
        L.append("")
    L.append("## Charts")
    L.append("")
    for name, caption in charts:
        L.append(f"![{caption}]({name})")
        L.append("")
    L.append("## Raw figures")
    L.append("")
    L.append("Latencies in ms, from the publisher's send time to the receiver's read (same clock). "
             "*gen cpu*: the generator's CPU over the measured phase (% of one core); *sat*: "
             "`generator.saturated`; *busy*: all cores' busy % over the phase. Server CPU is % of one "
             "core, averaged over the run, one figure per node.")
    L.append("")
    L += raw_tables(res)
    # Configurations that could not start are in the servers table already.
    fails = [r for r in res.all if r["status"] == "failed" or (r["status"] == "ok" and r["issues"])]
    if fails:
        L.append("## Failures and issues")
        L.append("")
        for r in fails:
            what = r["reason"] if r["status"] != "ok" else "issues: " + ", ".join(r["issues"])
            rnd = f" (round {r.get('round')})" if meta.get("repeat", 1) > 1 else ""
            L.append(f"- `{r['config']}` {r['case']}{rnd}: {r['status']}: {what}")
            if r.get("log_tail") and r["status"] == "failed":
                L.append("")
                L.append("  ```")
                L += ["  " + ln for ln in r["log_tail"].splitlines()]
                L.append("  ```")
        L.append("")
    L.append("## Notes")
    L.append("")
    L.append(f"- The generator runs on the same {m['cores']} cores as the server (and, for clusters, "
             "both nodes and the broker): every figure is for the pair, and a server that needs less "
             "CPU leaves more to the generator. Each row gives the generator's CPU and saturation "
             "flag; compare servers only between rows where *busy* is alike and *sat* is no.")
    L.append("- Each scenario runs on freshly started nodes (the broker stays up for its configuration); "
             "servers run one at a time, never two load tests at once.")
    L.append("- Riptide runs with the per-IP and per-socket event rate limits lifted (all generator "
             "connections come from 127.0.0.1); its per-connection queue limits stay as configured.")
    L.append("- Idle memory: server RSS growth from before the first connection, divided by open "
             "connections (for a cluster, both nodes summed).")
    L.append("- `results.jsonl`: one line per scenario and server: `config`, `case`, `status`, `reason`, "
             "`issues`, `argv` and the generator's own JSON line in `result`.")
    L.append("")
    (out / "report.md").write_text("\n".join(L))
    summary = [
        f"Riptide / peer, {meta['mode']} run of {meta['started'][:10]} on {m['hostname']} "
        f"({m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB), Riptide {m['riptide_commit']}:",
        "",
        table(GOAL_HEADER, goal_rows(res, quick)),
        "",
    ]
    if srows := service_rows(res):
        summary += ["Service mode against Riptide's own fixture fan-out (same run):", "",
                    table(SERVICE_HEADER, srows), ""]
    (out / "summary.md").write_text("\n".join(summary))


def raw_tables(res: Results) -> list[str]:
    L: list[str] = []
    gh = ["gen cpu %", "sat", "busy %"]

    def idle_rows():
        rows = []
        for r in res.group("idle"):
            if r["status"] != "ok":
                rows.append(failed_row(r, 10, [f"`{r['config']}`"]))
                continue
            x = r["result"]
            for i, st in enumerate(x["steps"]):
                per = sum(s["rss_per_conn_bytes"] for s in st["server"])
                last = i == len(x["steps"]) - 1
                rows.append([f"`{r['config']}`", fmt_n(st["conns"]), fmt_n(st["open"]),
                             fmt_n(st["connect"].get("conn_per_s")),
                             fmt_ms(st["connect"].get("handshake_us", {}).get("p99")),
                             fmt_kb(per) + (spread(r, 1 / 1024, "{:.1f}") if last else ""),
                             fmt_kb(st.get("generator_rss_per_conn_bytes")), *gen_cols(x)])
        return rows

    if res.group("idle"):
        L.append("### Idle connections")
        L.append("")
        L.append(table(["server", "conns", "open", "conn/s", "handshake p99", "server kB/conn",
                        "generator kB/conn", *gh], idle_rows()))
        L.append("")

    def fan(r):
        d, lat, p = r["delivery"], r.get("latency_us", {}), r["publish"]
        return [fmt_n(d["receivers"]), fmt_n(p["sent"]), fmt_n(p["rate_achieved"]),
                f"**{fmt_n(d['deliveries_per_s'])}**", fmt_n(d["loss"]), fmt_n(d["duplicates"]),
                fmt_n(d["out_of_order"]), fmt_ms(lat.get("p50")), fmt_ms(lat.get("p99")),
                fmt_ms(lat.get("p999")), fmt_ms(lat.get("max")), srv_cpu(r),
                fmt_n(r.get("server_phase", {}).get("cpu_s_per_million_deliveries"), 2), srv_rss_peak(r)]

    fan_h = ["server", "receivers", "sent", "msg/s sent", "deliveries/s", "loss", "dup", "ooo", "p50", "p99",
             "p999", "max", "server cpu %", "server CPU s / M deliveries", "server RSS peak MB", *gh]

    def fan_rows(group):
        rows = []
        order = [c.name for c in CONFIGS]
        for r in sorted(res.group(group), key=lambda r: (order.index(r["config"]), r["point"].get("receivers", 0))):
            if r["status"] != "ok":
                rows.append(failed_row(r, len(fan_h), [f"`{r['config']}`", fmt_n(r["point"].get("receivers"))]))
            else:
                row = [f"`{r['config']}`"] + fan(r["result"]) + gen_cols(r["result"])
                if group in ("fanout-max", "cross-max"):
                    row[4] += spread(r)
                else:
                    row[9] += spread(r, 1 / 1000, "{:.3g}")
                rows.append(row)
        return rows

    burst = point_desc(res, "fanout-max", "messages")
    fast = f"a burst of {burst} messages as fast as possible" if burst != "?" else "as fast as possible"
    for group, title in (("fanout-max", f"Fan-out, {fast}"),
                         ("fanout-rate", f"Fan-out at {point_desc(res, 'fanout-rate', 'rate')} msg/s"),
                         ("cross-max", "Cross-node fan-out (publisher on node A, receivers on node B), "
                                       + fast),
                         ("cross-rate", f"Cross-node fan-out at {point_desc(res, 'cross-rate', 'rate')} msg/s")):
        if res.group(group):
            L.append(f"### {title}")
            L.append("")
            L.append(table(fan_h, fan_rows(group)))
            L.append("")

    if res.group("echo"):
        L.append("### Echo (closed loop, one request in flight per socket)")
        L.append("")
        h = ["server", "sockets", "round trips/s", "unanswered", "p50", "p99", "p999", "max", "server cpu %", *gh]
        rows = []
        for r in res.group("echo"):
            if r["status"] != "ok":
                rows.append(failed_row(r, len(h), [f"`{r['config']}`"]))
                continue
            x = r["result"]
            e, lat = x["echo"], x.get("latency_us", {})
            rows.append([f"`{r['config']}`", fmt_n(x["params"].get("sockets")),
                         f"**{fmt_n(e['round_trips_per_s'])}**{spread(r)}", fmt_n(e["unanswered"]),
                         fmt_ms(lat.get("p50")),
                         fmt_ms(lat.get("p99")), fmt_ms(lat.get("p999")), fmt_ms(lat.get("max")), srv_cpu(x),
                         *gen_cols(x)])
        L.append(table(h, rows))
        L.append("")

    if res.group("slow"):
        L.append("### Slow consumer (one receiver stops reading)")
        L.append("")
        h = ["server", "healthy receivers", "loss", "dup", "ooo", "p99", "max", "slow closed by server",
             "closed after (ms)", "how it ended", "server RSS peak MB", *gh]
        rows = []
        for r in res.group("slow"):
            if r["status"] != "ok":
                rows.append(failed_row(r, len(h), [f"`{r['config']}`"]))
                continue
            x = r["result"]
            d, lat, s = x["delivery"], x.get("latency_us", {}), x.get("slow", {})
            rows.append([f"`{r['config']}`", fmt_n(d["receivers"]), fmt_n(d["loss"]), fmt_n(d["duplicates"]),
                         fmt_n(d["out_of_order"]), fmt_ms(lat.get("p99")), fmt_ms(lat.get("max")),
                         fmt_n(s.get("server_closed")), fmt_n(s.get("server_side_closed_after_ms")),
                         str(s.get("end_read", {}).get("how", "–")), srv_rss_peak(x), *gen_cols(x)])
        L.append(table(h, rows))
        L.append("")

    if res.group("reconnect-storm"):
        L.append("### Reconnect storm (the node restarts, every client reconnects)")
        L.append("")
        h = ["server", "clients", "all back", "all back after restart (ms)", "failed attempts",
             "reconnect p50", "reconnect p99", "new server cpu % peak", *gh]
        rows = []
        for r in res.group("reconnect-storm"):
            if r["status"] != "ok":
                rows.append(failed_row(r, len(h), [f"`{r['config']}`"]))
                continue
            x = r["result"]
            s, ns = x["storm"], x.get("new_server") or {}
            ru = s.get("reconnect_us", {})
            rows.append([f"`{r['config']}`", fmt_n(x["params"].get("clients")), fmt_n(s.get("all_back")),
                         fmt_n(s.get("all_back_after_restart_ms")) + spread(r), fmt_n(s.get("failed_attempts")),
                         fmt_ms(ru.get("p50")), fmt_ms(ru.get("p99")), fmt_n(ns.get("cpu_pct_peak")),
                         *gen_cols(x)])
        L.append(table(h, rows))
        L.append("")

    if res.group("cross-outage"):
        L.append(f"### Broker outage (the broker killed for {OUTAGE_S} s mid-run, publisher on node A, receivers on node B)")
        L.append("")
        h = ["server", "recovery", "receivers", "expected", "lost", "duplicated", "reordered",
             "longest gap (ms)", "resumed after the broker was back (ms)", *gh]
        rows = []
        for r in res.group("cross-outage"):
            if r["status"] != "ok":
                rows.append(failed_row(r, len(h), [f"`{r['config']}`"]))
                continue
            x = r["result"]
            d, o = x["delivery"], x.get("outage") or {}
            rows.append([f"`{r['config']}`", "on" if r["point"].get("recovery") else "off",
                         fmt_n(x["params"].get("receivers")), fmt_n(d.get("expected")), fmt_n(d.get("loss")),
                         fmt_n(d.get("duplicates")), fmt_n(d.get("out_of_order")), fmt_n(o.get("max_gap_ms")),
                         fmt_n(o.get("resumed_after_broker_back_ms")), *gen_cols(x)])
        L.append(table(h, rows))
        L.append("")

    if res.group("service-publish"):
        L.append("### Service mode: POST /api/publish to user rooms (`riptide` binary, app.mode = service)")
        L.append("")
        h = ["server", "clients", "rooms/request", "API requests/s", "API answer p99", "failed requests",
             "deliveries/s", "expected", "loss", "dup", "ooo", "p50", "p99", "max", "server cpu %",
             "server RSS peak MB", *gh]
        rows = []
        order = [c.name for c in CONFIGS]
        for r in sorted(res.group("service-publish"), key=lambda r: order.index(r["config"])):
            if r["status"] != "ok":
                rows.append(failed_row(r, len(h), [f"`{r['config']}`"]))
                continue
            x = r["result"]
            d, api, lat = x["delivery"], x["api"], x.get("latency_us", {})
            rows.append([f"`{r['config']}`", fmt_n(d["receivers"]), fmt_n(x["params"].get("rooms_per_request")),
                         fmt_n(api["requests_per_s"]), fmt_ms(api.get("answer_us", {}).get("p99")),
                         fmt_n(api["failed"]), f"**{fmt_n(d['deliveries_per_s'])}**{spread(r)}",
                         fmt_n(d["expected"]), fmt_n(d["loss"]), fmt_n(d["duplicates"]), fmt_n(d["out_of_order"]),
                         fmt_ms(lat.get("p50")), fmt_ms(lat.get("p99")), fmt_ms(lat.get("max")), srv_cpu(x),
                         srv_rss_peak(x), *gen_cols(x)])
        for r in res.group("service-baseline"):
            if r["status"] != "ok":
                rows.append(failed_row(r, len(h), [f"`{r['config']}` fixture `{r['case']}`"]))
                continue
            x = r["result"]
            d, lat = x["delivery"], x.get("latency_us", {})
            rows.append([f"`{r['config']}` fixture fan-out (`{r['case']}`, baseline)", fmt_n(d["receivers"]),
                         "1 room", "–", "–", "–", f"**{fmt_n(d['deliveries_per_s'])}**{spread(r)}",
                         fmt_n(d["expected"]), fmt_n(d["loss"]), fmt_n(d["duplicates"]), fmt_n(d["out_of_order"]),
                         fmt_ms(lat.get("p50")), fmt_ms(lat.get("p99")), fmt_ms(lat.get("max")), srv_cpu(x),
                         srv_rss_peak(x), *gen_cols(x)])
        L.append(table(h, rows))
        L.append("")
        L.append("Latency: from the `t` stamped when the request was built to the client's read; "
                 "API answer: from sending a request to its whole answer.")
        L.append("")

    if res.group("rolling-restart"):
        L.append("### Rolling restart (two nodes with connection state recovery, each restarted in turn)")
        L.append("")
        h = ["server", "clients", "published", "lost", "duplicated", "reordered", "recovered",
             "not recovered", "node A: all back (ms)", "node B: all back (ms)", *gh]
        rows = []
        for r in res.group("rolling-restart"):
            if r["status"] != "ok":
                rows.append(failed_row(r, len(h), [f"`{r['config']}`"]))
                continue
            x = r["result"]
            d = x["delivery"]
            back = {rs["node"]: rs.get("all_back_after_restart_ms") for rs in x.get("restarts", [])}
            rows.append([f"`{r['config']}`", fmt_n(x["params"].get("clients")), fmt_n(d.get("published")),
                         fmt_n(d.get("loss")), fmt_n(d.get("duplicates")), fmt_n(d.get("out_of_order")),
                         fmt_n(d.get("recovered")), fmt_n(d.get("not_recovered")),
                         fmt_n(back.get("a")), fmt_n(back.get("b")), *gen_cols(x)])
        L.append(table(h, rows))
        L.append("")
    return L


# --- charts


def make_charts(out: Path, res: Results, meta: dict) -> list[tuple[str, str]]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no charts")
        return []
    made = []
    where = f"{meta['machine']['hostname']}, {meta['started'][:10]}" + (" (quick)" if meta["mode"] == "quick" else "")

    # Latency percentiles at the fixed-rate fan-out point, grouped by server.
    cases = res.cases("fanout-rate")
    rows = []
    for cfg in CONFIGS:
        r = res.ok(cfg.name, cases[0]) if cases else None
        if r and r.get("latency_us", {}).get("count"):
            rows.append((cfg.name, r["latency_us"]))
    if rows:
        fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
        pcts = [("p50", "#c6dbef"), ("p99", "#6baed6"), ("p999", "#2171b5"), ("max", "#08306b")]
        width = 0.8 / len(pcts)
        for i, (name, lat) in enumerate(rows):
            for j, (p, color) in enumerate(pcts):
                v = lat[p] / 1000
                x = i + (j - (len(pcts) - 1) / 2) * width
                ax.bar(x, v, width, color=color, edgecolor=COLORS[name], linewidth=2,
                       label=p if i == 0 else None)
                label = f"{v / 1000:.1f}s" if v >= 1000 else f"{v:.3g}"
                ax.annotate(label, (x, v), ha="center", va="bottom", fontsize=6.5,
                            xytext=(0, 2), textcoords="offset points")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(range(len(rows)), [n for n, _ in rows])
        ax.set_xlim(-0.6, max(len(rows), 3) - 0.4)
        ax.set_ylabel("latency (ms, log scale)")
        rate, recv = point_desc(res, "fanout-rate", "rate"), point_desc(res, "fanout-rate", "receivers")
        ax.set_title(f"Fan-out latency, {rate} msg/s to {recv} receivers\n{where}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.grid(axis="y", which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "latency.png")
        plt.close(fig)
        made.append(("latency.png", f"latency percentiles at {rate} msg/s to {recv} receivers"))

    # Deliveries/s against receivers, a line per server.
    series = {}
    for r in res.group("fanout-max"):
        if r["status"] == "ok":
            d = r["result"]["delivery"]
            clean = not (d["loss"] or d["duplicates"] or d["out_of_order"])
            runs = r.get("runs") or {}
            series.setdefault(r["config"], []).append((d["receivers"], d["deliveries_per_s"], clean,
                                                       r["result"]["generator"].get("saturated"),
                                                       runs.get("min"), runs.get("max"), runs.get("ok", 1)))
    if series:
        fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
        for cfg in CONFIGS:
            pts = sorted(series.get(cfg.name, []))
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            ax.plot(xs, ys, marker="o", color=COLORS[cfg.name], label=cfg.name)
            for x, y, _, _, lo, hi, n in pts:
                if n > 1 and lo is not None:
                    ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], color=COLORS[cfg.name], capsize=4, alpha=0.6)
            for x, y, clean, sat, *_ in pts:
                if not clean:
                    ax.plot(x, y, marker="x", color="red", markersize=11, mew=2)
                note = f"{y / 1000:,.0f}k" + (" sat" if sat else "")
                ax.annotate(note, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.plot([], [], marker="x", color="red", linestyle="none", label="loss / dup / reordering")
        ax.set_xlabel("receivers in the room")
        ax.set_ylabel("deliveries/s")
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:,.0f}k"))
        xs_all = sorted({p[0] for pts in series.values() for p in pts})
        ax.set_xticks(xs_all)
        ranges = " (bars: range over rounds)" if meta.get("repeat", 1) > 1 else ""
        ax.set_title(f"Fan-out as fast as possible: deliveries/s against receivers{ranges}\n{where}"
                     " (“sat”: generator saturated)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "fanout_scaling.png")
        plt.close(fig)
        made.append(("fanout_scaling.png", "deliveries/s against number of receivers"))

    # Idle memory per connection.
    rows = []
    for cfg in CONFIGS:
        r = res.ok(cfg.name, "idle")
        if r and r.get("steps"):
            rows.append((cfg.name, [(st["conns"], sum(s["rss_per_conn_bytes"] for s in st["server"]) / 1024)
                                    for st in r["steps"]]))
    if rows:
        fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
        nsteps = max(len(s) for _, s in rows)
        width = 0.8 / nsteps
        shades = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"]
        for i, (name, steps) in enumerate(rows):
            for j, (conns, kb) in enumerate(steps):
                x = i + (j - (nsteps - 1) / 2) * width
                ax.bar(x, kb, width, color=shades[j % len(shades)], edgecolor=COLORS[name], linewidth=2,
                       label=f"{conns:,} conns" if i == 0 else None)
                ax.annotate(f"{kb:.1f}", (x, kb), ha="center", va="bottom", fontsize=7,
                            xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(rows)), [n for n, _ in rows])
        ax.set_xlim(-0.6, max(len(rows), 3) - 0.4)
        ax.set_ylabel("server RSS per idle connection (kB)")
        ax.set_title(f"Idle memory per connection\n{where}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "idle_memory.png")
        plt.close(fig)
        made.append(("idle_memory.png", "server RSS per idle connection"))
    return made


# --- the README's latest table


def update_readme(out: Path) -> None:
    """Put summary.md and the machine between the README's markers."""
    start, end = "<!-- latest-results:start -->", "<!-- latest-results:end -->"
    try:
        text = README.read_text()
    except OSError:
        return
    if start not in text or end not in text:
        return
    rel = os.path.relpath(out, README.parent)
    block = (f"{start}\n{(out / 'summary.md').read_text().strip()}\n\n"
             f"Full report: [{rel}/report.md]({rel}/report.md).\n{end}")
    text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    README.write_text(text)
    log(f"updated the latest table in {os.path.relpath(README, ROOT)}")


# ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="start each server configuration in turn and run the scenarios")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--quick", action="store_true", help="small sizes (CI smoke run, under 3 minutes)")
    r.add_argument("--servers", help=f"comma-separated subset of: {','.join(CONFIG_BY_NAME)}")
    r.add_argument("--gen-threads", type=int, default=1, help="riptide-bench --threads (default 1)")
    r.add_argument("--fanout-burst", type=int, default=1000,
                   help="messages per as-fast-as-possible fan-out (default 1000); 0 = publish for a fixed "
                        "duration instead (an overload test: see as_fast_as_possible)")
    r.add_argument("--repeat", type=int, default=1,
                   help="rounds of every scenario, servers interleaved; the report shows the median (default 1)")
    r.add_argument("--build-dir", help="where run.sh left build-<peer>.status/.log (default OUT/logs)")
    r.add_argument("--registry", help="file listing the PIDs of live servers (for run.sh's exit trap)")
    r.add_argument("--run-id", help="value of RIPTIDE_COMPARE_RUN in every started process's environment")
    r.add_argument("--command", help="the command line to show in the report")
    p = sub.add_parser("report", help="rebuild report.md, summary.md and the charts of an output directory")
    p.add_argument("out")
    a = ap.parse_args()
    if a.cmd == "run":
        return cmd_run(a)
    write_report(Path(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

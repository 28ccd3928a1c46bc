#!/usr/bin/env python3
"""Runs the built binary the way the deployment files configure it, on loopback.

1. "image": RIPTIDE_CONFIG_DIR holding the files the Dockerfile copies to
   /etc/riptide and the Dockerfile's ENV (the systemd unit sets the same
   RIPTIDE_CONFIG_DIR and RIPTIDE_ENV); the Dockerfile's HEALTHCHECK command,
   run as written, must pass while the node serves and fail once it stopped.
2. "kubernetes": nats-server with the nats.conf of deploy/k8s/nats.yaml
   (JetStream on; its addresses and store_dir moved to loopback and a
   temporary directory) and Riptide with the ConfigMap's production.toml and
   the Deployment's env (the Secret's keys filled with test values, POD_IP =
   127.0.0.1): /health must report the NATS adapter up, a polling handshake
   must be answered, and SIGTERM must end the node with exit code 0 well
   within terminationGracePeriodSeconds.

Only loopback addresses and free ports are used (RIPTIDE__SERVER__HOST and
RIPTIDE__SERVER__PORT override what the files say). The processes it starts
are stopped by their PID. One PASS or FAIL line per check; exits 1 if any failed.

Usage: smoke.py --binary target/debug/riptide [--nats-server PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
from report import exit_code, report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, r.read().decode()
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        return 0, str(e)


def healthcheck_argv() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    cmd = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, re.M)
    return json.loads(cmd.group(1))


def stop(proc: subprocess.Popen, timeout: float) -> tuple[int | None, float]:
    """SIGTERM, then wait; SIGKILL (and None) past the timeout."""
    start = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout), time.monotonic() - start
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, time.monotonic() - start


def tail(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(lines[-5:])


def run_node(label: str, binary: str, env: dict[str, str], port: int, log: Path, expect: dict[str, str],
             grace: float) -> None:
    with open(log, "w") as out:
        proc = subprocess.Popen([binary], env=env, stdout=out, stderr=subprocess.STDOUT, cwd="/")
    try:
        up = wait_port(port, proc, 20)
        if not report(up, f"{label}: riptide starts and listens", f"exit {proc.poll()}; log: {tail(log)}"):
            return
        status, body = get(port, "/health")
        try:
            health = json.loads(body)
        except json.JSONDecodeError:
            health = {}
        flat = {"status": health.get("status"), **{f"adapter.{k}": v for k, v in (health.get("adapter") or {}).items()}}
        wrong = {k: flat.get(k) for k, v in expect.items() if flat.get(k) != v}
        report(status == 200 and not wrong, f"{label}: GET /health is 200 with {expect}", f"{status} {body} ({wrong})")
        status, body = get(port, "/socket.io/?EIO=4&transport=polling")
        report(status == 200 and body.startswith("0{") and '"sid"' in body,
               f"{label}: an Engine.IO polling handshake is answered", f"{status} {body[:120]}")
        status, body = get(port, "/metrics")
        report(status == 200 and "riptide_" in body, f"{label}: GET /metrics is 200", f"{status}")
        hc_env = {"PATH": "/usr/bin:/bin", "RIPTIDE__SERVER__PORT": str(port)}
        hc = subprocess.run(healthcheck_argv(), env=hc_env, capture_output=True, text=True, timeout=5)
        report(hc.returncode == 0, f"{label}: the Dockerfile HEALTHCHECK command passes", hc.stderr.strip())
        code, took = stop(proc, grace)
        report(code == 0, f"{label}: SIGTERM drains and exits 0 ({took:.1f} s, budget {grace:g} s)",
               f"exit {code}; log: {tail(log)}")
        hc = subprocess.run(healthcheck_argv(), env=hc_env, capture_output=True, text=True, timeout=5)
        report(hc.returncode != 0, f"{label}: the HEALTHCHECK command fails once the node is gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--nats-server", default=shutil.which("nats-server") or "/usr/sbin/nats-server")
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}

    with tempfile.TemporaryDirectory(prefix="riptide-deploy-smoke-") as tmp:
        tmp = Path(tmp)

        # 1. As the image (and the systemd unit) configure it.
        etc = tmp / "image-etc-riptide"
        etc.mkdir()
        copied = re.search(r"^COPY\s+((?:config/\S+\s+)+)/etc/riptide/\s*$", (REPO / "Dockerfile").read_text(), re.M)
        for src in copied.group(1).split():
            shutil.copy(REPO / src, etc)
        docker_env = dict(re.findall(r"(RIPTIDE\w*)=(\S+)", re.search(
            r"^ENV\s+((?:.*\\\n)*.*)$", (REPO / "Dockerfile").read_text(), re.M).group(1)))
        port = free_port()
        env = {**base_env, **docker_env, "RIPTIDE_CONFIG_DIR": str(etc),
               "RIPTIDE__SERVER__HOST": "127.0.0.1", "RIPTIDE__SERVER__PORT": str(port)}
        run_node("image", binary, env, port, tmp / "image.log", {"status": "ok"}, 30)

        # 2. As the Kubernetes manifests configure it, with their NATS.
        docs = {}
        for path in sorted((REPO / "deploy/k8s").glob("*.yaml")):
            for d in yaml.safe_load_all(path.read_text()):
                if d and d.get("kind") != "Kustomization":
                    docs[(d["kind"], d["metadata"]["name"])] = d
        if not report(Path(args.nats_server).exists(), "kubernetes: nats-server is installed", "apt install nats-server"):
            return 1
        nats_port, nats_http = free_port(), free_port()
        conf = docs[("ConfigMap", "nats-config")]["data"]["nats.conf"]
        conf = re.sub(r"^(\s*)listen:.*$", rf"\g<1>listen: 127.0.0.1:{nats_port}", conf, flags=re.M)
        conf = re.sub(r"^(\s*)http:.*$", rf"\g<1>http: 127.0.0.1:{nats_http}", conf, flags=re.M)
        conf = re.sub(r"^(\s*)store_dir:.*$", rf'\g<1>store_dir: "{tmp / "jetstream"}"', conf, flags=re.M)
        (tmp / "nats.conf").write_text(conf)
        with open(tmp / "nats.log", "w") as out:
            nats = subprocess.Popen([args.nats_server, "-c", str(tmp / "nats.conf")], stdout=out, stderr=subprocess.STDOUT)
        try:
            if not report(wait_port(nats_port, nats, 10), "kubernetes: nats-server starts with the ConfigMap's nats.conf",
                          tail(tmp / "nats.log")):
                return 1
            status, body = get(nats_http, "/healthz?js-enabled-only=true")
            report(status == 200, "kubernetes: NATS /healthz?js-enabled-only=true (the readiness probe) is 200", f"{status} {body}")

            k8s_etc = tmp / "k8s-etc-riptide"
            k8s_etc.mkdir()
            (k8s_etc / "production.toml").write_text(docs[("ConfigMap", "riptide-config")]["data"]["production.toml"])
            deploy = docs[("Deployment", "riptide")]
            container = deploy["spec"]["template"]["spec"]["containers"][0]
            port = free_port()
            secrets = {"hmac-secret": "0123456789abcdef" * 4, "api-key": "fedcba9876543210" * 3}
            env = {**base_env, **docker_env}
            for e in container["env"]:
                if "value" in e:
                    env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
                elif "fieldRef" in e.get("valueFrom", {}):
                    env[e["name"]] = "127.0.0.1"
                elif "secretKeyRef" in e.get("valueFrom", {}):
                    env[e["name"]] = secrets[e["valueFrom"]["secretKeyRef"]["key"]]
            env.update({"RIPTIDE_CONFIG_DIR": str(k8s_etc), "RIPTIDE__SERVER__HOST": "127.0.0.1",
                        "RIPTIDE__SERVER__PORT": str(port),
                        "RIPTIDE__ADAPTER__URL": f"nats://127.0.0.1:{nats_port}",
                        "RIPTIDE__CLUSTER__ADVERTISE_URL": f"http://127.0.0.1:{port}"})
            grace = deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            run_node("kubernetes", binary, env, port, tmp / "k8s.log",
                     {"status": "ok", "adapter.kind": "nats", "adapter.status": "ok"}, grace)
        finally:
            stop(nats, 10)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())

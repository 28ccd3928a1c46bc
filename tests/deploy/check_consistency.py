#!/usr/bin/env python3
"""What no schema checks: the deployment files agree with each other and
with Riptide's configuration.

- every setting they name (TOML keys of the ConfigMap and config/production.toml,
  RIPTIDE__SECTION__KEY variables in the Deployment, the Dockerfile, the
  systemd unit and riptide.env.example) exists in config/default.toml, since
  an unknown key stops the binary with exit code 2;
- the stop budgets cover the drain: systemd's TimeoutStopSec and the pod's
  terminationGracePeriodSeconds (with its preStop sleep) exceed the worst
  case of server.shutdown_timeout_ms (the drain, then the workers' graceful
  stop, as long again plus 1 s);
- one port (3000) and one uid/gid everywhere; the NATS URL names the NATS
  Service; selectors match the pods they are meant for; LimitNOFILE leaves
  room for server.max_connections; the unit keeps its hardening.

One PASS or FAIL line per check; exits 1 if any failed.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
from report import exit_code, report


def flatten(table: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "log.modules":
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def env_key(name: str) -> str:
    """RIPTIDE__SECTION__KEY -> section.key (the binary's mapping)."""
    return ".".join(part.lower() for part in name[len("RIPTIDE__"):].split("__"))


def known(key: str, defaults: dict[str, object]) -> bool:
    return key in defaults or key.startswith("log.modules.")


def unit_file(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a systemd unit as lists of (key, value), repeated keys kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        elif current is not None:
            k, _, v = line.partition("=")
            current.append((k.strip(), v.strip()))
    return sections


def main() -> int:
    defaults = flatten(tomllib.loads((REPO / "config/default.toml").read_text()))
    production = flatten(tomllib.loads((REPO / "config/production.toml").read_text()))
    k8s = REPO / "deploy/k8s"
    docs = {}
    for path in sorted(k8s.glob("*.yaml")):
        for d in yaml.safe_load_all(path.read_text()):
            if d and d.get("kind") != "Kustomization":
                docs[(d["kind"], d["metadata"]["name"])] = d
    cm = docs.get(("ConfigMap", "riptide-config"))
    deploy = docs.get(("Deployment", "riptide"))
    if not report(cm is not None and deploy is not None, "deploy/k8s: ConfigMap/riptide-config and Deployment/riptide exist"):
        return 1
    cm_toml = flatten(tomllib.loads(cm["data"]["production.toml"]))
    pod = deploy["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "riptide")

    # --- settings that exist --------------------------------------------------
    for label, keys in (("config/production.toml", production), ("deploy/k8s/configmap.yaml production.toml", cm_toml)):
        unknown = sorted(k for k in keys if not known(k, defaults))
        report(not unknown, f"{label}: every key is a setting of config/default.toml", f"unknown: {unknown}")
    env_names: dict[str, list[str]] = {
        "deploy/k8s/deployment.yaml": [e["name"] for e in container.get("env", [])],
        "Dockerfile": re.findall(r"\b(RIPTIDE__[A-Z0-9_]+)=", (REPO / "Dockerfile").read_text()),
        "deploy/systemd/riptide.service": re.findall(r"\b(RIPTIDE__[A-Z0-9_]+)=", (REPO / "deploy/systemd/riptide.service").read_text()),
        "deploy/systemd/riptide.env.example": re.findall(r"^#?(RIPTIDE__[A-Z0-9_]+)=", (REPO / "deploy/systemd/riptide.env.example").read_text(), re.M),
    }
    for label, names in env_names.items():
        unknown = sorted(n for n in names if n.startswith("RIPTIDE__") and not known(env_key(n), defaults))
        report(not unknown, f"{label}: every RIPTIDE__ variable names a setting", f"unknown: {unknown}")

    # riptide.env.example: only comments, blank lines and VAR=value lines.
    bad = [l for l in (REPO / "deploy/systemd/riptide.env.example").read_text().splitlines()
           if l.strip() and not l.startswith("#") and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", l)]
    report(not bad, "deploy/systemd/riptide.env.example: an EnvironmentFile (VAR=value lines)", f"{bad}")

    # --- the stop budget ------------------------------------------------------
    def effective(key: str, *layers: dict[str, object]) -> object:
        for layer in layers:
            if key in layer:
                return layer[key]
        return defaults[key]

    k8s_timeout = int(effective("server.shutdown_timeout_ms", cm_toml)) / 1000
    host_timeout = int(effective("server.shutdown_timeout_ms", production)) / 1000
    worst = lambda t: 2 * t + 1  # the paced drain, then the workers' graceful stop (+1 s)
    unit = unit_file(REPO / "deploy/systemd/riptide.service")
    service = dict(unit.get("Service", []))
    stop = service.get("TimeoutStopSec", "90")
    stop_s = float(stop.rstrip("s")) if re.fullmatch(r"\d+s?", stop) else 0
    report(stop_s > worst(host_timeout),
           f"deploy/systemd/riptide.service: TimeoutStopSec={stop} > the drain's worst case ({worst(host_timeout):g} s)")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    pre = container.get("lifecycle", {}).get("preStop", {})
    sleep = pre.get("sleep", {}).get("seconds") if "sleep" in pre else None
    if sleep is None and "exec" in pre:
        m = re.search(r"sleep\s+(\d+)", " ".join(pre["exec"]["command"]))
        sleep = int(m.group(1)) if m else None
    report(sleep is not None and sleep >= 3, f"deploy/k8s/deployment.yaml: preStop waits before SIGTERM ({sleep} s)")
    report(grace > (sleep or 0) + worst(k8s_timeout),
           f"deploy/k8s/deployment.yaml: terminationGracePeriodSeconds={grace} > preStop + the drain's worst case "
           f"({(sleep or 0) + worst(k8s_timeout):g} s)")
    if "exec" in pre:
        program = pre["exec"]["command"][0]
        final_from = re.findall(r"^FROM\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)[-1]
        report(program.startswith("/") and not re.search(r"distroless|scratch", final_from),
               f"deploy/k8s/deployment.yaml: the preStop program ({program}) is in the runtime image ({final_from})")

    # --- one port, one identity ------------------------------------------------
    port = int(effective("server.port", cm_toml))
    dockerfile = (REPO / "Dockerfile").read_text()
    exposed = re.findall(r"^EXPOSE\s+(\d+)", dockerfile, re.M)
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    svc = docs.get(("Service", "riptide"), {})
    annotations = deploy["spec"]["template"]["metadata"].get("annotations", {})
    advertise = next((e.get("value", "") for e in container["env"] if e["name"] == "RIPTIDE__CLUSTER__ADVERTISE_URL"), "")
    report(ports.get("http") == port and exposed == [str(port)]
           and all(p.get("targetPort") in ("http", port) for p in svc.get("spec", {}).get("ports", []))
           and annotations.get("prometheus.io/port") == str(port)
           and advertise.endswith(f":{port}"),
           f"one port everywhere ({port}): server.port, containerPort, EXPOSE, Service targetPort, scrape annotation, advertise_url",
           f"server.port {port}, containerPort {ports}, EXPOSE {exposed}, advertise {advertise!r}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = container.get(probe, {}).get("httpGet", {})
        report(p.get("path") == "/health" and p.get("port") in ("http", port),
               f"deploy/k8s/deployment.yaml: {probe} GET /health on the http port", f"{p}")
    user = re.findall(r"^USER\s+(\d+):(\d+)", dockerfile, re.M)
    sc = pod.get("securityContext", {})
    report(bool(user) and (str(sc.get("runAsUser")), str(sc.get("runAsGroup"))) == user[-1] and sc.get("runAsNonRoot") is True,
           f"the pod runs as the image's USER ({':'.join(user[-1]) if user else '?'}), runAsNonRoot",
           f"pod {sc.get('runAsUser')}:{sc.get('runAsGroup')}")
    csc = container.get("securityContext", {})
    report(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
           and csc.get("capabilities", {}).get("drop") == ["ALL"],
           "deploy/k8s/deployment.yaml: read-only root, no privilege escalation, every capability dropped")

    # --- wiring ----------------------------------------------------------------
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    matches = lambda sel: bool(sel) and all(labels.get(k) == v for k, v in sel.items())
    report(matches(deploy["spec"]["selector"]["matchLabels"]), "Deployment/riptide: its selector matches its pods")
    report(matches(svc.get("spec", {}).get("selector")), "Service/riptide: its selector matches the Riptide pods")
    pdb = docs.get(("PodDisruptionBudget", "riptide"), {})
    report(matches(pdb.get("spec", {}).get("selector", {}).get("matchLabels")),
           "PodDisruptionBudget/riptide: its selector matches the Riptide pods")
    for v in pod.get("volumes", []):
        if "configMap" in v:
            report(("ConfigMap", v["configMap"]["name"]) in docs, f"Deployment/riptide: ConfigMap {v['configMap']['name']} is shipped")
    env = {e["name"]: e.get("value") for e in container["env"]}
    url = env.get("RIPTIDE__ADAPTER__URL") or ""
    m = re.fullmatch(r"nats://([a-z0-9-]+):(\d+)", url)
    nats_svc = docs.get(("Service", m.group(1))) if m else None
    report(env.get("RIPTIDE__ADAPTER__KIND") == "nats" and nats_svc is not None
           and any(p["port"] == int(m.group(2)) for p in nats_svc["spec"]["ports"]),
           f"Deployment/riptide: the adapter URL ({url}) names a shipped NATS Service and port")
    sts = docs.get(("StatefulSet", "nats"))
    if sts:
        sts_labels = sts["spec"]["template"]["metadata"]["labels"]
        headless = docs.get(("Service", sts["spec"].get("serviceName", "")), {})
        report(headless.get("spec", {}).get("clusterIP") == "None", "StatefulSet/nats: its serviceName is a headless Service")
        for name in ("nats", sts["spec"].get("serviceName")):
            sel = docs.get(("Service", name), {}).get("spec", {}).get("selector", {})
            report(bool(sel) and all(sts_labels.get(k) == v for k, v in sel.items()), f"Service/{name}: its selector matches the NATS pods")

    # --- the systemd unit keeps what the issue asked for -------------------------
    entries = unit.get("Service", [])
    values = lambda key: [v for k, v in entries if k == key]
    want = {
        "Type": lambda v: v[-1:] in (["simple"], ["exec"]),
        "ExecStart": lambda v: v[-1:] == ["/usr/local/bin/riptide"],
        "KillSignal": lambda v: v[-1:] == ["SIGTERM"],
        "Restart": lambda v: v[-1:] == ["on-failure"],
        "EnvironmentFile": lambda v: "-/etc/riptide/riptide.env" in v,
        "Environment": lambda v: {"RIPTIDE_CONFIG_DIR=/etc/riptide", "RIPTIDE_ENV=production"} <= set(sum((shlex.split(x) for x in v), [])),
        "NoNewPrivileges": lambda v: v[-1:] == ["yes"],
        "ProtectSystem": lambda v: v[-1:] == ["strict"],
        "ProtectHome": lambda v: v[-1:] == ["yes"],
        "PrivateTmp": lambda v: v[-1:] == ["yes"],
        "CapabilityBoundingSet": lambda v: v[-1:] == [""],
        "RestrictAddressFamilies": lambda v: set(" ".join(v).split()) == {"AF_INET", "AF_INET6", "AF_UNIX"},
        "SystemCallFilter": lambda v: "@system-service" in v,
        "MemoryDenyWriteExecute": lambda v: v[-1:] == ["yes"],
    }
    for key, ok in want.items():
        report(ok(values(key)), f"deploy/systemd/riptide.service: {key}", f"is {values(key)}")
    user_ok = values("DynamicUser")[-1:] == ["yes"] or bool(values("User"))
    report(user_ok, "deploy/systemd/riptide.service: a dedicated user (DynamicUser= or User=)")
    nofile = values("LimitNOFILE")
    max_conn = int(effective("server.max_connections", production))
    report(bool(nofile) and nofile[-1].isdigit() and int(nofile[-1]) >= 2 * max_conn + 1024,
           f"deploy/systemd/riptide.service: LimitNOFILE={nofile[-1] if nofile else '?'} covers "
           f"server.max_connections={max_conn} (two descriptors each, plus headroom)")
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())

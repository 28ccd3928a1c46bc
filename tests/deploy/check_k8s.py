#!/usr/bin/env python3
"""Validates deploy/k8s/ against the Kubernetes OpenAPI schemas, strictly.

Every document of every manifest is validated with kubernetes-validate in
strict mode (an unknown or misspelled field fails, as does a wrong type)
against each Kubernetes version given; so is the output of
`kubectl kustomize deploy/k8s` (what `kubectl apply -k` would send), and
kustomization.yaml must list every manifest. The NATS server configuration
in nats.yaml is checked with `nats-server -t`. One PASS or FAIL line per
check; exits 1 if any failed.

Usage: check_k8s.py [--dir deploy/k8s] [--kubectl PATH] [--nats-server PATH] VERSION...
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml

from report import exit_code, report


def describe(doc: dict) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


def validate_docs(label: str, docs: list, versions: list[str]) -> None:
    if not docs:
        report(False, label, "no Kubernetes object in it")
        return
    for doc in docs:
        if not isinstance(doc, dict):
            report(False, label, f"a document is not a mapping: {doc!r:.60}")
            continue
        if "namespace" in (doc.get("metadata") or {}):
            report(False, f"{label} {describe(doc)}", "sets metadata.namespace (the manifests are namespace-agnostic)")
        checked = []
        for version in versions:
            try:
                checked.append(kubernetes_validate.validate(doc, version, strict=True))
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top level)"
                report(False, f"{label} {describe(doc)} (Kubernetes {e.version}, strict)", f"{path}: {e.message}")
                break
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.VersionNotSupportedError) as e:
                report(False, f"{label} {describe(doc)}", e.message)
                break
        else:
            report(True, f"{label} {describe(doc)} (Kubernetes {', '.join(checked)}, strict)")


def load_all(path: Path) -> list:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        report(False, str(path), f"not valid YAML: {e}")
        return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="+", help="Kubernetes versions, e.g. 1.30.0 1.37.0")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parents[2] / "deploy" / "k8s")
    parser.add_argument("--kubectl", default=shutil.which("kubectl"))
    parser.add_argument("--nats-server", default=shutil.which("nats-server") or "/usr/sbin/nats-server")
    args = parser.parse_args()
    k8s: Path = args.dir
    rel = lambda p: str(p.relative_to(k8s.parents[1])) if k8s.parents[1] in p.parents else str(p)

    manifests = sorted(p for p in k8s.glob("*.yaml") if p.name != "kustomization.yaml")
    for path in manifests:
        validate_docs(rel(path), load_all(path), args.versions)

    # kustomization.yaml: lists every manifest, and renders.
    kustomization = k8s / "kustomization.yaml"
    listed = (yaml.safe_load(kustomization.read_text()) or {}).get("resources", []) if kustomization.exists() else []
    missing = sorted({p.name for p in manifests} - set(listed))
    dangling = sorted(r for r in listed if not (k8s / r).exists())
    report(kustomization.exists() and not missing and not dangling,
           f"{rel(kustomization)} lists every manifest",
           f"not listed: {missing}; listed but absent: {dangling}")
    if args.kubectl:
        proc = subprocess.run([args.kubectl, "kustomize", str(k8s)], capture_output=True, text=True)
        if report(proc.returncode == 0, f"kubectl kustomize {rel(k8s)} renders", proc.stderr.strip()):
            validate_docs(f"kubectl kustomize {rel(k8s)}:", [d for d in yaml.safe_load_all(proc.stdout) if d],
                          args.versions)
    else:
        report(False, f"kubectl kustomize {rel(k8s)}", "kubectl not found (tests/deploy/requirements.txt installs it)")

    # The NATS configuration the ConfigMap carries.
    nats = k8s / "nats.yaml"
    confs = [d["data"]["nats.conf"] for d in load_all(nats)
             if d.get("kind") == "ConfigMap" and "nats.conf" in (d.get("data") or {})] if nats.exists() else []
    if not confs:
        report(False, f"{rel(nats)}: a ConfigMap with nats.conf", "none found")
    elif not Path(args.nats_server).exists():
        report(False, f"{rel(nats)}: nats.conf (nats-server -t)", "nats-server not found (apt install nats-server)")
    else:
        conf = confs[0]
        report("jetstream" in conf, f"{rel(nats)}: nats.conf turns JetStream on")
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write(conf)
            f.flush()
            proc = subprocess.run([args.nats_server, "-c", f.name, "-t"], capture_output=True, text=True)
        out = (proc.stdout + proc.stderr).strip().replace(f.name, "nats.conf")
        report(proc.returncode == 0, f"{rel(nats)}: nats.conf is valid for nats-server (-t)", out)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Static checks of the Dockerfile and .dockerignore (no Docker daemon needed).

Prints one PASS or FAIL line per check and exits 1 if any failed. With
--dry-run-deps, also lays out the builder's dependency stage in a temporary
directory (the files its COPY lines name, then its RUN line with
`cargo build` replaced by `cargo fetch --locked`) to prove that cargo loads
that stub workspace with the lock file unchanged.

Usage: check_dockerfile.py [--repo DIR] [--dry-run-deps]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from report import exit_code, report


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str
    comments: list[str] = field(default_factory=list)

    def flags_and_rest(self) -> tuple[dict[str, str], str]:
        """Leading --flag=value options and the rest of the arguments."""
        flags: dict[str, str] = {}
        rest = self.args
        while True:
            m = re.match(r"--([a-z-]+)(?:=(\S+))?\s+", rest)
            if not m:
                return flags, rest
            flags[m.group(1)] = m.group(2) or ""
            rest = rest[m.end():]


@dataclass
class Stage:
    index: int
    image: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs (name -> default) and the stages, with continuation
    lines joined and comments attached to the instruction that follows."""
    instructions: list[Instruction] = []
    pending_comments: list[str] = []
    buf = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf:
            if not stripped:
                pending_comments = []
                continue
            if stripped.startswith("#"):
                pending_comments.append(stripped[1:].strip())
                continue
            start = number
        elif stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        buf += raw
        keyword, _, args = buf.strip().partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip(), pending_comments))
        pending_comments = []
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            _, rest = ins.flags_and_rest()
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(len(stages), parts[0], name, ins.line))
        elif not stages:
            if ins.keyword == "ARG":
                key, _, default = ins.args.partition("=")
                global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(ins)
    return global_args, stages


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


# --- .dockerignore, with the semantics of Docker's pattern matcher ----------

def dockerignore_patterns(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    if not path.exists():
        return patterns
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        line = os.path.normpath(line).lstrip("/")
        regex = ""
        i = 0
        while i < len(line):
            c = line[i]
            if line.startswith("**", i):
                regex += ".*"
                i += 2
                if i < len(line) and line[i] == "/":
                    i += 1
                continue
            if c == "*":
                regex += "[^/]*"
            elif c == "?":
                regex += "[^/]"
            elif c == "[":
                end = line.find("]", i)
                regex += line[i:end + 1] if end > 0 else re.escape(c)
                i = end if end > 0 else i
            else:
                regex += re.escape(c)
            i += 1
        patterns.append((negate, re.compile(f"^{regex}$")))
    return patterns


def ignored(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the context leaves out `rel`: the last pattern that matches it
    or one of its parent directories decides."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for negate, regex in patterns:
        if any(regex.match(p) for p in prefixes):
            result = not negate
    return result


def context_files(repo: Path, source: str) -> list[str]:
    """The repository files a COPY source names (a file, a directory, or a glob)."""
    matches = sorted(repo.glob(source)) if any(ch in source for ch in "*?[") else [repo / source]
    files: list[str] = []
    for m in matches:
        if m.is_dir():
            files += [str(p.relative_to(repo)) for p in sorted(m.rglob("*")) if p.is_file()]
        elif m.exists():
            files.append(str(m.relative_to(repo)))
    return files


# --- the checks -------------------------------------------------------------

def check(repo: Path, dry_run_deps: bool) -> None:
    dockerfile = repo / "Dockerfile"
    text = dockerfile.read_text()
    global_args, stages = parse_dockerfile(text)
    names = {s.name for s in stages if s.name}
    final = stages[-1] if stages else None

    report(len(stages) >= 2 and all(s.name for s in stages[:-1]),
           "Dockerfile: multi-stage, every build stage named (FROM ... AS name)",
           f"{len(stages)} stage(s): {[(s.image, s.name) for s in stages]}")
    for s in stages:
        image = expand(s.image, global_args)
        if image in names:
            continue
        tag = image.rsplit("/", 1)[-1]
        pinned = ":" in tag or "@sha256:" in image
        report(pinned and not tag.endswith(":latest"),
               f"Dockerfile:{s.line}: base image {image} has an explicit tag", "untagged or :latest")

    builder = next((s for s in stages[:-1] if any(
        i.keyword == "RUN" and "cargo build" in i.args for i in s.instructions)), None)
    report(builder is not None and builder.image.startswith("rust:"),
           "Dockerfile: a rust: builder stage runs cargo build")
    if builder:
        builds = [i for i in builder.instructions if i.keyword == "RUN" and "cargo build" in i.args]
        report(all(re.search(r"cargo build --release --locked --bin riptide\b", i.args) for i in builds),
               "Dockerfile: the builder runs `cargo build --release --locked --bin riptide`",
               "every cargo build must be --release --locked --bin riptide")
        report(len(builds) >= 2,
               "Dockerfile: dependencies are built in a layer of their own (dependency caching)",
               "expected a first cargo build on the manifests alone")
        # Every workspace member's manifest and every declared target path
        # must exist in the dependency stage, or cargo cannot load the workspace.
        first = builds[0]
        before = builder.instructions[:builder.instructions.index(first)]
        copied = [a for i in before if i.keyword == "COPY" for a in shlex.split(i.flags_and_rest()[1])[:-1]]
        manifest = tomllib.loads((repo / "Cargo.toml").read_text())
        members = [m for m in manifest.get("workspace", {}).get("members", []) if m != "."]
        for m in members:
            report(f"{m}/Cargo.toml" in copied,
                   f"Dockerfile: the dependency stage copies workspace member {m}/Cargo.toml")
        for kind in ("bench", "bin", "example", "test"):
            for target in manifest.get(kind, []):
                path = target.get("path", f"{kind}es/{target['name']}.rs" if kind == "bench"
                                  else f"src/bin/{target['name']}.rs" if kind == "bin"
                                  else f"{kind}s/{target['name']}.rs")
                stem = Path(path).stem
                report(stem in first.args or path in copied,
                       f"Dockerfile: the dependency stage provides [[{kind}]] {target['name']} ({path})")
        if dry_run_deps:
            dry_run(repo, builder, first)

    if final:
        users = [i for i in final.instructions if i.keyword == "USER"]
        user = users[-1].args.split(":")[0] if users else ""
        report(user.isdigit() and int(user) != 0,
               f"Dockerfile: the final stage runs as a numeric non-root USER ({users[-1].args if users else 'none'})",
               "Kubernetes' runAsNonRoot needs a numeric, non-zero uid")
        health = [i for i in final.instructions if i.keyword == "HEALTHCHECK"]
        report(bool(health) and "/health" in health[-1].args and "CMD" in health[-1].args,
               "Dockerfile: HEALTHCHECK probes /health")
        if health:
            cmd = health[-1].args.split("CMD", 1)[1].strip()
            try:
                argv = json.loads(cmd)
                report(isinstance(argv, list) and Path(argv[0]).is_absolute(),
                       "Dockerfile: HEALTHCHECK CMD is in exec form with an absolute program")
            except json.JSONDecodeError as e:
                report(False, "Dockerfile: HEALTHCHECK CMD is in exec form", str(e))
        expose = [p for i in final.instructions if i.keyword == "EXPOSE" for p in i.args.split()]
        report("3000" in expose or "3000/tcp" in expose, "Dockerfile: EXPOSE 3000", f"EXPOSE {expose}")
        stop = [i.args for i in final.instructions if i.keyword == "STOPSIGNAL"]
        report(stop[-1:] == ["SIGTERM"], "Dockerfile: STOPSIGNAL SIGTERM", f"{stop}")
        env: dict[str, str] = {}
        for i in final.instructions:
            if i.keyword == "ENV":
                for token in shlex.split(i.args):
                    k, _, v = token.partition("=")
                    env[k] = v
        for key, want in (("RIPTIDE_CONFIG_DIR", "/etc/riptide"), ("RIPTIDE_ENV", "production"),
                          ("RIPTIDE__SERVER__HOST", "0.0.0.0")):
            report(env.get(key) == want, f"Dockerfile: ENV {key}={want}", f"is {env.get(key)!r}")
        entry = [i.args for i in final.instructions if i.keyword == "ENTRYPOINT"]
        report(bool(entry) and entry[-1].startswith("["),
               "Dockerfile: ENTRYPOINT in exec form (the binary is PID 1 and gets SIGTERM itself)")
        config_copies = [i for i in final.instructions if i.keyword == "COPY" and "/etc/riptide" in i.args]
        report(bool(config_copies), "Dockerfile: the configuration is copied to /etc/riptide")
        report(any("ca-certificates" in i.args for i in final.instructions if i.keyword == "RUN"),
               "Dockerfile: the runtime installs ca-certificates")

    # Every COPY from the build context exists and is let in by .dockerignore.
    patterns = dockerignore_patterns(repo / ".dockerignore")
    for s in stages:
        for i in s.instructions:
            if i.keyword not in ("COPY", "ADD"):
                continue
            flags, rest = i.flags_and_rest()
            if "from" in flags:
                report(flags["from"] in names, f"Dockerfile:{i.line}: COPY --from={flags['from']} names a stage")
                continue
            sources = json.loads(rest)[:-1] if rest.startswith("[") else shlex.split(rest)[:-1]
            for src in sources:
                files = context_files(repo, src)
                left_out = [f for f in files if ignored(f, patterns)]
                report(bool(files) and not left_out,
                       f"Dockerfile:{i.line}: COPY source {src} exists and is in the build context",
                       "missing from the repository" if not files else f".dockerignore leaves out {left_out[:3]}")

    # The large or irrelevant trees stay out of the context.
    for heavy in ("target/release/riptide", "tests/conformance/run.sh", "tests/interop/package.json",
                  "tests/interop/node_modules/x", "node_modules/x", "benches/results/x/report.md",
                  "benches/peers/node/package.json", ".git/HEAD", "fuzz/target/x"):
        report(ignored(heavy, patterns), f".dockerignore leaves out {heavy.split('/x')[0]}")


def dry_run(repo: Path, builder: Stage, first: Instruction) -> None:
    """The dependency stage, for real, minus the compile: cargo must load the
    stub workspace it lays out, with `--locked`."""
    cargo = shutil.which("cargo")
    if not cargo:
        report(False, "Dockerfile: dependency stage dry run", "cargo not found")
        return
    with tempfile.TemporaryDirectory(prefix="riptide-docker-deps-") as tmp:
        work = Path(tmp)
        for i in builder.instructions[:builder.instructions.index(first)]:
            if i.keyword != "COPY":
                continue
            parts = shlex.split(i.flags_and_rest()[1])
            dest = parts[-1]
            for src in parts[:-1]:
                target = work / dest if not dest.endswith("/") and len(parts) == 2 and dest not in ("./", ".") \
                    else work / dest / Path(src).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo / src, target)
        script = re.sub(r"cargo build --release --locked --bin riptide", "cargo fetch --locked", first.args)
        lock_before = (work / "Cargo.lock").read_bytes()
        proc = subprocess.run(["sh", "-ec", script], cwd=work, capture_output=True, text=True)
        unchanged = (work / "Cargo.lock").read_bytes() == lock_before
        report(proc.returncode == 0 and unchanged,
               "Dockerfile: the dependency stage's stub workspace loads with --locked (cargo fetch)",
               (proc.stderr.strip().splitlines() or ["Cargo.lock changed"])[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--dry-run-deps", action="store_true")
    args = parser.parse_args()
    check(args.repo.resolve(), args.dry_run_deps)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())

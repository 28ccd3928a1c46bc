# Riptide container image (deploy/README.md).
#
#   docker build -t riptide:0.1.0 .
#   docker run --rm -p 3000:3000 --stop-timeout 30 riptide:0.1.0
#
# `--stop-timeout 30` (or `stop_grace_period: 30s` in compose): Docker's
# default of 10 s between SIGTERM and SIGKILL is the drain's own default
# budget (server.shutdown_timeout_ms), with nothing left for the workers to
# stop. Only the classic Dockerfile syntax is used (no `# syntax=` frontend
# image, no BuildKit-only `RUN --mount`), so the legacy builder builds it too.

# The toolchain: any stable release at or above Cargo.toml's rust-version
# (1.89). `--build-arg RUST_VERSION=1.95` pins one for reproducible builds.
ARG RUST_VERSION=1

# ---------------------------------------------------------------------------
# Builder. The full (not -slim) image: jemalloc (tikv-jemalloc-sys) is a C
# build that needs make and a C compiler, which -slim lacks.
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# 1. Dependencies, in a layer of their own that is rebuilt only when the
#    manifests or the lock file change: the workspace's manifests with stub
#    targets (cargo loads every member and every declared bench), built once.
COPY Cargo.toml Cargo.lock ./
COPY benches/riptide-bench/Cargo.toml benches/riptide-bench/Cargo.toml
RUN mkdir -p src benches/riptide-bench/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/riptide-bench/src/main.rs \
 && for bench in packet_codec room_fanout envelope_codec; do \
      echo 'fn main() {}' > "benches/${bench}.rs"; \
    done \
 && cargo build --release --locked --bin riptide \
 && rm -rf src target/release/riptide target/release/deps/riptide-* \
      target/release/deps/libriptide-* target/release/.fingerprint/riptide-*

# 2. Riptide itself. config/ is compiled in (config/default.toml is the
#    binary's embedded defaults). The fingerprints of the stub build were
#    removed above, so cargo rebuilds the package whatever the sources' mtimes.
COPY config config
COPY src src
RUN cargo build --release --locked --bin riptide \
 && install -m 0755 target/release/riptide /usr/local/bin/riptide

# ---------------------------------------------------------------------------
# Runtime: debian:bookworm-slim rather than distroless/cc. The binary is
# dynamically linked against glibc and libgcc_s (bookworm's, as built above),
# which both provide. Slim is a few tens of MB larger because it has a shell
# and coreutils, which this image uses on purpose: the HEALTHCHECK below is
# a bash /dev/tcp probe (the binary has no health subcommand, and curl would
# add its libraries, and their CVEs, for one GET), and the Kubernetes
# preStop hook runs /bin/sleep (deploy/k8s/deployment.yaml). Distroless has
# neither.
FROM debian:bookworm-slim AS runtime

# CA roots for tls:// broker URLs (async-nats reads the system's roots).
# Not pinned to a version (hadolint DL3008): bookworm's ca-certificates is
# replaced by its security updates, and a pinned version leaves the archive.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed, numeric, non-root identity: Kubernetes' runAsNonRoot can only
# check a numeric USER, and deploy/k8s/deployment.yaml runs as the same ids.
RUN groupadd --system --gid 10001 riptide \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin riptide

COPY --from=builder /usr/local/bin/riptide /usr/local/bin/riptide
# default.toml is the same as the compiled-in defaults (there to read);
# production.toml is what RIPTIDE_ENV=production layers on them. Mount your
# own production.toml over it (deploy/k8s/configmap.yaml does).
COPY config/default.toml config/production.toml /etc/riptide/

ENV RIPTIDE_CONFIG_DIR=/etc/riptide \
    RIPTIDE_ENV=production \
    RIPTIDE__SERVER__HOST=0.0.0.0

USER 10001:10001
EXPOSE 3000
# SIGTERM starts the drain: new sessions are refused and the existing ones
# closed, paced at server.drain_rate_per_s, within server.shutdown_timeout_ms.
STOPSIGNAL SIGTERM

# GET /health over bash's /dev/tcp (on the port RIPTIDE__SERVER__PORT names,
# 3000 otherwise): healthy on an HTTP 200 status line. /health answers 200
# also when the broker is away ("degraded"): the node still serves its own
# clients, so it is not restarted for the broker's sake. The start period
# covers service mode's wait of up to 10 s for the broker's revocations.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${RIPTIDE__SERVER__PORT:-3000} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r status <&3 && [[ $status == 'HTTP/1.'?' 200 '* ]]"]

ENTRYPOINT ["/usr/local/bin/riptide"]

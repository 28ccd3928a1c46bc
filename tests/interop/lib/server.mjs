// Helpers to run the Riptide interop server (examples/interop.rs) under test.
//
// startServer({ env, port }) spawns the binary named by $RIPTIDE_INTEROP_BIN
// (default: <repo>/target/debug/examples/interop) with PORT=<free port> plus
// `env`, collects its stdout/stderr, waits for GET /health to answer 200 and
// returns a handle:
//
//   { port, url, proc, logs(), stop(), kill(signal), start(), restart() }
//
// startServer({ bin, portEnv }) runs another binary, telling it its port in
// the variable `portEnv` instead of PORT; startService({ env, port }) runs
// the `riptide` binary itself ($RIPTIDE_BIN, default
// <repo>/target/debug/riptide) with RIPTIDE__SERVER__PORT=<port>.
//
// Every child process is registered so that it is killed when the test process
// exits, whatever the reason (normal end, uncaught error, SIGINT/SIGTERM/SIGHUP).

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** Root of the Riptide repository (tests/interop/lib -> ../../..). */
export const REPO_ROOT = path.resolve(here, "..", "..", "..");
export const DEFAULT_BIN = path.join(REPO_ROOT, "target", "debug", "examples", "interop");

export const HEALTH_POLL_MS = 50;
export const HEALTH_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 1_000;
const MAX_LOG_CHARS = 1_000_000;

export const DEFAULT_SERVICE_BIN = path.join(REPO_ROOT, "target", "debug", "riptide");

export function serverBin() {
  return process.env.RIPTIDE_INTEROP_BIN
    ? path.resolve(process.env.RIPTIDE_INTEROP_BIN)
    : DEFAULT_BIN;
}

/** The `riptide` service binary: $RIPTIDE_BIN or <repo>/target/debug/riptide. */
export function serviceBin() {
  return process.env.RIPTIDE_BIN ? path.resolve(process.env.RIPTIDE_BIN) : DEFAULT_SERVICE_BIN;
}

// ---------------------------------------------------------------------------
// Process bookkeeping: never leave a server behind.

const liveProcs = new Set();

function killAllSync() {
  for (const p of liveProcs) {
    try {
      p.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  liveProcs.clear();
}

process.on("exit", killAllSync);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(sig, () => {
    killAllSync();
    process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGTERM" ? 15 : 1));
  });
}

// ---------------------------------------------------------------------------

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * One GET /health (over https trusting `ca` when given); resolves with the
 * status code, or null on a network error.
 */
function healthOnce(port, ca) {
  return new Promise((resolve) => {
    const req = (ca ? https : http).get(
      {
        ...(ca ? { ca } : {}),
        host: "127.0.0.1",
        port,
        path: "/health",
        agent: false,
        headers: { connection: "close" },
        timeout: 1_000,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
        res.on("error", () => resolve(res.statusCode));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(null));
  });
}

function waitExit(proc, ms) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      proc.off("exit", onExit);
      resolve(false);
    }, ms);
    function onExit() {
      clearTimeout(timer);
      resolve(true);
    }
    proc.once("exit", onExit);
  });
}

/**
 * Start the interop server (or, with `bin` and `portEnv`, another binary).
 * With `ca` (a PEM string) the server is expected to speak HTTPS
 * (server.tls in `env`) with a certificate `ca` vouches for.
 * @param {{env?: Record<string,string>, port?: number, bin?: string, portEnv?: string, ca?: string}} [options]
 */
export async function startServer({ env = {}, port, bin, portEnv = "PORT", ca } = {}) {
  const custom = bin !== undefined;
  bin ??= serverBin();
  if (!existsSync(bin)) {
    throw new Error(
      custom
        ? `server binary not found at ${bin}`
        : `interop server binary not found at ${bin} ` +
            `(build it with \`cargo build --example interop\` or set RIPTIDE_INTEROP_BIN)`,
    );
  }
  port ??= await freePort();
  const url = `${ca ? "https" : "http"}://127.0.0.1:${port}`;
  let log = "";
  let generation = 0;
  let proc = null;

  const append = (chunk) => {
    log += chunk;
    if (log.length > MAX_LOG_CHARS) log = "[...truncated...]\n" + log.slice(-MAX_LOG_CHARS / 2);
  };

  async function start() {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      throw new Error(`server on port ${port} is already running (pid ${proc.pid})`);
    }
    generation += 1;
    const gen = generation;
    append(`\n--- [interop] start #${gen}: ${bin} ${portEnv}=${port} ${JSON.stringify(env)} ---\n`);
    const child = spawn(bin, [], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env, [portEnv]: String(port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    proc = child;
    liveProcs.add(child);
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", append);
    child.stderr.on("data", append);
    let spawnError = null;
    child.on("error", (err) => {
      spawnError = err;
      append(`\n--- [interop] spawn error #${gen}: ${err.message} ---\n`);
    });
    child.on("exit", (code, signal) => {
      liveProcs.delete(child);
      append(`\n--- [interop] process #${gen} exited: code=${code} signal=${signal} ---\n`);
    });

    const deadline = Date.now() + HEALTH_TIMEOUT_MS;
    for (;;) {
      if (spawnError) throw new Error(`cannot spawn ${bin}: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `interop server exited before becoming healthy ` +
            `(code=${child.exitCode} signal=${child.signalCode})\n${tail(log)}`,
        );
      }
      const status = await healthOnce(port, ca);
      if (status === 200) return handle;
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(
          `interop server did not answer 200 on GET ${url}/health within ` +
            `${HEALTH_TIMEOUT_MS} ms (last status: ${status})\n${tail(log)}`,
        );
      }
      await sleep(HEALTH_POLL_MS);
    }
  }

  /** Send `signal` and wait for the process to exit (SIGKILL after 5 s). */
  async function kill(signal = "SIGKILL") {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill(signal);
    if (!(await waitExit(p, 5_000))) {
      p.kill("SIGKILL");
      await waitExit(p, 5_000);
    }
  }

  /** Graceful stop: SIGTERM, then SIGKILL if still alive after a short grace period. */
  async function stop() {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill("SIGTERM");
    if (!(await waitExit(p, STOP_GRACE_MS))) {
      p.kill("SIGKILL");
      await waitExit(p, 5_000);
    }
  }

  /** Kill the current process (SIGKILL by default) and start a new one on the same port. */
  async function restart({ signal = "SIGKILL" } = {}) {
    await kill(signal);
    return start();
  }

  const handle = {
    port,
    url,
    env,
    get proc() {
      return proc;
    },
    get running() {
      return !!proc && proc.exitCode === null && proc.signalCode === null;
    },
    logs: () => log,
    start,
    stop,
    kill,
    restart,
  };

  await start();
  return handle;
}

/**
 * Start the `riptide` binary (service mode is up to `env`, e.g.
 * RIPTIDE__APP__MODE=service) on `port` (default: a free one), cwd = the
 * repository root, so that it reads config/default.toml.
 * @param {{env?: Record<string,string>, port?: number, bin?: string}} [options]
 */
export function startService({ env = {}, port, bin = serviceBin() } = {}) {
  return startServer({ env, port, bin, portEnv: "RIPTIDE__SERVER__PORT" });
}

export function tail(text, lines = 80) {
  const all = text.split("\n");
  return all.slice(-lines).join("\n");
}

// Real brokers for the cluster tests: nats-server and redis-server started on
// a free loopback port (never a standard one) and killed when the test ends.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort } from "./server.mjs";
import { sleep } from "./harness.mjs";

export const BROKERS = {
  nats: {
    bin: "/usr/sbin/nats-server",
    // JetStream on (connection state recovery keeps its streams there), in
    // a scratch directory.
    args: (port, dir) => ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir],
    url: (port) => `nats://127.0.0.1:${port}`,
  },
  redis: {
    bin: "redis-server",
    args: (port) => ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    url: (port) => `redis://127.0.0.1:${port}`,
  },
};

/** Wait until something accepts TCP connections on 127.0.0.1:`port`. */
export async function waitListening(port, ms = 10_000, what = "broker") {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${what} did not listen on ${port} within ${ms} ms`);
}

/** Start a `kind` broker for test `t`; resolves with its URL. */
export async function startBroker(t, kind) {
  const b = BROKERS[kind];
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), `riptide-${kind}-`));
  const proc = spawn(b.bin, b.args(port, dir), { stdio: "ignore" });
  t.after(() => {
    proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  await waitListening(port);
  return b.url(port);
}

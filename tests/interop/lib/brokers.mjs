// Real brokers for the cluster tests: nats-server and redis-server started on
// a free loopback port (never a standard one) and killed when the test ends.

import { spawn } from "node:child_process";
import net from "node:net";
import { freePort } from "./server.mjs";
import { sleep } from "./harness.mjs";

export const BROKERS = {
  nats: {
    bin: "/usr/sbin/nats-server",
    args: (port) => ["-a", "127.0.0.1", "-p", String(port)],
    url: (port) => `nats://127.0.0.1:${port}`,
  },
  redis: {
    bin: "redis-server",
    args: (port) => ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    url: (port) => `redis://127.0.0.1:${port}`,
  },
};

async function waitListening(port, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`broker did not listen on ${port} within ${ms} ms`);
}

/** Start a `kind` broker for test `t`; resolves with its URL. */
export async function startBroker(t, kind) {
  const b = BROKERS[kind];
  const port = await freePort();
  const proc = spawn(b.bin, b.args(port), { stdio: "ignore" });
  t.after(() => proc.kill("SIGKILL"));
  await waitListening(port);
  return b.url(port);
}

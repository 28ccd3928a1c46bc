// The load balancer recipes of deploy/nginx/, run as shipped: Debian's nginx
// started with each file (only its three addresses moved to free ports),
// two nodes joined through a real nats-server behind it, and the official
// client through it over both transports and the upgrade.
//
// - round-robin.conf: no affinity; every request of a session may land on
//   either node, which forwards it to the session's owner
//   (cluster.forward_polling); messages cross nodes through NATS.
// - sticky.conf: a client address is pinned to one node; it works with
//   forwarding off, and messages still cross nodes.
// - both: the nodes trust the proxy (server.trusted_proxies) and count the
//   clients behind it by the X-Forwarded-For nginx sets, which a client
//   cannot spoof through it.
//
// Clients are told apart by their source address (127.0.0.2, 127.0.0.3, ...:
// all of 127/8 is loopback), which is what the hash of sticky.conf and the
// per-IP limits go by.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { describe } from "node:test";
import { waitListening } from "../lib/brokers.mjs";
import { forwarded, metric, twoNodes } from "../lib/cluster.mjs";
import { emitAck, itest, sleep, until, waitConnectError, waitFor } from "../lib/harness.mjs";
import { freePort, REPO_ROOT } from "../lib/server.mjs";

/** The nodes behind nginx trust it (server.trusted_proxies). */
const TRUSTED = { RIPTIDE__SERVER__TRUSTED_PROXIES: "127.0.0.1" };

const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"].find(existsSync) ?? "nginx";

/**
 * Run deploy/nginx/`recipe` with its listener on a free port and its two
 * upstreams on `ports`; resolves with `{url, port}`. Each address must
 * appear exactly where the recipe's comments say, so the test cannot drift
 * from the file.
 */
async function startNginx(t, recipe, ports) {
  let conf = readFileSync(path.join(REPO_ROOT, "deploy", "nginx", recipe), "utf8");
  const port = await freePort();
  const moves = [
    ["listen 127.0.0.1:8080;", `listen 127.0.0.1:${port};`],
    ...ports.map((p, i) => [`server 127.0.0.1:${3001 + i} `, `server 127.0.0.1:${p} `]),
  ];
  for (const [from, to] of moves) {
    const n = conf.split(from).length - 1;
    assert.equal(n, 1, `${recipe} has ${from} once (found ${n})`);
    conf = conf.replace(from, to);
  }
  const prefix = mkdtempSync(path.join(os.tmpdir(), "riptide-nginx-"));
  mkdirSync(path.join(prefix, "logs"));
  mkdirSync(path.join(prefix, "tmp"));
  const file = path.join(prefix, "nginx.conf");
  writeFileSync(file, conf);
  let log = "";
  const proc = spawn(NGINX, ["-e", "stderr", "-p", prefix, "-c", file, "-g", "daemon off;"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stderr.on("data", (d) => { log += d; });
  proc.on("error", (e) => { log += `spawn: ${e.message}`; });
  t.after(async () => {
    // SIGTERM: the master stops its workers too (after a SIGKILL they
    // would live on, holding the stderr pipe and this process open).
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      await Promise.race([exited, sleep(5_000)]);
    }
    proc.stderr.destroy();
    rmSync(prefix, { recursive: true, force: true });
  });
  try {
    await waitListening(port, 10_000, "nginx");
  } catch (e) {
    throw new Error(`${e.message}; ${NGINX} said: ${log}`);
  }
  return { url: `http://127.0.0.1:${port}`, port, log: () => log };
}

/** Client options for a client at source address `from` (one connection per request). */
function from(address, opts = {}) {
  return { agent: new http.Agent({ localAddress: address }), ...opts };
}

async function sessions(node) {
  return (await metric(node, 'riptide_engine_sessions{transport="polling"}'))
    + (await metric(node, 'riptide_engine_sessions{transport="websocket"}'));
}

/** Every one of `clients` in `room`, then `count` messages from the first: all get all, in order. */
async function crossNode(clients, room, count = 20) {
  for (const c of clients) await emitAck(c, "join", [room]);
  await sleep(300); // the nodes' room interest travels through NATS
  const seen = clients.map(() => []);
  clients.forEach((c, i) => c.on("msg", (m) => seen[i].push(m.n)));
  for (let n = 0; n < count; n++) clients[0].emit("publish", room, { n });
  await until(() => seen.every((s) => s.length >= count), 10_000, () => `every message: ${JSON.stringify(seen.map((s) => s.length))}`);
  for (const s of seen) assert.deepEqual(s, [...Array(count).keys()], "once each, in publish order");
}

async function upgraded(socket) {
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") {
    await waitFor(engine, "upgrade", 5_000, "the upgrade to websocket");
  }
  assert.equal(engine.transport.name, "websocket");
}

describe("nginx recipes (deploy/nginx/)", () => {
  itest("round-robin.conf: both transports, the upgrade and cross-node delivery without affinity", async (ctx, t) => {
    const [a, b] = await twoNodes(ctx, t, "nats", TRUSTED);
    const lb = await startNginx(t, "round-robin.conf", [a.port, b.port]);
    const polling = [];
    for (let i = 0; i < 4; i++) {
      polling.push((await ctx.connect("/", from(`127.0.0.${2 + i}`, { transports: ["polling"] }), lb)).socket);
    }
    const ws = (await ctx.connect("/", from("127.0.0.9", { transports: ["websocket"] }), lb)).socket;
    const up = (await ctx.connect("/", from("127.0.0.10"), lb)).socket;
    await upgraded(up);
    for (const s of [...polling, ws, up]) {
      assert.deepEqual(await emitAck(s, "echo", ["hi", Buffer.from([1, 2])]), ["hi", Buffer.from([1, 2])]);
    }
    assert.ok((await sessions(a)) > 0 && (await sessions(b)) > 0, "sessions on both nodes");
    assert.ok((await forwarded(a)) + (await forwarded(b)) > 0, "requests forwarded to their session's owner");
    await crossNode([...polling, ws, up], "lobby");
    assert.ok([...polling, ws, up].every((s) => s.connected), "no client lost its session");
  }, { timeout: 60_000 });

  itest("sticky.conf: one node per client address, polling without forwarding, cross-node delivery", async (ctx, t) => {
    const [a, b] = await twoNodes(ctx, t, "nats", { ...TRUSTED, RIPTIDE__CLUSTER__FORWARD_POLLING: "false" });
    const lb = await startNginx(t, "sticky.conf", [a.port, b.port]);
    // Client addresses until both nodes have some (the hash decides).
    const clients = [];
    for (let i = 2; i < 40 && !((await sessions(a)) > 0 && (await sessions(b)) > 0); i++) {
      clients.push((await ctx.connect("/", from(`127.0.0.${i}`, { transports: ["polling"] }), lb)).socket);
    }
    assert.ok((await sessions(a)) > 0 && (await sessions(b)) > 0, "the hash spread the addresses over both nodes");
    // Each client stays on its node: nothing was forwarded (it is off).
    for (const s of clients) assert.deepEqual(await emitAck(s, "echo", [1]), [1]);
    assert.equal((await forwarded(a)) + (await forwarded(b)), 0);
    const up = (await ctx.connect("/", from("127.0.0.50"), lb)).socket;
    await upgraded(up);
    await crossNode([...clients, up], "lobby");
  }, { timeout: 60_000 });

  for (const recipe of ["sticky.conf", "round-robin.conf"]) {
    itest(`${recipe}: the node counts clients, not the proxy, by a header clients cannot spoof`, async (ctx, t) => {
      // Per-IP limits are a node's own: both upstreams are one node here.
      const node = await ctx.server({
        env: { ...TRUSTED, RIPTIDE__LIMITS__MAX_CONNECTIONS_PER_IP: "1" },
      });
      const lb = await startNginx(t, recipe, [node.port, node.port]);
      // The header a client writes is replaced by nginx's.
      const opts = (address, spoofed) =>
        from(address, { transports: ["websocket"], extraHeaders: { "x-forwarded-for": spoofed } });
      // Two addresses behind one proxy: a session each, although they claim
      // to be the same client.
      const one = (await ctx.connect("/", opts("127.0.0.2", "203.0.113.1"), lb)).socket;
      const two = (await ctx.connect("/", opts("127.0.0.3", "203.0.113.1"), lb)).socket;
      // A second session from 127.0.0.2 is refused, whatever it claims.
      await waitConnectError(ctx.client("/", opts("127.0.0.2", "203.0.113.9"), lb));
      assert.equal(await metric(node, 'riptide_bad_input_total{kind="ip_concurrency"}'), 1,
        "one refusal: 127.0.0.2's second session");
      assert.ok(one.connected && two.connected, "the others are untouched");
    }, { timeout: 60_000 });
  }
});

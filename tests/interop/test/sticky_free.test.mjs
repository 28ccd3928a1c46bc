// Sticky-free load balancing: two nodes joined through a real NATS or Redis
// server, behind a TCP proxy that sends each new connection to the next node
// in turn (what a load balancer without session affinity does). Every
// request opens its own connection (`agent: false`), so consecutive requests
// of one session alternate between the nodes: the node that does not own the
// session must forward them (cluster.forward_polling) for the official
// client to work at all.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { BROKERS } from "../lib/brokers.mjs";
import { forwarded, twoNodes } from "../lib/cluster.mjs";
import { proxy } from "../lib/proxy.mjs";
import { emitAck, itest, sleep, waitFor } from "../lib/harness.mjs";

/** Each new connection to the next of `ports`, in turn. */
async function roundRobin(t, ports) {
  let next = 0;
  const counts = ports.map(() => 0);
  const url = await proxy(t, () => {
    const i = next++ % ports.length;
    counts[i]++;
    return ports[i];
  });
  return { url, counts };
}

/**
 * WebSockets (by their request line) to `wsPort`, everything else to
 * `httpPort`: sessions are always made on one node and upgraded on the other.
 */
async function splitByTransport(t, httpPort, wsPort) {
  const url = await proxy(t, (first) => {
    const line = first.toString("latin1", 0, Math.min(first.length, 2048)).split("\r\n")[0];
    return /transport=websocket/.test(line) ? wsPort : httpPort;
  });
  return { url };
}

for (const kind of Object.keys(BROKERS)) {
  describe(`sticky-free load balancing through ${kind}`, () => {
    itest("polling-only clients connect, join, publish and echo through a round-robin proxy", async (ctx, t) => {
      const [nodeA, nodeB] = await twoNodes(ctx, t ?? ctx.t, kind);
      const lb = await roundRobin(t ?? ctx.t, [nodeA.port, nodeB.port]);
      const opts = { transports: ["polling"], agent: false };
      const a = (await ctx.connect("/", opts, lb)).socket;
      const b = (await ctx.connect("/", opts, lb)).socket;
      assert.deepEqual(await emitAck(a, "echo", ["hi", 1]), ["hi", 1]);
      await emitAck(a, "join", ["lobby"]);
      await emitAck(b, "join", ["lobby"]);
      await sleep(300);
      const seen = [];
      b.on("msg", (m) => seen.push(m.n));
      for (let n = 0; n < 50; n++) a.emit("publish", "lobby", { n });
      const deadline = Date.now() + 10_000;
      while (seen.length < 50 && Date.now() < deadline) await sleep(20);
      assert.deepEqual(seen, [...Array(50).keys()], "every message, once, in publish order");
      assert.ok(a.connected && b.connected, "no client lost its session");
      assert.ok(lb.counts[0] > 0 && lb.counts[1] > 0, `both nodes got connections: ${lb.counts}`);
      const total = (await forwarded(nodeA)) + (await forwarded(nodeB));
      assert.ok(total > 0, "requests were forwarded to the session's owner");
    }, { timeout: 40_000 });

    itest("the upgrade to WebSocket works when the WebSocket lands on the other node", async (ctx, t) => {
      const [nodeA, nodeB] = await twoNodes(ctx, t ?? ctx.t, kind);
      // Polling on node A, every WebSocket on node B.
      const lb = await splitByTransport(t ?? ctx.t, nodeA.port, nodeB.port);
      for (let i = 0; i < 3; i++) {
        const { socket } = await ctx.connect("/", { agent: false }, lb);
        const engine = socket.io.engine;
        if (engine.transport.name !== "websocket") {
          await waitFor(engine, "upgrade", 5_000, "the upgrade to websocket");
        }
        assert.equal(engine.transport.name, "websocket");
        assert.deepEqual(await emitAck(socket, "echo", ["after upgrade", i]), ["after upgrade", i]);
        const bin = Buffer.from([1, 2, 3, i]);
        const [back] = await emitAck(socket, "echo", [bin]);
        assert.deepEqual(Buffer.from(back), bin);
      }
      const text = await (await fetch(`${nodeB.url}/metrics`)).text();
      assert.match(text, /riptide_forwarded_requests_total\{kind="websocket"\} 3/,
        "every WebSocket was piped from node B to its session's owner, node A");
    }, { timeout: 40_000 });

    itest("a sid naming no live peer is unknown, and a forwarded request is never forwarded again", async (ctx, t) => {
      const [nodeA, nodeB] = await twoNodes(ctx, t ?? ctx.t, kind);
      const open = await (await fetch(`${nodeA.url}/socket.io/?EIO=4&transport=polling`)).text();
      const sid = JSON.parse(open.slice(1)).sid;
      // POSTs: answered at once (a GET would wait for data).
      const at = (node, s, headers = {}) =>
        fetch(`${node.url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(s)}`,
          { method: "POST", body: "40", headers: { "content-type": "text/plain;charset=UTF-8", ...headers } });
      // Owned by A, asked of B: served.
      assert.equal((await at(nodeB, sid)).status, 200);
      // A node id nobody has: unknown, nothing is contacted.
      const forged = "zzzzzzzzzzzz" + sid.slice(12);
      const r = await at(nodeB, forged);
      assert.equal(r.status, 400);
      assert.deepEqual(await r.json(), { code: 1, message: "Session ID unknown" });
      // Marked as forwarded already: B does not forward it again.
      const again = await at(nodeB, sid, { "x-riptide-forwarded": "1" });
      assert.equal(again.status, 400);
    }, { timeout: 40_000 });
  });
}

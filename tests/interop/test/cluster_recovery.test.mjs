// Connection state recovery across the cluster, with real processes: two
// interop nodes with RIPTIDE__RECOVERY__ENABLED=true joined through a real
// NATS (JetStream) or Redis (Streams) server, the official client behind a
// TCP proxy that sends new connections to node A while it runs and to node B
// once it is gone. Node A is killed with SIGKILL (a crash: nothing is saved
// at the end, Node's Socket.IO recovers nobody here) or stopped with SIGTERM
// (a deploy). The client must come back on node B recovered: same id, same
// rooms, and every message published to its room, before, during and after
// the failover, exactly once and in order. Over WebSocket and over
// long-polling (each polling request its own connection through the proxy).

import assert from "node:assert/strict";
import { describe } from "node:test";
import { BROKERS } from "../lib/brokers.mjs";
import { twoNodes } from "../lib/cluster.mjs";
import { proxy } from "../lib/proxy.mjs";
import { VARIANTS, emitAck, itest, sleep, until, waitFor } from "../lib/harness.mjs";

const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300 };
const TIMEOUT = { timeout: 40_000 };
const RECOVERY = { RIPTIDE__RECOVERY__ENABLED: "true" };

for (const kind of Object.keys(BROKERS)) {
  for (const signal of ["SIGKILL", "SIGTERM"]) {
    describe(`recovery through ${kind}, node ${signal === "SIGKILL" ? "killed" : "stopped"}`, () => {
      for (const transport of ["websocket", "polling"]) {
      itest(`over ${transport}: recovered by the other node with nothing lost (${signal})`, async (ctx, t) => {
        const [a, b] = await twoNodes(ctx, t, kind, RECOVERY, { meet: false });
        const url = await proxy(t, () => (a.running ? a.port : b.port));
        const socket = ctx.client("/", { ...VARIANTS[transport], ...RECONNECT }, { url });
        await waitFor(socket, "connect", 5_000, "connect through the proxy to node A");
        const id = socket.id;
        const got = [];
        socket.on("msg", (payload, offset) => {
          assert.equal(typeof offset, "string", `msg ${payload} carries its offset`);
          got.push(payload);
        });
        await emitAck(socket, "join", ["r"]);
        const sender = (await ctx.connect("/", VARIANTS.websocket, b)).socket;

        for (let i = 0; i < 5; i++) sender.emit("publish", "r", i);
        await until(() => got.length === 5, 5_000, () => `the first five (got ${got})`);
        // The session record is written within 100 ms of a change.
        await sleep(300);

        const reconnected = waitFor(socket, "connect", 15_000, '"connect" after the failover');
        const kill = a.kill(signal);
        // Published while the client is away (and some as it comes back).
        for (let i = 5; i < 15; i++) {
          sender.emit("publish", "r", i);
          await sleep(20);
        }
        await kill;
        await reconnected;
        assert.equal(socket.recovered, true, "recovered on node B");
        assert.equal(socket.id, id, "the same id");
        for (let i = 15; i < 20; i++) sender.emit("publish", "r", i);
        await until(() => got.length >= 20, 10_000, () => `all twenty (got ${got})`);
        await sleep(300);
        assert.deepEqual(got, [...Array(20).keys()], "every message once, in order");
        const [state] = await emitAck(socket, "state");
        assert.deepEqual(state.rooms.sort(), [id, "r"].sort(), "its rooms on node B");
      }, TIMEOUT);
      }
    });
  }
}

// Cluster: official socket.io-client clients on node A and node B exchange
// messages through a room, with the nodes joined through a real NATS or Redis
// server started by the test on a free port (never a standard one).

import assert from "node:assert/strict";
import { describe } from "node:test";
import { BROKERS, startBroker } from "../lib/brokers.mjs";
import { VARIANTS, emitAck, expectNo, itest, sleep, waitFor } from "../lib/harness.mjs";

for (const kind of Object.keys(BROKERS)) {
  describe(`cluster through ${kind}`, () => {
    itest("clients on node A and node B exchange messages through a room", async (ctx, t) => {
      const url = await startBroker(t ?? ctx.t, kind);
      const env = { RIPTIDE__ADAPTER__KIND: kind, RIPTIDE__ADAPTER__URL: url };
      const nodeA = await ctx.server({ env });
      const nodeB = await ctx.server({ env });
      const a = (await ctx.connect("/", VARIANTS.websocket, nodeA)).socket;
      const b = (await ctx.connect("/", VARIANTS.default, nodeB)).socket;
      const outsider = (await ctx.connect("/", VARIANTS.websocket, nodeB)).socket;
      await emitAck(a, "join", ["lobby"]);
      await emitAck(b, "join", ["lobby"]);
      // Interest is set up in the background (docs/cluster.md): give the
      // subscriptions a moment, then check both directions.
      await sleep(300);

      const atB = waitFor(b, "msg", 5_000, '"msg" on node B');
      const quiet = expectNo(outsider, "msg", 500, '"msg" on a non-member of node B');
      a.emit("publish", "lobby", { from: "A", n: 1 });
      assert.deepEqual(await atB, [{ from: "A", n: 1 }]);
      await quiet;

      const atA = waitFor(a, "msg", 5_000, '"msg" on node A');
      b.emit("publish-others", "lobby", { from: "B", bin: Buffer.from([1, 2, 3]) });
      const [got] = await atA;
      assert.equal(got.from, "B");
      assert.deepEqual(Buffer.from(got.bin), Buffer.from([1, 2, 3]));
      // publish-others excludes the sender on every node
      await expectNo(b, "msg", 300, "the sender's own copy");

      // many messages keep their order across the broker
      const seen = [];
      b.on("msg", (m) => seen.push(m.n));
      for (let n = 0; n < 200; n++) a.emit("publish", "lobby", { n });
      const deadline = Date.now() + 10_000;
      while (seen.length < 200 && Date.now() < deadline) await sleep(20);
      assert.deepEqual(seen, [...Array(200).keys()], "every message, once, in publish order");
    });
  });
}

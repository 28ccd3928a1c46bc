// Rooms: join/leave acks, publish to members only, publish-others (sender
// excluded), publish-except, broadcast, and ordering. The three clients use
// different transports (websocket only, polling only, default with upgrade).

import assert from "node:assert/strict";
import { describe } from "node:test";
import { VARIANTS, collect, emitAck, expectNo, itest, until, waitFor } from "../lib/harness.mjs";

const QUIET_MS = 300; // how long a non-recipient must stay silent

async function threeClients(ctx) {
  await ctx.server();
  const [a, b, c] = await Promise.all([
    ctx.connect("/", VARIANTS.websocket),
    ctx.connect("/", VARIANTS.polling),
    ctx.connect("/", VARIANTS.default),
  ]);
  return { a: a.socket, b: b.socket, c: c.socket };
}

const join = async (socket, room) => (await emitAck(socket, "join", [room]))[0];
const leave = async (socket, room) => (await emitAck(socket, "leave", [room]))[0];
const sorted = (xs) => [...xs].sort();

/** `msg` reaches every socket of `yes` exactly with `payload`, and none of `no` within QUIET_MS. */
async function expectDelivery(send, payload, yes, no) {
  const got = yes.map(([name, s]) => waitFor(s, "msg", 3_000, `"msg" on ${name}`));
  const silent = no.map(([name, s]) => expectNo(s, "msg", QUIET_MS, `"msg" on non-recipient ${name}`));
  send();
  const results = await Promise.all(got);
  results.forEach((args, i) => assert.deepEqual(args, [payload], `payload received by ${yes[i][0]}`));
  await Promise.all(silent);
  // nor a second copy to the recipients
  await Promise.all(yes.map(([name, s]) => expectNo(s, "msg", 50, `a duplicate "msg" on ${name}`)));
}

describe("rooms", () => {
  itest("join and leave ack the socket's sorted rooms, own id room included", async (ctx) => {
    const { a, b } = await threeClients(ctx);
    assert.deepEqual(await join(a, "r1"), { rooms: sorted([a.id, "r1"]) });
    assert.deepEqual(await join(a, "r2"), { rooms: sorted([a.id, "r1", "r2"]) });
    assert.deepEqual(await join(a, "r1"), { rooms: sorted([a.id, "r1", "r2"]) }, "joining twice is a no-op");
    assert.deepEqual(await join(b, "r2"), { rooms: sorted([b.id, "r2"]) });
    assert.deepEqual(await leave(a, "r1"), { rooms: sorted([a.id, "r2"]) });
    assert.deepEqual(await leave(a, "never-joined"), { rooms: sorted([a.id, "r2"]) });
    assert.deepEqual(await leave(a, "r2"), { rooms: [a.id] });
    assert.deepEqual(await leave(b, "r2"), { rooms: [b.id] });
  });

  itest("publish reaches exactly the members of the room", async (ctx) => {
    const { a, b, c } = await threeClients(ctx);
    await join(a, "r");
    await join(b, "r");
    // sent by a member: the sender gets it too
    await expectDelivery(() => a.emit("publish", "r", { n: 1 }), { n: 1 }, [["A", a], ["B", b]], [["C", c]]);
    // sent by a non-member
    await expectDelivery(() => c.emit("publish", "r", "from C"), "from C", [["A", a], ["B", b]], [["C", c]]);
    // to a room nobody is in
    await expectDelivery(() => a.emit("publish", "empty", 0), 0, [], [["A", a], ["B", b], ["C", c]]);
    // to a socket's own id room
    await expectDelivery(() => a.emit("publish", c.id, "direct"), "direct", [["C", c]], [["A", a], ["B", b]]);
  });

  itest("publish-others excludes the sender", async (ctx) => {
    const { a, b, c } = await threeClients(ctx);
    await join(a, "r");
    await join(b, "r");
    await expectDelivery(() => a.emit("publish-others", "r", [1, 2]), [1, 2], [["B", b]], [["A", a], ["C", c]]);
    await expectDelivery(() => c.emit("publish-others", "r", "x"), "x", [["A", a], ["B", b]], [["C", c]]);
  });

  itest("publish-except skips the members of the excepted room", async (ctx) => {
    const { a, b, c } = await threeClients(ctx);
    await join(a, "r");
    await join(b, "r");
    await join(b, "muted");
    await join(c, "muted");
    // C (not in r) sends: only A (in r, not muted)
    await expectDelivery(() => c.emit("publish-except", "r", "muted", "p1"), "p1", [["A", a]], [["B", b], ["C", c]]);
    // A (in r, not muted) sends: A itself is a recipient
    await expectDelivery(() => a.emit("publish-except", "r", "muted", "p2"), "p2", [["A", a]], [["B", b], ["C", c]]);
    // excepted room nobody is in: all members
    await expectDelivery(() => c.emit("publish-except", "r", "nobody", "p3"), "p3", [["A", a], ["B", b]], [["C", c]]);
    // everyone excepted
    await join(a, "muted");
    await expectDelivery(() => c.emit("publish-except", "r", "muted", "p4"), "p4", [], [["A", a], ["B", b], ["C", c]]);
  });

  itest("leave stops delivery", async (ctx) => {
    const { a, b, c } = await threeClients(ctx);
    await join(a, "r");
    await join(b, "r");
    await expectDelivery(() => c.emit("publish", "r", 1), 1, [["A", a], ["B", b]], [["C", c]]);
    assert.deepEqual(await leave(b, "r"), { rooms: [b.id] });
    await expectDelivery(() => c.emit("publish", "r", 2), 2, [["A", a]], [["B", b], ["C", c]]);
    await leave(a, "r");
    await expectDelivery(() => c.emit("publish", "r", 3), 3, [], [["A", a], ["B", b], ["C", c]]);
  });

  itest("broadcast reaches every other socket but not the sender", async (ctx) => {
    const { a, b, c } = await threeClients(ctx);
    await expectDelivery(() => a.emit("broadcast", { hi: "all" }), { hi: "all" }, [["B", b], ["C", c]], [["A", a]]);
    await expectDelivery(() => b.emit("broadcast", "from B"), "from B", [["A", a], ["C", c]], [["B", b]]);
    // a disconnected socket no longer receives, the others still do
    c.disconnect();
    await expectDelivery(() => a.emit("broadcast", "after C left"), "after C left", [["B", b]], [["A", a]]);
  });

  itest("many published messages arrive in publish order", async (ctx) => {
    const { a, b, c } = await threeClients(ctx);
    await join(a, "r");
    await join(b, "r");
    await join(c, "r");
    const N = 300;
    const seen = { A: collect(a, "msg"), B: collect(b, "msg"), C: collect(c, "msg") };
    for (let i = 0; i < N; i++) a.emit("publish", "r", { seq: i });
    for (const [name, col] of Object.entries(seen)) {
      await until(() => col.items.length >= N, 10_000, () => `${N} messages on ${name} (got ${col.items.length})`);
    }
    for (const [name, col] of Object.entries(seen)) {
      const seqs = col.items.map(([p]) => p?.seq);
      assert.deepEqual(seqs, Array.from({ length: N }, (_, i) => i), `order of messages on ${name}`);
      col.stop();
    }
  });
});

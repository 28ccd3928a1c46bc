// Socket.IO v2 clients (npm socket.io-client@2, Engine.IO protocol v3)
// against a node with engine.allow_eio3 on: connect, events and acks both
// ways, rooms, binary, a namespace whose connect middleware reads the query
// (a v2 client's auth), the client-sent heartbeat, over WebSocket only,
// polling only and polling upgraded to WebSocket; and the v4 client on the
// same node. With allow_eio3 off the v2 client is refused.

import assert from "node:assert/strict";
import { describe } from "node:test";
import ioV2 from "socket.io-client-v2";
import {
  VARIANTS,
  assertSameWithBinary,
  emitAck,
  expectNo,
  itest,
  sleep,
  until,
  waitConnect,
  waitFor,
} from "../lib/harness.mjs";

const EIO3 = { RIPTIDE__ENGINE__ALLOW_EIO3: "true" };

/** A v2 client socket owned by `ctx` (closed with the test). */
function v2Client(ctx, nsp = "/", opts = {}) {
  const socket = ioV2(ctx.srv.url + (nsp === "/" ? "" : nsp), {
    forceNew: true,
    reconnection: false,
    timeout: 5_000,
    ...opts,
  });
  ctx.sockets.push(socket);
  ctx.managers.add(socket.io);
  return socket;
}

/** Connect a v2 client and wait for its `welcome`: {socket, welcome}. */
async function v2Connect(ctx, nsp = "/", opts = {}) {
  const socket = v2Client(ctx, nsp, opts);
  const welcome = waitFor(socket, "welcome", 5_000, `"welcome" on ${nsp}`);
  await waitV2Connect(socket);
  const [payload] = await welcome;
  return { socket, welcome: payload };
}

/** A v2 socket's `connect`; its `error` (a refused namespace) or
 * `connect_error` rejects. */
function waitV2Connect(socket, ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no connect on ${socket.nsp} within ${ms} ms`)), ms);
    const onConnect = () => done();
    const onError = (err) => done(new Error(`v2 connect failed on ${socket.nsp}: ${JSON.stringify(err)}`));
    function done(err) {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("error", onError);
      socket.off("connect_error", onError);
      if (err) reject(err);
      else resolve();
    }
    socket.on("connect", onConnect);
    socket.on("error", onError);
    socket.on("connect_error", onError);
  });
}

/** v2 has no `socket.timeout()`: emit with an ack, bounded. */
function v2Ack(socket, event, args = [], ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for "${event}" within ${ms} ms`)), ms);
    socket.emit(event, ...args, (...response) => {
      clearTimeout(timer);
      resolve(response);
    });
  });
}

const transportOf = (socket) => socket.io.engine.transport.name;

for (const [variant, opts, finalTransport] of [
  ["websocket", VARIANTS.websocket, "websocket"],
  ["polling", VARIANTS.polling, "polling"],
  ["polling + upgrade", VARIANTS.default, "websocket"],
]) {
  describe(`socket.io-client v2 over ${variant}`, () => {
    itest("connects to / without a CONNECT of its own, with the id it computes", async (ctx) => {
      await ctx.server({ env: EIO3 });
      const { socket, welcome } = await v2Connect(ctx, "/", opts);
      // v2 clients compute their id: the Engine.IO sid on `/`.
      assert.equal(socket.id, socket.io.engine.id);
      assert.deepEqual(welcome, { sid: socket.id, nsp: "/", auth: {} });
      await until(() => transportOf(socket) === finalTransport, 5_000, `transport ${finalTransport}`);
    });

    itest("events and acks both ways", async (ctx) => {
      await ctx.server({ env: EIO3 });
      const { socket } = await v2Connect(ctx, "/", opts);
      const cases = [["hello"], ["ünïcödé ✓ 日本語 🚀"], [1, 2.5, null, true], [{ a: [1, { b: "c" }] }], []];
      for (const args of cases) {
        assert.deepEqual(await v2Ack(socket, "echo", args), args);
      }
      const back = waitFor(socket, "message-back");
      socket.emit("message", "a", { x: 1 });
      assert.deepEqual(await back, ["a", { x: 1 }]);
      // Server to client: the server's question waits for this ack.
      socket.on("question", (...args) => {
        const ack = args.pop();
        assert.deepEqual(args, [1, "two"]);
        ack("yes", 42);
      });
      assert.deepEqual(await v2Ack(socket, "ask-client"), [{ answer: ["yes", 42] }]);
    });

    itest("binary both ways", async (ctx) => {
      await ctx.server({ env: EIO3 });
      const { socket } = await v2Connect(ctx, "/", opts);
      await until(() => transportOf(socket) === finalTransport, 5_000, `transport ${finalTransport}`);
      const bin = Buffer.from([0, 1, 2, 253, 254, 255]);
      const args = [bin, { nested: Buffer.from("héllo") }, "text"];
      assertSameWithBinary(assert, await v2Ack(socket, "echo", args), args);
      const back = waitFor(socket, "message-back");
      socket.emit("message", Buffer.alloc(70_000, 7));
      const [got] = await back;
      assertSameWithBinary(assert, got, Buffer.alloc(70_000, 7));
    });

    itest("rooms, with a v4 client in the same room", async (ctx) => {
      await ctx.server({ env: EIO3 });
      const { socket: a } = await v2Connect(ctx, "/", opts);
      const { socket: b } = await v2Connect(ctx, "/", opts);
      const { socket: v4 } = await ctx.connect("/", opts);
      const [joined] = await v2Ack(a, "join", ["r"]);
      assert.deepEqual(joined, { rooms: [a.id, "r"].sort() });
      await emitAck(v4, "join", ["r"]);
      const toA = waitFor(a, "msg");
      const toV4 = waitFor(v4, "msg");
      const notB = expectNo(b, "msg", 300);
      b.emit("publish", "r", "hi", 1);
      assert.deepEqual(await toA, ["hi", 1]);
      assert.deepEqual(await toV4, ["hi", 1]);
      await notB;
      // And from the v4 client to the v2 one.
      const again = waitFor(a, "msg");
      v4.emit("publish-others", "r", { from: "v4" });
      assert.deepEqual(await again, [{ from: "v4" }]);
    });

    itest("a namespace's middleware reads the v2 query as auth", async (ctx) => {
      await ctx.server({ env: EIO3 });
      const { socket, welcome } = await v2Connect(ctx, "/private", {
        ...opts,
        query: { token: "secret" },
      });
      assert.equal(socket.id, `/private#${socket.io.engine.id}`);
      assert.deepEqual(welcome, { sid: socket.id, nsp: "/private", auth: { token: "secret" } });
      assert.deepEqual(await v2Ack(socket, "echo", ["in /private"]), ["in /private"]);
      // Its id is a room, as any socket's: another v2 client reaches it.
      const { socket: other } = await v2Connect(ctx, "/private", {
        ...opts,
        query: { token: "secret" },
      });
      const direct = waitFor(socket, "msg");
      other.emit("publish", socket.id, "to you");
      assert.deepEqual(await direct, ["to you"]);

      // Refused: v2's ERROR packet, with the middleware's data.
      const refused = v2Client(ctx, "/private", { ...opts, query: { token: "wrong" } });
      const [err] = await waitFor(refused, "error", 5_000, "the refusal");
      assert.deepEqual(err, { reason: "bad token" });
      assert.equal(refused.connected, false);
    });
  });
}

describe("socket.io-client v2: the heartbeat and the v4 client beside it", () => {
  itest("the client's pings keep it connected past interval + timeout", async (ctx) => {
    await ctx.server({
      env: {
        ...EIO3,
        RIPTIDE__ENGINE__PING_INTERVAL_MS: "300",
        RIPTIDE__ENGINE__PING_TIMEOUT_MS: "200",
      },
    });
    const { socket } = await v2Connect(ctx, "/", VARIANTS.websocket);
    const pongs = [];
    socket.on("pong", (latency) => pongs.push(latency));
    const noDisconnect = expectNo(socket, "disconnect", 1_500);
    await noDisconnect;
    assert.ok(pongs.length >= 3, `pongs answered: ${pongs.length}`);
    assert.deepEqual(await v2Ack(socket, "echo", ["still here"]), ["still here"]);
  });

  itest("the v4 client works as ever on the same node", async (ctx) => {
    await ctx.server({ env: EIO3 });
    const { socket, welcome } = await ctx.connect("/", VARIANTS.default);
    assert.notEqual(socket.id, socket.io.engine.id, "v4 ids are not the Engine.IO sid");
    assert.equal(welcome.sid, socket.id);
    assert.deepEqual(await emitAck(socket, "echo", [Buffer.from([1, 2])]), [Buffer.from([1, 2])]);
  });

  itest("permessage-deflate with a v2 client: negotiated, text and binary both ways", async (ctx) => {
    await ctx.server({ env: { ...EIO3, RIPTIDE__ENGINE__PER_MESSAGE_DEFLATE: "true" } });
    const { socket } = await v2Connect(ctx, "/", VARIANTS.websocket);
    const ws = socket.io.engine.transport.ws;
    assert.match(ws.extensions, /permessage-deflate/, "negotiated");
    const big = { text: "riptide ".repeat(500), bin: Buffer.alloc(4000, 7) };
    const [back] = await new Promise((resolve) => socket.emit("echo", big, (...a) => resolve(a)));
    assert.equal(back.text, big.text);
    assert.deepEqual(Buffer.from(back.bin), big.bin);
  });

  itest("with allow_eio3 off the v2 client is refused", async (ctx) => {
    await ctx.server();
    const socket = v2Client(ctx, "/", VARIANTS.polling);
    const [err] = await waitFor(socket, "connect_error", 5_000, "the refusal");
    assert.match(String(err?.description ?? err?.message ?? err), /400|xhr poll error/);
    await sleep(50);
    assert.equal(socket.connected, false);
    // v4 clients are not affected.
    const { socket: v4 } = await ctx.connect("/", VARIANTS.websocket);
    await waitConnect(v4);
  });
});

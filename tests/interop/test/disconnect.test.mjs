// Disconnections: client-initiated (clean, the server keeps serving others),
// server-initiated namespace disconnect (disconnect-me), and server-closed
// connection (close-connection, like Socket.IO's disconnect(true)), then an
// explicit reconnection.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { VARIANTS, emitAck, expectNo, itest, waitFor } from "../lib/harness.mjs";

const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500 };

for (const [variant, opts] of [
  ["websocket", VARIANTS.websocket],
  ["polling", VARIANTS.polling],
  ["default (polling + upgrade)", VARIANTS.default],
]) {
  describe(`disconnect over ${variant}`, () => {
    itest("client disconnect() is clean and the server keeps serving others", async (ctx) => {
      await ctx.server();
      const a = (await ctx.connect("/", opts)).socket;
      const b = (await ctx.connect("/", opts)).socket;
      await emitAck(a, "join", ["r"]);
      await emitAck(b, "join", ["r"]);

      const reason = waitFor(a, "disconnect", 3_000, '"disconnect" on the leaving client');
      a.disconnect();
      assert.equal((await reason)[0], "io client disconnect");
      assert.equal(a.connected, false);

      // the remaining client is unaffected, and publishing to the shared room still works
      assert.deepEqual(await emitAck(b, "echo", ["b still works"]), ["b still works"]);
      const msg = waitFor(b, "msg", 3_000, '"msg" on the remaining member');
      b.emit("publish", "r", "after leave");
      assert.deepEqual(await msg, ["after leave"]);

      // new clients are still accepted, and a broadcast reaches exactly them
      const c = (await ctx.connect("/", opts)).socket;
      const toC = waitFor(c, "msg", 3_000, '"msg" on the new client');
      const notB = expectNo(b, "msg", 300, '"msg" on the broadcast sender');
      b.emit("broadcast", "hello c");
      assert.deepEqual(await toC, ["hello c"]);
      await notB;
    });

    itest('disconnect-me: the client sees "io server disconnect" and does not reconnect', async (ctx) => {
      await ctx.server();
      const { socket, welcome } = await ctx.connect("/", { ...opts, ...RECONNECT });
      const other = (await ctx.connect("/", opts)).socket;

      const reason = waitFor(socket, "disconnect", 3_000, '"disconnect" after disconnect-me');
      socket.emit("disconnect-me");
      assert.equal((await reason)[0], "io server disconnect");
      assert.equal(socket.connected, false);
      assert.equal(socket.active, false, "no automatic reconnection after a server-side disconnect");
      await expectNo(socket, "connect", 700, "an automatic reconnection after io server disconnect");

      // the other client is unaffected
      assert.deepEqual(await emitAck(other, "echo", ["other ok"]), ["other ok"]);

      // a manual reconnection works and gets a fresh welcome
      const again = waitFor(socket, "welcome", 5_000, '"welcome" after manual reconnection');
      socket.connect();
      const [w] = await again;
      assert.equal(socket.connected, true);
      assert.equal(w.nsp, "/");
      assert.equal(w.sid, socket.id);
      assert.notEqual(w.sid, welcome.sid, "a new socket id after reconnection");
      assert.deepEqual(await emitAck(socket, "echo", ["back"]), ["back"]);
    });

    itest('close-connection: like disconnect(true), "io server disconnect", no automatic reconnection', async (ctx) => {
      await ctx.server();
      const { socket, welcome } = await ctx.connect("/", { ...opts, ...RECONNECT });
      const other = (await ctx.connect("/", opts)).socket;
      const firstEngineId = socket.io.engine.id;

      const reason = waitFor(socket, "disconnect", 3_000, '"disconnect" after close-connection');
      socket.emit("close-connection");
      assert.equal((await reason)[0], "io server disconnect", "disconnect reason after close-connection");
      // A server-side disconnect is final for the client: it does not retry.
      await expectNo(socket, "connect", 800, "no automatic reconnection");
      assert.equal(socket.connected, false);

      // The application may reconnect explicitly: a new engine session and socket.
      const rewelcome = waitFor(socket, "welcome", 8_000, '"welcome" after socket.connect()');
      socket.connect();
      const [w] = await rewelcome;
      assert.equal(w.nsp, "/");
      assert.notEqual(w.sid, welcome.sid, "a new socket id after reconnection");
      assert.notEqual(socket.io.engine.id, firstEngineId, "a new engine session after reconnection");
      assert.deepEqual(await emitAck(socket, "echo", ["reconnected"]), ["reconnected"]);

      // the other client's connection was not closed
      assert.equal(other.connected, true);
      assert.deepEqual(await emitAck(other, "echo", ["other ok"]), ["other ok"]);
    });
  });
}

// Heartbeat: with pingInterval=300 ms and pingTimeout=200 ms (set through the
// environment), a healthy client stays connected, and a client that stops
// answering pings is closed by the server after ~pingInterval + pingTimeout.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { VARIANTS, collect, emitAck, expectNo, itest, waitFor } from "../lib/harness.mjs";

const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;
const ENV = {
  RIPTIDE__ENGINE__PING_INTERVAL_MS: String(PING_INTERVAL),
  RIPTIDE__ENGINE__PING_TIMEOUT_MS: String(PING_TIMEOUT),
};

/** Make the client's engine swallow every outgoing "pong" packet. */
function stopAnsweringPings(engine) {
  // engine.io-client v6: Socket#_onPacket answers a "ping" with this._sendPacket("pong")
  const original = engine._sendPacket;
  assert.equal(typeof original, "function", "engine.io-client Socket#_sendPacket exists (hook for pongs)");
  const swallowed = { count: 0 };
  engine._sendPacket = function (type, ...rest) {
    if (type === "pong") {
      swallowed.count += 1;
      return;
    }
    return original.call(this, type, ...rest);
  };
  return swallowed;
}

for (const [variant, opts] of [
  ["websocket", VARIANTS.websocket],
  ["polling", VARIANTS.polling],
  ["default (polling + upgrade)", VARIANTS.default],
]) {
  describe(`heartbeat over ${variant}`, () => {
    itest("the handshake announces the configured ping interval and timeout", async (ctx) => {
      await ctx.server({ env: ENV });
      const socket = ctx.client("/", opts);
      const [handshake] = await waitFor(socket.io.engine, "handshake", 5_000, 'engine "handshake"');
      assert.equal(handshake.pingInterval, PING_INTERVAL);
      assert.equal(handshake.pingTimeout, PING_TIMEOUT);
      assert.equal(typeof handshake.sid, "string");
      assert.ok(Array.isArray(handshake.upgrades), "handshake.upgrades is an array");
    });

    itest("a client that answers pings stays connected for 2 s", async (ctx) => {
      await ctx.server({ env: ENV });
      const { socket } = await ctx.connect("/", opts);
      const pings = collect(socket.io.engine, "ping");
      await expectNo(socket, "disconnect", 2_000, "a disconnection of a healthy client");
      pings.stop();
      assert.equal(socket.connected, true);
      assert.ok(
        pings.items.length >= 4,
        `the server pinged every ~${PING_INTERVAL} ms (got ${pings.items.length} pings in 2 s)`,
      );
      assert.deepEqual(await emitAck(socket, "echo", ["alive"]), ["alive"]);
    });

    itest("a client that stops answering pings is closed by the server", async (ctx) => {
      await ctx.server({ env: ENV });
      const { socket } = await ctx.connect("/", { ...opts, reconnection: false });
      if (opts === VARIANTS.default) {
        // let the upgrade finish so the dead client sits on the final transport
        if (socket.io.engine.transport.name !== "websocket") {
          await waitFor(socket.io.engine, "upgrade", 5_000, 'engine "upgrade" to websocket');
        }
      }
      const other = (await ctx.connect("/", opts)).socket;

      const swallowed = stopAnsweringPings(socket.io.engine);
      const started = Date.now();
      const [reason] = await waitFor(socket, "disconnect", 1_500, '"disconnect" of the client that stopped answering pings');
      const elapsed = Date.now() - started;
      assert.ok(
        ["transport close", "ping timeout"].includes(reason),
        `disconnect reason is "transport close" or "ping timeout", got ${JSON.stringify(reason)}`,
      );
      assert.ok(swallowed.count >= 1, "at least one pong was swallowed");
      assert.ok(
        elapsed >= PING_TIMEOUT - 50,
        `the server waited at least pingTimeout before closing (closed after ${elapsed} ms)`,
      );

      // the healthy client is unaffected
      assert.equal(other.connected, true);
      assert.deepEqual(await emitAck(other, "echo", ["still alive"]), ["still alive"]);
    });
  });
}

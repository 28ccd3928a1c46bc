// Transports: HTTP long-polling only, WebSocket only, and the default path
// (polling first, then upgrade to WebSocket).

import assert from "node:assert/strict";
import { describe } from "node:test";
import { VARIANTS, collect, emitAck, expectNo, itest, waitFor } from "../lib/harness.mjs";

describe("transports", () => {
  itest("polling only: stays on polling and echo works", async (ctx) => {
    await ctx.server();
    const { socket, welcome } = await ctx.connect("/", VARIANTS.polling);
    const engine = socket.io.engine;
    assert.equal(engine.transport.name, "polling");
    assert.equal(welcome.sid, socket.id, "welcome.sid is the socket id");
    assert.equal(welcome.nsp, "/");

    const upgrade = expectNo(engine, "upgrade", 500, "engine upgrade on a polling-only client");
    assert.deepEqual(await emitAck(socket, "echo", ["over polling", 1]), ["over polling", 1]);
    await upgrade;
    assert.equal(engine.transport.name, "polling");
    // several round trips in a row over long-polling
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(await emitAck(socket, "echo", [i]), [i]);
    }
    assert.equal(engine.transport.name, "polling");
  });

  itest("websocket only: connects directly over websocket and echo works", async (ctx) => {
    await ctx.server();
    const { socket, welcome } = await ctx.connect("/", VARIANTS.websocket);
    assert.equal(socket.io.engine.transport.name, "websocket");
    assert.equal(welcome.sid, socket.id);
    assert.equal(welcome.nsp, "/");
    assert.deepEqual(await emitAck(socket, "echo", ["over websocket", 2]), ["over websocket", 2]);
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(await emitAck(socket, "echo", [i]), [i]);
    }
  });

  itest("default: starts on polling and upgrades to websocket", async (ctx) => {
    await ctx.server();
    const socket = ctx.client("/", VARIANTS.default);
    const engine = socket.io.engine;
    const upgrade = waitFor(engine, "upgrade", 5_000, 'engine "upgrade" to websocket');
    const upgradeErrors = collect(engine, "upgradeError");
    const opened = waitFor(engine, "open", 5_000, 'engine "open"');
    const welcome = waitFor(socket, "welcome", 5_000, '"welcome"');

    await opened;
    assert.equal(engine.transport.name, "polling", "the first transport is polling");
    const sid = engine.id;
    assert.ok(sid, "engine has a session id");

    const [transport] = await upgrade.catch((err) => {
      const e = upgradeErrors.items.map(([x]) => x?.message ?? String(x)).join("; ");
      throw new Error(`${err.message}${e ? ` (upgradeError: ${e})` : ""}`);
    });
    upgradeErrors.stop();
    assert.equal(transport.name, "websocket");
    assert.equal(engine.transport.name, "websocket", "the final transport is websocket");
    assert.equal(engine.id, sid, "the session id is kept across the upgrade");

    const [w] = await welcome;
    assert.equal(w.sid, socket.id);
    assert.equal(w.nsp, "/");
    assert.deepEqual(await emitAck(socket, "echo", ["after upgrade", { ok: true }]), [
      "after upgrade",
      { ok: true },
    ]);
  });

  itest("default: events sent while the upgrade is in progress are not lost", async (ctx) => {
    await ctx.server();
    const socket = ctx.client("/", VARIANTS.default);
    const engine = socket.io.engine;
    const upgrade = waitFor(engine, "upgrade", 5_000, 'engine "upgrade" to websocket');
    // queued before the connection is even open, then answered across the upgrade
    const acks = [];
    for (let i = 0; i < 50; i++) acks.push(emitAck(socket, "echo", [i, `m${i}`], 8_000));
    const got = await Promise.all(acks);
    got.forEach((args, i) => assert.deepEqual(args, [i, `m${i}`]));
    await upgrade;
    assert.equal(engine.transport.name, "websocket");
    for (let i = 0; i < 10; i++) assert.deepEqual(await emitAck(socket, "echo", [i]), [i]);
  });
});

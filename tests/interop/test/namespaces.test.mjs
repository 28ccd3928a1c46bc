// Namespaces: the auth payload in welcome, the /private connect middleware
// (accept / reject with message and data), dynamic namespaces, unknown
// namespaces, and multiplexing several namespaces over one engine connection.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { io } from "socket.io-client";
import {
  VARIANTS,
  emitAck,
  itest,
  parserOptions,
  waitConnect,
  waitConnectError,
  waitFor,
} from "../lib/harness.mjs";

for (const [variant, opts] of [
  ["websocket", VARIANTS.websocket],
  ["default (polling + upgrade)", VARIANTS.default],
]) {
  describe(`namespaces over ${variant}`, () => {
    itest("main namespace: welcome carries the CONNECT auth payload", async (ctx) => {
      await ctx.server();
      const auth = { user: "alice", n: 1, nested: { list: [1, 2] } };
      const a = await ctx.connect("/", { ...opts, auth });
      assert.deepEqual(a.welcome, { sid: a.socket.id, nsp: "/", auth });
      const b = await ctx.connect("/", { ...opts, auth: { other: true } });
      assert.deepEqual(b.welcome, { sid: b.socket.id, nsp: "/", auth: { other: true } });
      assert.notEqual(a.socket.id, b.socket.id);
    });

    itest("main namespace: welcome.auth is {} when the CONNECT packet has no payload (as the reference server)", async (ctx) => {
      await ctx.server();
      // socket.io-client sends a bare "0" CONNECT packet when no `auth` option is given
      const { socket, welcome } = await ctx.connect("/", opts);
      assert.equal(welcome.sid, socket.id);
      assert.equal(welcome.nsp, "/");
      assert.deepEqual(welcome.auth, {}, `welcome.auth without an auth payload (got ${JSON.stringify(welcome.auth)})`);
    });

    itest("/private accepts the good token", async (ctx) => {
      await ctx.server();
      const { socket, welcome } = await ctx.connect("/private", { ...opts, auth: { token: "secret" } });
      assert.deepEqual(welcome, { sid: socket.id, nsp: "/private", auth: { token: "secret" } });
      assert.deepEqual(await emitAck(socket, "echo", ["private", { n: 1 }]), ["private", { n: 1 }]);
    });

    itest("/private rejects a bad or missing token with message and data", async (ctx) => {
      await ctx.server();
      for (const auth of [{ token: "wrong" }, {}, undefined]) {
        const socket = ctx.client("/private", { ...opts, ...(auth === undefined ? {} : { auth }) });
        const err = await waitConnectError(socket);
        assert.equal(err.message, "unauthorized", `connect_error message for auth ${JSON.stringify(auth)}`);
        assert.deepEqual(err.data, { reason: "bad token" }, `connect_error data for auth ${JSON.stringify(auth)}`);
        assert.equal(socket.connected, false);
      }
      // the server still accepts good clients afterwards
      const { welcome } = await ctx.connect("/private", { ...opts, auth: { token: "secret" } });
      assert.equal(welcome.nsp, "/private");
    });

    itest("dynamic namespaces matching /^\\/dyn-[a-z0-9]+$/ are created on demand", async (ctx) => {
      await ctx.server();
      for (const nsp of ["/dyn-abc", "/dyn-42", "/dyn-a1b2c3"]) {
        const { socket, welcome } = await ctx.connect(nsp, opts);
        assert.equal(welcome.sid, socket.id, `welcome.sid on ${nsp}`);
        assert.equal(welcome.nsp, nsp);
        assert.deepEqual(await emitAck(socket, "echo", [nsp, 1]), [nsp, 1]);
      }
      // a second client on an existing dynamic namespace
      const again = await ctx.connect("/dyn-abc", { ...opts, auth: { k: "v" } });
      assert.deepEqual(again.welcome, { sid: again.socket.id, nsp: "/dyn-abc", auth: { k: "v" } });
    });

    itest('unknown namespaces get connect_error "Invalid namespace"', async (ctx) => {
      await ctx.server();
      for (const nsp of ["/nope", "/dyn-", "/dyn-ABC", "/dyn-a_b", "/privatex", "/dyn-abc/x"]) {
        const socket = ctx.client(nsp, opts);
        const err = await waitConnectError(socket);
        assert.equal(err.message, "Invalid namespace", `connect_error message for ${nsp}`);
        assert.equal(socket.connected, false);
      }
    });

    itest("multiplexing: /, /private and a dynamic namespace share one engine connection", async (ctx) => {
      const srv = await ctx.server();
      const base = { ...parserOptions(), ...opts, reconnection: false, autoUnref: true, timeout: 5_000 };
      // io() caches one Manager per origin: these three share it (no forceNew)
      const main = io(srv.url, base);
      const priv = io(srv.url + "/private", { ...base, auth: { token: "secret" } });
      const dyn = io(srv.url + "/dyn-mux1", base);
      for (const s of [main, priv, dyn]) {
        ctx.sockets.push(s);
        ctx.managers.add(s.io);
      }
      assert.equal(priv.io, main.io, "/private uses the same Manager as /");
      assert.equal(dyn.io, main.io, "the dynamic namespace uses the same Manager as /");

      const welcomes = [main, priv, dyn].map((s) => waitFor(s, "welcome", 5_000, `"welcome" on ${s.nsp}`));
      await Promise.all([main, priv, dyn].map((s) => waitConnect(s)));
      const [[wMain], [wPriv], [wDyn]] = await Promise.all(welcomes);
      assert.deepEqual([wMain.sid, wMain.nsp], [main.id, "/"]);
      assert.deepEqual(wPriv, { sid: priv.id, nsp: "/private", auth: { token: "secret" } });
      assert.deepEqual([wDyn.sid, wDyn.nsp], [dyn.id, "/dyn-mux1"]);
      assert.equal(new Set([main.id, priv.id, dyn.id]).size, 3, "each namespace socket has its own id");

      const engineId = main.io.engine.id;
      assert.ok(engineId);
      assert.equal(priv.io.engine.id, engineId);
      assert.equal(dyn.io.engine.id, engineId);

      // concurrent traffic on the three namespaces is routed correctly
      const results = await Promise.all([
        ...Array.from({ length: 20 }, (_, i) => emitAck(main, "echo", ["/", i])),
        ...Array.from({ length: 20 }, (_, i) => emitAck(priv, "echo", ["/private", i])),
        ...Array.from({ length: 20 }, (_, i) => emitAck(dyn, "echo", ["/dyn-mux1", i])),
      ]);
      results.forEach((r, k) => assert.deepEqual(r, [["/", "/private", "/dyn-mux1"][Math.floor(k / 20)], k % 20]));

      // a rejected namespace on the same Manager does not hurt the others
      const bad = io(srv.url + "/nope", base);
      ctx.sockets.push(bad);
      assert.equal(bad.io, main.io);
      assert.equal((await waitConnectError(bad)).message, "Invalid namespace");
      assert.equal(main.io.engine.id, engineId, "the engine connection survived the rejected namespace");
      assert.deepEqual(await emitAck(main, "echo", ["still"]), ["still"]);

      // leaving one namespace keeps the shared connection for the others
      const privDisconnect = waitFor(priv, "disconnect", 3_000, '"disconnect" on /private');
      priv.disconnect();
      assert.equal((await privDisconnect)[0], "io client disconnect");
      assert.deepEqual(await emitAck(main, "echo", ["main ok"]), ["main ok"]);
      assert.deepEqual(await emitAck(dyn, "echo", ["dyn ok"]), ["dyn ok"]);
      assert.equal(main.io.engine.id, engineId, "still the same engine connection");
      assert.ok(main.connected && dyn.connected);
    });
  });
}

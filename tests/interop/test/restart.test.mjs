// Restart: a client connected to a server that is killed (SIGKILL) and started
// again on the same port reconnects by itself and works again.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { VARIANTS, emitAck, itest, waitFor } from "../lib/harness.mjs";

const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500 };

for (const [variant, opts] of [
  ["websocket", VARIANTS.websocket],
  ["polling", VARIANTS.polling],
  ["default (polling + upgrade)", VARIANTS.default],
]) {
  describe(`restart over ${variant}`, () => {
    itest("a client reconnects by itself after the server is killed and restarted", async (ctx) => {
      const srv = await ctx.server();
      const { socket, welcome } = await ctx.connect("/", { ...opts, ...RECONNECT });
      assert.deepEqual(await emitAck(socket, "echo", ["before"]), ["before"]);
      await emitAck(socket, "join", ["room-before-restart"]);

      const disconnected = waitFor(socket, "disconnect", 5_000, '"disconnect" after the server was killed');
      const oldPid = srv.proc.pid;
      await srv.kill("SIGKILL");
      const [reason] = await disconnected;
      assert.ok(
        ["transport close", "transport error", "ping timeout"].includes(reason),
        `disconnect reason after a server crash, got ${JSON.stringify(reason)}`,
      );
      assert.equal(socket.connected, false);
      assert.equal(socket.active, true, "the client keeps trying to reconnect");

      // let the client fail at least one attempt against the dead port
      await waitFor(socket.io, "reconnect_error", 5_000, 'Manager "reconnect_error" while the server is down');

      const rewelcome = waitFor(socket, "welcome", 10_000, '"welcome" after the restart');
      const reconnected = waitFor(socket.io, "reconnect", 10_000, 'Manager "reconnect" after the restart');
      await srv.start();
      assert.notEqual(srv.proc.pid, oldPid, "a new server process");

      const [w] = await rewelcome;
      await reconnected;
      assert.equal(socket.connected, true);
      assert.equal(w.sid, socket.id);
      assert.equal(w.nsp, "/");
      assert.notEqual(w.sid, welcome.sid, "a new socket id from the new server");
      assert.deepEqual(await emitAck(socket, "echo", ["after", { restarted: true }]), ["after", { restarted: true }]);
      // the new server knows nothing of the old rooms
      assert.deepEqual(await emitAck(socket, "join", ["r"]), [{ rooms: [socket.id, "r"].sort() }]);
    });
  });
}

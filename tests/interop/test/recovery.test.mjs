// Connection state recovery (Socket.IO v4.6+), against a server started with
// RIPTIDE__RECOVERY__ENABLED=true: after a transport close the official
// client gets the same socket back (`socket.recovered`, same id, same rooms)
// and the events it missed, in order, once; every stored event carries its
// offset as the last argument; a client namespace disconnect or a server
// restart is not recovered; with recovery off (the default) nothing of this
// happens.
//
// The client needs nothing special: it sends `pid` and the last offset it saw
// in its CONNECT whenever the server gave it a pid. A drop is forced with
// `socket.io.engine.close()`: the transport closes under the socket ("transport
// close" on the server), a reason the server recovers from.

import assert from "node:assert/strict";
import { describe } from "node:test";
import {
  VARIANTS,
  collect,
  emitAck,
  expectNo,
  itest,
  until,
  waitConnect,
  waitFor,
} from "../lib/harness.mjs";

const RECOVERY = { env: { RIPTIDE__RECOVERY__ENABLED: "true" } };
const RECONNECT = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 };
const TIMEOUT = { timeout: 30_000 };
const sorted = (xs) => [...xs].sort();

/** The server's view of `socket`: {sid, recovered, rooms} (the interop `state` event). */
const state = async (socket) => (await emitAck(socket, "state"))[0];
const join = (socket, room) => emitAck(socket, "join", [room]);

/**
 * Close `socket`'s transport under it (not a namespace disconnect) and wait
 * for the client to see the disconnection.
 */
async function drop(socket) {
  const gone = waitFor(socket, "disconnect", 5_000, '"disconnect" after socket.io.engine.close()');
  socket.io.engine.close();
  await gone;
  assert.equal(socket.connected, false);
}

/** Connect a socket already created (or disconnected) and wait for "connect". */
async function reconnect(socket) {
  const connected = waitConnect(socket, 10_000);
  socket.connect();
  await connected;
}

/**
 * Have `sender` publish each of `payloads` to `room`, then wait for its echo:
 * the server handles one socket's events in order, so when the echo is back
 * every publish has been emitted (and stored).
 */
async function publishAll(sender, room, payloads) {
  for (const p of payloads) sender.emit("publish", room, p);
  assert.deepEqual(await emitAck(sender, "echo", ["published"]), ["published"]);
}

/** `args` is one stored event: [payload, offset]; returns the offset. */
function assertStored(args, payload, where) {
  assert.equal(args.length, 2, `${where}: payload plus the offset, got ${JSON.stringify(args)}`);
  assert.deepEqual(args[0], payload, `${where}: payload`);
  assert.equal(typeof args[1], "string", `${where}: the last argument is the offset (a string)`);
  assert.ok(args[1].length > 0, `${where}: a non-empty offset`);
  return args[1];
}

/**
 * After a recovery, one more `publish` to `room` from `sender`, awaited on
 * `socket`: it comes after every replayed event on the same connection, so
 * once it is there `items` holds everything the replay delivered.
 */
async function fence(socket, sender, room, items) {
  const n = items.length;
  sender.emit("publish", room, "fence");
  await until(
    () => items.slice(n).some((args) => args[0] === "fence"),
    5_000,
    () => `the "fence" msg after the recovery (got ${JSON.stringify(items)})`,
  );
}

for (const [variant, opts] of [
  ["websocket", VARIANTS.websocket],
  ["polling", VARIANTS.polling],
]) {
  describe(`connection state recovery over ${variant}`, () => {
    itest("a transport close is recovered: recovered, same id, same rooms", async (ctx) => {
      await ctx.server(RECOVERY);
      const { socket } = await ctx.connect("/", { ...opts, ...RECONNECT });
      const other = (await ctx.connect("/", opts)).socket;
      const id = socket.id;
      assert.equal(socket.recovered, false, "a first connection is not a recovery");
      await join(socket, "r1");
      await join(socket, "r2");

      const reconnected = waitFor(socket, "connect", 10_000, '"connect" after the automatic reconnection');
      await drop(socket);
      await reconnected;

      assert.equal(socket.recovered, true, "socket.recovered after a transport close");
      assert.equal(socket.id, id, "the same socket id");
      assert.deepEqual(await state(socket), {
        sid: id,
        recovered: true,
        rooms: sorted([id, "r1", "r2"]),
      });
      // the rooms are live, not just listed: a publish to one reaches it
      const msg = waitFor(socket, "msg", 5_000, '"msg" to a restored room');
      other.emit("publish", "r2", { after: "recovery" });
      assertStored(await msg, { after: "recovery" }, "msg to r2");
      assert.deepEqual(await emitAck(socket, "echo", ["works"]), ["works"]);
    }, TIMEOUT);

    itest("events sent to its room while away are delivered after the recovery, in order, once", async (ctx) => {
      await ctx.server(RECOVERY);
      const { socket } = await ctx.connect("/", opts); // no automatic reconnection
      const other = (await ctx.connect("/", opts)).socket;
      const id = socket.id;
      await join(socket, "r");

      // one event before the drop, so the client resumes from a real offset
      const before = waitFor(socket, "msg", 5_000, '"msg" before the drop');
      other.emit("publish", "r", "before");
      const offsetBefore = assertStored(await before, "before", "msg before the drop");

      await drop(socket);
      const items = collect(socket, "msg").items;
      const missed = [1, 2, { three: 3 }, [4], "five"];
      await publishAll(other, "r", missed);
      assert.equal(items.length, 0, "nothing reaches a disconnected client");

      await reconnect(socket);
      assert.equal(socket.recovered, true, "socket.recovered");
      assert.equal(socket.id, id, "the same socket id");
      // the missed events are written before the CONNECT reply: all there at "connect"
      assert.equal(items.length, missed.length, `replayed by "connect": ${JSON.stringify(items)}`);

      await fence(socket, other, "r", items);
      const offsets = items.map((args, i) =>
        assertStored(args, i < missed.length ? missed[i] : "fence", `msg #${i}`),
      );
      assert.deepEqual(
        items.map((args) => args[0]),
        [...missed, "fence"],
        "every missed event once, in order, then the live one",
      );
      assert.equal(new Set([offsetBefore, ...offsets]).size, offsets.length + 1, "distinct offsets");
      // and nothing more trails behind
      await expectNo(socket, "msg", 300, "a duplicate msg after the recovery");
      assert.equal(items.length, missed.length + 1);
    }, TIMEOUT);

    itest("a client that had received no event is recovered and gets what was sent meanwhile (socket.io #4888)", async (ctx) => {
      await ctx.server(RECOVERY);
      // `/quiet` sends no welcome: the client has no offset to send back
      const socket = ctx.client("/quiet", opts);
      const received = [];
      socket.onAny((event, ...args) => received.push([event, ...args]));
      await waitConnect(socket);
      const other = ctx.client("/quiet", opts);
      await waitConnect(other);
      const id = socket.id;
      await join(socket, "r"); // an ack: not an event, no offset
      assert.deepEqual(received, [], "no event before the drop");

      await drop(socket);
      const items = collect(socket, "msg").items;
      const missed = ["a", "b", "c"];
      await publishAll(other, "r", missed);

      await reconnect(socket);
      assert.equal(socket.recovered, true, "recovered without an offset");
      assert.equal(socket.id, id, "the same socket id");
      assert.deepEqual((await state(socket)).rooms, sorted([id, "r"]));

      await fence(socket, other, "r", items);
      items.forEach((args, i) => assertStored(args, [...missed, "fence"][i], `msg #${i}`));
      assert.deepEqual(items.map((args) => args[0]), [...missed, "fence"], "each missed event once, in order");
      await expectNo(socket, "msg", 300, "a duplicate msg after the recovery");
    }, TIMEOUT);

    itest("a volatile event's trailing string, taken by the client as its offset, resumes from the right place (socket.io #5539)", async (ctx) => {
      await ctx.server(RECOVERY);
      const { socket } = await ctx.connect("/", opts);
      const other = (await ctx.connect("/", opts)).socket;
      const id = socket.id;
      await join(socket, "r");
      const before = waitFor(socket, "msg", 5_000, '"msg" before the drop');
      other.emit("publish", "r", "before");
      assertStored(await before, "before", "msg before the drop");
      // A volatile event ending in a string: the client keeps that string
      // as the last offset it saw (it cannot tell it from one).
      // A volatile emit is dropped when the transport cannot take it at once
      // (over polling, when no GET is waiting), as in Node: asked again
      // until one comes back.
      const backs = [];
      socket.on("volatile-back", (...args) => backs.push(args));
      for (let tries = 0; backs.length === 0; tries++) {
        assert.ok(tries < 50, '"volatile-back" never came back');
        socket.emit("volatile-back", "hello");
        await until(() => backs.length > 0, 200, "").catch(() => {});
      }
      assert.deepEqual(backs[0], ["hello"], "volatile: no offset added");
      assert.equal(socket._lastOffset, "hello", "the client took the string as its offset");

      await drop(socket);
      const items = collect(socket, "msg").items;
      await publishAll(other, "r", ["m1", "m2"]);
      await reconnect(socket);
      assert.equal(socket.recovered, true, "recovered from a string the server never issued as an offset");
      assert.equal(socket.id, id, "the same socket id");
      await fence(socket, other, "r", items);
      assert.deepEqual(items.map((args) => args[0]), ["m1", "m2", "fence"],
        "what was sent after the volatile event, once; nothing from before it");
    }, TIMEOUT);

    itest("a stored event's last argument is its offset, live and replayed; acks carry none", async (ctx) => {
      await ctx.server(RECOVERY);
      const socket = ctx.client("/", { ...opts, ...RECONNECT });
      const welcome = waitFor(socket, "welcome", 5_000, '"welcome"');
      await waitConnect(socket);
      const other = (await ctx.connect("/", opts)).socket;
      const w = await welcome;
      assertStored(w, { sid: socket.id, nsp: "/", auth: {} }, "welcome (a direct emit)");

      // a direct emit with several arguments: the offset comes after all of them
      const back = waitFor(socket, "message-back", 5_000, '"message-back"');
      socket.emit("message", "x", 1, { y: [2] });
      const args = await back;
      assert.equal(args.length, 4, `three arguments and the offset: ${JSON.stringify(args)}`);
      assert.deepEqual(args.slice(0, 3), ["x", 1, { y: [2] }]);
      assert.equal(typeof args[3], "string", "the last argument is the offset");

      // a room broadcast
      await join(socket, "r");
      const live = waitFor(socket, "msg", 5_000, '"msg" live');
      other.emit("publish", "r", "live");
      const liveOffset = assertStored(await live, "live", "a live room broadcast");

      // an ack is not stored: exactly what was sent, no offset
      assert.deepEqual(await emitAck(socket, "echo", ["a", "b"]), ["a", "b"]);

      // replayed after a recovery
      await drop(socket);
      const items = collect(socket, "msg").items;
      await publishAll(other, "r", ["missed"]);
      await reconnect(socket);
      assert.equal(socket.recovered, true);
      await until(() => items.length >= 1, 5_000, '"msg" replayed');
      const replayedOffset = assertStored(items[0], "missed", "a replayed event");
      assert.notEqual(replayedOffset, liveOffset, "each event has its own offset");
    }, TIMEOUT);

    itest("a client namespace disconnect is not recovered: new id, no rooms, nothing replayed", async (ctx) => {
      await ctx.server(RECOVERY);
      const { socket } = await ctx.connect("/", opts);
      const other = (await ctx.connect("/", opts)).socket;
      const id = socket.id;
      await join(socket, "r");

      const gone = waitFor(socket, "disconnect", 5_000, '"disconnect" after socket.disconnect()');
      socket.disconnect();
      assert.equal((await gone)[0], "io client disconnect");
      const items = collect(socket, "msg").items;
      await publishAll(other, "r", ["while away"]);

      // the client still sends its pid and offset: the server knows it left for good
      await reconnect(socket);
      assert.equal(socket.recovered, false, "socket.recovered after a namespace disconnect");
      assert.notEqual(socket.id, id, "a new socket id");
      assert.deepEqual(await state(socket), { sid: socket.id, recovered: false, rooms: [socket.id] });

      await join(socket, "r");
      const after = waitFor(socket, "msg", 5_000, '"msg" after re-joining');
      other.emit("publish", "r", "after");
      assertStored(await after, "after", "msg after re-joining");
      assert.deepEqual(items.map((args) => args[0]), ["after"], "nothing from before the reconnection");
    }, TIMEOUT);

    itest("a pid from before a server restart is not recovered", async (ctx) => {
      const srv = await ctx.server(RECOVERY);
      const { socket } = await ctx.connect("/", { ...opts, ...RECONNECT });
      const id = socket.id;
      await join(socket, "r");
      // an offset to send back too
      const back = waitFor(socket, "message-back", 5_000, '"message-back"');
      socket.emit("message", "m");
      assertStored(await back, "m", "message-back");

      const gone = waitFor(socket, "disconnect", 5_000, '"disconnect" after the server was killed');
      await srv.kill("SIGKILL");
      await gone;
      const reconnected = waitFor(socket.io, "reconnect", 15_000, 'Manager "reconnect" after the restart');
      await srv.start();
      await reconnected;
      await until(() => socket.connected, 5_000, "the socket connected again");

      assert.equal(socket.recovered, false, "socket.recovered with a pid the new process never issued");
      assert.notEqual(socket.id, id, "a new socket id");
      assert.deepEqual(await state(socket), { sid: socket.id, recovered: false, rooms: [socket.id] });
    }, TIMEOUT);

    itest("recovery off (the default): a reconnection is a new socket and events carry no offset", async (ctx) => {
      await ctx.server();
      const socket = ctx.client("/", { ...opts, ...RECONNECT });
      const welcome = waitFor(socket, "welcome", 5_000, '"welcome"');
      await waitConnect(socket);
      const other = (await ctx.connect("/", opts)).socket;
      assert.deepEqual(await welcome, [{ sid: socket.id, nsp: "/", auth: {} }], "welcome without an offset");
      const id = socket.id;
      await join(socket, "r");

      const reconnected = waitFor(socket, "connect", 10_000, '"connect" after the automatic reconnection');
      await drop(socket);
      const items = collect(socket, "msg").items;
      // the client may already be back (as a new socket, outside "r"): either way this is never delivered
      other.emit("publish", "r", "while away");
      await reconnected;

      // the client leaves `recovered` undefined when the server sends no pid
      assert.notEqual(socket.recovered, true, "socket.recovered with recovery off");
      assert.notEqual(socket.id, id, "a new socket id");
      assert.deepEqual(await state(socket), { sid: socket.id, recovered: false, rooms: [socket.id] });

      await join(socket, "r");
      const after = waitFor(socket, "msg", 5_000, '"msg" after re-joining');
      other.emit("publish", "r", "after");
      assert.deepEqual(await after, ["after"], "no offset argument with recovery off");
      assert.deepEqual(items, [["after"]], "nothing from before the reconnection");
    }, TIMEOUT);
  });
}

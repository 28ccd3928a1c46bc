// The main interop suites (and recovery, the cluster and its recovery) once
// more with the msgpack parser: servers started
// with RIPTIDE__SOCKETIO__PARSER=msgpack (the harness passes the environment
// on to every server it starts) and clients created with
// `parser: require("socket.io-msgpack-parser")` (the harness's
// parserOptions()). The test bodies are the suites' own, imported, not copied;
// the default JSON runs stay in their files.
//
// Beside them, what only this parser shows: each packet is one binary
// WebSocket message (no attachment messages, no text), checked on the wire.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { emitAck, itest, parserOptions } from "../lib/harness.mjs";

process.env.RIPTIDE__SOCKETIO__PARSER = "msgpack";

await import("./events_and_acks.test.mjs");
await import("./binary.test.mjs");
await import("./rooms.test.mjs");
await import("./namespaces.test.mjs");
await import("./disconnect.test.mjs");
await import("./transports.test.mjs");
// Connection state recovery appends its offset to events already encoded,
// in this parser's encoding too; in a cluster through NATS and Redis.
await import("./recovery.test.mjs");
await import("./cluster.test.mjs");
await import("./cluster_recovery.test.mjs");

describe("msgpack parser on the wire", () => {
  itest("every packet is one binary WebSocket message, binary values inline", async (ctx) => {
    assert.ok(parserOptions().parser, "the clients use socket.io-msgpack-parser");
    await ctx.server();
    const socket = ctx.client("/", { transports: ["websocket"] });
    const frames = [];
    socket.io.on("open", () => {
      const ws = socket.io.engine.transport.ws;
      ws.addEventListener("message", (m) => frames.push(m.data));
    });
    await new Promise((resolve) => socket.once("welcome", resolve));
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    const [back] = await emitAck(socket, "echo", [bytes]);
    assert.ok(Buffer.from(back).equals(bytes), "the bytes come back");
    const sioFrames = frames.filter((f) => typeof f !== "string");
    const text = frames.filter((f) => typeof f === "string" && f !== "2");
    assert.deepEqual(text, [], "no text message but Engine.IO's pings");
    // welcome (event) and the ack: one binary message each, the ack's
    // bytes inside it.
    assert.equal(sioFrames.length >= 2, true, `binary messages: ${sioFrames.length}`);
    const ack = Buffer.from(sioFrames.at(-1));
    assert.ok(ack.includes(bytes), "the attachment is inside the ack's message");
  });
});

// Binary payloads: Buffers (alone, nested in objects and arrays, several
// attachments in one packet) keep their type and bytes in both directions.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { VARIANTS, assertSameWithBinary, emitAck, itest, waitFor } from "../lib/harness.mjs";

const bytes = (n, seed = 0) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

for (const [variant, opts] of [
  ["polling", VARIANTS.polling],
  ["websocket", VARIANTS.websocket],
  ["default (polling + upgrade)", VARIANTS.default],
]) {
  describe(`binary over ${variant}`, () => {
    itest("echo of a Buffer comes back as the same binary", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      for (const buf of [Buffer.from([0, 1, 2, 255]), Buffer.alloc(0), bytes(64 * 1024, 7)]) {
        const got = await emitAck(socket, "echo", [buf]);
        assertSameWithBinary(assert, got, [buf], `echo(<${buf.length} bytes>)`);
      }
      // a Uint8Array / ArrayBuffer is sent as binary too
      const u8 = new Uint8Array([9, 8, 7]);
      assertSameWithBinary(assert, await emitAck(socket, "echo", [u8]), [Buffer.from(u8)], "echo(Uint8Array)");
      assertSameWithBinary(assert, await emitAck(socket, "echo", [u8.buffer]), [Buffer.from(u8)], "echo(ArrayBuffer)");
    });

    itest("echo of buffers nested in objects and arrays", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      const obj = {
        name: "file",
        data: bytes(10, 1),
        meta: { thumb: bytes(3, 2), tags: ["a", "b"], size: 10 },
        parts: [bytes(5, 3), "text", { inner: bytes(1, 4) }, null],
      };
      assertSameWithBinary(assert, await emitAck(socket, "echo", [obj]), [obj], "echo(object)");

      const arr = [bytes(2, 5), [bytes(4, 6), [bytes(6, 7)]], 1, "s"];
      assertSameWithBinary(assert, await emitAck(socket, "echo", [arr]), [arr], "echo(array)");
    });

    itest("several attachments in one event", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      const args = [
        bytes(1, 1),
        "between",
        bytes(100, 2),
        { b: bytes(1000, 3), c: [bytes(7, 4), bytes(8, 5)] },
        bytes(0),
        42,
      ];
      assertSameWithBinary(assert, await emitAck(socket, "echo", args), args, "echo(6 attachments)");

      // many binary events in flight at once, each with its own attachments
      const pending = [];
      for (let i = 0; i < 30; i++) pending.push(emitAck(socket, "echo", [i, bytes(i + 1, i), { x: bytes(3, i) }], 8_000));
      const results = await Promise.all(pending);
      results.forEach((r, i) => assertSameWithBinary(assert, r, [i, bytes(i + 1, i), { x: bytes(3, i) }], `concurrent #${i}`));
    });

    itest("binary in a server-initiated emit (message -> message-back)", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      const payload = ["bin", bytes(16, 9), { nested: [bytes(2, 1)] }];
      const back = waitFor(socket, "message-back", 3_000, '"message-back"');
      socket.emit("message", ...payload);
      assertSameWithBinary(assert, await back, payload, "message-back");
    });

    itest("binary in a client acknowledgement (ask-client answered with buffers)", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      const answer = [bytes(5, 2), { deep: bytes(6, 3) }, "plain"];
      socket.on("question", (...args) => args.pop()(...answer));
      const [reply] = await emitAck(socket, "ask-client", [], 5_000);
      assertSameWithBinary(assert, reply, { answer }, "ask-client reply");
    });
  });
}

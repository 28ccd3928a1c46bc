// Events and acknowledgements in both directions: client->server acks (echo),
// plain server emits (message -> message-back) and server->client acks with
// and without a timeout (ask-client).

import assert from "node:assert/strict";
import { describe } from "node:test";
import { VARIANTS, emitAck, itest, parserOptions, waitFor } from "../lib/harness.mjs";

// notepack.io 2.2.0 (socket.io-msgpack-parser's encoder) writes an integral
// number of 2^64 or more as a wrapped uint64: `decode(encode(1e21))` is
// 3875820019684212700 in the client alone, whatever the server. So with that
// parser the large integer is one that fits.
const LARGE = parserOptions().parser ? 2 ** 63 : 1e21;

const CASES = [
  ["a string", ["hello"]],
  ["an empty string", [""]],
  ["a unicode string", ["ünïcödé ✓ 日本語 🚀"]],
  ["a string with protocol-looking content", ['2["fake",1]', "4{}", "42/x,"]],
  ["integers and floats", [0, 1, -1, 42, 3.5, -0.25, LARGE, Number.MAX_SAFE_INTEGER]],
  ["booleans", [true, false]],
  ["null", [null]],
  ["an object", [{ a: 1, b: "two", c: [1, 2, { d: null }], e: { f: { g: true } } }]],
  ["an empty object and array", [{}, []]],
  ["an array of mixed values", [[1, "two", null, false, { three: 3 }]]],
  ["many arguments of every kind", ["s", 1, null, true, { k: "v" }, [1, [2, [3]]], 2.5]],
  ["no argument", []],
  ["a 100 kB string", ["x".repeat(100_000)]],
];

for (const [variant, opts] of [
  ["websocket", VARIANTS.websocket],
  ["default (polling + upgrade)", VARIANTS.default],
]) {
  describe(`events and acks over ${variant}`, () => {
    itest("echo acks with the same arguments", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      for (const [name, args] of CASES) {
        assert.deepEqual(await emitAck(socket, "echo", args), args, `echo of ${name}`);
      }
    });

    itest("concurrent echoes are all acknowledged with their own arguments", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      const pending = [];
      for (let i = 0; i < 100; i++) pending.push(emitAck(socket, "echo", [i, { i }], 8_000));
      const results = await Promise.all(pending);
      results.forEach((r, i) => assert.deepEqual(r, [i, { i }]));
    });

    itest("message is answered by message-back with the same arguments", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      let back = waitFor(socket, "message-back", 3_000, '"message-back"');
      socket.send("a", 1, { x: true }, [null, "b"]); // emits "message"
      assert.deepEqual(await back, ["a", 1, { x: true }, [null, "b"]]);

      back = waitFor(socket, "message-back", 3_000, '"message-back"');
      socket.emit("message", "single");
      assert.deepEqual(await back, ["single"]);
    });

    itest("server-to-client ack: ask-client gets the client's ack arguments", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      const questions = [];
      socket.on("question", (...args) => {
        const ack = args.pop();
        assert.equal(typeof ack, "function", "the server's question expects an acknowledgement");
        questions.push(args);
        ack("yes", 42);
      });
      const [reply] = await emitAck(socket, "ask-client", [], 5_000);
      assert.deepEqual(reply, { answer: ["yes", 42] });
      assert.deepEqual(questions, [[1, "two"]], "question is emitted once with [1, \"two\"]");

      // again, with a structured answer, to check ack ids are not reused wrongly
      socket.off("question");
      socket.on("question", (...args) => args.pop()({ nested: [1, 2] }, null, "z"));
      const [reply2] = await emitAck(socket, "ask-client", [], 5_000);
      assert.deepEqual(reply2, { answer: [{ nested: [1, 2] }, null, "z"] });
    });

    itest("server-to-client ack timeout: an unanswered question gives {error: 'timeout'}", async (ctx) => {
      await ctx.server();
      const { socket } = await ctx.connect("/", opts);
      let asked = 0;
      socket.on("question", (...args) => {
        assert.equal(typeof args.at(-1), "function");
        asked += 1; // never acknowledge
      });
      const started = Date.now();
      const [reply] = await emitAck(socket, "ask-client", [], 6_000);
      const elapsed = Date.now() - started;
      assert.deepEqual(reply, { error: "timeout" });
      assert.equal(asked, 1, "the question reached the client");
      assert.ok(elapsed >= 1_700, `the server waited ~2 s before timing out (waited ${elapsed} ms)`);
      assert.ok(elapsed < 4_500, `the server timed out after ~2 s (took ${elapsed} ms)`);
      // the connection is still usable afterwards
      assert.deepEqual(await emitAck(socket, "echo", ["still here"]), ["still here"]);
    });
  });
}

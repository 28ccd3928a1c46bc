// Compression with the official client: WebSocket permessage-deflate
// (`engine.per_message_deflate`), negotiated by the client's own offer
// (`ws`, which engine.io-client uses in Node, offers it by default) and
// measured as bytes on the wire through a counting TCP proxy.

import assert from "node:assert/strict";
import net from "node:net";
import { describe } from "node:test";
import { VARIANTS, emitAck, itest, waitFor } from "../lib/harness.mjs";
import { freePort } from "../lib/server.mjs";

/** A TCP proxy to `port` that counts the bytes the server sends. */
async function countingProxy(t, port) {
  const counter = { down: 0 };
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    upstream.on("data", (chunk) => { counter.down += chunk.length; });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => { client.destroy(); upstream.destroy(); };
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
  });
  const p = await freePort();
  await new Promise((resolve) => server.listen(p, "127.0.0.1", resolve));
  t.after(() => server.close());
  return { url: `http://127.0.0.1:${p}`, counter };
}

// JSON the way applications send it: repetitive keys, some text.
const ITEM = { user: "someone@example.com", status: "online", note: "riptide compression check" };
const PAYLOAD = { items: Array.from({ length: 200 }, (_, i) => ({ ...ITEM, i })) };

/** Bytes the server sent for `rounds` echoes of PAYLOAD and one broadcast. */
async function traffic(ctx, srv, opts, rounds = 10) {
  const proxy = await countingProxy(ctx.t, srv.port);
  const { socket } = await ctx.connect("/", { ...VARIANTS.websocket, ...opts }, proxy);
  const before = proxy.counter.down;
  for (let i = 0; i < rounds; i++) {
    assert.deepEqual(await emitAck(socket, "echo", [PAYLOAD]), [PAYLOAD]);
  }
  const ws = socket.io.engine.transport.ws;
  const bytes = proxy.counter.down - before;
  socket.disconnect();
  // `ws` names the negotiated extensions; the parameters the server
  // answered with are on its (internal) extension object.
  const params = ws._extensions?.["permessage-deflate"]?.params ?? {};
  return { bytes, extensions: ws.extensions, params };
}

describe("compression", () => {
  itest("permessage-deflate is negotiated with the client's offer and cuts the bytes sent", async (ctx) => {
    const srv = await ctx.server({ env: { RIPTIDE__ENGINE__PER_MESSAGE_DEFLATE: "true" } });
    const on = await traffic(ctx, srv, {});
    const off = await traffic(ctx, srv, { perMessageDeflate: false });
    assert.match(on.extensions, /^permessage-deflate/, "negotiated");
    assert.equal(on.params.server_no_context_takeover, true, JSON.stringify(on.params));
    assert.equal(on.params.client_no_context_takeover, true, JSON.stringify(on.params));
    assert.equal(off.extensions, "", "a client that offers nothing gets nothing");
    const json = JSON.stringify(PAYLOAD).length;
    ctx.t.diagnostic(`10 echoes of ${json} bytes of JSON: ${on.bytes} bytes sent compressed, ${off.bytes} uncompressed`);
    assert.ok(off.bytes > 10 * json, `uncompressed: ${off.bytes} bytes for 10 echoes of ${json}`);
    assert.ok(on.bytes < off.bytes / 5, `compressed ${on.bytes} bytes against ${off.bytes} uncompressed`);
  });

  itest("a broadcast reaches compressed and uncompressed receivers alike", async (ctx) => {
    const srv = await ctx.server({ env: { RIPTIDE__ENGINE__PER_MESSAGE_DEFLATE: "true" } });
    const a = (await ctx.connect("/", VARIANTS.websocket)).socket;
    const b = (await ctx.connect("/", { ...VARIANTS.websocket, perMessageDeflate: false })).socket;
    const c = (await ctx.connect("/", VARIANTS.polling)).socket;
    for (const s of [a, b, c]) await emitAck(s, "join", ["news"]);
    const got = [a, b, c].map((s) => waitFor(s, "msg", 5_000, "the broadcast"));
    a.emit("publish", "news", PAYLOAD);
    for (const [payload] of await Promise.all(got)) assert.deepEqual(payload, PAYLOAD);
    assert.match(a.io.engine.transport.ws.extensions, /permessage-deflate/);
    assert.equal(b.io.engine.transport.ws.extensions, "");
  });

  itest("with per_message_deflate off (the default) the offer is declined", async (ctx) => {
    const srv = await ctx.server();
    const on = await traffic(ctx, srv, {}, 1);
    assert.equal(on.extensions, "");
  });
});

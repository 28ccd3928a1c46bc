// server.tls: HTTPS and WSS on the node's own listener. The test makes a
// self-signed certificate with openssl (for 127.0.0.1 and localhost), starts
// the interop server with it, and connects the official client over
// https:// trusting only that certificate: polling, the upgrade to wss://,
// WebSocket only, binary both ways. A client that does not trust the
// certificate is refused by its own TLS check, and a plain-HTTP request to
// the TLS port gets no Engine.IO answer.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, before, after } from "node:test";
import { emitAck, itest, waitConnectError, waitFor } from "../lib/harness.mjs";

let dir;
let ca;
let env;

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "riptide-tls-"));
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=riptide-test",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { stdio: "ignore" });
  ca = readFileSync(cert, "utf8");
  env = { RIPTIDE__SERVER__TLS__CERT_FILE: cert, RIPTIDE__SERVER__TLS__KEY_FILE: key };
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe("TLS (server.tls)", () => {
  itest("the official client connects over https, upgrades to wss and exchanges binary", async (ctx) => {
    const srv = await ctx.server({ env, ca });
    assert.match(srv.url, /^https:/);
    const { socket } = await ctx.connect("/", { ca });
    const engine = socket.io.engine;
    if (engine.transport.name !== "websocket") await waitFor(engine, "upgrade", 5_000, "the upgrade to wss");
    assert.equal(engine.transport.name, "websocket");
    const bin = Buffer.from([0, 1, 2, 255]);
    const [back, text] = await emitAck(socket, "echo", [bin, "over tls"]);
    assert.deepEqual(Buffer.from(back), bin);
    assert.equal(text, "over tls");
  });

  for (const transports of [["polling"], ["websocket"]]) {
    itest(`${transports[0]} only over TLS`, async (ctx) => {
      await ctx.server({ env, ca });
      const { socket } = await ctx.connect("/", { ca, transports });
      assert.equal(socket.io.engine.transport.name, transports[0]);
      assert.deepEqual(await emitAck(socket, "echo", ["x", 1]), ["x", 1]);
      await emitAck(socket, "join", ["r"]);
      const got = waitFor(socket, "msg");
      socket.emit("publish", "r", "to the room");
      assert.deepEqual(await got, ["to the room"]);
    });
  }

  itest("a cluster node with TLS and forwarding on is refused at start, naming the setting", async (ctx) => {
    const started = ctx.server({
      env: { ...env, RIPTIDE__ADAPTER__KIND: "nats", RIPTIDE__ADAPTER__URL: "nats://127.0.0.1:1" },
      ca,
    });
    await assert.rejects(started, /exited before becoming healthy[\s\S]*cluster\.forward_polling/);
  });

  itest("a client that does not trust the certificate is refused; plain HTTP gets no Engine.IO answer", async (ctx) => {
    const srv = await ctx.server({ env, ca });
    const err = await waitConnectError(ctx.client("/", { transports: ["websocket"] }));
    assert.ok(err, "connect_error without the CA");
    const plain = srv.url.replace(/^https/, "http");
    const answer = await fetch(`${plain}/socket.io/?EIO=4&transport=polling`).then(
      (r) => r.text().then((t) => ({ status: r.status, text: t })),
      (e) => ({ error: e }),
    );
    assert.ok(answer.error || !answer.text.startsWith("0{"), `no handshake over plain HTTP: ${JSON.stringify(answer)}`);
    // The node is unharmed.
    const { socket } = await ctx.connect("/", { ca });
    assert.deepEqual(await emitAck(socket, "echo", [1]), [1]);
  });
});

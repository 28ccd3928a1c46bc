// Helpers for the service-mode tests (/work/shared/SERVICE.md): the
// configuration every test starts from, JWT minting (HS*, RS256, ES256 and
// hand-made ones such as alg "none"), the HTTP API, and connecting a client
// with a token.

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import jwt from "jsonwebtoken";
import { handled, safeJson, sleep, until, waitConnect, waitConnectError, withTimeout } from "./harness.mjs";

/** auth.hmac_secret of every test server (at least 32 bytes). */
export const SECRET = "riptide-interop-hmac-secret-0123456789abcdef";
/** api.key of every test server (at least 16 characters). */
export const API_KEY = "riptide-interop-api-key-0123456789";

/** Public channel patterns and the client-publishable ones of the test servers. */
export const PUBLIC = "news,alerts.*,chat.*,long.*";
export const CLIENT_PUBLISH = "chat.*";

/** The environment of a service-mode node; `extra` overrides. */
export function serviceEnv(extra = {}) {
  return {
    RIPTIDE__APP__MODE: "service",
    RIPTIDE__AUTH__HMAC_SECRET: SECRET,
    RIPTIDE__API__KEY: API_KEY,
    RIPTIDE__AUTH__REFRESH_AHEAD_MS: "1000",
    RIPTIDE__CHANNELS__PUBLIC: PUBLIC,
    RIPTIDE__CHANNELS__CLIENT_PUBLISH: CLIENT_PUBLISH,
    ...extra,
  };
}

/** Start a service-mode node owned by the test. */
export function startNode(ctx, extra = {}) {
  return ctx.service({ env: serviceEnv(extra) });
}

// ---------------------------------------------------------------------------
// Tokens

export const nowS = () => Math.floor(Date.now() / 1000);

/**
 * A signed JWT. `claims` go into the payload (`sub` defaults to "42"; pass
 * `sub: undefined` to leave it out); `iat` defaults to now, `exp` to now +
 * `expIn` seconds (default 3600; `expIn: null` leaves exp out).
 * `alg` (default HS256) with `key` (default SECRET; a PEM private key for RS256/ES256).
 */
export function mint(claims = {}, { alg = "HS256", key = SECRET, expIn = 3600 } = {}) {
  const payload = { sub: "42", iat: nowS(), ...claims };
  if (expIn !== null && payload.exp === undefined) payload.exp = nowS() + expIn;
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  // jsonwebtoken keeps a payload iat as is (and sets now when there is none)
  return jwt.sign(payload, key, { algorithm: alg });
}

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** A hand-made JWT: base64url(header).base64url(payload).signature (default: empty). */
export function rawJwt(header, payload, signature = "") {
  return `${b64url(header)}.${b64url(payload)}.${signature}`;
}

/** A fresh RSA or EC (P-256) key pair; the public key's PEM is written to a temp file. */
export function keyPair(t, kind = "rsa") {
  const { publicKey, privateKey } =
    kind === "rsa"
      ? generateKeyPairSync("rsa", { modulusLength: 2048 })
      : generateKeyPairSync("ec", { namedCurve: "P-256" });
  const dir = mkdtempSync(path.join(os.tmpdir(), "riptide-keys-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, `${kind}.pub.pem`);
  const publicPem = publicKey.export({ type: "spki", format: "pem" });
  writeFileSync(file, publicPem);
  return {
    file,
    publicPem,
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }),
  };
}

/** A file with `text` in a temp directory removed after the test. */
export function tempFile(t, name, text) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "riptide-file-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Sleep until the start of the next whole second (plus `margin` ms). */
export async function nextSecond(margin = 20) {
  await sleep(1000 - (Date.now() % 1000) + margin);
}

// ---------------------------------------------------------------------------
// Clients

/** A client with `token` in the CONNECT auth payload (websocket unless `opts` says otherwise). */
export function clientWith(ctx, srv, token, opts = {}) {
  return ctx.client("/", { transports: ["websocket"], ...(token === undefined ? {} : { auth: { token } }), ...opts }, srv);
}

/** Connect a client with `token`; resolves with the connected socket. */
export async function connectWith(ctx, srv, token, opts = {}, ms = 5_000) {
  const socket = clientWith(ctx, srv, token, opts);
  await waitConnect(socket, ms);
  return socket;
}

/** Connect as user `sub` with a fresh HS256 token (`claims` added). */
export function connectAs(ctx, srv, sub, claims = {}, opts = {}) {
  return connectWith(ctx, srv, mint({ sub, ...claims }), opts);
}

/** Connect with `token` and expect a refusal; resolves with the connect_error. */
export async function refusal(ctx, srv, token, opts = {}, ms = 5_000) {
  const socket = clientWith(ctx, srv, token, opts);
  const err = await waitConnectError(socket, ms);
  socket.disconnect();
  return err;
}

/** Assert a CONNECT_ERROR is `unauthorized` with `reason`. */
export function assertRefused(assert, err, reason, what = "") {
  assert.equal(err?.message, "unauthorized", `connect_error message ${what} (data: ${safeJson(err?.data)})`);
  assert.deepEqual(err?.data, { reason }, `connect_error data ${what}`);
}

/** Emit with an ack and resolve with the ack's FIRST argument. */
export function ack(socket, event, args = [], ms = 5_000) {
  return handled(new Promise((resolve, reject) => {
    socket.timeout(ms).emit(event, ...args, (err, first) => {
      if (err) reject(new Error(`no acknowledgement for "${event}" ${safeJson(args).slice(0, 200)} within ${ms} ms`));
      else resolve(first);
    });
  }));
}

/** Subscribe and assert everything was accepted. */
export async function subscribe(assert, socket, channels) {
  const list = Array.isArray(channels) ? channels : [channels];
  const res = await ack(socket, "subscribe", [channels]);
  assert.deepEqual(
    { ok: [...(res?.ok ?? [])].sort(), refused: res?.refused ?? [] },
    { ok: [...list].sort(), refused: [] },
    `subscribe ${safeJson(channels)} answered ${safeJson(res)}`,
  );
  return res;
}

/** Wait for the client to be disconnected; resolves with the reason. */
export function waitDisconnect(socket, ms = 5_000, what = "disconnect") {
  if (!socket.connected) return Promise.resolve("(already disconnected)");
  return withTimeout(new Promise((resolve) => socket.once("disconnect", (reason) => resolve(reason))), ms, what);
}

// ---------------------------------------------------------------------------
// The HTTP API

/**
 * One HTTP request to `srv`. `body`: an object (sent as JSON), a string or a
 * Buffer (sent as is), or undefined (none). `key`: the API key (null = no
 * Authorization header). Resolves with {status, body (parsed JSON, or the
 * text when it is not JSON), text, headers}.
 */
export function api(srv, method, urlPath, body, { key = API_KEY, headers = {}, ms = 10_000 } = {}) {
  const payload =
    body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
  const hdrs = { connection: "close", ...headers };
  if (key !== null) hdrs.authorization = `Bearer ${key}`;
  if (payload !== undefined) {
    hdrs["content-type"] ??= "application/json";
    hdrs["content-length"] = String(payload.length);
  }
  const what = `${method} ${urlPath} on port ${srv.port}`;
  return new Promise((resolve, reject) => {
    let answered = false;
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer to ${what} within ${ms} ms`));
    }, ms);
    const req = http.request(
      { host: "127.0.0.1", port: srv.port, method, path: urlPath, headers: hdrs, agent: false },
      (res) => {
        answered = true;
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        const done = () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode, body: parsed, text, headers: res.headers });
        };
        res.on("end", done);
        res.on("error", done);
        res.on("aborted", done);
      },
    );
    req.on("error", (err) => {
      // A server that answers (413) before reading a large body may close the
      // connection while we still write: the answer is what counts.
      if (answered) return;
      clearTimeout(timer);
      reject(new Error(`${what} failed before an answer: ${err.code ?? ""} ${err.message}`));
    });
    if (payload !== undefined) req.end(payload);
    else req.end();
  });
}

/** POST /api/<command> with `body`; resolves with {status, body}. */
export const post = (srv, command, body, opts) => api(srv, "POST", `/api/${command}`, body, opts);
/** GET /api/presence?room=<room>. */
export const presence = (srv, room, opts) => api(srv, "GET", `/api/presence?room=${encodeURIComponent(room)}`, undefined, opts);
/** GET /api/info. */
export const info = (srv, opts) => api(srv, "GET", "/api/info", undefined, opts);

/** POST /api/publish and assert 200 {"ok":true,...}; resolves with the body. */
export async function publish(assert, srv, body) {
  const res = await post(srv, "publish", body);
  assert.equal(res.status, 200, `POST /api/publish ${safeJson(body).slice(0, 200)} -> ${res.status} ${res.text.slice(0, 300)}`);
  assert.equal(res.body?.ok, true, `POST /api/publish answer ${res.text.slice(0, 300)}`);
  return res.body;
}

/** GET /health of `srv`, parsed. */
export async function health(srv) {
  const res = await api(srv, "GET", "/health", undefined, { key: null });
  return res.body;
}

/** The cluster node id of `srv` (GET /health: adapter.node). */
export async function nodeId(srv) {
  const h = await health(srv);
  const id = h?.adapter?.node;
  if (typeof id !== "string" || !id) throw new Error(`no adapter.node in GET /health of port ${srv.port}: ${safeJson(h)}`);
  return id;
}

/** Wait until every node's /health counts `peers` other nodes. */
export async function waitPeers(nodes, peers = nodes.length - 1, ms = 15_000) {
  const deadline = Date.now() + ms;
  let last = [];
  for (;;) {
    last = await Promise.all(nodes.map((n) => health(n).catch((e) => ({ error: e.message }))));
    if (last.every((h) => (h?.adapter?.peers ?? -1) >= peers)) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${peers} peer(s) on every node; /health: ${safeJson(last)}`);
    }
    await sleep(100);
  }
}

/** Collect `event` payloads (first argument) of `socket` into an array. */
export function payloads(socket, event) {
  const items = [];
  socket.on(event, (data) => items.push(data));
  return items;
}

/**
 * Connect `sub` on `connectTo` while live (not persisted) "note" messages are
 * published to user:<sub> through `publishTo` as fast as the API answers;
 * assert that every kept message (a number) arrives before the first live
 * one (a string), and the live ones in order. Resolves with what arrived.
 */
export async function keptBeforeLive(ctx, publishTo, connectTo, sub) {
  let stop = false;
  let n = 0;
  const pump = (async () => {
    while (!stop) {
      await publish(assert, publishTo, { rooms: [`user:${sub}`], event: "note", data: `live-${String(n++).padStart(5, "0")}` });
    }
  })();
  try {
    await sleep(50);
    const s = clientWith(ctx, connectTo, mint({ sub }));
    const got = payloads(s, "note");
    await waitConnect(s);
    await until(() => got.some((x) => typeof x === "string"), 5_000, () => `a live message after the connect (got ${safeJson(got)})`);
    await sleep(200);
    stop = true;
    await pump;
    await sleep(200);
    const firstLive = got.findIndex((x) => typeof x === "string");
    const lastKept = got.findLastIndex((x) => typeof x === "number");
    assert.ok(lastKept < firstLive, `every kept message before the first live one: ${safeJson(got)}`);
    const live = got.filter((x) => typeof x === "string");
    assert.deepEqual(live, [...live].sort(), "live messages in order");
    assert.equal(new Set(live).size, live.length, "live messages once");
    return got;
  } finally {
    stop = true;
    await pump.catch(() => {});
  }
}

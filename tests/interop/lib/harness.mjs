// Test harness: a `node:test` wrapper that owns the servers and clients of one
// test (and always closes them), plus small promise helpers where every wait is
// bounded by a timeout with a clear message.

import { test } from "node:test";
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { startServer, startService, tail } from "./server.mjs";

/** Client transport settings the transport-sensitive tests run under. */
export const VARIANTS = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"] },
  // default client settings: HTTP long-polling first, then upgrade to WebSocket
  default: {},
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The client options that pick the parser the servers of this process speak:
 * with RIPTIDE__SOCKETIO__PARSER=msgpack (inherited by every server the
 * harness starts) the clients use socket.io-msgpack-parser, otherwise the
 * default parser. test/msgpack.test.mjs sets it and runs the main suites again.
 */
export function parserOptions() {
  return process.env.RIPTIDE__SOCKETIO__PARSER === "msgpack" ? { parser: msgpackParser } : {};
}

// ---------------------------------------------------------------------------
// Waiting helpers

/**
 * Resolve with the arguments (array) of the next `event` emitted by `emitter`;
 * reject after `ms` with a message naming `what`.
 */
export function waitFor(emitter, event, ms = 5_000, what = `"${event}"`) {
  return handled(new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    function listener(...args) {
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args);
    }
    emitter.on(event, listener);
  }));
}

/**
 * Mark a promise as handled so that it never becomes an "unhandledRejection"
 * when a test fails before awaiting it; awaiting it still throws.
 */
export function handled(promise) {
  promise.catch(() => {});
  return promise;
}

/** Resolve after `ms` if `event` is NOT emitted by `emitter` meanwhile, reject otherwise. */
export function expectNo(emitter, event, ms = 300, what = `"${event}"`) {
  return handled(new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      resolve();
    }, ms);
    function listener(...args) {
      clearTimeout(timer);
      emitter.off(event, listener);
      reject(new Error(`unexpected ${what} within ${ms} ms: ${safeJson(args)}`));
    }
    emitter.on(event, listener);
  }));
}

/** Collect every emission of `event` into an array (returns {items, stop()}). */
export function collect(emitter, event) {
  const items = [];
  const listener = (...args) => items.push(args);
  emitter.on(event, listener);
  return { items, stop: () => emitter.off(event, listener) };
}

/** Resolve once `predicate()` is true (polled every 10 ms), reject after `ms`. */
export async function until(predicate, ms, what) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`);
    }
    await sleep(10);
  }
}

/** Race a promise against a timeout. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Emit `event` with `args` and an acknowledgement callback; resolve with the
 * array of the arguments the server acknowledged with.
 */
export function emitAck(socket, event, args = [], ms = 5_000) {
  return new Promise((resolve, reject) => {
    socket.timeout(ms).emit(event, ...args, (err, ...response) => {
      if (err) reject(new Error(`no acknowledgement for "${event}" within ${ms} ms (${err.message})`));
      else resolve(response);
    });
  });
}

/** Wait until `socket` is connected to its namespace (rejects on connect_error). */
export function waitConnect(socket, ms = 5_000) {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${ms} ms waiting for "connect" on namespace ${socket.nsp}`));
    }, ms);
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const onError = (err) => {
      cleanup();
      const e = new Error(
        `connect_error on namespace ${socket.nsp}: ${err?.message} ` +
          `(data: ${safeJson(err?.data)}, description: ${safeJson(err?.description?.message ?? err?.description)})`,
      );
      e.cause = err;
      reject(e);
    };
    function cleanup() {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
    }
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

/** Wait for a `connect_error` (rejects if the socket connects instead). */
export function waitConnectError(socket, ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${ms} ms waiting for "connect_error" on namespace ${socket.nsp}`));
    }, ms);
    const onConnect = () => {
      cleanup();
      reject(new Error(`namespace ${socket.nsp} connected, but a connect_error was expected`));
    };
    const onError = (err) => {
      cleanup();
      resolve(err);
    };
    function cleanup() {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
    }
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

export function safeJson(v) {
  try {
    return JSON.stringify(v, (_k, x) =>
      Buffer.isBuffer(x) || x instanceof ArrayBuffer || ArrayBuffer.isView(x)
        ? `<binary ${x.byteLength} bytes>`
        : x,
    );
  } catch {
    return String(v);
  }
}

// ---------------------------------------------------------------------------
// Per-test context

export class Ctx {
  constructor(t) {
    this.t = t;
    this.servers = [];
    this.sockets = [];
    this.managers = new Set();
    this.closed = false;
  }

  /** Start a server owned by this test (stopped at the end of the test). */
  async server(options = {}) {
    const srv = await startServer(options);
    this.servers.push(srv);
    return srv;
  }

  /**
   * Start the `riptide` binary (lib/server.mjs startService) owned by this
   * test: `ctx.service({ env })`.
   */
  async service(options = {}) {
    const srv = await startService(options);
    this.servers.push(srv);
    return srv;
  }

  /** The test's first server. */
  get srv() {
    if (!this.servers.length) throw new Error("no server started in this test");
    return this.servers[0];
  }

  /**
   * Create a client socket to `nsp` of `srv` (default: the first server).
   * Defaults: a new Manager (forceNew), no reconnection, 5 s connect timeout,
   * unref'd timers so a forgotten client can never keep the process alive.
   */
  client(nsp = "/", opts = {}, srv = this.srv) {
    const url = srv.url + (nsp === "/" ? "" : nsp);
    const socket = io(url, {
      forceNew: true,
      reconnection: false,
      timeout: 5_000,
      autoUnref: true,
      ...parserOptions(),
      ...opts,
    });
    this.sockets.push(socket);
    this.managers.add(socket.io);
    return socket;
  }

  /**
   * Create a client, wait for it to connect and for the server's `welcome`.
   * Resolves with {socket, welcome}.
   */
  async connect(nsp = "/", opts = {}, srv = this.srv) {
    const socket = this.client(nsp, opts, srv);
    const welcome = waitFor(socket, "welcome", 5_000, `"welcome" on namespace ${nsp}`);
    await waitConnect(socket);
    const [payload] = await welcome;
    return { socket, welcome: payload };
  }

  dumpLogs() {
    for (const [i, srv] of this.servers.entries()) {
      console.error(
        `\n===== server #${i} (port ${srv.port}) output for failed test "${this.t.name}" =====\n` +
          tail(srv.logs(), 200) +
          `\n===== end of server #${i} output =====`,
      );
    }
  }

  async cleanup() {
    if (this.closed) return;
    this.closed = true;
    for (const socket of this.sockets) {
      try {
        socket.io.reconnection(false);
        socket.disconnect();
      } catch {
        // ignore
      }
    }
    for (const manager of this.managers) {
      try {
        manager.reconnection(false);
        manager.disconnect();
        manager.engine?.close();
      } catch {
        // ignore
      }
    }
    // let the close packets leave before the servers go away
    await sleep(20);
    await Promise.all(this.servers.map((s) => s.stop().catch(() => {})));
  }
}

/**
 * Declare a test that gets a Ctx: `itest(name, async (ctx, t) => {...})`.
 * Servers and clients are always closed; on failure the servers' output is printed.
 */
export function itest(name, fn, { timeout = 20_000 } = {}) {
  return test(name, { timeout }, async (t) => {
    const ctx = new Ctx(t);
    t.after(() => ctx.cleanup());
    try {
      await fn(ctx, t);
    } catch (err) {
      ctx.dumpLogs();
      throw err;
    } finally {
      await ctx.cleanup();
    }
  });
}

/** Convert a received binary value to a Buffer, failing if it is not binary. */
export function asBuffer(value, where = "value") {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new Error(`expected binary data at ${where}, got ${safeJson(value)}`);
}

/**
 * Deep-compare `actual` with `expected` where every binary in `expected` must be
 * binary (Buffer/ArrayBuffer/view) with the same bytes in `actual`.
 */
export function assertSameWithBinary(assert, actual, expected, where = "args") {
  if (Buffer.isBuffer(expected) || expected instanceof ArrayBuffer || ArrayBuffer.isView(expected)) {
    const got = asBuffer(actual, where);
    const want = asBuffer(expected, where);
    assert.ok(got.equals(want), `binary at ${where} differs: got ${got.length} bytes, want ${want.length}`);
    return;
  }
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `expected an array at ${where}, got ${safeJson(actual)}`);
    assert.equal(actual.length, expected.length, `array length at ${where}`);
    expected.forEach((e, i) => assertSameWithBinary(assert, actual[i], e, `${where}[${i}]`));
    return;
  }
  if (expected !== null && typeof expected === "object") {
    assert.ok(
      actual !== null && typeof actual === "object" && !Array.isArray(actual),
      `expected an object at ${where}, got ${safeJson(actual)}`,
    );
    assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `keys at ${where}`);
    for (const k of Object.keys(expected)) assertSameWithBinary(assert, actual[k], expected[k], `${where}.${k}`);
    return;
  }
  assert.deepEqual(actual, expected, `value at ${where}`);
}

// Service mode (/work/shared/SERVICE.md) across a cluster: two `riptide`
// nodes in service mode joined through a real NATS (JetStream) or Redis
// server started by the test on a free port. Subscriptions in effect on every
// node before their ack, client publish, presence, info and user:emit across
// nodes, /api/disconnect and /api/revoke across nodes (also for a node that
// was down during the revocation), offline delivery stored through one node
// and delivered by the other, offline messages surviving a restart of both
// nodes, a cluster-wide request while one node is frozen (SIGSTOP), and, with
// NATS, the API as request/reply on the bus.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { connect as natsConnect, StringCodec } from "nats";
import { startBroker } from "./brokers.mjs";
import { collect, expectNo, itest, safeJson, sleep, until, waitConnect, waitFor } from "./harness.mjs";
import {
  ack,
  assertRefused,
  clientWith,
  connectAs,
  connectWith,
  info,
  keptBeforeLive,
  mint,
  nextSecond,
  nodeId,
  nowS,
  post,
  presence,
  publish,
  refusal,
  serviceEnv,
  subscribe,
  waitDisconnect,
  waitPeers,
} from "./service.mjs";

const TIMEOUT = { timeout: 45_000 };

/** A broker of `kind` and two service nodes joined through it. */
async function twoNodes(ctx, t, kind, extra = {}) {
  const url = await startBroker(t, kind);
  const env = serviceEnv({
    RIPTIDE__ADAPTER__KIND: kind,
    RIPTIDE__ADAPTER__URL: url,
    // bounds every cluster-wide API request (a node that is down answers nothing)
    RIPTIDE__SOCKETIO__ACK_TIMEOUT_MS: "2000",
    ...extra,
  });
  const a = await ctx.service({ env });
  const b = await ctx.service({ env });
  await waitPeers([a, b]);
  return { a, b, url };
}

/** Assert a cross-node answer names no missing node (the field may be left out). */
function noneMissing(body, what) {
  assert.ok(
    body?.missing === undefined || (Array.isArray(body.missing) && body.missing.length === 0),
    `${what}: no node missing (got ${safeJson(body)})`,
  );
}

/** Strip a `missing: []` so that answers compare with deepEqual. */
function withoutEmptyMissing(body) {
  if (body && Array.isArray(body.missing) && body.missing.length === 0) {
    const { missing: _, ...rest } = body;
    return rest;
  }
  return body;
}

/** Persist `datas` to user:<sub> as event "note" through `srv`. */
async function persist(srv, sub, datas) {
  for (const data of datas) await publish(assert, srv, { rooms: [`user:${sub}`], event: "note", data, persist: true });
}

/** Connect as `sub` on `srv`, collecting "note" payloads from the first packet on. */
async function connectCollecting(ctx, srv, sub) {
  const s = clientWith(ctx, srv, mint({ sub }));
  const got = collect(s, "note");
  await waitConnect(s);
  return { s, got, notes: () => got.items.map((args) => args[0]) };
}

/** Time a request; resolves with [result, ms]. */
async function timed(promise) {
  const t0 = Date.now();
  const r = await promise;
  return [r, Date.now() - t0];
}

/** The service cluster suite through broker `kind` (nats | redis). */
export function serviceClusterSuite(kind) {
  describe(`service cluster through ${kind}`, () => {
    itest("subscribe on node A is in effect on node B before its ack", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind);
      const onA = await connectAs(ctx, a, "sa");
      const onB = await connectAs(ctx, b, "sb");
      for (let i = 0; i < 5; i++) {
        const ch = `alerts.x${i}`;
        await subscribe(assert, onA, ch);
        const got = waitFor(onA, "alert", 3_000, `"alert" on node A for ${ch}, published through node B right after the ack`);
        await publish(assert, b, { rooms: [ch], event: "alert", data: i });
        assert.deepEqual(await got, [i]);
      }
      // and the other way round
      await subscribe(assert, onB, "alerts.back");
      const got = waitFor(onB, "alert", 3_000, '"alert" on node B, published through node A right after the ack');
      await publish(assert, a, { rooms: ["alerts.back"], event: "alert", data: "back" });
      assert.deepEqual(await got, ["back"]);
      // after unsubscribe nothing arrives
      await ack(onA, "unsubscribe", ["alerts.x0"]);
      const none = expectNo(onA, "alert", 500, '"alert" after unsubscribe');
      await publish(assert, b, { rooms: ["alerts.x0"], event: "alert", data: "late" });
      await none;
    }, TIMEOUT);

    itest("a client's publish reaches every other subscriber on every node, not the sender", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind);
      const a1 = await connectAs(ctx, a, "p1");
      const a2 = await connectAs(ctx, a, "p2");
      const b1 = await connectAs(ctx, b, "p3");
      const b2 = await connectAs(ctx, b, "p4"); // not subscribed
      for (const s of [a1, a2, b1]) await subscribe(assert, s, "chat.room");

      let atB1 = waitFor(b1, "msg", 3_000, '"msg" on node B');
      let atA2 = waitFor(a2, "msg", 3_000, '"msg" on node A (other socket)');
      let notSender = expectNo(a1, "msg", 500, '"msg" back at the sender');
      const notB2 = expectNo(b2, "msg", 500, '"msg" on a non-subscriber of node B');
      assert.deepEqual(await ack(a1, "publish", ["chat.room", "msg", { from: "a1" }]), { ok: true });
      assert.deepEqual(await atB1, [{ from: "a1" }]);
      assert.deepEqual(await atA2, [{ from: "a1" }]);
      await notSender;
      await notB2;

      const atA1 = waitFor(a1, "msg", 3_000, '"msg" on node A from node B');
      atA2 = waitFor(a2, "msg", 3_000, '"msg" on node A (second) from node B');
      notSender = expectNo(b1, "msg", 500, '"msg" back at the sender on node B');
      assert.deepEqual(await ack(b1, "publish", ["chat.room", "msg", { from: "b1" }]), { ok: true });
      assert.deepEqual(await atA1, [{ from: "b1" }]);
      assert.deepEqual(await atA2, [{ from: "b1" }]);
      await notSender;

      // order across the broker
      const seen = collect(b1, "seq");
      for (let n = 0; n < 50; n++) a1.emit("publish", "chat.room", "seq", n);
      await until(() => seen.items.length >= 50, 10_000, () => `50 messages on node B (got ${seen.items.length})`);
      assert.deepEqual(seen.items.map((x) => x[0]), [...Array(50).keys()], "every message, once, in order");
    }, TIMEOUT);

    itest("presence and info count across nodes", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind);
      const [idA, idB] = [await nodeId(a), await nodeId(b)];
      assert.notEqual(idA, idB, "two node ids");
      const u1a = await connectAs(ctx, a, "u1");
      const u1b = await connectAs(ctx, a, "u1");
      const u2 = await connectAs(ctx, b, "u2");
      await connectAs(ctx, b, "u3"); // not subscribed
      for (const s of [u1a, u1b, u2]) await subscribe(assert, s, "news");
      const want = { sockets: 3, users: ["u1", "u2"] };
      assert.deepEqual(withoutEmptyMissing(await ack(u1a, "presence", ["news"])), want, "client presence on node A");
      assert.deepEqual(withoutEmptyMissing(await ack(u2, "presence", ["news"])), want, "client presence on node B");
      for (const [name, srv] of [["A", a], ["B", b]]) {
        const p = await presence(srv, "news");
        assert.equal(p.status, 200, p.text);
        assert.deepEqual(withoutEmptyMissing(p.body), want, `GET /api/presence?room=news on node ${name}`);
        const u = await presence(srv, "user:u1");
        assert.deepEqual(withoutEmptyMissing(u.body), { sockets: 2, users: ["u1"] }, `presence of user:u1 on node ${name}`);
        const i = await info(srv);
        assert.equal(i.status, 200, i.text);
        noneMissing(i.body, `GET /api/info on node ${name}`);
        const nodes = [...(i.body?.nodes ?? [])].sort((x, y) => (x.id < y.id ? -1 : 1));
        const expected = [{ id: idA, sockets: 2 }, { id: idB, sockets: 2 }].sort((x, y) => (x.id < y.id ? -1 : 1));
        assert.deepEqual(nodes, expected, `GET /api/info on node ${name}: ${i.text}`);
      }
    }, TIMEOUT);

    itest("user:emit reaches the user's other sockets on every node", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind);
      const s1 = await connectAs(ctx, a, "dev");
      const s2 = await connectAs(ctx, b, "dev");
      const s3 = await connectAs(ctx, b, "dev", {}, { transports: ["polling"] });
      const other = await connectAs(ctx, a, "dev-other");
      const checks = [
        [s1, [s2, s3], "from node A"],
        [s2, [s1, s3], "from node B"],
      ];
      for (const [from, to, what] of checks) {
        const gets = to.map((s, i) => waitFor(s, "read", 3_000, `"read" ${what} at device ${i}`));
        const notSelf = expectNo(from, "read", 500, `"read" back at the sender ${what}`);
        const notOther = expectNo(other, "read", 500, `"read" at another user ${what}`);
        assert.deepEqual(await ack(from, "user:emit", ["read", { what }]), { ok: true });
        for (const g of gets) assert.deepEqual(await g, [{ what }]);
        await notSelf;
        await notOther;
      }
    }, TIMEOUT);

    itest("/api/publish with except and ack_timeout_ms counts receivers on every node", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind);
      const onA = await connectAs(ctx, a, "k1");
      const onB = await connectAs(ctx, b, "k2");
      const silentB = await connectAs(ctx, b, "k3");
      const exceptB = await connectAs(ctx, b, "k4");
      for (const s of [onA, onB, silentB, exceptB]) await subscribe(assert, s, "news");
      const asked = [];
      onA.on("ask", (d, cb) => (asked.push("k1"), cb(1)));
      onB.on("ask", (d, cb) => (asked.push("k2"), cb(2)));
      silentB.on("ask", () => asked.push("k3"));
      exceptB.on("ask", (d, cb) => (asked.push("k4"), cb(4)));
      const [res, took] = await timed(post(a, "publish", { rooms: ["news"], except: ["user:k4"], event: "ask", data: 0, ack_timeout_ms: 800 }));
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(withoutEmptyMissing(res.body), { ok: true, acked: 2, unanswered: 1 }, `answer after ${took} ms`);
      assert.ok(took < 3_000, `answered in ${took} ms`);
      await sleep(100);
      assert.deepEqual(asked.sort(), ["k1", "k2", "k3"], "asked everyone but the excepted user, on both nodes");
    }, TIMEOUT);

    itest("/api/disconnect reaches the user's sockets on every node", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind);
      const token = mint({ sub: "dc" });
      const sockets = [await connectWith(ctx, a, token), await connectWith(ctx, b, token), await connectWith(ctx, b, token, { transports: ["polling"] })];
      const bystander = await connectAs(ctx, b, "dc-other");
      const gone = sockets.map((s, i) => waitDisconnect(s, 5_000, `socket ${i} of the user disconnected`));
      const res = await post(a, "disconnect", { user: "dc" });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body, { local: 1, remote: 2, missing: [] });
      assert.deepEqual(await Promise.all(gone), ["io server disconnect", "io server disconnect", "io server disconnect"]);
      assert.ok(bystander.connected, "another user stays");
      assert.deepEqual(withoutEmptyMissing(await ack(bystander, "presence", ["news"])), { error: "forbidden" }, "and answers");
    }, TIMEOUT);

    itest("/api/revoke disconnects on every node and refuses old tokens everywhere, also on a node that was down", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind);

      // both nodes up
      const old = mint({ sub: "rv", iat: nowS() - 1 });
      const onA = await connectWith(ctx, a, old);
      const onB = await connectWith(ctx, b, old);
      const gone = [waitDisconnect(onA, 5_000, "the revoked user on node A"), waitDisconnect(onB, 5_000, "the revoked user on node B")];
      const res = await post(b, "revoke", { user: "rv" });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body, { local: 1, remote: 1, missing: [] });
      assert.deepEqual(await Promise.all(gone), ["io server disconnect", "io server disconnect"]);
      assertRefused(assert, await refusal(ctx, a, old), "token revoked", "the old token on node A");
      assertRefused(assert, await refusal(ctx, b, old), "token revoked", "the old token on node B");

      // node B down during the revocation
      const old2 = mint({ sub: "rw", iat: nowS() - 1 });
      const rwA = await connectWith(ctx, a, old2);
      await connectWith(ctx, b, old2);
      await b.kill("SIGKILL");
      const goneA = waitDisconnect(rwA, 5_000, "the revoked user on node A (B down)");
      const [res2, took] = await timed(post(a, "revoke", { user: "rw" }));
      assert.equal(res2.status, 200, res2.text);
      assert.equal(res2.body?.local, 1, `revoke with node B down: ${res2.text} after ${took} ms`);
      assert.equal(await goneA, "io server disconnect");
      await b.start();
      assertRefused(assert, await refusal(ctx, b, old2), "token revoked", "the old token on node B, started after the revocation");
      assertRefused(assert, await refusal(ctx, a, old2), "token revoked", "the old token on node A");
      await nextSecond();
      await connectWith(ctx, b, mint({ sub: "rw" }));
      await connectWith(ctx, a, mint({ sub: "rw" }));
      await connectWith(ctx, b, mint({ sub: "rv" }));
    }, TIMEOUT);

    itest("offline messages kept through node A are delivered at connect on node B, once", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind);
      await persist(a, "off", ["m0", "m1", "m2"]);
      const first = await connectCollecting(ctx, b, "off");
      await until(() => first.got.items.length >= 3, 5_000, () => `the kept messages on node B (got ${safeJson(first.notes())})`);
      await publish(assert, a, { rooms: ["user:off"], event: "note", data: "live" });
      await until(() => first.got.items.length >= 4, 5_000, () => `the live message (got ${safeJson(first.notes())})`);
      await sleep(200);
      assert.deepEqual(first.notes(), ["m0", "m1", "m2", "live"]);
      first.s.disconnect();
      await sleep(300);
      const second = await connectCollecting(ctx, a, "off");
      await sleep(800);
      assert.deepEqual(second.notes(), [], "nothing again at a second connect (node A)");

      // a user connected on node B: delivered live there, and node A keeps nothing
      second.s.disconnect();
      const onB = await connectAs(ctx, b, "online");
      const live = waitFor(onB, "note", 3_000, "the persisted note, live on node B");
      await persist(a, "online", ["hello"]);
      assert.deepEqual(await live, ["hello"]);
      onB.disconnect();
      await sleep(300);
      const later = await connectCollecting(ctx, a, "online");
      await sleep(800);
      assert.deepEqual(later.notes(), [], "not kept for a user who was online on another node");
    }, TIMEOUT);

    itest("kept messages stored through node A come before live ones at a connect on node B", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind);
      const kept = [...Array(10).keys()];
      await persist(a, "race", kept);
      const got = await keptBeforeLive(ctx, a, b, "race");
      assert.deepEqual(got.filter((x) => typeof x === "number"), kept, "every kept message, once, in order");
    }, TIMEOUT);

    itest("kept messages older than history.ttl_ms are dropped in the broker", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind, { RIPTIDE__HISTORY__TTL_MS: "1000" });
      await persist(a, "ttl", ["old-1", "old-2"]);
      await sleep(1_600);
      await persist(a, "ttl", ["fresh"]);
      const onB = await connectCollecting(ctx, b, "ttl");
      await until(() => onB.got.items.length >= 1, 5_000, () => "the fresh message");
      await sleep(500);
      assert.deepEqual(onB.notes(), ["fresh"]);
    }, TIMEOUT);

    itest("offline messages survive kill -9 of both nodes", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind, { RIPTIDE__HISTORY__MAX_PER_USER: "3" });
      await persist(a, "crash", ["c0", "c1", "c2", "c3"]);
      await persist(b, "crash2", ["d0"]);
      await Promise.all([a.kill("SIGKILL"), b.kill("SIGKILL")]);
      await a.start();
      await b.start();
      const onB = await connectCollecting(ctx, b, "crash");
      await until(() => onB.got.items.length >= 3, 5_000, () => `the kept messages after the restart (got ${safeJson(onB.notes())})`);
      const onA = await connectCollecting(ctx, a, "crash2");
      await until(() => onA.got.items.length >= 1, 5_000, () => `the kept message of crash2 (got ${safeJson(onA.notes())})`);
      await sleep(300);
      assert.deepEqual(onB.notes(), ["c1", "c2", "c3"], "the newest max_per_user (3), in order");
      assert.deepEqual(onA.notes(), ["d0"]);
    }, TIMEOUT);

    itest("a cluster-wide request while node B is frozen (SIGSTOP) answers in time naming B missing", async (ctx, t) => {
      const { a, b } = await twoNodes(ctx, t, kind, { RIPTIDE__SOCKETIO__ACK_TIMEOUT_MS: "1000" });
      const idB = await nodeId(b);
      const idA = await nodeId(a);
      const onA = await connectAs(ctx, a, "fa");
      const onB = await connectAs(ctx, b, "fb");
      await subscribe(assert, onA, "news");
      await subscribe(assert, onB, "news");
      onA.on("ask", (_d, cb) => cb("ok"));
      onB.on("ask", (_d, cb) => cb("ok"));
      const pid = b.proc.pid;
      let stopped = false;
      const resume = () => {
        if (stopped) {
          stopped = false;
          try {
            process.kill(pid, "SIGCONT");
          } catch {
            // already gone
          }
        }
      };
      t.after(resume);
      process.kill(pid, "SIGSTOP");
      stopped = true;
      try {
        const failures = [];
        const check = async (what, request, extraCheck) => {
          try {
            const [res, took] = await timed(request());
            assert.equal(res.status, 200, `${what}: ${res.status} ${res.text}`);
            assert.ok(took < 4_000, `${what} answered in ${took} ms`);
            assert.ok(Array.isArray(res.body?.missing) && res.body.missing.includes(idB), `${what} names node B (${idB}) missing: ${res.text}`);
            assert.ok(!res.body.missing.includes(idA), `${what} does not name node A missing: ${res.text}`);
            extraCheck?.(res.body);
          } catch (err) {
            failures.push(`- ${err.message}`);
          }
        };
        // All at once, right after the freeze: within the cluster's heartbeat
        // timeout (3 s), after which B is no longer a peer at all (dead, not
        // missing) and requests stop waiting for it.
        await Promise.all([
          check("GET /api/presence?room=news", () => presence(a, "news"), (body) => {
            assert.equal(body.sockets, 1, `A's socket counted: ${safeJson(body)}`);
            assert.deepEqual(body.users, ["fa"]);
          }),
          check("GET /api/info", () => info(a), (body) => {
            assert.ok(body.nodes.some((n) => n.id === idA && n.sockets === 1), `node A listed: ${safeJson(body)}`);
          }),
          check("POST /api/disconnect", () => post(a, "disconnect", { user: "fb" }), (body) => {
            assert.equal(body.local, 0, safeJson(body));
          }),
          check("POST /api/publish with ack_timeout_ms", () => post(a, "publish", { rooms: ["news"], event: "ask", data: 1, ack_timeout_ms: 500 }), (body) => {
            assert.equal(body.ok, true, safeJson(body));
            assert.equal(body.acked, 1, `node A's socket acked: ${safeJson(body)}`);
          }),
          // the client's presence answer need not name missing nodes, but it must come in time
          (async () => {
            try {
              const [body, took] = await timed(ack(onA, "presence", ["news"], 5_000));
              assert.ok(took < 4_000, `client presence on node A answered in ${took} ms`);
              assert.equal(body?.sockets, 1, `client presence on node A: ${safeJson(body)}`);
            } catch (err) {
              failures.push(`- ${err.message}`);
            }
          })(),
        ]);
        assert.equal(failures.length, 0, `requests while node B is frozen:\n${failures.join("\n")}`);
      } finally {
        resume();
      }
    }, TIMEOUT);

    if (kind === "nats") {
      itest("the API as NATS request/reply on riptide.api.<command>", async (ctx, t) => {
        const { a, b, url } = await twoNodes(ctx, t, kind);
        const nc = await natsConnect({ servers: url, name: "riptide-interop-backend" });
        t.after(() => nc.close().catch(() => {}));
        const sc = StringCodec();
        const request = async (command, body) => {
          const msg = await nc.request(`riptide.api.${command}`, sc.encode(JSON.stringify(body)), { timeout: 5_000 });
          const text = sc.decode(msg.data);
          try {
            return JSON.parse(text);
          } catch {
            throw new Error(`riptide.api.${command} replied with non-JSON: ${text.slice(0, 300)}`);
          }
        };
        const onA = await connectAs(ctx, a, "n1");
        const onB = await connectAs(ctx, b, "n2");
        await subscribe(assert, onA, "news");
        await subscribe(assert, onB, "news");

        const atA = waitFor(onA, "bus", 3_000, '"bus" on node A');
        const atB = waitFor(onB, "bus", 3_000, '"bus" on node B');
        assert.deepEqual(await request("publish", { rooms: ["news"], event: "bus", data: { x: 1 } }), { ok: true });
        assert.deepEqual(await atA, [{ x: 1 }]);
        assert.deepEqual(await atB, [{ x: 1 }]);

        assert.deepEqual(withoutEmptyMissing(await request("presence", { room: "news" })), { sockets: 2, users: ["n1", "n2"] });
        const i = await request("info", {});
        assert.equal(i?.nodes?.length, 2, `riptide.api.info: ${safeJson(i)}`);

        const bad = await request("publish", { event: "e" });
        assert.ok(typeof bad?.error === "string" && bad.error.includes("rooms"), `a bad body: ${safeJson(bad)}`);

        const gone = waitDisconnect(onB, 5_000, "n2 disconnected through the bus");
        const d = await request("disconnect", { user: "n2" });
        assert.equal((d?.local ?? 0) + (d?.remote ?? 0), 1, `riptide.api.disconnect: ${safeJson(d)}`);
        noneMissing(d, "riptide.api.disconnect");
        assert.equal(await gone, "io server disconnect");

        const old = mint({ sub: "n1", iat: nowS() - 1 });
        const again = await connectWith(ctx, b, old);
        const gone2 = [waitDisconnect(onA, 5_000, "n1 on A revoked"), waitDisconnect(again, 5_000, "n1 on B revoked")];
        const r = await request("revoke", { user: "n1" });
        assert.equal((r?.local ?? 0) + (r?.remote ?? 0), 2, `riptide.api.revoke: ${safeJson(r)}`);
        assert.deepEqual(await Promise.all(gone2), ["io server disconnect", "io server disconnect"]);
        assertRefused(assert, await refusal(ctx, a, old), "token revoked", "after a revoke on the bus");
      }, TIMEOUT);
    }
  });
}

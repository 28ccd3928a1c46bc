// The official Socket.IO admin UI (@socket.io/admin-ui 0.5.x, its built
// ui/dist) in headless Chromium against two `riptide` nodes joined through
// NATS, the UI served from an origin of its own (allowed by [cors]). It logs
// in to node A (a wrong password first: "invalid credentials"), then sees
// both nodes, every socket of both, the rooms and the events, and its
// disconnect, join and leave buttons act on a socket of node B. A second
// pair of nodes (the interop server) has a dynamic namespace on node B
// only: the UI logged in to node A lists it and its socket, whose details
// show its data (`socket.data`) and follow its changes.
//
// The UI is the one the npm package ships (node_modules/@socket.io/admin-ui,
// a devDependency of this suite), or $ADMIN_UI_DIST; the browser is Debian's
// /usr/bin/chromium. Either missing fails the suite: it is never skipped.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { describe } from "node:test";
import { io } from "socket.io-client";
import { startBroker } from "../lib/brokers.mjs";
import { emitAck, itest, sleep, waitConnect, waitConnectError, waitFor } from "../lib/harness.mjs";
import { REPO_ROOT } from "../lib/server.mjs";

const CHROMIUM = "/usr/bin/chromium";
const USER = "admin";
const PASSWORD = "changeit";
// bcrypt of PASSWORD, cost 10 (bcryptjs.hashSync("changeit", 10)).
const HASH = "$2b$10$KFKnutJS6bPMPt7Icdj/muIVijgOd3NDY1izEcT/fm/4SMMqQhzeu";

function uiDist() {
  const candidates = [
    process.env.ADMIN_UI_DIST,
    path.join(REPO_ROOT, "tests", "interop", "node_modules", "@socket.io", "admin-ui", "ui", "dist"),
  ].filter(Boolean);
  return candidates.find((d) => existsSync(path.join(d, "index.html")));
}

const DIST = uiDist();
assert.ok(DIST, "the admin UI's ui/dist (npm ci in tests/interop, or set ADMIN_UI_DIST)");
assert.ok(existsSync(CHROMIUM), `${CHROMIUM} (apt install chromium)`);

const TYPES = {
  ".html": "text/html",
  ".js": "application/javascript",
  ".css": "text/css",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".map": "application/json",
};

/** ui/dist under /ui/ on a free port of 127.0.0.1; resolves with its origin. */
async function serveUi(t) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    let rel = url.pathname.replace(/^\/ui\/?/, "");
    if (rel === "") rel = "index.html";
    const file = path.join(DIST, path.normalize(rel));
    if (!url.pathname.startsWith("/ui/") || !file.startsWith(DIST) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  return `http://127.0.0.1:${server.address().port}`;
}

/** Resolve once the async `predicate()` is truthy (tried every 200 ms), reject after `ms`. */
async function eventually(predicate, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await predicate()) return true;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(200);
  }
}

async function health(node) {
  return (await fetch(`${node.url}/health`)).json();
}

/** The rows of the page's data table, as cell texts. */
function rows(page) {
  return page.$$eval("main .v-data-table tbody tr", (trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.innerText.trim())),
  );
}

/** Wait until the table's rows satisfy `ok` (re-read every 200 ms). */
async function waitRows(page, ok, what, ms = 10_000) {
  let last = [];
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    last = await rows(page);
    if (ok(last)) return last;
    await sleep(200);
  }
  throw new Error(`${what}: rows were ${JSON.stringify(last)}`);
}

/** Headless Chromium on the UI's login dialog (offline but for 127.0.0.1). */
async function openUi(t, ui) {
  const { default: puppeteer } = await import("puppeteer-core");
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu"],
  });
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 900 });
  // Offline: the UI's fonts and icon CSS come from CDNs; without them the
  // UI works (the icons' class names are still in the DOM).
  await page.setRequestInterception(true);
  page.on("request", (r) => (r.url().startsWith("http://127.0.0.1") ? r.continue() : r.abort()));
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${ui}/ui/`, { waitUntil: "load" });
  await page.waitForSelector(".v-dialog--active input", { visible: true });
  return { browser, page, pageErrors };
}

/** Type `value` into the login dialog's field labelled `label`. */
async function fillIn(page, label, value) {
  const id = await page.evaluate(
    (l) => [...document.querySelectorAll(".v-dialog--active label")].find((x) => x.textContent.trim() === l).htmlFor,
    label,
  );
  // Typed as a user types; checked, since a keystroke that lands
  // while the dialog is still settling is lost.
  for (let attempt = 0; attempt < 5; attempt++) {
    await page.click(`#${id}`, { clickCount: 3 });
    await page.keyboard.press("Backspace");
    await page.keyboard.type(value);
    if ((await page.$eval(`#${id}`, (e) => e.value)) === value) return;
    await sleep(200);
  }
  throw new Error(`could not type into ${label}`);
}

/** A node of a NATS cluster with the admin UI on, for the UI served at `ui`. */
function adminEnv(broker, ui) {
  return {
    RIPTIDE__ADAPTER__KIND: "nats",
    RIPTIDE__ADAPTER__URL: broker,
    RIPTIDE__ADMIN__ENABLED: "true",
    RIPTIDE__ADMIN__USERNAME: USER,
    RIPTIDE__ADMIN__PASSWORD_HASH: HASH,
    RIPTIDE__ADMIN__MAX_LOGINS_PER_S: "100",
    // The UI's client sends credentials: an exact origin, credentials allowed.
    RIPTIDE__CORS__ALLOWED_ORIGINS: ui,
    RIPTIDE__CORS__ALLOW_CREDENTIALS: "true",
  };
}

async function submitLogin(page) {
  await page.waitForSelector(".v-dialog--active button[type=submit]:not([disabled])", { visible: true });
  await page.click(".v-dialog--active button[type=submit]");
}

describe("the official admin UI", () => {
  itest(
    "logs in to one node of two and shows and manages both nodes' sockets, rooms and events",
    async (ctx, t) => {
      const ui = await serveUi(t);
      const broker = await startBroker(t, "nats");
      const env = adminEnv(broker, ui);
      const nodeA = await ctx.service({ env });
      const nodeB = await ctx.service({ env });
      const idA = (await health(nodeA)).adapter.node;
      const idB = (await health(nodeB)).adapter.node;
      await eventually(async () => (await health(nodeA)).adapter.peers === 1, 10_000, "the nodes meet");

      // The wire: the exact refusal, for a wrong password and a bad payload.
      for (const auth of [{ username: USER, password: "wrong" }, { username: USER }, { username: 7 }]) {
        const bad = ctx.client("/admin", { auth }, nodeA);
        const err = await waitConnectError(bad);
        assert.equal(err.message, "invalid credentials", JSON.stringify(auth));
      }

      // Users: one on node A, two on node B, all in "lobby".
      const a1 = ctx.client("/", { transports: ["websocket"] }, nodeA);
      const b1 = ctx.client("/", { transports: ["websocket"] }, nodeB);
      const b2 = ctx.client("/", { transports: ["websocket"] }, nodeB);
      await Promise.all([a1, b1, b2].map((s) => waitConnect(s)));
      for (const s of [a1, b1, b2]) await emitAck(s, "join", ["lobby"]);

      const { page, pageErrors } = await openUi(t, ui);
      const fill = (label, value) => fillIn(page, label, value);
      const submit = () => submitLogin(page);
      await fill("Server URL", nodeA.url);
      await fill("Username", USER);
      await fill("Password", "wrong");
      await submit();
      await page
        .waitForSelector(".v-dialog--active .red--text", { visible: true, timeout: 10_000 })
        .catch(async (e) => {
          console.error("login dialog:", await page.$eval(".v-dialog--active", (d) => d.innerText));
          throw e;
        });
      const error = await page.$eval(".v-dialog--active .red--text", (e) => e.innerText.trim());
      // The UI prints its own text only for the exact message; anything else is "Error: <message>".
      assert.equal(error, "Invalid credentials");

      await fill("Password", PASSWORD);
      await submit();
      await page.waitForSelector(".v-dialog--active", { hidden: true, timeout: 10_000 });
      const nav = await page.$$eval("nav .v-list-item", (els) => els.map((e) => e.getAttribute("href")));
      for (const route of ["#/sockets", "#/rooms", "#/events", "#/servers"]) {
        assert.ok(nav.includes(route), `development-mode navigation (${route}): ${nav}`);
      }

      // Servers: each node under its own id, healthy (server_stats every 2 s).
      await page.goto(`${ui}/ui/#/servers/`);
      await waitRows(
        page,
        (r) => [idA, idB].every((id) => r.some((row) => row[0] === id && row.includes("HEALTHY"))),
        "both nodes listed as healthy",
      );

      // Sockets of "/" on both nodes; one that connects now over polling
      // (on node B) shows as WebSocket once it upgraded (socket_updated).
      const b3 = ctx.client("/", {}, nodeB);
      await waitConnect(b3);
      await page.goto(`${ui}/ui/#/sockets/`);
      await waitRows(
        page,
        (r) =>
          [a1, b1, b2, b3].every((s) => r.some((row) => row[0] === s.id && row.includes("WebSocket"))) &&
          r.every((row) => row[1] === "127.0.0.1"),
        "every user socket listed, on WebSocket",
      );

      // Rooms: "lobby" with the three of them.
      await page.goto(`${ui}/ui/#/rooms/`);
      await waitRows(page, (r) => r.some((row) => row[0] === "lobby" && row[2] === "3"), "lobby with 3 sockets");
      b3.disconnect();

      // Events: what node B's socket sent and was sent (reported by node B).
      b2.emit("publish", "lobby", { hello: "admin" });
      await waitFor(a1, "msg");
      await page.goto(`${ui}/ui/#/events/`);
      await waitRows(
        page,
        (r) =>
          r.some((row) => row.includes("Event received") && row.join(" ").includes("publish")) &&
          r.some((row) => row.includes("Event sent") && row.join(" ").includes("msg")),
        "the publish received and the msg sent",
      );

      // Disconnect a socket of node B from its row on the Sockets page.
      await page.goto(`${ui}/ui/#/sockets/`);
      await waitRows(page, (r) => r.some((row) => row[0] === b1.id), "b1 listed");
      const b1id = b1.id;
      const gone = waitFor(b1, "disconnect", 10_000);
      const clicked = await page.evaluate((id) => {
        const row = [...document.querySelectorAll("main .v-data-table tbody tr")].find(
          (tr) => tr.querySelector("td")?.innerText.trim() === id,
        );
        const button = row?.querySelector("i.mdi-logout")?.closest("button");
        button?.click();
        return !!button;
      }, b1id);
      assert.ok(clicked, "b1's disconnect button");
      const [reason] = await gone;
      assert.equal(reason, "io server disconnect");
      // The click also reached the row, which opened b1's details: back to the list.
      await page.goto(`${ui}/ui/#/sockets/`);
      await waitRows(
        page,
        (r) => !r.some((row) => row[0] === b1id) && r.some((row) => row[0] === b2.id),
        "b1 gone from the list",
      );

      // Join b2 (node B) to "vip" from its details page, then make it leave.
      // As a user gets there: a click on its row of the Sockets page.
      await page.evaluate((id) => {
        [...document.querySelectorAll("main .v-data-table tbody tr")]
          .find((tr) => tr.querySelector("td")?.innerText.trim() === id)
          ?.click();
      }, b2.id);
      await page
        .waitForFunction(
          () => [...document.querySelectorAll("main label")].some((l) => /join a room/i.test(l.textContent)),
          { timeout: 10_000 },
        )
        .catch(async (e) => {
          console.error("socket page:", page.url(), await page.$eval("main", (m) => m.innerHTML.slice(-3000)));
          throw e;
        });
      const joinInput = await page.evaluate(() => {
        const label = [...document.querySelectorAll("main label")].find((l) => /join a room/i.test(l.textContent));
        return label?.htmlFor ?? null;
      });
      assert.ok(joinInput, "the Join a room field");
      await page.click(`#${joinInput}`);
      await page.keyboard.type("vip");
      await page.keyboard.press("Enter");
      const joinButton = await page.evaluate(() => {
        const b = document.querySelector("main i.mdi-tag-plus-outline")?.closest("button");
        b?.click();
        return !!b;
      });
      assert.ok(joinButton, "the join button");
      await eventually(async () => {
        const got = waitFor(b2, "msg", 500).catch(() => null);
        a1.emit("publish", "vip", { vip: true });
        return (await got)?.[0]?.vip === true;
      }, 10_000, "b2 in vip (a publish from node A reaches it)");

      const leaveButton = await eventually(
        () =>
          page.evaluate(() => {
            const item = [...document.querySelectorAll("main .v-list-item, main tr")].find((e) =>
              /(^|\s)vip(\s|$)/.test(e.innerText),
            );
            const b = item?.querySelector("i.mdi-tag-off-outline")?.closest("button");
            b?.click();
            return !!b;
          }),
        10_000,
        "vip's leave button",
      );
      assert.ok(leaveButton);
      await eventually(async () => {
        const got = waitFor(b2, "msg", 500).catch(() => null);
        a1.emit("publish", "vip", { vip: true });
        return (await got) === null;
      }, 10_000, "b2 out of vip");

      assert.deepEqual(pageErrors, [], "no errors in the UI");
      assert.ok(a1.connected && b2.connected);
    },
    { timeout: 90_000 },
  );

  itest(
    "shows a dynamic namespace that exists only on the other node, its sockets and their data",
    async (ctx, t) => {
      const ui = await serveUi(t);
      const broker = await startBroker(t, "nats");
      // The interop server (examples/interop.rs): dynamic namespaces
      // ^/dyn-[a-z0-9]+$ and `set-data` (the socket's JSON data).
      const env = adminEnv(broker, ui);
      const nodeA = await ctx.server({ env });
      const nodeB = await ctx.server({ env });
      await eventually(async () => (await health(nodeA)).adapter.peers === 1, 10_000, "the nodes meet");

      // On node B only, before the UI logs in: a socket of /dyn-ui whose
      // handler set its data. Node A never had /dyn-ui.
      const dyn = ctx.client("/dyn-ui", { transports: ["websocket"] }, nodeB);
      await waitConnect(dyn);
      const [set] = await emitAck(dyn, "set-data", [{ name: "on node B", level: 2 }]);
      assert.deepEqual(set, { name: "on node B", level: 2 });

      const { page, pageErrors } = await openUi(t, ui);
      await fillIn(page, "Server URL", nodeA.url);
      await fillIn(page, "Username", USER);
      await fillIn(page, "Password", PASSWORD);
      await submitLogin(page);
      await page.waitForSelector(".v-dialog--active", { hidden: true, timeout: 10_000 });

      // The Sockets page's namespace selector offers /dyn-ui (from all_sockets:
      // no event told of it since the login); chosen, it lists the socket.
      await page.goto(`${ui}/ui/#/sockets/`);
      await page.waitForSelector("main .v-select", { visible: true });
      await eventually(
        async () => {
          await page.click("main .v-select .v-select__slot");
          const picked = await page.evaluate(() => {
            const item = [...document.querySelectorAll(".v-menu__content.menuable__content__active .v-list-item")].find(
              (e) => e.innerText.trim() === "/dyn-ui",
            );
            item?.click();
            return !!item;
          });
          if (!picked) await page.keyboard.press("Escape");
          return picked;
        },
        10_000,
        "/dyn-ui in the namespace selector",
      );
      await waitRows(page, (r) => r.some((row) => row[0] === dyn.id), "the /dyn-ui socket of node B listed");

      // Its details show its data, and follow it when its handler sets it again.
      await page.evaluate((id) => {
        [...document.querySelectorAll("main .v-data-table tbody tr")]
          .find((tr) => tr.querySelector("td")?.innerText.trim() === id)
          ?.click();
      }, dyn.id);
      // The "Data" row of the socket's table.
      const shownData = () =>
        page.evaluate(() => {
          const row = [...document.querySelectorAll("main tr")].find(
            (tr) => tr.querySelector("td.key-column")?.innerText.trim() === "Data",
          );
          const code = row?.querySelector("pre code");
          return code ? JSON.parse(code.innerText) : null;
        });
      await eventually(
        async () => isDeepStrictEqual(await shownData(), { name: "on node B", level: 2 }),
        10_000,
        "the socket's data on its details page",
      ).catch(async (e) => {
        console.error("socket page:", page.url(), await shownData(), await page.$eval("main", (m) => m.innerText.slice(0, 2000)));
        throw e;
      });
      // (The UI merges an update into what it has, as lodash's merge: a key
      // the new data lacks would stay shown. Both keys change here.)
      await emitAck(dyn, "set-data", [{ name: "changed", level: 3 }]);
      await eventually(
        async () => isDeepStrictEqual(await shownData(), { name: "changed", level: 3 }),
        10_000,
        "the data as its handler set it again (socket_updated)",
      );

      assert.deepEqual(pageErrors, [], "no errors in the UI");
    },
    { timeout: 90_000 },
  );

  itest("a bad login, bad commands and unknown commands leave the node serving", async (ctx) => {
    const env = {
      RIPTIDE__ADMIN__ENABLED: "true",
      RIPTIDE__ADMIN__USERNAME: USER,
      RIPTIDE__ADMIN__PASSWORD_HASH: HASH,
      RIPTIDE__ADMIN__MAX_LOGINS_PER_S: "100",
    };
    const node = await ctx.service({ env });
    for (const auth of [{ username: USER, password: null }, { username: [USER] }, { sessionId: 5 }, { sessionId: "nope" }]) {
      const err = await waitConnectError(ctx.client("/admin", { auth }, node));
      assert.equal(err.message, "invalid credentials", JSON.stringify(auth));
    }
    const admin = ctx.client("/admin", { auth: { username: USER, password: PASSWORD } }, node);
    const session = waitFor(admin, "session");
    const config = waitFor(admin, "config");
    const all = waitFor(admin, "all_sockets");
    await waitConnect(admin);
    const [id] = await session;
    assert.match(id, /^[0-9a-f]{16}$/);
    assert.deepEqual((await config)[0].supportedFeatures, [
      "EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS", "ALL_EVENTS",
    ]);
    assert.ok((await all)[0].some((s) => s.id === admin.id && s.nsp === "/admin"));
    // The session id logs in without the password.
    await waitConnect(ctx.client("/admin", { auth: { sessionId: id } }, node));

    const user = ctx.client("/", {}, node);
    await waitConnect(user);
    for (const args of [
      ["_disconnect", 1, true, user.id],
      ["_disconnect", "/", "yes", user.id],
      ["join", "/", { room: 1 }, user.id],
      ["leave", "/", "r", ["x"]],
      ["emit", "/", null, "connect"],
      ["emit"],
      ["nope", "/"],
    ]) {
      admin.emit(...args);
    }
    const [stats] = await waitFor(admin, "server_stats", 5_000);
    assert.equal(stats.serverId.length > 0, true);
    assert.ok(user.connected, "no bad command reached the user");
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    const bad = metrics.match(/riptide_bad_input_total\{kind="admin_command"\} (\d+)/);
    assert.ok(bad && Number(bad[1]) >= 7, `bad commands counted: ${bad}`);
    const badAuth = metrics.match(/riptide_bad_input_total\{kind="admin_auth"\} (\d+)/);
    assert.ok(badAuth && Number(badAuth[1]) >= 2, `bad auth payloads counted: ${badAuth}`);
    // And the node still serves.
    const gone = waitFor(user, "disconnect");
    admin.emit("_disconnect", "/", false, user.id);
    assert.equal((await gone)[0], "io server disconnect");
  });
});

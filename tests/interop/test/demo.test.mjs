// The demo page the `riptide` binary serves at `/` (server.demo), in two tabs
// of Debian's headless Chromium driven by puppeteer-core: each tab loads the
// official client from the node itself, connects (`#status` reads
// `connected`), joins the room, and a message sent from one tab appears in
// the other. With server.demo = false there is no page.
//
// RIPTIDE_DEMO_SCREENSHOT=<file.png> keeps a screenshot of the receiving tab
// (docs/demo.png was made so).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, before, after } from "node:test";
import puppeteer from "puppeteer-core";
import { itest } from "../lib/harness.mjs";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
let browser;

before(async () => {
  assert.ok(CHROMIUM, "Debian's chromium is installed (apt install chromium)");
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in CI containers: Chromium's sandbox needs user namespaces.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
});

after(async () => {
  await browser?.close();
});

async function tab(url) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected", { timeout: 10_000, polling: 50 });
  await page.waitForFunction(() => document.getElementById("messages").textContent.includes("joined lobby"), { timeout: 10_000, polling: 50 });
  return { page, errors };
}

const items = (page) => page.$$eval("#messages li", (lis) => lis.map((li) => li.textContent));

describe("demo page (server.demo)", () => {
  itest("a message sent from one tab appears in the other", async (ctx) => {
    const srv = await ctx.service();
    const a = await tab(srv.url + "/");
    const b = await tab(srv.url + "/");
    // The page shows the transport it ended on: the upgrade happened.
    await a.page.waitForFunction(() => document.getElementById("transport").textContent === "websocket", { timeout: 10_000, polling: 50 });
    // A person types in the tab in front (input goes to the focused tab).
    await a.page.bringToFront();
    await a.page.type("#message", "hello from tab A");
    await a.page.click("#send");
    await b.page.waitForFunction(
      () => document.getElementById("messages").textContent.includes("hello from tab A"),
      { timeout: 10_000, polling: 50 },
    );
    // The sender is in the room too: it sees its own message once.
    await a.page.waitForFunction(
      () => document.getElementById("messages").textContent.includes("hello from tab A"),
      { timeout: 10_000, polling: 50 },
    );
    assert.equal((await items(b.page)).filter((t) => t.includes("hello from tab A")).length, 1);
    assert.equal(await b.page.$eval("#message", (el) => el.value), "", "nothing typed in tab B");
    if (process.env.RIPTIDE_DEMO_SCREENSHOT) {
      await b.page.bringToFront();
      await b.page.setViewport({ width: 800, height: 420 });
      await b.page.screenshot({ path: process.env.RIPTIDE_DEMO_SCREENSHOT });
    }
    assert.deepEqual([...a.errors, ...b.errors], [], "no script errors");
    await a.page.close();
    await b.page.close();
  }, { timeout: 60_000 });

  itest("server.demo = false serves no page", async (ctx) => {
    const srv = await ctx.service({ env: { RIPTIDE__SERVER__DEMO: "false" } });
    assert.equal((await fetch(srv.url + "/")).status, 404);
    assert.equal((await fetch(srv.url + "/demo/socket.io.min.js")).status, 404);
  });
});

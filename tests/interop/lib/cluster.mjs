// Two nodes joined through a real broker, and the figures the cluster tests
// read off a node's /metrics.

import { startBroker } from "./brokers.mjs";
import { sleep } from "./harness.mjs";

/**
 * A broker of `kind` (owned by test `t`) and two interop servers joined
 * through it (owned by `ctx`), with `env` added. With `meet`, wait until
 * their heartbeats have told each the other's address (forwarding needs it).
 */
export async function twoNodes(ctx, t, kind, env = {}, { meet = true } = {}) {
  const url = await startBroker(t, kind);
  const all = { RIPTIDE__ADAPTER__KIND: kind, RIPTIDE__ADAPTER__URL: url, ...env };
  const a = await ctx.server({ env: all });
  const b = await ctx.server({ env: all });
  if (meet) await sleep(1_500);
  return [a, b];
}

/** The value of one series (`name{labels}`) in `node`'s /metrics, 0 if absent. */
export async function metric(node, series) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.split(" ").pop()) : 0;
}

/** Requests `node` forwarded to their session's owner (every kind). */
export async function forwarded(node) {
  let n = 0;
  for (const kind of ["get", "post", "websocket"]) {
    n += await metric(node, `riptide_forwarded_requests_total{kind="${kind}"}`);
  }
  return n;
}

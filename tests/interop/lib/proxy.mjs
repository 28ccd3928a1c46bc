// A TCP proxy for tests that put a load balancer in front of nodes.

import net from "node:net";
import { freePort } from "./server.mjs";

/**
 * A TCP proxy on a free port: each new connection goes to the node
 * `choose(firstChunk)` names (a port), with that first chunk. Resolves with
 * its URL; closed when test `t` ends.
 */
export async function proxy(t, choose) {
  const server = net.createServer((client) => {
    client.once("data", (first) => {
      const upstream = net.connect(choose(first), "127.0.0.1", () => {
        upstream.write(first);
        client.pipe(upstream);
        upstream.pipe(client);
      });
      const end = () => { client.destroy(); upstream.destroy(); };
      client.on("error", end);
      upstream.on("error", end);
      client.on("close", end);
      upstream.on("close", end);
    });
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  t.after(() => server.close());
  return `http://127.0.0.1:${port}`;
}

// Bench fixture peer: the Node.js `socket.io` v4 server that Riptide is
// compared against. It implements the bench fixture contract (FIXTURE.md in
// the shared notes; summarised in benches/README.md) and nothing else:
//
//   - listens on 127.0.0.1:$PORT, path /socket.io/, Engine.IO v4, both the
//     websocket and the polling transport, main namespace only;
//   - join(room, ack)       -> socket joins `room`, then ack()
//   - publish(room, payload) -> emit "msg" payload to everyone in `room`,
//                               on every node of the cluster
//   - echo(payload, ack)    -> ack(payload)
//
// Single node:     npm ci && PORT=3100 node fixture.js
// Clustered node:  REDIS_URL=redis://127.0.0.1:6390 PORT=3101 node fixture.js
//                  (same REDIS_URL on every node; @socket.io/redis-adapter)
// With recovery:   ADAPTER=redis-streams REDIS_URL=... PORT=3101 node fixture.js
//                  (@socket.io/redis-streams-adapter and connectionStateRecovery,
//                  the reference's way to recover clients across nodes; a
//                  stopping node closes its connections with a recoverable
//                  reason, so its clients resume on another node)
//
// Prints `listening on 127.0.0.1:PORT` once ready; exits 0 on SIGTERM/SIGINT.

import { createServer } from "node:http";
import { Server } from "socket.io";

const HOST = "127.0.0.1";
const PORT = Number.parseInt(process.env.PORT ?? "3100", 10);
const REDIS_URL = process.env.REDIS_URL;
const STREAMS = process.env.ADAPTER === "redis-streams";
if (STREAMS && !REDIS_URL) {
  console.error("fixture: ADAPTER=redis-streams needs REDIS_URL");
  process.exit(2);
}
// Same listen backlog as Riptide (capped by net.core.somaxconn), so that
// bursts of thousands of connects are not dropped at the kernel.
const BACKLOG = 4096;

if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) {
  console.error(`fixture: invalid PORT ${JSON.stringify(process.env.PORT)}`);
  process.exit(2);
}

// Redis adapter (cluster mode): a pub and a sub client, both connected before
// the server listens. While starting, a refused connection is fatal instead
// of being retried forever; once running, node-redis reconnects as usual.
let adapter;
let redisClients = [];
if (REDIS_URL) {
  const { createClient } = await import("redis");
  const { createAdapter } = STREAMS
    ? await import("@socket.io/redis-streams-adapter")
    : await import("@socket.io/redis-adapter");
  let started = false;
  const pubClient = createClient({
    url: REDIS_URL,
    socket: {
      connectTimeout: 3000,
      reconnectStrategy: (retries, cause) =>
        started ? Math.min(retries * 100, 2000) : (cause ?? new Error("unreachable")),
    },
  });
  const subClient = pubClient.duplicate();
  // The streams adapter takes one client (it duplicates what it needs).
  redisClients = STREAMS ? [pubClient] : [pubClient, subClient];
  for (const c of redisClients) {
    c.on("error", (err) => {
      if (started) console.error(`fixture: redis error: ${err.message}`);
    });
  }
  try {
    await Promise.all(redisClients.map((c) => c.connect()));
  } catch (err) {
    console.error(`fixture: cannot connect to Redis at ${REDIS_URL}: ${err.message}`);
    process.exit(1);
  }
  started = true;
  // Same stream bound as Riptide's recovery.stream_max_len.
  adapter = STREAMS ? createAdapter(pubClient, { maxLen: 10_000 }) : createAdapter(pubClient, subClient);
}

// While Redis is away the adapter's publishes reject with nobody to catch
// them, and Node exits on an unhandled rejection: a production deployment
// logs them and goes on, so does the fixture (the cross-outage case).
process.on("unhandledRejection", (err) => {
  console.error(`fixture: unhandled rejection: ${err?.message ?? err}`);
});

const httpServer = createServer();
const io = new Server(httpServer, {
  path: "/socket.io/",
  transports: ["polling", "websocket"],
  serveClient: false,
  // maxHttpBufferSize stays at its default (1 MB per message), far above the
  // generator's payloads; Node's http server has no connection cap by default.
  ...(adapter ? { adapter } : {}),
  // Riptide's recovery defaults: 2 minutes, middlewares skipped.
  ...(STREAMS
    ? { connectionStateRecovery: { maxDisconnectionDuration: 120_000, skipMiddlewares: true } }
    : {}),
});

io.on("connection", (socket) => {
  // Registered synchronously: in place before the client can act on CONNECT.
  socket.on("join", async (room, ack) => {
    await socket.join(room); // the join is effective before the ack leaves
    if (typeof ack === "function") ack();
  });
  socket.on("publish", (room, payload) => {
    io.to(room).emit("msg", payload);
  });
  socket.on("echo", (payload, ack) => {
    if (typeof ack === "function") ack(payload);
  });
});

httpServer.on("error", (err) => {
  console.error(`fixture: cannot listen on ${HOST}:${PORT}: ${err.message}`);
  process.exit(1);
});

httpServer.listen({ host: HOST, port: PORT, backlog: BACKLOG }, () => {
  console.log(`listening on ${HOST}:${PORT}`);
});

function shutdown() {
  // Stop accepting, then disconnect clients in small slices for at most
  // 250 ms, so the exit is prompt even with 10,000 sockets open (io.close()
  // would tear them all down in one blocking pass, over a second at that
  // size). Whatever is still open when the process exits is closed by the OS.
  const deadline = Date.now() + 250;
  const exit = () => process.exit(0);
  setTimeout(exit, STREAMS ? 1500 : 300);
  httpServer.close();
  const sockets = [...io.sockets.sockets.values()];
  if (STREAMS) {
    // Close the transports (a "forced close", which the reference recovers
    // from; socket.disconnect() would end the sessions for good), then give
    // the adapter up to a second to save the sessions in Redis.
    for (const socket of sockets) socket.conn.close();
    setTimeout(() => Promise.allSettled(redisClients.map((c) => c.disconnect())).then(exit), 1000);
    return;
  }
  const step = () => {
    for (const socket of sockets.splice(0, 100)) socket.disconnect(true);
    if (sockets.length > 0 && Date.now() < deadline) return setImmediate(step);
    Promise.allSettled(redisClients.map((c) => c.disconnect())).then(exit);
  };
  step();
}
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);

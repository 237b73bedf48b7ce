// hello-node: a small HTTP app deployed behind the stack's gateway (examples/node-hello).
//
// What the platform asks of an app, whatever its language:
// - answer its readiness path (/health) once it can serve;
// - on SIGTERM, stop accepting, finish what is in flight, then exit (within stop_grace);
// - log to stdout, one line per event (JSON here), for the central log store.
"use strict";
const http = require("http");

const PORT = Number(process.env.PORT || 8080);
const VERSION = process.env.HELLO_VERSION || "1";
const started = Date.now();

function log(event, fields) {
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), service: "hello-node", event, ...fields }) + "\n");
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  // The gateway strips the route's prefix: GET /api/hello/ arrives here as GET /.
  const path = (req.url || "/").split("?")[0];
  if (path === "/health") {
    return reply(res, 200, { status: "ok", version: VERSION });
  }
  if (path === "/") {
    return reply(res, 200, { hello: "world", version: VERSION, uptime_ms: Date.now() - started });
  }
  reply(res, 404, { detail: "not found" });
});
server.keepAliveTimeout = 5000;

process.on("SIGTERM", () => {
  log("draining", {});
  server.close(() => {
    log("stopped", {});
    process.exit(0);
  });
  server.closeIdleConnections(); // keep-alive connections with nothing in flight close now
});

server.listen(PORT, "0.0.0.0", () => log("listening", { port: PORT, version: VERSION }));

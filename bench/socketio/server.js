"use strict";
// Socket.IO 4 server exposing the same HTTP publishing interface as herald,
// for side-by-side benchmarks. See README.md.

const http = require("http");
const { Server } = require("socket.io");

function parseArgs(argv) {
  const opts = { port: 8003, host: "127.0.0.1" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    let name = arg;
    let value;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq !== -1) {
      name = arg.slice(0, eq);
      value = arg.slice(eq + 1);
    }
    const take = () => {
      if (value !== undefined) return value;
      if (i + 1 >= argv.length) usage(`${name} needs a value`);
      return argv[++i];
    };
    switch (name) {
      case "--port": {
        const port = Number(take());
        if (!Number.isInteger(port) || port < 0 || port > 65535) usage("invalid --port");
        opts.port = port;
        break;
      }
      case "--host":
        opts.host = take();
        break;
      case "-h":
      case "--help":
        usage();
        break;
      default:
        usage(`unknown argument: ${arg}`);
    }
  }
  return opts;
}

function usage(error) {
  const text = "usage: node server.js [--port 8003] [--host 127.0.0.1]";
  if (error) {
    console.error(`${error}\n${text}`);
    process.exit(2);
  }
  console.log(text);
  process.exit(0);
}

const opts = parseArgs(process.argv.slice(2));
const MAX_BODY = 1e6;
let seq = 0;

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

function roomSize(room) {
  return io.sockets.adapter.rooms.get(room)?.size ?? 0;
}

function publish(form) {
  const message = form.get("message");
  if (!message) return [400, { error: "missing message" }];
  const id = form.get("id");
  const channel = form.get("channel");
  if (id !== null && channel !== null) return [400, { error: "id and channel are exclusive" }];

  const s = ++seq;
  let delivered;
  if (id !== null) {
    const room = "id:" + id;
    delivered = roomSize(room);
    io.to(room).emit("message", { seq: s, id, data: message });
  } else if (channel !== null) {
    const room = "ch:" + channel;
    delivered = roomSize(room);
    io.to(room).emit("message", { seq: s, channel, data: message });
  } else {
    delivered = io.engine.clientsCount;
    io.emit("message", { seq: s, data: message });
  }
  return [200, { delivered, seq: s }];
}

// Socket.IO wraps this listener: /socket.io/ requests never reach it.
function onRequest(req, res) {
  const path = req.url.split("?", 1)[0];
  if (req.method === "GET" && path === "/health") {
    return reply(res, 200, { sessions: io.engine.clientsCount });
  }
  if (req.method !== "POST" || path !== "/") {
    req.resume();
    return reply(res, 404, { error: "not found" });
  }
  const chunks = [];
  let size = 0;
  let tooLarge = false;
  req.on("data", (chunk) => {
    if (tooLarge) return;
    size += chunk.length;
    if (size > MAX_BODY) {
      tooLarge = true;
      chunks.length = 0;
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    if (tooLarge) return reply(res, 413, { error: "body too large" });
    const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
    const [status, body] = publish(form);
    reply(res, status, body);
  });
  req.on("error", () => res.destroy());
}

const httpServer = http.createServer(onRequest);
httpServer.keepAliveTimeout = 60000;
httpServer.headersTimeout = 65000;

const io = new Server(httpServer, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  pingInterval: 25000,
  pingTimeout: 20000,
  maxHttpBufferSize: 1e6,
});

// engine.io 6.x builds handshake.query with Object.fromEntries(), which keeps
// only the last of repeated keys (`channel=a&channel=b` -> "b"), so the
// channels are read from the raw handshake URL instead.
function handshakeChannels(socket) {
  const url = socket.request?.url;
  if (typeof url === "string") {
    const q = url.indexOf("?");
    if (q !== -1) return new URLSearchParams(url.slice(q + 1)).getAll("channel");
  }
  const value = socket.handshake.query.channel;
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

io.on("connection", (socket) => {
  const query = socket.handshake.query;
  const id = typeof query.id === "string" ? query.id : undefined;
  for (const channel of handshakeChannels(socket)) {
    if (typeof channel === "string") socket.join("ch:" + channel);
  }
  if (id !== undefined) {
    socket.data.id = id;
    socket.join("id:" + id);
    socket.emit("registered", id);
  }

  socket.on("register", (newId) => {
    if (typeof newId !== "string") return;
    if (socket.data.id !== undefined) socket.leave("id:" + socket.data.id);
    socket.data.id = newId;
    socket.join("id:" + newId);
    socket.emit("registered", newId);
  });

  socket.on("subscribe", (channel) => {
    if (typeof channel !== "string") return;
    socket.join("ch:" + channel);
    socket.emit("subscribed", channel);
  });
});

httpServer.listen(opts.port, opts.host, () => {
  const addr = httpServer.address();
  console.log(`socket.io ${require("socket.io/package.json").version} listening on ${addr.address}:${addr.port}`);
});

function shutdown() {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);

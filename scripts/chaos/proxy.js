// A TCP proxy between one herald node and Redis, on loopback: each
// direction's delay can change while connections are open (chunks keep
// their order), and every connection through it can be dropped at once.
"use strict";

const net = require("node:net");

// Writes chunks to `socket` no sooner than their due time, in order.
class DelayedPipe {
  constructor(socket) {
    this.socket = socket;
    this.queue = [];
    this.timer = null;
  }

  push(chunk, delayMs) {
    if (delayMs <= 0 && this.queue.length === 0) {
      this.socket.write(chunk);
      return;
    }
    const last = this.queue.length ? this.queue[this.queue.length - 1].at : 0;
    this.queue.push({ at: Math.max(Date.now() + delayMs, last), chunk });
    this.arm();
  }

  arm() {
    if (this.timer !== null || this.queue.length === 0) {
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      const now = Date.now();
      while (this.queue.length && this.queue[0].at <= now) {
        if (!this.socket.destroyed) {
          this.socket.write(this.queue.shift().chunk);
        } else {
          this.queue.shift();
        }
      }
      this.arm();
    }, Math.max(0, this.queue[0].at - Date.now()));
  }

  stop() {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.queue = [];
  }
}

class LatencyProxy {
  // Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`upstreamPort`.
  constructor(port, upstreamPort) {
    this.port = port;
    this.upstreamPort = upstreamPort;
    this.delay = { up: 0, down: 0 }; // up: herald → Redis; down: Redis → herald
    this.sockets = new Set();
    this.server = net.createServer((client) => this.accept(client));
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.port, "127.0.0.1", () => resolve());
    });
  }

  accept(client) {
    const upstream = net.connect(this.upstreamPort, "127.0.0.1");
    const toUpstream = new DelayedPipe(upstream);
    const toClient = new DelayedPipe(client);
    const pair = [client, upstream];
    const end = () => {
      toUpstream.stop();
      toClient.stop();
      for (const s of pair) {
        this.sockets.delete(s);
        s.destroy();
      }
    };
    for (const s of pair) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on("error", end);
      s.on("close", end);
    }
    client.on("data", (chunk) => toUpstream.push(chunk, this.delay.up));
    upstream.on("data", (chunk) => toClient.push(chunk, this.delay.down));
  }

  setDelay(upMs, downMs) {
    this.delay = { up: upMs, down: downMs };
  }

  // Cuts every connection through the proxy (both sides), as a network
  // failure between the node and Redis would.
  dropAll() {
    const count = this.sockets.size / 2;
    for (const s of [...this.sockets]) {
      s.destroy();
    }
    this.sockets.clear();
    return count;
  }

  close() {
    this.dropAll();
    this.server.close();
  }
}

module.exports = { LatencyProxy };

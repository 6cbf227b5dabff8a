// The chaos run's clients: static/herald.js itself, over a WebSocket
// (Node's global one), Server-Sent Events (the `eventsource` package) or
// long-polling (fetch), each kept on its one transport. Each records what
// the application sees (the "message" and "reset" events, with the
// position before and after) and, beneath herald.js, every message frame
// herald sent, so that a repeat or an out-of-order frame that herald.js
// would hide is still counted.
"use strict";

const path = require("node:path");
const { HeraldClient } = require(path.join(__dirname, "../../static/herald.js"));
const { EventSource } = require("eventsource");

// name, node, transport, id (or null), channels. Ids u1, u2 and u4 are
// held on both nodes; every client gets the broadcasts.
const CLIENTS = [
  ["ws-A1", "A", "websocket", "u1", ["news"]],
  ["ws-B1", "B", "websocket", "u1", ["sport"]],
  ["ws-B2", "B", "websocket", "u2", ["news", "sport"]],
  ["ws-A2", "A", "websocket", null, []],
  ["sse-A1", "A", "sse", "u2", ["sport"]],
  ["sse-B1", "B", "sse", "u3", ["news"]],
  ["sse-A2", "A", "sse", "u4", []],
  ["poll-A1", "A", "poll", "u3", ["news", "sport"]],
  ["poll-B1", "B", "poll", "u4", ["sport"]],
  ["poll-B2", "B", "poll", "u5", ["news"]],
];

const IDS = ["u1", "u2", "u3", "u4", "u5"];
const CHANNELS = ["news", "sport"];

class ChaosClient {
  constructor(spec, nodePort) {
    const [name, node, transport, id, channels] = spec;
    Object.assign(this, { name, node, transport, id, channels });
    this.received = []; // { seq, epoch, data } as the application saw them
    this.counts = new Map(); // data → times seen by the application
    this.resets = []; // { from: {epoch, seq}, to: {epoch, seq}, reason }
    this.seen = new Map(); // epoch → Set of seqs herald sent (raw)
    this.raw = 0;
    this.repeats = []; // raw frames whose seq this client already had
    this.outOfOrder = []; // raw frames below the position, never had before
    this.closes = new Map(); // close code → count
    this.client = new HeraldClient({
      url: "ws://127.0.0.1:" + nodePort + "/ws",
      id: id === null ? undefined : id,
      channels,
      transports: [transport],
      WebSocket: globalThis.WebSocket,
      EventSource,
      fetch: globalThis.fetch,
      storage: null,
      backoff: { initialMs: 500, maxMs: 5000 },
    });
    this.tap();
    this.client.on("message", (frame) => this.onMessage(frame));
    this.client.on("close", (info) => this.closes.set(info.code, (this.closes.get(info.code) || 0) + 1));
  }

  // Sees every frame before herald.js does.
  tap() {
    const client = this.client;
    const dispatch = client.dispatch.bind(client);
    client.dispatch = (data) => {
      let frame = data;
      if (typeof data === "string") {
        try {
          frame = JSON.parse(data);
        } catch (e) {
          frame = null;
        }
      }
      const before = client.position ? { epoch: client.position.epoch, seq: client.position.seq } : null;
      if (frame && frame.type === "message" && before) {
        this.raw += 1;
        const seen = this.seenIn(before.epoch);
        if (frame.seq <= before.seq) {
          const entry = { seq: frame.seq, position: before.seq, epoch: before.epoch, data: frame.data };
          (seen.has(frame.seq) ? this.repeats : this.outOfOrder).push(entry);
        }
        seen.add(frame.seq);
      }
      dispatch(data);
      if (frame && frame.type === "reset") {
        this.resets.push({ from: before, to: { epoch: frame.epoch, seq: frame.seq }, reason: frame.reason });
      }
    };
  }

  seenIn(epoch) {
    if (!this.seen.has(epoch)) {
      this.seen.set(epoch, new Set());
    }
    return this.seen.get(epoch);
  }

  onMessage(frame) {
    const epoch = this.client.position ? this.client.position.epoch : null;
    this.received.push({ seq: frame.seq, epoch, data: frame.data });
    this.counts.set(frame.data, (this.counts.get(frame.data) || 0) + 1);
  }

  // Whether a publish to `target` ({kind, value}) is meant for this client.
  targetedBy(target) {
    if (target.kind === "broadcast") {
      return true;
    }
    if (target.kind === "id") {
      return this.id === target.value;
    }
    return this.channels.includes(target.value);
  }

  connect() {
    this.client.connect();
  }

  hasPosition() {
    return this.client.position !== null;
  }

  close() {
    this.client.close();
  }
}

function makeClients(nodePorts) {
  return CLIENTS.map((spec) => new ChaosClient(spec, nodePorts[spec[1]]));
}

module.exports = { makeClients, IDS, CHANNELS };

// Unit tests of the browser client (static/herald.js) under Node's test
// runner, with a fake WebSocket, fake timers and a fake localStorage.
// Run: node --test tests/js
"use strict";

const test = require("node:test");
const assert = require("node:assert");
const path = require("node:path");
const { HeraldClient, backoffDelay } = require(path.join(__dirname, "../../static/herald.js"));

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code) {
    this.closedWith = code;
    this.drop(code || 1000);
  }
  // Test side:
  accept() {
    this.readyState = 1;
    this.onopen();
  }
  receive(frame) {
    this.onmessage({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
  drop(code) {
    this.readyState = 3;
    this.onclose({ code: code || 1006, reason: "" });
  }
  query() {
    return new URL(this.url).searchParams;
  }
}

class FakeStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
}

function harness(options) {
  FakeSocket.all = [];
  const timers = [];
  const events = [];
  const client = new HeraldClient(
    Object.assign(
      {
        url: "ws://test/ws",
        WebSocket: FakeSocket,
        storage: new FakeStorage(),
        random: () => 0.5,
        setTimeout: (fn, ms) => {
          timers.push({ fn, ms });
          return timers.length;
        },
        clearTimeout: () => {},
      },
      options || {}
    )
  );
  for (const name of ["state", "registered", "message", "resumed", "reset", "error", "close"]) {
    client.on(name, (payload) => events.push([name, payload]));
  }
  return { client, timers, events, sockets: FakeSocket.all };
}

test("backoff grows exponentially, is capped, and is jittered within the upper half", () => {
  const opts = { initialMs: 500, maxMs: 30000 };
  assert.strictEqual(backoffDelay(0, opts, () => 0), 250);
  assert.strictEqual(backoffDelay(0, opts, () => 0.999), 499);
  assert.strictEqual(backoffDelay(3, opts, () => 0), 2000);
  for (const attempt of [10, 20, 100, 5000]) {
    const low = backoffDelay(attempt, opts, () => 0);
    const high = backoffDelay(attempt, opts, () => 0.999999);
    assert.strictEqual(low, 15000);
    assert.ok(high <= 30000 && high > 29000, String(high));
  }
});

test("id and channels go in the URL of every (re)connect, then the position too", () => {
  const { client, timers, sockets } = harness({ id: 63, channels: ["news"] });
  client.connect();
  assert.strictEqual(sockets[0].query().get("id"), "63");
  assert.deepStrictEqual(sockets[0].query().getAll("channel"), ["news"]);
  assert.strictEqual(sockets[0].query().get("since"), null, "no position yet");
  sockets[0].accept();
  sockets[0].receive({ type: "registered", id: "63", epoch: "E1", seq: 5 });
  sockets[0].receive({ type: "message", seq: 8, data: "x" });

  client.subscribe("sport");
  assert.deepStrictEqual(sockets[0].sent, [{ type: "subscribe", channel: "sport" }]);
  sockets[0].drop(1006);
  assert.strictEqual(timers.length, 1, "a reconnect is scheduled");
  timers[0].fn();
  const q = sockets[1].query();
  assert.strictEqual(q.get("id"), "63");
  assert.deepStrictEqual(q.getAll("channel"), ["news", "sport"]);
  assert.strictEqual(q.get("since"), "8");
  assert.strictEqual(q.get("epoch"), "E1");
});

test("a client with neither id nor channel takes its position from `connected`", () => {
  const { client, sockets } = harness({});
  client.connect();
  sockets[0].accept();
  sockets[0].receive({ type: "connected", epoch: "E", seq: 9 });
  assert.deepStrictEqual(client.position, { epoch: "E", seq: 9 });
});

test("the position survives a page load through storage", () => {
  const storage = new FakeStorage();
  const first = harness({ id: "7", storage });
  first.client.connect();
  first.sockets[0].accept();
  first.sockets[0].receive({ type: "registered", id: "7", epoch: "E", seq: 2 });
  first.sockets[0].receive({ type: "message", seq: 3, data: "a" });

  const reloaded = harness({ id: "7", storage });
  reloaded.client.connect();
  assert.strictEqual(reloaded.sockets[0].query().get("since"), "3");
  assert.strictEqual(reloaded.sockets[0].query().get("epoch"), "E");
});

test("a resume keeps its position until the server answers, and drops repeats", () => {
  const storage = new FakeStorage();
  storage.setItem("herald:ws://test/ws:1", JSON.stringify({ epoch: "E", seq: 10 }));
  const { client, events, sockets } = harness({ id: "1", storage });
  client.connect();
  sockets[0].accept();
  // `registered` during a resume carries the server's latest seq: not ours.
  sockets[0].receive({ type: "registered", id: "1", epoch: "E", seq: 20 });
  assert.deepStrictEqual(client.position, { epoch: "E", seq: 10 });
  sockets[0].receive({ type: "message", seq: 12, data: "missed" });
  sockets[0].receive({ type: "message", seq: 12, data: "missed" });
  sockets[0].receive({ type: "message", seq: 15, data: "missed too" });
  sockets[0].receive({ type: "resumed", since: 10, count: 2, epoch: "E", seq: 20 });
  assert.deepStrictEqual(client.position, { epoch: "E", seq: 20 });
  const shown = events.filter(([n]) => n === "message").map(([, f]) => f.seq);
  assert.deepStrictEqual(shown, [12, 15]);
  assert.deepStrictEqual(JSON.parse(storage.getItem("herald:ws://test/ws:1")), { epoch: "E", seq: 20 });
});

test("a reset moves to the server's position and tells the app", () => {
  const storage = new FakeStorage();
  storage.setItem("herald:ws://test/ws:1", JSON.stringify({ epoch: "old", seq: 99 }));
  const { client, events, sockets } = harness({ id: "1", storage });
  client.connect();
  sockets[0].accept();
  sockets[0].receive({ type: "reset", reason: "epoch changed", epoch: "new", seq: 4 });
  assert.deepStrictEqual(client.position, { epoch: "new", seq: 4 });
  assert.ok(events.some(([n]) => n === "reset"));
  sockets[0].receive({ type: "message", seq: 5, data: "live" });
  assert.deepStrictEqual(client.position, { epoch: "new", seq: 5 });
});

test("consecutive failures back off further; any answer from the server resets the backoff", () => {
  const { client, timers, sockets } = harness({ channels: ["a"] });
  client.connect();
  sockets[0].drop();
  timers[0].fn();
  sockets[1].drop();
  timers[1].fn();
  sockets[2].drop();
  const expected = [0, 1, 2].map((n) => backoffDelay(n, {}, () => 0.5));
  assert.deepStrictEqual(timers.map((t) => t.ms), expected);

  timers[2].fn();
  sockets[3].accept();
  sockets[3].receive({ type: "subscribed", channel: "a", epoch: "E", seq: 0 });
  sockets[3].drop();
  assert.strictEqual(timers[3].ms, backoffDelay(0, {}, () => 0.5));
});

test("frames are dispatched by type", () => {
  const { client, events, sockets } = harness({ id: "7" });
  client.connect();
  sockets[0].accept();
  sockets[0].receive({ type: "registered", id: "7", greeting: "Hello client 7", epoch: "E", seq: 0 });
  sockets[0].receive({ type: "message", seq: 1, data: { order: 1 } });
  sockets[0].receive({ type: "error", error: "bad frame" });
  sockets[0].receive("not json");
  const seen = events
    .filter(([name]) => name !== "state")
    .map(([name, p]) => [name, p.data || p.greeting || p.error]);
  assert.deepStrictEqual(seen, [
    ["registered", "Hello client 7"],
    ["message", { order: 1 }],
    ["error", "bad frame"],
    ["error", "unreadable frame from server"],
  ]);
});

function fakeJwt(exp) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return b64({ alg: "HS256" }) + "." + b64({ sub: "u", exp: exp }) + ".sig";
}

test("with a token: it registers first with its position, and refreshes before expiry", async () => {
  let calls = 0;
  const expSoon = Math.floor(Date.now() / 1000) + 120;
  const storage = new FakeStorage();
  storage.setItem("herald:ws://test/ws:token", JSON.stringify({ epoch: "E", seq: 3 }));
  const { client, timers, sockets } = harness({
    storage,
    token: () => {
      calls += 1;
      return Promise.resolve(fakeJwt(expSoon + calls));
    },
    channels: ["private:u"],
  });
  client.connect();
  const q = sockets[0].query();
  assert.deepStrictEqual(
    [q.get("id"), q.get("since"), q.getAll("channel"), q.get("await_register")],
    [null, null, ["private:u"], "1"]
  );
  sockets[0].accept();
  await new Promise((r) => setImmediate(r));
  assert.strictEqual(calls, 1);
  assert.deepStrictEqual(sockets[0].sent, [
    { type: "register", token: fakeJwt(expSoon + 1), since: 3, epoch: "E" },
  ]);
  // The refresh is timed refreshLeadMs (30 s) before expiry.
  const refresh = timers[timers.length - 1];
  assert.ok(refresh.ms > 85000 && refresh.ms <= 91000, String(refresh.ms));
  await refresh.fn();
  assert.strictEqual(calls, 2);
  assert.deepStrictEqual(sockets[0].sent[1], { type: "refresh", token: fakeJwt(expSoon + 2) });
});

test("close() stops reconnecting, and connect() twice opens one socket", () => {
  const { client, timers, sockets } = harness({ id: "1" });
  client.connect();
  client.connect();
  assert.strictEqual(sockets.length, 1);
  sockets[0].accept();
  client.close();
  assert.strictEqual(sockets[0].closedWith, 1000);
  assert.strictEqual(timers.length, 0);
});

test("the console never inserts text as HTML", () => {
  const fs = require("node:fs");
  for (const file of ["console.js", "herald.js"]) {
    const source = fs.readFileSync(path.join(__dirname, "../../static", file), "utf8");
    assert.ok(!/innerHTML|outerHTML|insertAdjacentHTML|document\.write/.test(source), file);
  }
});

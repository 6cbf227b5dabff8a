// Unit tests of the browser client (static/herald.js) under Node's test
// runner, with a fake WebSocket and fake timers. Run: node --test tests/js
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
  for (const name of ["state", "registered", "message", "error", "close"]) {
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

test("registers its id on every (re)connect", () => {
  const { client, timers, sockets } = harness({ id: 63 });
  client.connect();
  sockets[0].accept();
  assert.deepStrictEqual(sockets[0].sent, [{ type: "register", id: "63" }]);

  sockets[0].drop(1006);
  assert.strictEqual(timers.length, 1, "a reconnect is scheduled");
  timers[0].fn();
  assert.strictEqual(sockets.length, 2, "a new socket is opened");
  sockets[1].accept();
  assert.deepStrictEqual(sockets[1].sent, [{ type: "register", id: "63" }]);
});

test("consecutive failures back off further; a registration resets the backoff", () => {
  const { client, timers, sockets } = harness({ id: "a" });
  client.connect();
  sockets[0].drop();
  timers[0].fn();
  sockets[1].drop();
  timers[1].fn();
  sockets[2].drop();
  assert.deepStrictEqual(
    timers.map((t) => t.ms),
    [backoffDelay(0, {}, () => 0.5), backoffDelay(1, {}, () => 0.5), backoffDelay(2, {}, () => 0.5)]
  );
  assert.ok(timers[2].ms > timers[0].ms);

  timers[2].fn();
  sockets[3].accept();
  sockets[3].receive({ type: "registered", id: "a" });
  sockets[3].drop();
  assert.strictEqual(timers[3].ms, backoffDelay(0, {}, () => 0.5));
});

test("frames are dispatched by type", () => {
  const { client, events, sockets } = harness({ id: "7" });
  client.connect();
  sockets[0].accept();
  sockets[0].receive({ type: "registered", id: "7", greeting: "Hello client 7" });
  sockets[0].receive({ type: "message", data: { order: 1 } });
  sockets[0].receive({ type: "error", error: "bad frame" });
  sockets[0].receive("not json");
  const seen = events.filter(([name]) => name !== "state").map(([name, p]) => [name, p.data || p.greeting || p.error]);
  assert.deepStrictEqual(seen, [
    ["registered", "Hello client 7"],
    ["message", { order: 1 }],
    ["error", "bad frame"],
    ["error", "unreadable frame from server"],
  ]);
});

test("channels are restored after the registration on every reconnect", () => {
  const { client, timers, sockets } = harness({ id: "5", channels: ["news"] });
  client.connect();
  sockets[0].accept();
  client.subscribe("sport");
  client.unsubscribe("news");
  assert.deepStrictEqual(sockets[0].sent, [
    { type: "register", id: "5" },
    { type: "subscribe", channel: "news" },
    { type: "subscribe", channel: "sport" },
    { type: "unsubscribe", channel: "news" },
  ]);
  sockets[0].drop();
  timers[0].fn();
  sockets[1].accept();
  assert.deepStrictEqual(sockets[1].sent, [
    { type: "register", id: "5" },
    { type: "subscribe", channel: "sport" },
  ]);
});

function fakeJwt(exp) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return b64({ alg: "HS256" }) + "." + b64({ sub: "u", exp: exp }) + ".sig";
}

test("a token function is asked on each connect and before expiry", async () => {
  let calls = 0;
  const expSoon = Math.floor(Date.now() / 1000) + 120;
  const { client, timers, sockets } = harness({
    token: () => {
      calls += 1;
      return Promise.resolve(fakeJwt(expSoon + calls));
    },
    channels: ["private:u"],
  });
  client.connect();
  sockets[0].accept();
  await new Promise((r) => setImmediate(r));
  assert.strictEqual(calls, 1);
  assert.deepStrictEqual(sockets[0].sent, [
    { type: "register", token: fakeJwt(expSoon + 1) },
    { type: "subscribe", channel: "private:u" },
  ]);
  // The refresh is timed refreshLeadMs (30 s) before expiry.
  const refresh = timers[timers.length - 1];
  assert.ok(refresh.ms > 85000 && refresh.ms <= 91000, String(refresh.ms));
  await refresh.fn();
  assert.strictEqual(calls, 2);
  assert.deepStrictEqual(sockets[0].sent[2], { type: "refresh", token: fakeJwt(expSoon + 2) });
});

test("close() stops reconnecting", () => {
  const { client, timers, sockets } = harness({ id: "1" });
  client.connect();
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

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

class FakeEventSource {
  constructor(url) {
    this.url = url;
    this.closed = false;
    this.listeners = {};
    FakeEventSource.all.push(this);
  }
  close() {
    this.closed = true;
  }
  addEventListener(type, listener) {
    (this.listeners[type] = this.listeners[type] || []).push(listener);
  }
  // Test side:
  accept() {
    this.onopen();
  }
  receive(frame) {
    this.onmessage({ data: JSON.stringify(frame) });
  }
  // herald's keep-alive: an event named "ping", which onmessage never sees.
  ping(data) {
    for (const listener of this.listeners.ping || []) {
      listener({ type: "ping", data: data === undefined ? '{"heartbeat_interval_ms":5000}' : data });
    }
  }
  fail() {
    this.onerror({});
  }
  query() {
    return new URL(this.url).searchParams;
  }
}
FakeEventSource.all = [];

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

// Tests of one transport's behaviour use the WebSocket alone and no
// connect timeout; the fallback tests below set their own. The clock
// (`clock.now`, ms) moves only when a test moves it.
function harness(options) {
  FakeSocket.all = [];
  FakeEventSource.all = [];
  const timers = [];
  const events = [];
  const clock = { now: Date.now() };
  const client = new HeraldClient(
    Object.assign(
      {
        url: "ws://test/ws",
        WebSocket: FakeSocket,
        transports: ["websocket"],
        connectTimeoutMs: 0,
        storage: new FakeStorage(),
        random: () => 0.5,
        now: () => clock.now,
        setTimeout: (fn, ms) => {
          timers.push({ fn, ms, cleared: false });
          return timers.length;
        },
        clearTimeout: (id) => {
          if (timers[id - 1]) {
            timers[id - 1].cleared = true;
          }
        },
      },
      options || {}
    )
  );
  const names = ["state", "transport", "registered", "subscribed", "message", "resumed", "reset", "error", "close"];
  for (const name of names) {
    client.on(name, (payload) => events.push([name, payload]));
  }
  return { client, timers, events, clock, sockets: FakeSocket.all, sources: FakeEventSource.all };
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

test("a later `registered` never moves the position back within its epoch", () => {
  const { client, sockets } = harness({ id: "1" });
  client.connect();
  sockets[0].accept();
  sockets[0].receive({ type: "registered", id: "1", epoch: "E", seq: 5 });
  sockets[0].receive({ type: "message", seq: 9, data: "x" });
  // Registering again mid-session: an answer below what was shown.
  sockets[0].receive({ type: "registered", id: "2", epoch: "E", seq: 7 });
  assert.deepStrictEqual(client.position, { epoch: "E", seq: 9 });
  // Another epoch is taken as it is.
  sockets[0].receive({ type: "registered", id: "2", epoch: "F", seq: 3 });
  assert.deepStrictEqual(client.position, { epoch: "F", seq: 3 });
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

test("consecutive failures back off further; a connection that made progress resets the backoff", () => {
  const { client, timers, sockets, clock } = harness({ channels: ["a"] });
  client.connect();
  sockets[0].drop();
  timers[0].fn();
  sockets[1].drop();
  timers[1].fn();
  sockets[2].drop();
  const expected = [0, 1, 2].map((n) => backoffDelay(n, {}, () => 0.5));
  assert.deepStrictEqual(timers.map((t) => t.ms), expected);

  // A frame alone is not progress: the connection drops at once.
  timers[2].fn();
  sockets[3].accept();
  sockets[3].receive({ type: "subscribed", channel: "a", epoch: "E", seq: 0 });
  sockets[3].drop();
  assert.strictEqual(timers[3].ms, backoffDelay(3, {}, () => 0.5));

  // A message is.
  timers[3].fn();
  sockets[4].accept();
  sockets[4].receive({ type: "subscribed", channel: "a", epoch: "E", seq: 0 });
  sockets[4].receive({ type: "message", seq: 1, channel: "a", data: "x" });
  sockets[4].drop();
  assert.strictEqual(timers[4].ms, backoffDelay(0, {}, () => 0.5));

  // And so is a connection that stayed up 10 s, messages or not.
  timers[4].fn();
  sockets[5].drop();
  timers[5].fn();
  sockets[6].accept();
  sockets[6].receive({ type: "subscribed", channel: "a", epoch: "E", seq: 1 });
  clock.now += 10000;
  sockets[6].drop();
  assert.strictEqual(timers[6].ms, backoffDelay(0, {}, () => 0.5));
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

// ---- Transports: options, fallback, resume across a switch, upgrade ----

const { parseTransports, TRANSPORTS } = require(path.join(__dirname, "../../static/herald.js"));

// A fetch whose answers the test gives: each call waits in `calls`.
function fakeFetch() {
  const calls = [];
  const fetch = (url, init) =>
    new Promise((resolve, reject) => {
      calls.push({
        url,
        init,
        query: () => new URL(url).searchParams,
        answer: (status, body) =>
          resolve({ ok: status >= 200 && status < 300, status, json: () => Promise.resolve(body) }),
        fail: (error) => reject(error),
      });
    });
  fetch.calls = calls;
  return fetch;
}

// Lets promise callbacks (fetch answers, their .json()) run.
function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

function fallbackHarness(options) {
  const fetch = fakeFetch();
  const h = harness(
    Object.assign(
      { transports: undefined, EventSource: FakeEventSource, fetch: fetch, upgradeAfterMs: 0 },
      options || {}
    )
  );
  h.fetch = fetch;
  // The reconnect that is due: the last timer set and not cleared.
  h.next = () => {
    const due = h.timers.filter((t) => !t.cleared && !t.fired);
    const timer = due[due.length - 1];
    timer.fired = true;
    timer.fn();
    return timer;
  };
  h.switches = () => h.events.filter(([n]) => n === "transport").map(([, t]) => [t.previous, t.transport, t.reason]);
  h.shown = () => h.events.filter(([n]) => n === "message").map(([, f]) => f.seq);
  return h;
}

test("transports default to websocket, sse, poll; the option is checked", () => {
  assert.deepStrictEqual(TRANSPORTS, ["websocket", "sse", "poll"]);
  assert.deepStrictEqual(parseTransports(undefined), ["websocket", "sse", "poll"]);
  assert.deepStrictEqual(parseTransports(["poll", "sse"]), ["poll", "sse"]);
  for (const [bad, says] of [
    [[], /non-empty list/],
    ["websocket", /non-empty list/],
    [["ws"], /unknown transport "ws"/],
    [["sse", "sse"], /"sse" is listed twice/],
    [[null], /unknown transport null/],
  ]) {
    assert.throws(() => parseTransports(bad), says);
    assert.throws(() => harness({ transports: bad }), says);
  }
  const { client } = fallbackHarness();
  assert.deepStrictEqual(client.transports, ["websocket", "sse", "poll"]);
  assert.strictEqual(client.transport, "websocket");
  // What this environment lacks is left out; nothing left is an error.
  assert.deepStrictEqual(harness({ transports: ["sse", "websocket"] }).client.transports, ["websocket"]);
  assert.throws(() => harness({ transports: ["sse"] }), /none of the transports/);
  assert.throws(() => fallbackHarness({ fallbackAfter: 0 }), /fallbackAfter must be an integer of at least 1/);
  assert.throws(() => fallbackHarness({ connectTimeoutMs: -1 }), /connectTimeoutMs/);
  assert.throws(() => fallbackHarness({ upgradeAfterMs: 1.5 }), /upgradeAfterMs/);
});

test("the event stream and poll URLs are the WebSocket's siblings, or given", () => {
  const { client } = fallbackHarness({ url: "wss://rt.example.com/herald/ws" });
  assert.strictEqual(client.eventsUrl, "https://rt.example.com/herald/events");
  assert.strictEqual(client.pollUrl, "https://rt.example.com/herald/poll");
  const plain = fallbackHarness({ url: "ws://127.0.0.1:8001/ws" }).client;
  assert.strictEqual(plain.eventsUrl, "http://127.0.0.1:8001/events");
  const given = fallbackHarness({ eventsUrl: "https://a/e", pollUrl: "https://a/p" }).client;
  assert.deepStrictEqual([given.eventsUrl, given.pollUrl], ["https://a/e", "https://a/p"]);
});

test("a WebSocket that fails before its first frame falls back to SSE, then to polling, with the same backoff", async () => {
  const h = fallbackHarness({ id: "7", channels: ["news"] });
  h.client.connect();
  h.sockets[0].drop(1006); // the upgrade was refused
  h.next();
  h.sockets[1].accept(); // opened, but closed before any frame
  h.sockets[1].drop(1006);
  assert.strictEqual(h.client.transport, "sse");
  h.next();
  assert.strictEqual(h.sockets.length, 2, "no third WebSocket");
  const q = h.sources[0].query();
  assert.strictEqual(new URL(h.sources[0].url).pathname, "/events");
  assert.deepStrictEqual([q.get("id"), q.getAll("channel")], ["7", ["news"]]);
  h.sources[0].fail();
  assert.strictEqual(h.sources[0].closed, true, "herald.js does the reconnecting, not EventSource");
  h.next();
  h.sources[1].fail();
  assert.strictEqual(h.client.transport, "poll");
  h.next();
  assert.strictEqual(h.fetch.calls.length, 1);
  assert.strictEqual(new URL(h.fetch.calls[0].url).pathname, "/poll");
  assert.deepStrictEqual(h.switches(), [
    ["websocket", "sse", "fallback"],
    ["sse", "poll", "fallback"],
  ]);
  // One backoff sequence across the transports.
  const delays = h.events.filter(([n, s]) => n === "state" && s.state === "reconnecting").map(([, s]) => s.delayMs);
  assert.deepStrictEqual(delays, [0, 1, 2, 3].map((n) => backoffDelay(n, {}, () => 0.5)));

  h.fetch.calls[0].answer(200, { messages: [{ type: "message", seq: 3, data: "x" }], epoch: "E", seq: 3 });
  await settle();
  const states = h.events.filter(([n]) => n === "state").map(([, s]) => s.state + ":" + s.transport);
  assert.strictEqual(states[states.length - 1], "open:poll");
  assert.deepStrictEqual(h.shown(), [3]);
  assert.deepStrictEqual(h.client.position, { epoch: "E", seq: 3 });
  // The next poll goes on from there at once.
  assert.strictEqual(h.fetch.calls.length, 2);
  assert.deepStrictEqual([h.fetch.calls[1].query().get("since"), h.fetch.calls[1].query().get("epoch")], ["3", "E"]);
});

test("a resume the server cannot read now (close 1013, an SSE or poll 503) is retried after a backoff step from the same position", async () => {
  const storage = new FakeStorage();
  storage.setItem("herald:ws://test/ws:1", JSON.stringify({ epoch: "E", seq: 10 }));
  const h = fallbackHarness({ id: "1", storage, fallbackAfter: 1 });
  const from = (q) => [q.get("since"), q.get("epoch")];
  h.client.connect();
  assert.deepStrictEqual(from(h.sockets[0].query()), ["10", "E"]);
  h.sockets[0].accept();
  h.sockets[0].drop(1013); // try again later
  assert.ok(h.next().ms > 0, "after a backoff step");
  assert.deepStrictEqual(from(h.sources[0].query()), ["10", "E"]);
  h.sources[0].fail(); // a 503: EventSource only reports an error
  assert.ok(h.next().ms > 0, "after a backoff step");
  assert.deepStrictEqual(from(h.fetch.calls[0].query()), ["10", "E"]);
  h.fetch.calls[0].answer(503, { error: "the message broker (Redis) cannot be read now", code: "broker_unavailable" });
  await settle();
  assert.ok(h.next().ms > 0, "after a backoff step");
  assert.deepStrictEqual(from(h.fetch.calls[1].query()), ["10", "E"], "polled again, from the same position");
  assert.deepStrictEqual(h.client.position, { epoch: "E", seq: 10 });
  assert.ok(!h.events.some(([n]) => n === "reset"), "no reset");
  assert.ok(h.events.some(([n, e]) => n === "error" && e.code === "broker_unavailable"));
  h.client.close();
});

test("the transport list sets the order, and fallbackAfter how many failures move on", () => {
  const h = fallbackHarness({ transports: ["sse", "websocket"], fallbackAfter: 3 });
  h.client.connect();
  for (let i = 0; i < 3; i++) {
    assert.strictEqual(h.sources.length, i + 1);
    h.sources[i].fail();
    h.next();
  }
  assert.strictEqual(h.sockets.length, 1);
  assert.deepStrictEqual(h.switches(), [["sse", "websocket", "fallback"]]);
  // At the end of the list it keeps trying the last one.
  for (let i = 0; i < 5; i++) {
    h.sockets[i].drop();
    h.next();
  }
  assert.strictEqual(h.sockets.length, 6);
  assert.strictEqual(h.sources.length, 3);
});

test("a WebSocket that opens but says nothing within connectTimeoutMs counts as a failure", () => {
  const h = fallbackHarness({ connectTimeoutMs: 5000 });
  h.client.connect();
  h.sockets[0].accept();
  const timeout = h.timers.find((t) => t.ms === 5000);
  timeout.fn();
  assert.strictEqual(h.sockets[0].closedWith, 1000);
  const close = h.events.find(([n]) => n === "close")[1];
  assert.match(close.reason, /no answer within 5000 ms/);
  h.next();
  h.sockets[1].accept();
  h.sockets[1].receive({ type: "connected", epoch: "E", seq: 1 });
  assert.strictEqual(h.timers.filter((t) => t.ms === 5000)[1].cleared, true, "a first frame ends the wait");
  assert.strictEqual(h.client.transport, "websocket");
});

test("a transport that worked reconnects as itself after a drop", () => {
  const h = fallbackHarness({ id: "1" });
  h.client.connect();
  for (let i = 0; i < 4; i++) {
    h.sockets[i].accept();
    h.sockets[i].receive({ type: "registered", id: "1", epoch: "E", seq: 2 * i });
    // It worked: it brought a message, or stayed up 10 s.
    if (i % 2 === 0) {
      h.sockets[i].receive({ type: "message", seq: 2 * i + 1, data: "m" });
    } else {
      h.clock.now += 10000;
    }
    h.sockets[i].drop(1006);
    h.next();
  }
  assert.strictEqual(h.sources.length, 0);
  assert.deepStrictEqual(h.switches(), []);
});

test("a switch carries the position: nothing missed, nothing twice", () => {
  const h = fallbackHarness({ id: "5" });
  h.client.connect();
  h.sockets[0].accept();
  h.sockets[0].receive({ type: "registered", id: "5", epoch: "E", seq: 4 });
  h.sockets[0].receive({ type: "message", seq: 6, data: "a" });
  h.sockets[0].drop(1006); // the WebSocket path breaks
  h.next();
  h.sockets[1].drop(1006);
  h.next();
  h.sockets[2].drop(1006);
  h.next();
  const source = h.sources[0];
  assert.deepStrictEqual([source.query().get("since"), source.query().get("epoch")], ["6", "E"]);
  source.accept();
  // The server replays from 6; a repeat of 6 (had it been sent) is dropped.
  source.receive({ type: "registered", id: "5", epoch: "E", seq: 9 });
  source.receive({ type: "message", seq: 6, data: "a" });
  source.receive({ type: "message", seq: 7, data: "b" });
  source.receive({ type: "message", seq: 9, data: "c" });
  source.receive({ type: "resumed", since: 6, count: 2, epoch: "E", seq: 9 });
  source.receive({ type: "message", seq: 10, data: "d" });
  assert.deepStrictEqual(h.shown(), [6, 7, 9, 10]);
  assert.deepStrictEqual(h.client.position, { epoch: "E", seq: 10 });
});

test("over polling: the first answer to a resume stands for resumed; refusals are readable errors", async () => {
  const storage = new FakeStorage();
  storage.setItem("herald:ws://test/ws:9", JSON.stringify({ epoch: "E", seq: 10 }));
  const h = fallbackHarness({ id: "9", channels: ["c"], transports: ["poll"], storage });
  h.client.connect();
  assert.deepStrictEqual([h.fetch.calls[0].query().get("since"), h.fetch.calls[0].query().get("id")], ["10", "9"]);
  assert.strictEqual(h.fetch.calls[0].init.cache, "no-store");
  h.fetch.calls[0].answer(200, {
    messages: [{ type: "message", seq: 10, data: "seen" }, { type: "message", seq: 12, data: "missed" }],
    epoch: "E",
    seq: 12,
  });
  await settle();
  const seen = h.events
    .filter(([n]) => ["registered", "subscribed", "message", "resumed"].includes(n))
    .map(([n, f]) => n + ":" + (f.seq === undefined ? f.id || f.channel : f.seq));
  assert.deepStrictEqual(seen, ["registered:9", "subscribed:c", "message:12", "resumed:12"]);
  const resumed = h.events.find(([n]) => n === "resumed")[1];
  assert.deepStrictEqual([resumed.since, resumed.count], [10, 2]);
  // An empty answer (after the server waited for a message) moves nothing
  // back, and the next poll goes at once.
  h.clock.now += 25000;
  h.fetch.calls[1].answer(200, { messages: [], epoch: "E", seq: 12 });
  await settle();
  assert.deepStrictEqual(h.client.position, { epoch: "E", seq: 12 });
  h.fetch.calls[2].answer(429, { error: "too many connections from this address", code: "too_many_connections" });
  await settle();
  const error = h.events.find(([n]) => n === "error")[1];
  assert.deepStrictEqual([error.status, error.code], [429, "too_many_connections"]);
  const close = h.events.find(([n]) => n === "close")[1];
  assert.deepStrictEqual([close.transport, close.reason], ["poll", "the poll was answered 429"]);
  h.next();
  assert.strictEqual(h.fetch.calls[3].query().get("since"), "12");
  // A reset is the server's position from then on, after a backoff step.
  h.fetch.calls[3].answer(200, { type: "reset", reason: "epoch changed", epoch: "F", seq: 2 });
  await settle();
  assert.deepStrictEqual(h.client.position, { epoch: "F", seq: 2 });
  assert.strictEqual(h.fetch.calls.length, 4, "no poll at once after a reset");
  // (The second step: the 429 was the first, and no progress since.)
  assert.strictEqual(h.next().ms, backoffDelay(1, {}, () => 0.5));
  await settle();
  assert.strictEqual(h.fetch.calls[4].query().get("epoch"), "F");
});

test("with a token, SSE and polls carry it in the URL", async () => {
  const token = fakeJwt(Math.floor(Date.now() / 1000) + 3600);
  const h = fallbackHarness({ token: token, transports: ["sse", "poll"], channels: ["private:u"] });
  h.client.connect();
  await settle();
  const q = h.sources[0].query();
  assert.deepStrictEqual([q.get("token"), q.get("await_register"), q.getAll("channel")], [token, null, ["private:u"]]);
  h.sources[0].fail();
  h.next();
  await settle();
  h.sources[1].fail();
  h.next();
  await settle();
  assert.strictEqual(h.fetch.calls[0].query().get("token"), token);
  h.fetch.calls[0].answer(200, { messages: [], epoch: "E", seq: 0 });
  await settle();
  // Polls have no `registered`: the token's `sub` names the id.
  assert.strictEqual(h.events.find(([n]) => n === "registered")[1].id, "u");
});

test("over SSE, subscribing reconnects at once with the new channel, from the same position", () => {
  const h = fallbackHarness({ transports: ["sse"], channels: ["a"] });
  h.client.connect();
  h.sources[0].accept();
  h.sources[0].receive({ type: "subscribed", channel: "a", epoch: "E", seq: 3 });
  const timersBefore = h.timers.length;
  h.client.subscribe("b");
  assert.strictEqual(h.sources[0].closed, true);
  assert.strictEqual(h.sources.length, 2, "reconnected at once");
  assert.strictEqual(h.timers.length, timersBefore, "without a backoff delay");
  const q = h.sources[1].query();
  assert.deepStrictEqual([q.getAll("channel"), q.get("since"), q.get("epoch")], [["a", "b"], "3", "E"]);
});

test("on a fallback, the WebSocket is tried again after upgradeAfterMs; if it fails, back to what worked", () => {
  const h = fallbackHarness({ upgradeAfterMs: 60000, fallbackAfter: 1, id: "2" });
  h.client.connect();
  h.sockets[0].drop(1006);
  h.next();
  h.sources[0].accept();
  h.sources[0].receive({ type: "registered", id: "2", epoch: "E", seq: 1 });
  const upgrade = h.timers.find((t) => t.ms === 60000);
  assert.ok(upgrade, "an upgrade is planned once the fallback works");
  upgrade.fn();
  assert.strictEqual(h.sources[0].closed, true);
  assert.strictEqual(h.sockets.length, 2, "the WebSocket is tried at once");
  assert.strictEqual(h.sockets[1].query().get("since"), "1");
  h.sockets[1].drop(1006); // still blocked
  h.next();
  assert.strictEqual(h.sources.length, 2, "straight back to SSE");
  assert.strictEqual(h.sources[1].query().get("since"), "1");
  h.sources[1].receive({ type: "registered", id: "2", epoch: "E", seq: 1 });
  // Later the WebSocket works again (it brings a message): the client
  // stays on it.
  h.timers.filter((t) => t.ms === 60000)[1].fn();
  h.sockets[2].accept();
  h.sockets[2].receive({ type: "registered", id: "2", epoch: "E", seq: 1 });
  h.sockets[2].receive({ type: "message", seq: 2, id: "2", data: "back" });
  h.sockets[2].drop(1006);
  h.next();
  assert.strictEqual(h.sockets.length, 4);
  assert.deepStrictEqual(h.switches(), [
    ["websocket", "sse", "fallback"],
    ["sse", "websocket", "upgrade"],
    ["websocket", "sse", "return"],
    ["sse", "websocket", "upgrade"],
  ]);
});

test("close() ends any transport without a reconnect", async () => {
  const h = fallbackHarness({ transports: ["poll"] });
  h.client.connect();
  let aborted = false;
  h.fetch.calls[0].init.signal.addEventListener("abort", () => {
    aborted = true;
  });
  h.client.close();
  assert.strictEqual(aborted, true);
  h.fetch.calls[0].fail(new Error("aborted"));
  await settle();
  assert.strictEqual(h.timers.filter((t) => !t.cleared).length, 0);
  assert.strictEqual(h.events.filter(([n]) => n === "close").length, 1);
});

test("a poll may wait for its answer: no connect timeout; a token that cannot be had is no transport failure", async () => {
  const h = fallbackHarness({ transports: ["poll"], connectTimeoutMs: 5000 });
  h.client.connect();
  assert.strictEqual(h.timers.filter((t) => t.ms === 5000).length, 0);

  const failing = fallbackHarness({ token: () => Promise.reject(new Error("offline")), connectTimeoutMs: 0 });
  failing.client.connect();
  failing.sockets[0].accept();
  await settle();
  failing.next();
  failing.sockets[1].accept();
  await settle();
  failing.next();
  assert.strictEqual(failing.sockets.length, 3, "still the WebSocket");
  assert.deepStrictEqual(failing.switches(), []);
  assert.ok(failing.events.some(([n, e]) => n === "error" && /could not get a token/.test(e.error)));
});

// ---- Paths that misbehave: bounded request rates, growing delays ----

// Simulated time: `run(ms)` moves the clock, running each timer when it is
// due, in order, and the promise callbacks between them.
function simulation() {
  const sim = { now: Date.now(), timers: [], nextId: 1 };
  sim.setTimeout = (fn, ms) => {
    const timer = { id: sim.nextId++, at: sim.now + Math.max(0, ms), fn };
    sim.timers.push(timer);
    return timer.id;
  };
  sim.clearTimeout = (id) => {
    sim.timers = sim.timers.filter((t) => t.id !== id);
  };
  sim.run = async (ms) => {
    const end = sim.now + ms;
    for (;;) {
      await settle();
      let due = null;
      for (const t of sim.timers) {
        if (t.at <= end && (due === null || t.at < due.at || (t.at === due.at && t.id < due.id))) {
          due = t;
        }
      }
      if (due === null) {
        break;
      }
      sim.timers.splice(sim.timers.indexOf(due), 1);
      sim.now = due.at;
      due.fn();
    }
    sim.now = end;
    await settle();
  };
  sim.options = { setTimeout: sim.setTimeout, clearTimeout: sim.clearTimeout, now: () => sim.now };
  return sim;
}

// A fetch that answers each poll after `answer(n).afterMs` (10 ms) of
// simulated time, or never (`afterMs: null`); `times` records when each
// poll went out, `aborted` how many were aborted.
function simFetch(sim, answer) {
  const fetch = (url, init) =>
    new Promise((resolve, reject) => {
      const n = fetch.times.length;
      fetch.times.push(sim.now);
      fetch.urls.push(url);
      const { status, body, headers, afterMs } = Object.assign({ afterMs: 10, headers: {} }, answer(n));
      if (init && init.signal) {
        init.signal.addEventListener("abort", () => {
          fetch.aborted += 1;
          reject(new Error("aborted"));
        });
      }
      if (afterMs === null) {
        return;
      }
      sim.setTimeout(() => {
        resolve({
          ok: status >= 200 && status < 300,
          status,
          headers: { get: (name) => (headers[name.toLowerCase()] === undefined ? null : headers[name.toLowerCase()]) },
          json: () => Promise.resolve().then(() => JSON.parse(body)),
        });
      }, afterMs);
    });
  fetch.times = [];
  fetch.urls = [];
  fetch.aborted = 0;
  return fetch;
}

// At most `max` requests, each gap at least as long as the one before, and
// the last at least `lastAtLeastMs`: the client backs off further and
// further instead of asking again at once.
function assertBackingOff(times, max, lastAtLeastMs) {
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  assert.ok(times.length >= 3 && times.length <= max, times.length + " requests, gaps " + gaps);
  for (let i = 1; i < gaps.length; i++) {
    assert.ok(gaps[i] >= gaps[i - 1], "the delays grow: " + gaps);
  }
  assert.ok(gaps[gaps.length - 1] >= lastAtLeastMs, "the delays grow: " + gaps);
}

const foreverAnswers = [
  ["a `reset` forever (its epoch flipping)", (n) => JSON.stringify({ type: "reset", reason: "epoch changed", epoch: "E" + (n % 2), seq: 5 })],
  ["the same empty answer replayed by a cache", () => JSON.stringify({ messages: [], epoch: "E", seq: 5 })],
  ["`{}` forever", () => "{}"],
  ["an HTML page with status 200 forever (a captive portal)", () => "<html><body>Sign in to the Wi-Fi</body></html>"],
];

for (const [what, body] of foreverAnswers) {
  test("polls answered at once with " + what + " come ever more slowly", async () => {
    const sim = simulation();
    const fetch = simFetch(sim, (n) => ({ status: 200, body: body(n) }));
    const h = harness(Object.assign({ transports: ["poll"], fetch: fetch, id: "x" }, sim.options));
    h.client.connect();
    await sim.run(60000);
    // 375, 750, 1500, ... ms up to 30 s (halved by the jitter of 0.5): 8
    // polls in a minute, where a poll at once after each gave thousands.
    assertBackingOff(fetch.times, 10, 15000);
    const resets = h.events.filter(([n]) => n === "reset").length;
    assert.ok(resets <= fetch.times.length, resets + " reset events");
    h.client.close();
  });
}

test("an unreadable poll answer counts towards the fallback; a reset or an empty answer does not", async () => {
  for (const [, body] of foreverAnswers) {
    const sim = simulation();
    const fetch = simFetch(sim, (n) => ({ status: 200, body: body(n) }));
    const h = fallbackHarness(Object.assign({ transports: ["poll", "sse"], fetch: fetch }, sim.options));
    h.client.connect();
    await sim.run(5000);
    const unreadable = body(0) === "{}" || body(0).startsWith("<");
    assert.strictEqual(h.client.transport, unreadable ? "sse" : "poll", body(0));
    if (unreadable) {
      assert.deepStrictEqual(h.switches(), [["poll", "sse", "fallback"]]);
      assert.strictEqual(fetch.times.length, 2, "fallbackAfter (2) failed polls");
    }
    h.client.close();
  }
});

// A WebSocket or event stream that opens, brings one frame and drops.
function flapping(sim, Base, open) {
  return class extends Base {
    constructor(url) {
      super(url);
      sim.setTimeout(() => open(this), 5);
      sim.setTimeout(() => (Base === FakeSocket ? this.drop(1006) : this.fail()), 10);
    }
  };
}

test("a WebSocket or event stream that brings one frame and drops is retried ever more slowly, then given up", async () => {
  const registered = { type: "registered", id: "x", epoch: "E", seq: 1 };
  const greet = (c) => {
    c.accept();
    c.receive(registered);
  };
  for (const transport of ["websocket", "sse"]) {
    const sim = simulation();
    const opened = [];
    const Impl = flapping(sim, transport === "sse" ? FakeEventSource : FakeSocket, (c) => {
      opened.push(sim.now);
      greet(c);
    });
    const h = harness(Object.assign({ transports: [transport], WebSocket: Impl, EventSource: Impl, id: "x" }, sim.options));
    h.client.connect();
    await sim.run(60000);
    assertBackingOff(opened, 10, 15000);
    const delays = h.events.filter(([n, s]) => n === "state" && s.state === "reconnecting").map(([, s]) => s.delayMs);
    assert.deepStrictEqual(delays.slice(0, 4), [0, 1, 2, 3].map((n) => backoffDelay(n, {}, () => 0.5)), transport);
    h.client.close();
  }

  // With the others to fall back on: after fallbackAfter (2) such drops,
  // the next transport.
  const sim = simulation();
  const h = fallbackHarness(
    Object.assign({ WebSocket: flapping(sim, FakeSocket, greet), EventSource: FakeEventSource }, sim.options)
  );
  h.client.connect();
  await sim.run(5000);
  assert.strictEqual(h.sockets.length, 2);
  assert.deepStrictEqual(h.switches(), [["websocket", "sse", "fallback"]]);
  assert.strictEqual(h.client.transport, "sse");
  h.client.close();
});

test("a long-poll the server held, or one that brought messages, is followed by the next at once", async () => {
  const sim = simulation();
  let seq = 5;
  // Empty answers after herald's poll_timeout_secs: 25 s, or 1 s if set so.
  const fetch = simFetch(sim, (n) =>
    n % 2 === 0
      ? { status: 200, body: JSON.stringify({ messages: [], epoch: "E", seq: seq }), afterMs: n % 4 === 0 ? 25000 : 1000 }
      : { status: 200, body: JSON.stringify({ messages: [{ type: "message", seq: ++seq, data: n }], epoch: "E", seq: seq }), afterMs: 10 }
  );
  const h = harness(Object.assign({ transports: ["poll"], fetch: fetch, id: "x" }, sim.options));
  h.client.connect();
  await sim.run(100000);
  const gaps = fetch.times.slice(1).map((t, i) => t - fetch.times[i]);
  assert.ok(gaps.length >= 6, String(gaps));
  assert.ok(gaps.every((g) => g === 25000 || g === 1000 || g === 10), "no wait between polls: " + gaps);
  assert.strictEqual(h.events.filter(([n]) => n === "message").length, Math.floor(fetch.times.length / 2));
  h.client.close();
});

test("a refused poll's Retry-After is the least the next attempt waits", async () => {
  const sim = simulation();
  const retryAfter = [
    () => "7",
    () => new Date(sim.now + 60000).toUTCString(), // an HTTP date, a minute on
    () => "99999999", // capped at 5 minutes
    () => undefined,
  ];
  const fetch = simFetch(sim, (n) => {
    const value = n < retryAfter.length ? retryAfter[n]() : undefined;
    return {
      status: 503,
      body: JSON.stringify({ error: "herald is not ready", code: "broker_disconnected" }),
      headers: value === undefined ? {} : { "retry-after": value },
    };
  });
  const h = harness(Object.assign({ transports: ["poll"], fetch: fetch }, sim.options));
  h.client.connect();
  await sim.run(20 * 60000);
  const delays = h.events.filter(([n, s]) => n === "state" && s.state === "reconnecting").map(([, s]) => s.delayMs);
  // Retry-After plus up to a quarter more (an eighth, with random = 0.5).
  assert.strictEqual(delays[0], 7875);
  assert.ok(delays[1] >= 59000 && delays[1] <= 60000 * 1.25, String(delays[1]));
  assert.strictEqual(delays[2], 5 * 60000 * 1.125);
  assert.strictEqual(delays[3], backoffDelay(3, {}, () => 0.5), "without one, the backoff alone");
  h.client.close();
});

test("an event stream silent for 3 heartbeats (pings included) is reconnected from the position", async () => {
  const sim = simulation();
  const h = fallbackHarness(Object.assign({ transports: ["sse", "poll"], id: "s" }, sim.options));
  h.client.connect();
  const first = h.sources[0];
  first.accept();
  first.ping();
  first.receive({ type: "registered", id: "s", epoch: "E", seq: 3 });
  first.receive({ type: "message", seq: 4, data: "a" });
  // Pings every 5 s keep it.
  for (let i = 0; i < 12; i++) {
    await sim.run(5000);
    first.ping();
  }
  assert.strictEqual(h.sources.length, 1, "a stream that pings is kept");
  // Then the path stalls: nothing at all comes any more.
  await sim.run(14999);
  assert.strictEqual(first.closed, false);
  await sim.run(1);
  assert.strictEqual(first.closed, true, "closed after 15 s of silence");
  const close = h.events.filter(([n]) => n === "close").pop()[1];
  assert.match(close.reason, /nothing from the server for 15000 ms/);
  await sim.run(1000);
  assert.strictEqual(h.sources.length, 2);
  const q = h.sources[1].query();
  assert.deepStrictEqual([q.get("since"), q.get("epoch")], ["4", "E"]);
  assert.strictEqual(h.client.transport, "sse", "it had worked: no failure");

  // A stream that stalls after its first frame, each time, is a failure:
  // after two, long-polling.
  h.sources[1].accept();
  h.sources[1].ping();
  h.sources[1].receive({ type: "registered", id: "s", epoch: "E", seq: 4 });
  await sim.run(16000 + 1000);
  h.sources[2].accept();
  h.sources[2].ping();
  h.sources[2].receive({ type: "registered", id: "s", epoch: "E", seq: 4 });
  await sim.run(16000 + 2000);
  assert.strictEqual(h.client.transport, "poll");
  assert.deepStrictEqual(h.switches(), [["sse", "poll", "fallback"]]);
  h.client.close();
});

test("an event stream takes its heartbeat from herald's pings", async () => {
  const sim = simulation();
  const h = fallbackHarness(Object.assign({ transports: ["sse"] }, sim.options));
  h.client.connect();
  const source = h.sources[0];
  source.accept();
  source.ping('{"heartbeat_interval_ms":20000}');
  source.receive({ type: "connected", epoch: "E", seq: 0 });
  await sim.run(59999);
  assert.strictEqual(source.closed, false, "3 heartbeats of 20 s");
  await sim.run(1);
  assert.strictEqual(source.closed, true);

  // Without a ping naming it: heartbeatIntervalMs.
  const sim2 = simulation();
  const h2 = fallbackHarness(Object.assign({ transports: ["sse"], heartbeatIntervalMs: 2000 }, sim2.options));
  h2.client.connect();
  h2.sources[0].accept();
  h2.sources[0].ping("not json");
  await sim2.run(5999);
  assert.strictEqual(h2.sources[0].closed, false);
  await sim2.run(1);
  assert.strictEqual(h2.sources[0].closed, true);

  // A server that sends no pings at all (an older herald) is not watched.
  const sim3 = simulation();
  const h3 = fallbackHarness(Object.assign({ transports: ["sse"] }, sim3.options));
  h3.client.connect();
  h3.sources[0].accept();
  h3.sources[0].receive({ type: "connected", epoch: "E", seq: 0 });
  await sim3.run(600000);
  assert.strictEqual(h3.sources[0].closed, false);
  assert.throws(() => fallbackHarness({ heartbeatIntervalMs: 0 }), /heartbeatIntervalMs/);
  assert.throws(() => fallbackHarness({ pollTimeoutMs: "25" }), /pollTimeoutMs/);
});

test("a poll unanswered long after the server's poll timeout is aborted and counts as a failure", async () => {
  const sim = simulation();
  const fetch = simFetch(sim, () => ({ afterMs: null }));
  const h = fallbackHarness(
    Object.assign({ transports: ["poll", "sse"], fallbackAfter: 1, fetch: fetch, pollTimeoutMs: 5000 }, sim.options)
  );
  h.client.connect();
  await sim.run(19999); // pollTimeoutMs + 3 heartbeats of 5 s
  assert.strictEqual(fetch.aborted, 0);
  await sim.run(1);
  assert.strictEqual(fetch.aborted, 1);
  const close = h.events.filter(([n]) => n === "close").pop()[1];
  assert.match(close.reason, /no answer to the poll within 20000 ms/);
  assert.deepStrictEqual(h.switches(), [["poll", "sse", "fallback"]]);
});

test("a token that lives less than refreshLeadMs is refreshed halfway, not every second", async () => {
  for (const [ttlSeconds, firstRefreshMs] of [
    [20, 10000],
    [120, 90000],
    [1, 1000],
  ]) {
    const sim = simulation();
    let asked = 0;
    const h = harness(
      Object.assign(
        {
          transports: ["sse"],
          EventSource: FakeEventSource,
          token: () => {
            asked += 1;
            return fakeJwt(sim.now / 1000 + ttlSeconds);
          },
        },
        sim.options
      )
    );
    h.client.connect();
    await sim.run(0);
    h.sources[0].receive({ type: "registered", id: "u", epoch: "E", seq: 0 });
    await sim.run(firstRefreshMs - 1);
    assert.strictEqual(h.sources.length, 1, ttlSeconds + " s");
    await sim.run(1);
    assert.strictEqual(h.sources.length, 2, ttlSeconds + " s: reconnected with a fresh token");
    assert.strictEqual(asked, 2);
    h.client.close();
  }
});

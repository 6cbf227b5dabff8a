// Pages on other origins, and herald.js falling back from one transport to
// the next, in a real browser (Debian's Chromium, headless).
//
// One herald node (memory broker) and two tiny web servers of this script,
// each its own origin: one listed in herald's `allowed_origins`, one not.
// Their page loads herald.js from herald, as a site on www.example.com
// would from rt.example.com.
//
// Run by `cargo test` (tests/api/browser.rs), which passes:
//   HERALD_BIN   the herald binary
//   CHROMIUM     the browser (default /usr/bin/chromium)
// Exits 0 when every check passed; prints what failed otherwise.
"use strict";

const { chromium } = require("playwright-core");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const support = require("./support");

const { freePort, assert, publish, stopped } = support;
const WAIT_MS = 15000;
const until = (what, check) => support.until(what, check, WAIT_MS);

// A web site of its own origin: one page that loads herald.js from herald
// and offers `start(options)`, which connects a HeraldClient and records
// what it sees.
function startSite(port, heraldPort) {
  const herald = "127.0.0.1:" + heraldPort;
  const page = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>a page on another origin</title><link rel="icon" href="data:,"></head>
<body>
<script src="http://${herald}/static/herald.js"></script>
<script>
  window.seen = [];
  window.events = [];
  window.start = function (options) {
    const client = new HeraldClient(Object.assign({ url: "ws://${herald}/ws", storage: null }, options));
    client.on("message", (frame) => window.seen.push(frame.data));
    for (const name of ["state", "transport", "registered", "resumed", "reset", "error", "close"]) {
      client.on(name, (payload) => window.events.push([name, payload]));
    }
    window.client = client;
    client.connect();
  };
</script>
</body></html>`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(page);
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

function startHerald(bin, dir, port, allowedOrigin) {
  const config = path.join(dir, "herald.toml");
  // A short heartbeat and poll timeout let herald.js notice a stalled
  // path within seconds (part 6).
  fs.writeFileSync(
    config,
    `port = ${port}\nworkers = 1\nallowed_origins = ["${allowedOrigin}"]\n` +
      "heartbeat_interval_ms = 1000\npoll_timeout_secs = 2\n"
  );
  // herald refuses unknown HERALD_* variables: HERALD_BIN is this
  // script's own, not a setting.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("HERALD_"))
  );
  const child = spawn(bin, ["--config", config], {
    env,
    cwd: path.join(__dirname, "..", ".."),
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr.on("data", () => {});
  return child;
}

async function seen(page) {
  return page.evaluate(() => window.seen.slice());
}

async function transport(page) {
  return page.evaluate(() => window.client && window.client.transport);
}

async function main() {
  const bin = process.env.HERALD_BIN;
  assert(bin, "HERALD_BIN is set");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-cors-e2e-"));
  const [heraldPort, sitePort, strangerPort] = [await freePort(), await freePort(), await freePort()];
  const site = "http://127.0.0.1:" + sitePort;
  const stranger = "http://127.0.0.1:" + strangerPort;
  const servers = [await startSite(sitePort, heraldPort), await startSite(strangerPort, heraldPort)];
  let herald = startHerald(bin, dir, heraldPort, site);
  let browser;
  try {
    await until("herald", async () => (await fetch("http://127.0.0.1:" + heraldPort + "/health")).ok);
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    const open = async (origin, prepare) => {
      const context = await browser.newContext();
      const page = await context.newPage();
      // What reached the browser from herald, as the DevTools protocol
      // tells it: a refused cross-origin answer never reaches the page or
      // Playwright's own events, but its status and headers are here.
      const answers = new Map();
      const cdp = await context.newCDPSession(page);
      await cdp.send("Network.enable");
      const entry = (id) => answers.get(id) || answers.set(id, {}).get(id);
      cdp.on("Network.requestWillBeSent", (e) => {
        entry(e.requestId).url = e.request.url;
        entry(e.requestId).method = e.request.method;
      });
      cdp.on("Network.responseReceivedExtraInfo", (e) => {
        const answer = entry(e.requestId);
        answer.status = e.statusCode;
        const allow = Object.keys(e.headers).find((h) => h.toLowerCase() === "access-control-allow-origin");
        answer.allow = allow && e.headers[allow];
      });
      cdp.on("Network.loadingFailed", (e) => {
        entry(e.requestId).corsError = e.corsErrorStatus && e.corsErrorStatus.corsError;
      });
      if (prepare) {
        await prepare(page);
      }
      await page.goto(origin + "/");
      await page.waitForFunction(() => typeof window.HeraldClient === "function", null, { timeout: WAIT_MS });
      return { page, answers };
    };

    // 1. A page on an allowed origin receives a broadcast over SSE and over
    // long-polling, and can read herald's error answers.
    const sse = await open(site);
    await sse.page.evaluate(() => window.start({ id: "sse-page", transports: ["sse"] }));
    const poll = await open(site);
    await poll.page.evaluate(() => window.start({ id: "poll-page", transports: ["poll"] }));
    for (const { page } of [sse, poll]) {
      await until("the page to connect", () =>
        page.evaluate(() => window.events.some(([n, p]) => n === "state" && p.state === "open")));
      await until("its registered", () => page.evaluate(() => window.events.some(([n]) => n === "registered")));
    }
    await publish(heraldPort, { message: "to every page" });
    for (const { page } of [sse, poll]) {
      await until("the broadcast on the page", async () => (await seen(page)).includes("to every page"));
    }
    for (const [{ answers }, route] of [[sse, "/events"], [poll, "/poll"]]) {
      const answer = [...answers.values()].find((a) => a.url && a.url.includes(route) && a.status);
      assert(answer && answer.status === 200 && answer.allow === site,
        route + " answered the page with its origin allowed: " + JSON.stringify(answer));
    }
    assert((await transport(sse.page)) === "sse" && (await transport(poll.page)) === "poll", "each stayed on its transport");
    const readable = await sse.page.evaluate(async (port) => {
      const response = await fetch("http://127.0.0.1:" + port + "/poll?since=1");
      return [response.status, (await response.json()).code];
    }, heraldPort);
    assert(readable[0] === 400 && readable[1] === "invalid_query", "the page reads herald's error: " + readable);
    console.log("ok: a page on an allowed origin receives over SSE and long-polling, and reads errors");

    // A client that sets Last-Event-ID itself (an SSE reader on fetch) is
    // preflighted, and herald allows it; any other header is refused.
    const preflighted = await sse.page.evaluate(async (port) => {
      const url = "http://127.0.0.1:" + port + "/poll?since=0&epoch=gone";
      const out = [];
      for (const headers of [{ "Last-Event-ID": "gone:0" }, { "X-Custom": "1" }]) {
        try {
          const response = await fetch(url, { headers });
          out.push(response.status + " " + (await response.json()).type);
        } catch (e) {
          out.push(e.name);
        }
      }
      return out;
    }, heraldPort);
    assert(preflighted[0] === "200 reset", "a GET with Last-Event-ID goes through: " + preflighted[0]);
    assert(preflighted[1] === "TypeError", "a GET with another header is refused: " + preflighted[1]);
    // The browser reports each answer to the test on its own time: the
    // page may see its fetch refused before the 403 is reported here.
    const preflightsOf = () =>
      [...sse.answers.values()].filter((a) => a.method === "OPTIONS" && a.url.includes("/poll"));
    await until("both preflights' answers reported", async () =>
      preflightsOf().length >= 2 && preflightsOf().every((a) => a.status));
    const preflights = preflightsOf();
    assert(JSON.stringify(preflights.map((a) => a.status)) === "[204,403]",
      "herald answered both preflights: " + JSON.stringify(preflights));
    console.log("ok: preflights for Last-Event-ID are answered, others refused");

    // 2. The same page from an unlisted origin: refused, nothing received.
    const refused = await open(stranger);
    await refused.page.evaluate(() => window.start({ id: "stranger-sse", transports: ["sse"] }));
    const refusedPoll = await open(stranger);
    await refusedPoll.page.evaluate(() => window.start({ id: "stranger-poll", transports: ["poll"] }));
    const raw = await refused.page.evaluate(async (port) => {
      const base = "http://127.0.0.1:" + port;
      let fetched;
      try {
        await fetch(base + "/poll?id=raw");
        fetched = "read";
      } catch (e) {
        fetched = e.name;
      }
      const stream = await new Promise((resolve) => {
        const source = new EventSource(base + "/events?id=raw");
        source.onmessage = () => resolve("message");
        source.onerror = () => {
          resolve(source.readyState === EventSource.CLOSED ? "closed" : "retrying");
          source.close();
        };
      });
      return [fetched, stream];
    }, heraldPort);
    assert(raw[0] === "TypeError", "a fetch from an unlisted origin fails: " + raw[0]);
    assert(raw[1] === "closed", "an EventSource from an unlisted origin fails for good: " + raw[1]);
    for (const [{ answers }, route] of [[refused, "/events"], [refusedPoll, "/poll"]]) {
      await until("herald's refusal of " + route, () =>
        [...answers.values()].some((a) => a.url && a.url.includes(route) && a.status === 403 &&
          a.allow === undefined && a.corsError === "MissingAllowOriginHeader"));
    }
    await publish(heraldPort, { message: "not for strangers" });
    await until("the allowed page to get it", async () => (await seen(sse.page)).includes("not for strangers"));
    for (const { page } of [refused, refusedPoll]) {
      assert((await seen(page)).length === 0, "an unlisted origin receives nothing");
      const errors = await page.evaluate(() => window.events.filter(([n]) => n === "close").length);
      assert(errors > 0, "the page saw its connection fail");
    }
    console.log("ok: a page on an unlisted origin is refused and receives nothing");

    // 3. herald.js falls back: WebSocket blocked → SSE; SSE blocked too →
    // long-polling; the WebSocket back → it returns to it. Numbered
    // messages published before, during and after each switch arrive
    // exactly once, in order.
    let wsBlocked = false;
    let sseBlocked = false;
    const sockets = [];
    const fallback = await open(site, async (page) => {
      await page.routeWebSocket(/\/ws/, (ws) => {
        if (wsBlocked) {
          ws.close({ code: 4999, reason: "blocked by the test" });
          return;
        }
        sockets.push({ ws, server: ws.connectToServer() });
      });
      await page.route(/\/events/, (route) => (sseBlocked ? route.abort() : route.continue()));
    });
    const page = fallback.page;
    await page.evaluate(() => window.start({
      id: "fallback",
      backoff: { initialMs: 200, maxMs: 1000 },
      upgradeAfterMs: 2000,
    }));
    let n = 0;
    const next = () => publish(heraldPort, { message: "n" + ++n, id: "fallback" });
    const reached = (what, name) => until(what, async () => (await transport(page)) === name &&
      (await seen(page)).includes("n" + n));
    await until("the WebSocket", () => page.evaluate(() => window.events.some(([e]) => e === "registered")));
    assert((await transport(page)) === "websocket", "herald.js starts with the WebSocket");
    await next();
    await reached("n1 over the WebSocket", "websocket");

    wsBlocked = true;
    for (const { ws, server } of sockets.splice(0)) {
      ws.close({ code: 4999, reason: "blocked by the test" });
      server.close();
    }
    await next();
    await next();
    await reached("the switch to SSE", "sse");
    await next();
    await reached("n4 over SSE", "sse");
    console.log("ok: with the WebSocket blocked, herald.js falls back to SSE");

    sseBlocked = true;
    // The SSE stream stays open until herald.js tries the WebSocket again
    // (upgradeAfterMs); then neither gets through, and it polls.
    await until("herald.js to try the WebSocket again", () => page.evaluate(() =>
      window.events.some(([e, t]) => e === "transport" && t.reason === "upgrade")));
    await next();
    await next();
    await reached("the switch to long-polling", "poll");
    await next();
    await reached("n7 over long-polling", "poll");
    console.log("ok: with SSE blocked too, herald.js falls back to long-polling");

    wsBlocked = false;
    await next();
    await reached("the return to the WebSocket", "websocket");
    await next();
    await reached("n9 over the WebSocket", "websocket");
    console.log("ok: once the WebSocket gets through again, herald.js returns to it");

    const got = await seen(page);
    const expected = Array.from({ length: n }, (_, i) => "n" + (i + 1));
    assert(JSON.stringify(got) === JSON.stringify(expected),
      "every message exactly once, in order: got " + JSON.stringify(got));
    const switches = await page.evaluate(() =>
      window.events.filter(([e]) => e === "transport").map(([, t]) => t.previous + ">" + t.transport + ":" + t.reason));
    for (const step of ["websocket>sse:fallback", "sse>poll:fallback", "poll>websocket:upgrade"]) {
      assert(switches.includes(step), "a switch " + step + " in " + switches.join(", "));
    }
    console.log("ok: across the switches, every message arrived once and in order (" + n + ")");

    // 4. herald's console shows the transport it is using.
    const consolePage = await (await browser.newContext()).newPage();
    await consolePage.routeWebSocket(/\/ws/, (ws) => ws.close({ code: 4999, reason: "blocked by the test" }));
    await consolePage.goto("http://127.0.0.1:" + heraldPort + "/");
    await until("the console on SSE", async () => (await consolePage.textContent("#transport")) === "sse");
    await consolePage.waitForSelector("text=Switching to sse", { timeout: WAIT_MS });
    await consolePage.waitForSelector("text=Hello client", { timeout: WAIT_MS });
    console.log("ok: the console shows its transport");

    // 5. What the browser itself sends when an EventSource reconnects
    // across origins: `Last-Event-ID` (no preflight needed). herald
    // restarts (a new epoch); the stream's own reconnect carries the id of
    // its last event, and herald's answer to it, a `reset`, is readable.
    await sse.page.evaluate((port) => {
      window.raw = [];
      const source = new EventSource("http://127.0.0.1:" + port + "/events?id=raw-es");
      source.onmessage = (e) => window.raw.push([e.lastEventId, JSON.parse(e.data).type]);
    }, heraldPort);
    const rawEvents = () => sse.page.evaluate(() => window.raw.slice());
    await until("the raw stream", async () => (await rawEvents()).some(([, t]) => t === "registered"));
    await publish(heraldPort, { message: "before the restart", id: "raw-es" });
    await until("its message", async () => (await rawEvents()).some(([, t]) => t === "message"));
    await stopped(herald);
    herald = startHerald(bin, dir, heraldPort, site);
    await until("the stream to reconnect by itself and resume", async () =>
      (await rawEvents()).some(([, t]) => t === "reset"));
    const streams = [...sse.answers.values()].filter((a) => a.url && a.url.includes("/events?id=raw-es"));
    assert(streams.filter((a) => a.method === "GET").length >= 2, "the stream reconnected by itself");
    assert(!streams.some((a) => a.method === "OPTIONS"), "EventSource sent no preflight for Last-Event-ID");
    console.log("ok: EventSource's own reconnect with Last-Event-ID crosses origins");

    // 6. A stalled path: a proxy that keeps the connections it has open
    // but passes nothing more over them (a NAT entry gone, a hung proxy),
    // while new connections get through. herald.js gives up an event
    // stream that brought nothing (not even a ping) for 3 heartbeats, and
    // a poll long past herald's poll timeout, and resumes over a new
    // connection: the message published meanwhile arrives.
    const links = new Set();
    const proxy = net.createServer((client) => {
      const upstream = net.connect(heraldPort, "127.0.0.1");
      const link = { stalled: false };
      links.add(link);
      for (const socket of [client, upstream]) {
        socket.on("error", () => {});
      }
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
      client.on("data", (data) => link.stalled || upstream.write(data));
      upstream.on("data", (data) => link.stalled || client.write(data));
    });
    const proxyPort = await freePort();
    await new Promise((resolve) => proxy.listen(proxyPort, "127.0.0.1", resolve));
    servers.push(proxy);
    const via = "http://127.0.0.1:" + proxyPort;
    const stalled = [];
    for (const [kind, options] of [
      ["sse", { eventsUrl: via + "/events" }],
      ["poll", { pollUrl: via + "/poll", pollTimeoutMs: 2000, heartbeatIntervalMs: 1000 }],
    ]) {
      const { page } = await open(site);
      const id = "stalled-" + kind;
      await page.evaluate((o) => window.start(o), Object.assign({ id: id, transports: [kind] }, options));
      await until(id + " to connect", () => page.evaluate(() => window.events.some(([n]) => n === "registered")));
      await publish(heraldPort, { message: "before the stall", id: id });
      await until(id + " to receive", async () => (await seen(page)).includes("before the stall"));
      stalled.push({ kind, id, page });
    }
    for (const link of links) {
      link.stalled = true;
    }
    for (const { id } of stalled) {
      await publish(heraldPort, { message: "during the stall", id: id });
    }
    for (const { kind, id, page } of stalled) {
      await until(id + " to notice the stall and resume", async () => (await seen(page)).includes("during the stall"));
      const got = await seen(page);
      assert(JSON.stringify(got) === JSON.stringify(["before the stall", "during the stall"]),
        kind + ": every message once: " + JSON.stringify(got));
      const reasons = await page.evaluate(() => window.events.filter(([n]) => n === "close").map(([, c]) => c.reason));
      const said = kind === "sse" ? /nothing from the server for/ : /no answer to the poll within 5000 ms/;
      assert(reasons.some((r) => said.test(r)), kind + ": closed as stalled: " + JSON.stringify(reasons));
    }
    console.log("ok: over a stalled path, the event stream and the poll are given up and resume");
  } finally {
    if (browser) {
      await browser.close();
    }
    await stopped(herald);
    for (const server of servers) {
      server.close();
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error.stack || String(error));
    process.exit(1);
  }
);

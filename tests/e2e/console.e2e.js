// herald's console page in a real browser (Debian's Chromium, headless),
// against two real herald nodes sharing a private Redis, so that one node can
// be stopped and started while the other keeps accepting publishes.
//
// Run by `cargo test` (tests/api/browser.rs), which passes:
//   HERALD_BIN   the herald binary
//   CHROMIUM     the browser (default /usr/bin/chromium)
//   SCREENSHOT   where to save a screenshot
// Exits 0 when every check passed; prints what failed otherwise.
"use strict";

const { chromium } = require("playwright-core");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const support = require("./support");

const { freePort, assert, publish, stopped } = support;
const WAIT_MS = 10000;
const until = (what, check) => support.until(what, check, WAIT_MS);

function startNode(bin, dir, port, redisPort) {
  const config = path.join(dir, "node-" + port + ".toml");
  fs.writeFileSync(
    config,
    `port = ${port}\nworkers = 1\n[broker]\nkind = "redis"\nurl = "redis://127.0.0.1:${redisPort}"\n`
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

function redisAnswers(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write("PING\r\n"));
    socket.on("data", (data) => {
      socket.destroy();
      resolve(data.toString().startsWith("+PONG"));
    });
    socket.on("error", () => resolve(false));
  });
}

async function healthy(port) {
  const response = await fetch("http://127.0.0.1:" + port + "/health");
  const health = await response.json();
  return health.broker_connected === true;
}

async function logText(page) {
  return page.textContent("#log");
}

async function main() {
  const bin = process.env.HERALD_BIN;
  assert(bin, "HERALD_BIN is set");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-e2e-"));
  const [redisPort, portA, portB] = [await freePort(), await freePort(), await freePort()];
  const children = [];
  let browser;
  try {
    const redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1",
      "--save", "", "--appendonly", "no", "--dir", dir], { stdio: "ignore" });
    children.push(redis);
    // herald refuses to start without its Redis: wait for it first.
    await until("redis", () => redisAnswers(redisPort));
    let nodeA = startNode(bin, dir, portA, redisPort);
    const nodeB = startNode(bin, dir, portB, redisPort);
    children.push(nodeA, nodeB);
    await until("both nodes", async () => (await healthy(portA)) && (await healthy(portB)));

    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    // Two visitors: separate contexts, so each has its own storage and id.
    const pages = [];
    for (let i = 0; i < 2; i++) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto("http://127.0.0.1:" + portA + "/");
      pages.push(page);
    }
    const [one, two] = pages;
    for (const page of pages) {
      await page.waitForSelector("text=Connected.", { timeout: WAIT_MS });
      await page.waitForSelector("text=Hello client", { timeout: WAIT_MS });
    }
    const idOne = await one.textContent("#client-id");
    const idTwo = await two.textContent("#client-id");
    assert(idOne !== idTwo, "two visitors have two ids");
    console.log("ok: both pages connected and greeted (" + idOne + ", " + idTwo + ")");

    // A broadcast (published on the other node) appears on both.
    await publish(portB, { message: "Ping to everyone" });
    for (const page of pages) {
      await page.waitForSelector("text=Ping to everyone", { timeout: WAIT_MS });
    }
    console.log("ok: a broadcast appears on both pages");

    // A direct message on one page only.
    await publish(portB, { message: "Only for one", id: idOne });
    await one.waitForSelector("text=Only for one", { timeout: WAIT_MS });
    await publish(portB, { message: "sentinel-1" });
    await two.waitForSelector("text=sentinel-1", { timeout: WAIT_MS });
    assert(!(await logText(two)).includes("Only for one"), "the direct message stays off page two");
    console.log("ok: a direct message appears on its page only");

    // A channel message only where subscribed (through the page's form).
    await one.fill("#channel", "news");
    await one.click("#subscribe");
    await one.waitForSelector("text=Subscribed to news", { timeout: WAIT_MS });
    await publish(portB, { message: "Channel headline", channel: "news" });
    await one.waitForSelector("text=Channel headline", { timeout: WAIT_MS });
    await publish(portB, { message: "sentinel-2" });
    await two.waitForSelector("text=sentinel-2", { timeout: WAIT_MS });
    assert(!(await logText(two)).includes("Channel headline"), "the channel message stays off page two");
    console.log("ok: a channel message appears only where subscribed");

    // The page's own publish form.
    await two.fill("#message", "From the form");
    await two.click("#publish");
    await one.waitForSelector("text=From the form", { timeout: WAIT_MS });
    await two.waitForSelector("#publish-result >> text=published", { timeout: WAIT_MS });
    console.log("ok: the publish form publishes");

    // A message with markup is shown as text and never runs.
    const hostile = "<script>window.__pwned = 1</script><b>bold</b><img src=x onerror=\"window.__pwned=2\">";
    await publish(portB, { message: hostile });
    await until("the hostile message as text", async () => (await logText(one)).includes("<script>window.__pwned"));
    assert((await one.evaluate(() => window.__pwned)) === undefined, "no script ran");
    assert((await one.locator("#log b, #log script, #log img").count()) === 0, "no markup in the log");
    console.log("ok: a message with <script> is shown as text");

    // Node A stops (the pages are connected to it); a message is published
    // on node B meanwhile; node A comes back: the pages reconnect by
    // themselves, show what they missed, then live messages.
    await stopped(nodeA);
    for (const page of pages) {
      await until("the page to notice", async () => (await page.textContent("#state")).includes("retrying"));
    }
    await publish(portB, { message: "Published while you were away", id: idOne });
    await publish(portB, { message: "Everyone, while away" });
    nodeA = startNode(bin, dir, portA, redisPort);
    children.push(nodeA);
    for (const page of pages) {
      await until("the page to reconnect", async () => (await page.textContent("#state")) === "connected");
      await page.waitForSelector("text=Everyone, while away", { timeout: WAIT_MS });
      await page.waitForSelector("text=Caught up", { timeout: WAIT_MS });
    }
    await one.waitForSelector("text=Published while you were away", { timeout: WAIT_MS });
    assert(!(await logText(two)).includes("Published while you were away"), "the missed direct message stays off page two");
    await publish(portA, { message: "After the restart" });
    for (const page of pages) {
      await page.waitForSelector("text=After the restart", { timeout: WAIT_MS });
    }
    const log = await logText(one);
    assert(log.indexOf("Everyone, while away") < log.indexOf("After the restart"), "missed messages come before live ones");
    assert(log.split("Everyone, while away").length === 2, "the missed broadcast appears once");
    console.log("ok: after a restart the pages reconnect and show what they missed, once, in order");

    // Two tabs of one browser: each its own id, a direct message to one
    // tab's id shows in that tab only, and a reload keeps the tab's id.
    const tab = await one.context().newPage();
    await tab.goto("http://127.0.0.1:" + portA + "/");
    await tab.waitForSelector("text=Hello client", { timeout: WAIT_MS });
    const idTab = await tab.textContent("#client-id");
    assert(idTab !== idOne, "two tabs of one browser have two ids (" + idTab + ")");
    await publish(portB, { message: "Only for the second tab", id: idTab });
    await tab.waitForSelector("text=Only for the second tab", { timeout: WAIT_MS });
    await publish(portB, { message: "sentinel-3" });
    await one.waitForSelector("text=sentinel-3", { timeout: WAIT_MS });
    assert(!(await logText(one)).includes("Only for the second tab"), "the other tab's direct message stays off the first tab");
    await tab.reload();
    await tab.waitForSelector("text=Hello client", { timeout: WAIT_MS });
    assert((await tab.textContent("#client-id")) === idTab, "a reload keeps the tab's id");
    console.log("ok: two tabs of one browser have their own ids, kept across a reload");

    if (process.env.SCREENSHOT) {
      fs.mkdirSync(path.dirname(process.env.SCREENSHOT), { recursive: true });
      await one.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
      console.log("screenshot: " + process.env.SCREENSHOT);
    }
  } finally {
    if (browser) {
      await browser.close();
    }
    for (const child of children) {
      await stopped(child);
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

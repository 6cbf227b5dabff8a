// What the browser tests share: a free port, waiting for a condition,
// checks, publishing to herald and stopping a child process.
"use strict";

const net = require("node:net");

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

// Asks `check` every 50 ms until it answers true; fails after `waitMs`.
async function until(what, check, waitMs) {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      if (await check()) {
        return;
      }
    } catch (e) {
      // not yet
    }
    if (Date.now() > deadline) {
      throw new Error("timed out waiting for " + what);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function assert(condition, message) {
  if (!condition) {
    throw new Error("check failed: " + message);
  }
}

// POSTs form `fields` to herald on `port`; returns its JSON answer.
async function publish(port, fields) {
  const response = await fetch("http://127.0.0.1:" + port + "/", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
  });
  assert(response.ok, "publish answered " + response.status);
  return response.json();
}

// Sends SIGTERM unless `child` has exited; resolves when it has.
function stopped(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) {
      resolve();
    } else {
      child.once("exit", resolve);
      child.kill("SIGTERM");
    }
  });
}

module.exports = { freePort, until, assert, publish, stopped };

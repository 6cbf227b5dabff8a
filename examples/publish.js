#!/usr/bin/env node
// Publish to herald from a Node main site (Node 18+, no dependencies).
//
//   node examples/publish.js "Order 17 is ready" --id 63
//   HERALD_KEY=... node examples/publish.js '{"event":"order","id":17}' --json
//
// HERALD_URL names herald (default http://127.0.0.1:8001/),
// HERALD_RETRY_BASE_MS the first wait before a retry (default 200); the
// waits double up to 25 times it (5 s), the longest any wait may be, a
// Retry-After's included.
"use strict";

const { randomUUID } = require("node:crypto");
const { setTimeout: sleep } = require("node:timers/promises");

const RETRY = [503, 504]; // 503: not published; 504: perhaps, so only with the same key

// Publishes once: every attempt carries the same Idempotency-Key, so a
// retry after a 504 or a lost connection is never delivered twice.
async function notify(message, { id, channel, url = "http://127.0.0.1:8001/",
                                 attempts = 5, baseDelayMs = 200 } = {}) {
  const headers = { "Content-Type": "application/json", "Idempotency-Key": randomUUID() };
  if (process.env.HERALD_KEY) headers.Authorization = `Bearer ${process.env.HERALD_KEY}`;
  const body = JSON.stringify({ message, id, channel });
  for (let attempt = 1; ; attempt++) {
    let res;
    try {
      res = await fetch(url, { method: "POST", headers, body, signal: AbortSignal.timeout(5000) });
    } catch (error) { // refused, reset or timed out: retry with the same key
      if (attempt === attempts) throw error;
    }
    if (res?.ok) return res.json(); // { delivered: N or null, seq: S, ... }
    const text = await res?.text();
    if (res && (!RETRY.includes(res.status) || attempt === attempts)) {
      throw new Error(`herald: ${res.status} ${text}`);
    }
    const after = res?.headers.get("Retry-After");
    const capMs = 25 * baseDelayMs; // 5 s: the longest wait, even when Retry-After asks more
    const delay = Math.min(baseDelayMs * 2 ** (attempt - 1), capMs);
    await sleep(/^\d+$/.test(after) ? Math.min(after * 1000, capMs)
                                    : delay / 2 + (Math.random() * delay) / 2);
  }
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const option = (name) => {
    const at = args.indexOf(name);
    return at >= 0 ? args[at + 1] : undefined;
  };
  const text = args[0];
  const message = args.includes("--json") ? JSON.parse(text) : text;
  notify(message, {
    id: option("--id"),
    channel: option("--channel"),
    url: process.env.HERALD_URL,
    baseDelayMs: Number(process.env.HERALD_RETRY_BASE_MS ?? 200),
  })
    .then((reply) => console.log(JSON.stringify(reply)))
    .catch((error) => {
      console.error(error.cause ? `${error.message}: ${error.cause.message}` : error.message);
      process.exit(1);
    });
}

module.exports = { notify };

#!/usr/bin/env node
// Publish to herald from a Node main site (Node 18+, no dependencies).
//
//   node examples/publish.js "Order 17 is ready" --id 63
//   HERALD_KEY=... node examples/publish.js '{"event":"order","id":17}' --json
"use strict";

async function notify(message, { id, channel, url = "http://127.0.0.1:8001/" } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (process.env.HERALD_KEY) {
    headers.Authorization = `Bearer ${process.env.HERALD_KEY}`;
  }
  const response = await fetch(url, {
    method: "POST",
    headers,
    body: JSON.stringify({ message, id, channel }),
    signal: AbortSignal.timeout(2000),
  });
  const reply = await response.json();
  if (!response.ok) {
    throw new Error(`herald refused (${response.status}): ${reply.error}`);
  }
  return reply;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const option = (name) => {
    const at = args.indexOf(name);
    return at >= 0 ? args[at + 1] : undefined;
  };
  const text = args[0];
  const message = args.includes("--json") ? JSON.parse(text) : text;
  notify(message, { id: option("--id"), channel: option("--channel"), url: process.env.HERALD_URL })
    .then((reply) => console.log(reply))
    .catch((error) => {
      console.error(error.message);
      process.exit(1);
    });
}

module.exports = { notify };

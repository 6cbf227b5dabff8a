// herald's Redis chaos run (started by scripts/chaos.sh, which documents
// the settings): a private Redis, two herald nodes, herald.js clients on
// every transport, steady publishers, and faults at random; then a bounded
// wait for the clients to catch up and the verdict. Exit 0 when nothing
// was lost, doubled, out of order or delivered though refused; 1 when
// something was; 2 when the run itself could not be set up.
"use strict";

const path = require("node:path");
const { Cluster, sleep, waitFor } = require("./cluster");
const { LatencyProxy } = require("./proxy");
const { makeClients, IDS, CHANNELS } = require("./clients");
const { Publishers } = require("./publishers");
const { Faults, seeded, EXTRA } = require("./faults");
const { judge, table, WARMUP } = require("./verdict");

function envInt(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") {
    return fallback;
  }
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error("chaos: " + name + " must be a whole number, not " + JSON.stringify(raw));
    process.exit(2);
  }
  return n;
}

const secs = envInt("CHAOS_SECS", 120);
const seed = envInt("CHAOS_SEED", Math.floor(Math.random() * 2 ** 31));
const rate = envInt("CHAOS_RATE", 60);
const history = envInt("CHAOS_HISTORY", 1000);
const settleSecs = envInt("CHAOS_SETTLE_SECS", 45);
const extra = (process.env.CHAOS_EXTRA_FAULTS || "").split(",").filter((k) => k !== "");
for (const kind of extra) {
  if (!EXTRA.includes(kind)) {
    console.error("chaos: CHAOS_EXTRA_FAULTS knows " + EXTRA.join(", ") + ", not " + JSON.stringify(kind));
    process.exit(2);
  }
}
const dir = process.env.CHAOS_DIR;
const heraldBin = process.env.CHAOS_HERALD || path.join(__dirname, "../../target/release/herald");
if (!dir) {
  console.error("chaos: CHAOS_DIR (a private temporary directory) is required; run scripts/chaos.sh");
  process.exit(2);
}

const t0 = Date.now();
const stamp = () => ((Date.now() - t0) / 1000).toFixed(1).padStart(6) + "s";
const log = (text) => console.log(stamp() + "  " + text);

const cluster = new Cluster(dir, heraldBin);
let proxy = null;
process.on("exit", () => cluster.killAllNow());
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cluster.killAllNow();
    process.exit(2);
  });
}

async function main() {
  console.log("chaos: seed " + seed + " (CHAOS_SEED=" + seed + " replays the same faults and targets), " +
    secs + " s of faults, " + rate + " publishes/s, history_size " + history);
  // One generator each, so that the publishers' pace cannot change the
  // faults drawn, nor the faults' timing the publishes' nodes and targets.
  const faultRng = seeded(seed);
  const publishRng = seeded(seed ^ 0x5bd1e995);
  await cluster.ports();
  cluster.writeConfig(history);
  await cluster.startRedis();
  proxy = new LatencyProxy(cluster.proxyPort, cluster.redisPort);
  await proxy.listen();
  await cluster.startNode("A");
  await cluster.startNode("B");
  cluster.generations.push({ start: -Infinity, end: Infinity, epoch: null });
  const epoch = await cluster.learnEpoch(5000);
  log("redis on " + cluster.redisPort + ", node A on " + cluster.nodePorts.A + " (through the proxy on " +
    cluster.proxyPort + "), node B on " + cluster.nodePorts.B + "; epoch " + epoch);

  const clients = makeClients(cluster.nodePorts);
  clients.forEach((c) => c.connect());
  // A long-poll without a position is held until a message comes: warm-up
  // broadcasts (not judged) give every client its first position before
  // the publishers start.
  let warmups = 0;
  const positioned = await waitFor(async () => {
    if (clients.every((c) => c.hasPosition())) {
      return true;
    }
    warmups += 1;
    await fetch("http://127.0.0.1:" + cluster.nodePorts.B + "/", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ message: WARMUP + warmups }),
    }).catch(() => {});
    return false;
  }, 15000, 500);
  if (!positioned) {
    const missing = clients.filter((c) => !c.hasPosition()).map((c) => c.name);
    throw new Error("clients without a position after 15 s: " + missing.join(", "));
  }
  log(clients.length + " clients connected: " +
    clients.map((c) => c.name + "(" + (c.id || "-") + ";" + (c.channels.join(",") || "-") + ")").join(" "));

  const publishers = new Publishers(cluster.nodePorts, publishRng, IDS, CHANNELS);
  publishers.start(rate);
  const faults = new Faults(cluster, proxy, faultRng, log, extra);
  await faults.run(Date.now() + secs * 1000);
  proxy.setDelay(0, 0);
  await publishers.stop();
  const pub = publishers.summary();
  log("faults over; publishes: " + pub.sent + " sent, " + pub.accepted + " accepted, " + pub.rejected +
    " refused, " + pub.maybe + " outcome unknown");

  let verdict = judge(clients, publishers, cluster);
  const settled = await waitFor(() => {
    verdict = judge(clients, publishers, cluster);
    return verdict.total.lost === 0;
  }, settleSecs * 1000, 500);
  log(settled ? "every client caught up" : "still missing messages after " + settleSecs + " s");
  clients.forEach((c) => c.close());

  console.log("\nfaults: " + Object.entries(faults.counts).map(([k, v]) => k + " " + v).join(", "));
  console.log("redis generations (epochs): " + cluster.generations.map((g) => g.epoch || "?").join(" → "));
  console.log("\n" + table(verdict) + "\n");
  const t = verdict.total;
  console.log("herald frames seen beneath herald.js: " + t.raw + "; outcome-unknown publishes received: " + t.maybeReceived);
  verdict.rows.forEach((row, i) => {
    for (const rec of row.lostItems.slice(0, 5)) {
      console.log("  lost at " + row.name + ": " + rec.data + " seq " + rec.seq + " via " + rec.node + " to " +
        rec.target.kind + (rec.target.value ? " " + rec.target.value : "") +
        " at " + ((rec.tq - t0) / 1000).toFixed(1) + "s");
    }
    for (const item of row.badItems.slice(0, 5)) {
      console.log("  " + row.name + ": " + item);
    }
    for (const r of clients[i].resets) {
      const at = (p) => (p ? p.epoch.slice(0, 8) + ":" + p.seq : "none");
      console.log("  reset at " + row.name + ": " + at(r.from) + " → " + at(r.to) + ": " + r.reason);
    }
  });
  const refused = new Map(); // refused publishes some client received anyway
  clients.forEach((c) => {
    for (const rec of publishers.records) {
      if (rec.outcome === "rejected" && c.counts.has(rec.data)) {
        refused.set(rec.data, rec);
      }
    }
  });
  if (refused.size > 0) {
    const why = new Map();
    for (const rec of refused.values()) {
      const key = "node " + rec.node + ": " + rec.detail.replace(/^(\d+) .*"error":"([^"]*)".*$/, "$1 $2");
      why.set(key, (why.get(key) || 0) + 1);
    }
    console.log("publishes answered \"not published\" that were delivered: " + refused.size);
    for (const [key, n] of why) {
      console.log("  " + n + " x " + key);
    }
  }
  const bad = t.lost + t.doubled + t.outOfOrder + t.phantom;
  console.log((bad === 0 ? "PASS" : "FAIL") + ": seed " + seed + ", " + secs + " s, accepted " + t.owed +
    " deliveries owed: received " + t.received + ", covered by reset " + t.covered + ", lost " + t.lost +
    ", doubled " + t.doubled + ", out of order " + t.outOfOrder + ", phantom " + t.phantom + ", resets " + t.resets);
  proxy.close();
  await cluster.stopAll();
  await sleep(100);
  return bad === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error("chaos: " + (err && err.stack ? err.stack : err));
    cluster.killAllNow();
    process.exit(2);
  }
);

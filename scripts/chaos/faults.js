// Faults, one after another, 2-5 s apart, drawn from a shuffled deck (a
// seeded shuffle, so CHAOS_SEED replays the same order) in which every
// kind appears, so that each deck's worth of run sees each kind at least
// once.
"use strict";

const { sleep } = require("./cluster");

// "redis-stale" (Redis back from a snapshot older than its last writes) is
// not in the deck: herald makes no promise for it; CHAOS_EXTRA_FAULTS adds
// it to see what happens.
const EXTRA = ["redis-stale"];

const DECK = [
  "pubsub-kill",
  "pubsub-kill",
  "conns-kill",
  "proxy-drop",
  "latency",
  "latency",
  "redis-restart",
  "node-restart-A",
  "node-restart-B",
  "redis-wipe",
];

// mulberry32: a small seeded generator, [0, 1).
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Faults {
  // `extra`: kinds added to every deck (CHAOS_EXTRA_FAULTS).
  constructor(cluster, proxy, rng, log, extra) {
    this.extra = extra || [];
    this.cluster = cluster;
    this.proxy = proxy;
    this.rng = rng;
    this.log = log;
    this.counts = {};
    this.deck = [];
    this.running = false;
  }

  draw() {
    if (this.deck.length === 0) {
      this.deck = DECK.concat(this.extra);
      for (let i = this.deck.length - 1; i > 0; i--) {
        const j = Math.floor(this.rng() * (i + 1));
        [this.deck[i], this.deck[j]] = [this.deck[j], this.deck[i]];
      }
    }
    return this.deck.shift();
  }

  between(lo, hi) {
    return Math.floor(lo + this.rng() * (hi - lo));
  }

  // Runs faults until `untilMs` (a Date.now() value); each one finishes
  // before the next is drawn.
  async run(untilMs) {
    this.running = true;
    while (Date.now() < untilMs) {
      await sleep(this.between(2000, 5000));
      if (Date.now() >= untilMs) {
        break;
      }
      const kind = this.draw();
      const detail = await this.inject(kind);
      this.counts[kind] = (this.counts[kind] || 0) + 1;
      this.log(kind + (detail ? " " + detail : ""));
    }
    this.running = false;
  }

  async inject(kind) {
    const c = this.cluster;
    switch (kind) {
      case "pubsub-kill":
        return "(" + (await c.redisCli("CLIENT", "KILL", "TYPE", "pubsub")) + " killed)";
      case "conns-kill": {
        const normal = await c.redisCli("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
        const pubsub = await c.redisCli("CLIENT", "KILL", "TYPE", "pubsub");
        return "(" + normal + " command, " + pubsub + " pubsub killed)";
      }
      case "proxy-drop":
        return "(" + this.proxy.dropAll() + " of A's connections cut)";
      case "latency": {
        const up = this.between(0, 51);
        const down = this.between(0, 51);
        this.proxy.setDelay(up, down);
        return "(A→Redis " + up + " ms, Redis→A " + down + " ms)";
      }
      case "redis-restart":
      case "redis-stale":
      case "redis-wipe": {
        const down = this.between(200, 2500);
        if (kind === "redis-restart") {
          await c.restartRedis("data", down);
          return "(with its data, down " + down + " ms)";
        }
        if (kind === "redis-stale") {
          const stale = this.between(200, 1000);
          await c.restartRedis("stale", down, stale);
          return "(from a snapshot " + stale + " ms old, down " + down + " ms)";
        }
        await c.restartRedis("none", down);
        const epoch = await c.learnEpoch(15000);
        return "(data lost, down " + down + " ms; new epoch " + (epoch || "not seen within 15 s") + ")";
      }
      case "node-restart-A":
      case "node-restart-B": {
        const down = this.between(200, 2500);
        const failed = await c.restartNode(kind.slice(-1), down);
        const again = failed ? "; exited at startup " + failed + " time(s) (Redis not reached), started again" : "";
        return "(SIGTERM, down " + down + " ms" + again + ")";
      }
      default:
        throw new Error("unknown fault " + kind);
    }
  }
}

module.exports = { Faults, seeded, DECK, EXTRA };

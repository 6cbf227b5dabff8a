// Publishers: a steady stream of `POST /` to both nodes, broadcast, direct
// (`id`) and channel (`channel`), each message a unique string. Each
// publish is recorded with its outcome:
//   accepted  200 with a seq: must reach every client it targets, or be
//             covered by a `reset` that client got;
//   rejected  an answer saying it was not published (503 and the like), or
//             the connection refused: must reach nobody;
//   maybe     a 504 with "published":"unknown" (the Redis call timed out,
//             or its connection broke before the answer), or the request
//             lost with no answer: either is fine.
"use strict";

class Publishers {
  constructor(nodePorts, rng, ids, channels) {
    this.nodePorts = nodePorts;
    this.rng = rng;
    this.ids = ids;
    this.channels = channels;
    this.records = [];
    this.inFlight = new Set();
    this.timer = null;
  }

  start(ratePerSec) {
    const everyMs = 1000 / ratePerSec;
    const began = Date.now();
    let sent = 0;
    this.timer = setInterval(() => {
      const due = Math.floor((Date.now() - began) / everyMs);
      while (sent < due) {
        sent += 1;
        this.publishOne();
      }
    }, Math.max(5, Math.floor(everyMs)));
  }

  pickTarget() {
    const r = this.rng();
    if (r < 1 / 3) {
      return { kind: "broadcast" };
    }
    if (r < 2 / 3) {
      return { kind: "id", value: this.ids[Math.floor(this.rng() * this.ids.length)] };
    }
    return { kind: "channel", value: this.channels[Math.floor(this.rng() * this.channels.length)] };
  }

  publishOne() {
    const n = this.records.length;
    const node = this.rng() < 0.5 ? "A" : "B";
    const target = this.pickTarget();
    const rec = { n, data: "m" + n, node, target, tq: Date.now(), tp: null, outcome: null, seq: null, detail: "" };
    this.records.push(rec);
    const body = { message: rec.data };
    if (target.kind !== "broadcast") {
      body[target.kind] = target.value;
    }
    const done = this.send(rec, body).finally(() => {
      rec.tp = Date.now();
      this.inFlight.delete(done);
    });
    this.inFlight.add(done);
  }

  async send(rec, body) {
    let res;
    let text;
    try {
      res = await fetch("http://127.0.0.1:" + this.nodePorts[rec.node] + "/", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10000),
      });
      text = await res.text();
    } catch (e) {
      const code = e && e.cause && e.cause.code;
      // Refused: nothing reached herald. Anything else: it may have.
      rec.outcome = code === "ECONNREFUSED" ? "rejected" : "maybe";
      rec.detail = String(code || e);
      return;
    }
    if (res.status === 200) {
      try {
        rec.seq = JSON.parse(text).seq;
        rec.outcome = Number.isSafeInteger(rec.seq) ? "accepted" : "maybe";
      } catch (e) {
        rec.outcome = "maybe";
      }
      return;
    }
    rec.detail = res.status + " " + text.slice(0, 200);
    let published;
    try {
      published = JSON.parse(text).published;
    } catch (e) {
      published = undefined;
    }
    rec.outcome = published === "unknown" ? "maybe" : "rejected";
  }

  async stop() {
    clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.inFlight]);
  }

  summary() {
    const out = { sent: this.records.length, accepted: 0, rejected: 0, maybe: 0 };
    for (const r of this.records) {
      out[r.outcome] += 1;
    }
    return out;
  }
}

module.exports = { Publishers };

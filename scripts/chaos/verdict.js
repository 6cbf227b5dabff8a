// The comparison at the end of a chaos run: per client, the accepted
// publishes that target it against what it received and the resets it got.
//
// Positions are ordered by (generation, seq): a generation is one Redis data
// set (a new one each time Redis lost its data, with its own epoch). A
// message accepted while generation g was up carries g's epoch; one whose
// request straddled a data loss may belong to either side, and is checked
// against both.
//
// A `reset` covers the messages after the client's position just before
// it, up to and including the position it gives: in the same epoch, the
// seqs in (from, to]; into a new epoch, the rest of the old epoch after
// `from`, every epoch in between, and the new one up to `to`.
//
// Per client: lost = owed (accepted, targeting it), not received, not
// covered by a reset; doubled = a message the application saw twice, plus
// a frame herald sent again that herald.js dropped; out of order = a frame
// below the client's position that it never had (herald.js drops it), or
// an application-level seq that went back within an epoch; phantom = a
// received message whose publish was answered "not published", or that
// was not meant for this client.
"use strict";

// The data of the broadcasts that give every client a first position
// before the run: not judged.
const WARMUP = "warmup-";

function generationsOf(cluster) {
  const byEpoch = new Map();
  cluster.generations.forEach((g, i) => {
    if (g.epoch) {
      byEpoch.set(g.epoch, i);
    }
  });
  const candidates = (rec) => {
    const out = [];
    cluster.generations.forEach((g, i) => {
      if (g.start <= rec.tp && rec.tq <= g.end) {
        out.push(i);
      }
    });
    return out;
  };
  return { byEpoch, candidates };
}

function covers(reset, gens, gen, seq) {
  const gf = gens.byEpoch.get(reset.from && reset.from.epoch);
  const gt = gens.byEpoch.get(reset.to.epoch);
  if (gf === undefined || gt === undefined) {
    return false;
  }
  const after = gen > gf || (gen === gf && seq > reset.from.seq);
  const upTo = gen < gt || (gen === gt && seq <= reset.to.seq);
  return after && upTo;
}

function judge(clients, publishers, cluster) {
  const gens = generationsOf(cluster);
  const byData = new Map(publishers.records.map((r) => [r.data, r]));
  const rows = [];
  for (const c of clients) {
    const row = {
      name: c.name, node: c.node, transport: c.transport, id: c.id || "-",
      channels: c.channels.join(",") || "-",
      owed: 0, received: 0, covered: 0, lost: 0, doubled: 0, outOfOrder: 0, phantom: 0,
      maybeReceived: 0, resets: c.resets.length, raw: c.raw, lostItems: [], badItems: [],
    };
    for (const rec of publishers.records) {
      if (rec.outcome !== "accepted" || !c.targetedBy(rec.target)) {
        continue;
      }
      row.owed += 1;
      if (c.counts.has(rec.data)) {
        row.received += 1;
        continue;
      }
      const cands = gens.candidates(rec);
      if (c.resets.some((r) => cands.some((g) => covers(r, gens, g, rec.seq)))) {
        row.covered += 1;
      } else {
        row.lost += 1;
        row.lostItems.push(rec);
      }
    }
    for (const [data, count] of c.counts) {
      if (String(data).startsWith(WARMUP)) {
        continue;
      }
      const rec = byData.get(data);
      if (count > 1) {
        row.doubled += count - 1;
        row.badItems.push("doubled " + data + " x" + count);
      }
      if (!rec || rec.outcome === "rejected" || !c.targetedBy(rec.target)) {
        row.phantom += 1;
        row.badItems.push("phantom " + data + " (" + (rec ? rec.outcome + " by node " + rec.node + " at " + (rec.tp - rec.tq) + " ms: " + rec.detail : "never sent") + ")");
      } else if (rec.outcome === "maybe") {
        row.maybeReceived += 1;
      }
    }
    row.doubled += c.repeats.length;
    row.outOfOrder += c.outOfOrder.length;
    for (const e of c.repeats) {
      row.badItems.push("herald repeated seq " + e.seq + " (" + e.data + ") at position " + e.position);
    }
    for (const e of c.outOfOrder) {
      row.badItems.push("herald sent seq " + e.seq + " (" + e.data + ") below position " + e.position);
    }
    const last = new Map();
    for (const m of c.received) {
      if (last.has(m.epoch) && m.seq <= last.get(m.epoch)) {
        row.outOfOrder += 1;
        row.badItems.push("application saw seq " + m.seq + " after " + last.get(m.epoch));
      }
      last.set(m.epoch, m.seq);
    }
    rows.push(row);
  }
  const total = {};
  for (const k of ["owed", "received", "covered", "lost", "doubled", "outOfOrder", "phantom", "maybeReceived", "resets", "raw"]) {
    total[k] = rows.reduce((sum, r) => sum + r[k], 0);
  }
  return { rows, total };
}

function pad(value, width, left) {
  const s = String(value);
  return left ? s.padEnd(width) : s.padStart(width);
}

function table(verdict) {
  const cols = [
    ["client", "name", 8, true], ["node", "node", 4, true], ["transport", "transport", 9, true],
    ["id", "id", 3, true], ["channels", "channels", 10, true], ["owed", "owed", 6], ["received", "received", 8],
    ["by reset", "covered", 8], ["lost", "lost", 5], ["doubled", "doubled", 7], ["out of order", "outOfOrder", 12],
    ["phantom", "phantom", 7], ["resets", "resets", 6],
  ];
  const line = (cells) => "| " + cells.join(" | ") + " |";
  const out = [line(cols.map(([h, , w, l]) => pad(h, w, l)))];
  out.push(line(cols.map(([, , w, l]) => (l ? "-".repeat(w) : "-".repeat(w - 1) + ":"))));
  for (const r of verdict.rows) {
    out.push(line(cols.map(([, k, w, l]) => pad(r[k], w, l))));
  }
  const t = Object.assign({ name: "total", node: "", transport: "", id: "", channels: "" }, verdict.total);
  out.push(line(cols.map(([, k, w, l]) => pad(t[k], w, l))));
  return out.join("\n");
}

module.exports = { judge, table, WARMUP };

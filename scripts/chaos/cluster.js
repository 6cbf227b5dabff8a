// The processes of a chaos run, all on 127.0.0.1: a private redis-server
// (its own port and directory, no automatic persistence) and two herald
// nodes, A reaching Redis through the latency proxy, B directly. Every pid
// started is appended to <dir>/pids, so that scripts/chaos.sh can kill
// what is left if this driver dies. Each Redis instance that lost its data
// starts a new *generation*: the cluster's epochs in order.
"use strict";

const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const { spawn, execFile } = require("node:child_process");

const PREFIX = "herald";

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A free TCP port on loopback (the kernel's choice).
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Polls `check` (async, true when done) every `everyMs` for up to `ms`.
async function waitFor(check, ms, everyMs = 100) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) {
      return true;
    }
    await sleep(everyMs);
  }
  return false;
}

function exited(child) {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child, ms) {
  if (exited(child)) {
    return Promise.resolve(true);
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

class Cluster {
  constructor(dir, heraldBin) {
    this.dir = dir;
    this.heraldBin = heraldBin;
    this.redisDir = path.join(dir, "redis");
    fs.mkdirSync(this.redisDir, { recursive: true });
    this.redis = null;
    this.nodes = {}; // name → { port, redisPort, child }
    this.generations = []; // { start, end, epoch }: one per Redis data set
  }

  async ports() {
    this.redisPort = await freePort();
    this.proxyPort = await freePort();
    this.nodePorts = { A: await freePort(), B: await freePort() };
  }

  track(child, what) {
    fs.appendFileSync(path.join(this.dir, "pids"), child.pid + " " + what + "\n");
  }

  redisCli(...args) {
    return new Promise((resolve) => {
      execFile("redis-cli", ["-p", String(this.redisPort), ...args], { timeout: 5000 }, (err, stdout) =>
        resolve(err ? null : stdout.trim())
      );
    });
  }

  async startRedis() {
    const log = fs.openSync(path.join(this.dir, "redis.log"), "a");
    const child = spawn(
      "redis-server",
      ["--port", String(this.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", this.redisDir, "--dbfilename", "dump.rdb", "--daemonize", "no"],
      { stdio: ["ignore", log, log] }
    );
    fs.closeSync(log);
    this.track(child, "redis-server");
    this.redis = child;
    const up = await waitFor(async () => (await this.redisCli("PING")) === "PONG", 10000);
    if (!up) {
      throw new Error("redis-server did not answer on port " + this.redisPort);
    }
  }

  // Restarts Redis. With its data ("data"): SHUTDOWN SAVE writes the
  // snapshot and exits in one step (no write can land between the two),
  // and the new server loads it. Without ("none"): SIGKILL and the
  // snapshot removed. "stale": SAVE, `staleMs` of traffic, SIGKILL, and the
  // new server loads the older snapshot (the writes after it are lost, the
  // epoch stays). `downMs` is the outage between the two.
  async restartRedis(data, downMs, staleMs = 0) {
    const withData = data !== "none";
    const dump = path.join(this.redisDir, "dump.rdb");
    if (data === "stale") {
      await this.redisCli("SAVE");
      await sleep(staleMs);
    }
    const killAt = Date.now();
    if (data === "data") {
      await this.redisCli("SHUTDOWN", "SAVE");
    } else {
      this.redis.kill("SIGKILL");
    }
    if (!(await waitExit(this.redis, 10000))) {
      this.redis.kill("SIGKILL");
      await waitExit(this.redis, 5000);
    }
    if (!withData) {
      fs.rmSync(dump, { force: true });
    }
    await sleep(downMs);
    await this.startRedis();
    if (!withData) {
      const previous = this.generations[this.generations.length - 1];
      previous.end = killAt;
      // Whatever ran after the kill ran on the new data set.
      this.generations.push({ start: killAt, end: Infinity, epoch: null });
    }
  }

  // Waits (bounded) until the current generation's epoch is known: set by
  // the first node that joins or publishes after Redis lost its data.
  async learnEpoch(ms) {
    const gen = this.generations[this.generations.length - 1];
    const before = this.generations.length > 1 ? this.generations[this.generations.length - 2].epoch : null;
    await waitFor(async () => {
      const epoch = await this.redisCli("GET", PREFIX + ":epoch");
      if (epoch && epoch !== before) {
        gen.epoch = epoch;
        return true;
      }
      return false;
    }, ms, 200);
    return gen.epoch;
  }

  // Starts node `name` and waits for its /health; returns how many
  // starts failed (exit 1, Redis unreachable) before it did.
  async startNode(name) {
    const port = this.nodePorts[name];
    const redisPort = name === "A" ? this.proxyPort : this.redisPort;
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith("HERALD_") && k !== "RUST_LOG") {
        env[k] = v;
      }
    }
    Object.assign(env, {
      HERALD_CONFIG: path.join(this.dir, "herald.toml"),
      HERALD_HOST: "127.0.0.1",
      HERALD_PORT: String(port),
      HERALD_BROKER__KIND: "redis",
      HERALD_BROKER__URL: "redis://127.0.0.1:" + redisPort,
      HERALD_BROKER__PREFIX: PREFIX,
    });
    // A node that cannot reach Redis within its startup bound exits 1;
    // like systemd's Restart=on-failure (2 s apart), start it again, up
    // to three times.
    for (let attempt = 1; ; attempt++) {
      const log = fs.openSync(path.join(this.dir, "herald-" + name + ".log"), "a");
      const child = spawn(this.heraldBin, [], { cwd: this.dir, env, stdio: ["ignore", log, log] });
      fs.closeSync(log);
      this.track(child, "herald");
      this.nodes[name] = { port, child };
      const up = await waitFor(async () => {
        if (exited(child)) {
          return true;
        }
        try {
          const res = await fetch("http://127.0.0.1:" + port + "/health", { signal: AbortSignal.timeout(1000) });
          return res.ok;
        } catch (e) {
          return false;
        }
      }, 15000);
      if (up && !exited(child)) {
        return attempt - 1;
      }
      if (!(up && child.exitCode === 1 && attempt < 3)) {
        throw new Error("herald node " + name + " did not start on port " + port + " (see herald-" + name + ".log)");
      }
      await sleep(2000);
    }
  }

  // SIGTERM (herald closes its sessions with 1001 and exits), then the same
  // port again after `downMs`. Returns how many starts failed first.
  async restartNode(name, downMs) {
    const { child } = this.nodes[name];
    child.kill("SIGTERM");
    if (!(await waitExit(child, 15000))) {
      child.kill("SIGKILL");
      await waitExit(child, 5000);
    }
    await sleep(downMs);
    return this.startNode(name);
  }

  writeConfig(historySize) {
    const lines = [
      "# written by scripts/chaos.sh for one run",
      "history_size = " + historySize,
      "max_connections_per_ip = 1000",
      "max_tcp_connections_per_ip = 1000",
    ];
    fs.writeFileSync(path.join(this.dir, "herald.toml"), lines.join("\n") + "\n");
  }

  async stopAll() {
    const children = Object.values(this.nodes).map((n) => n.child);
    for (const child of children) {
      if (!exited(child)) {
        child.kill("SIGTERM");
      }
    }
    for (const child of children) {
      if (!(await waitExit(child, 12000))) {
        child.kill("SIGKILL");
      }
    }
    if (this.redis && !exited(this.redis)) {
      this.redis.kill("SIGKILL");
      await waitExit(this.redis, 5000);
    }
  }

  // Synchronous last resort (process exit): SIGKILL whatever still runs.
  killAllNow() {
    for (const child of [this.redis, ...Object.values(this.nodes).map((n) => n.child)]) {
      if (child && !exited(child)) {
        try {
          child.kill("SIGKILL");
        } catch (e) {
          // already gone
        }
      }
    }
  }
}

module.exports = { Cluster, PREFIX, sleep, waitFor };

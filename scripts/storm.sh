#!/usr/bin/env bash
# Reconnect storm: N clients connected to herald (pinned to CPU 0) receive
# paced broadcasts; halfway through, every client drops its connection at
# once and comes back with herald.js's backoff and jitter, resuming from its
# position. Prints how long until all were back, how many reconnections
# were refused, and whether any message was lost or doubled.
#
#   scripts/storm.sh                 5,000 clients, 100 broadcasts at 10/s
#   CLIENTS=2000 RATE=50 MESSAGES=300 scripts/storm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/herald.sh
clients=${CLIENTS:-5000}
messages=${MESSAGES:-100}
rate=${RATE:-10}
port=${PORT:-8061}

cargo build --release -p herald -p herald-bench
trap stop_herald EXIT
start_herald "$port" taskset -c 0 target/release/herald --config bench/herald.toml --port "$port"
result=$(mktemp)
taskset -c 1 target/release/herald-bench run --addr "127.0.0.1:$port" --scenario storm \
  --clients "$clients" --messages "$messages" --rate "$rate" --server-pid "$herald_pid" >"$result" || true
python3 - "$result" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ms = lambda us: us / 1000
print("clients %d, broadcasts %d" % (r["clients"], r["messages"]))
print("all back and resumed after the storm in %.2f s" % r["storm_recovery_s"])
print("reconnections refused meanwhile: %d, resumes that reset: %d" % (r["storm_refused"], r["storm_resets"]))
print("deliveries %d of %d: lost %d, duplicated %d, misrouted %d"
      % (r["delivered"], r["expected"], r["lost"], r["duplicated"], r["misrouted"]))
print("latency p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (ms(r["p50_us"]), ms(r["p99_us"]), ms(r["max_us"])))
print("valid" if r["valid"] else "INVALID: " + r["note"])
sys.exit(0 if r["valid"] else 1)
PY

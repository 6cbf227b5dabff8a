#!/usr/bin/env bash
# Chaos run of a Redis cluster: a private redis-server, two herald nodes
# (node A reaching Redis through a TCP proxy whose delay changes and which
# cuts its connections), ten static/herald.js clients over WebSocket, SSE
# and long-polling on both nodes, and publishers (broadcast, id, channel)
# on both nodes, while faults hit at random: pub/sub connections killed,
# every Redis connection killed, A's connections cut, A's latency changed
# (0-50 ms each way), Redis restarted with its data and without it, a node
# restarted (SIGTERM). Then it waits (bounded) for the clients to catch up
# and checks, per client, that every accepted publish targeting it arrived
# exactly once and in order, or that a `reset` it got covers it. Prints the
# figures; fails if anything was lost, doubled, out of order, or delivered
# though its publish was refused. Everything runs on 127.0.0.1 and stops
# by itself; see docs/reliability.md ("Redis: chaos").
#
#   scripts/chaos.sh                    2 minutes of faults
#   CHAOS_SECS=60 scripts/chaos.sh      1 minute (what .ci/run does)
#   CHAOS_SEED=12345 scripts/chaos.sh   the same faults and targets again
#   CHAOS_RATE=60 CHAOS_HISTORY=1000 CHAOS_SETTLE_SECS=45 scripts/chaos.sh
#   CHAOS_EXTRA_FAULTS=redis-stale      also Redis back from an older snapshot
#   CHAOS_KEEP=1                        keep the logs (Redis's, each node's)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${CHAOS_SECS:-120}
settle=${CHAOS_SETTLE_SECS:-45}
for tool in node npm redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "chaos: $tool is needed" >&2; exit 2; }
done

cargo build --release -q -p herald
if [ ! -d scripts/chaos/node_modules/eventsource ]; then
  (cd scripts/chaos && npm ci --no-audit --no-fund --loglevel=error)
fi

dir=$(mktemp -d -t herald-chaos.XXXXXX)
# Kills what the driver started (it records each pid) if it did not.
cleanup() {
  if [ -f "$dir/pids" ]; then
    while read -r pid what; do
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$what"; then
        kill -9 "$pid" 2>/dev/null || true
      fi
    done <"$dir/pids"
  fi
  if [ "${CHAOS_KEEP:-}" = 1 ]; then
    echo "chaos: logs kept in $dir"
  else
    rm -rf "$dir"
  fi
}
trap cleanup EXIT

status=0
CHAOS_DIR=$dir CHAOS_SECS=$secs CHAOS_SETTLE_SECS=$settle \
  timeout --kill-after=10 $((secs + settle + 90)) \
  node --experimental-websocket --no-warnings scripts/chaos/chaos.js || status=$?
if [ "$status" -ne 0 ]; then
  echo "chaos: failed (exit $status); the nodes' last log lines:"
  for node in A B; do
    echo "-- node $node"
    tail -n 15 "$dir/herald-$node.log" 2>/dev/null || true
  done
fi
exit "$status"

#!/usr/bin/env bash
# The benchmark suite: herald, the ceiling server (the same work with
# nothing else: tokio + tungstenite + hyper, bench/src/bin/ceiling.rs) and
# Socket.IO 4 (bench/socketio), each started fresh for every run and pinned
# to SERVER_CPU (default CPU 0), with the load generator pinned to
# GENERATOR_CPU (default CPU 1), where it runs on one thread.
# Writes JSON lines, a Markdown summary of medians (each divided by the
# ceiling's, with the generator's CPU share) and a chart.
#
#   bench/run.sh            full suite, 3 repeats (about 15 minutes)
#   bench/run.sh quick      small sizes, 1 repeat (about a minute)
#   REPEATS=5 bench/run.sh  more repeats
#   SERVERS="herald ceiling" bench/run.sh
#   SCENARIOS="broadcast paced" bench/run.sh   only these scenarios
#
# The ceiling speaks no channels, so it has no channel scenario (that row
# has no ratio).
#
# Results go to bench/results/<date>/: results.jsonl, summary.md, chart.svg.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-full}
servers=${SERVERS:-herald ceiling socketio}
server_cpu=${SERVER_CPU:-0}
generator_cpu=${GENERATOR_CPU:-1}
port=${PORT:-8011}
if [ "$mode" = quick ]; then repeats=${REPEATS:-1}; else repeats=${REPEATS:-3}; fi

cargo build --release -p herald -p herald-bench
if [[ " $servers " == *" socketio "* ]] && [ ! -d bench/socketio/node_modules ]; then
  (cd bench/socketio && npm ci --no-audit --no-fund --silent)
fi

out=bench/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
echo "results: $out"

server_pid=
start_server() {
  case $1 in
    herald) taskset -c "$server_cpu" target/release/herald --config bench/herald.toml --port "$port" \
              >>"$out/herald.log" 2>&1 & ;;
    ceiling) PORT=$port taskset -c "$server_cpu" target/release/ceiling-server \
              >>"$out/ceiling.log" 2>&1 & ;;
    socketio) taskset -c "$server_cpu" node bench/socketio/server.js --port "$port" \
              >>"$out/socketio.log" 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$1 did not start" >&2
  return 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT

scenarios=${SCENARIOS:-idle connect broadcast direct channel paced}

# run <server> --scenario <name> <more generator arguments...>
run() {
  local server=$1; shift
  [[ " $scenarios " == *" $2 "* ]] || return 0
  [ "$server" = ceiling ] && [ "$2" = channel ] && return 0
  local flavor=$server
  for _ in $(seq "$repeats"); do
    start_server "$server"
    if ! taskset -c "$generator_cpu" target/release/herald-bench run --addr "127.0.0.1:$port" \
         --flavor "$flavor" --label "$server" --server-pid "$server_pid" "$@" >>"$out/results.jsonl"; then
      echo "invalid run: $server $*" >&2
    fi
    stop_server
  done
}

for server in $servers; do
  echo "== $server"
  if [ "$mode" = quick ]; then
    run "$server" --scenario idle --clients 1000 --hold-secs 1
    run "$server" --scenario broadcast --clients 200 --messages 50
    run "$server" --scenario direct --clients 200 --messages 2000 --publishers 4
    run "$server" --scenario paced --clients 200 --messages 20 --rate 20
  else
    run "$server" --scenario idle --clients 10000 --hold-secs 5
    run "$server" --scenario connect --clients 5000
    for clients in 1000 5000 10000; do
      run "$server" --scenario broadcast --clients "$clients" --messages $((200000 / clients))
    done
    run "$server" --scenario direct --clients 1000 --messages 50000 --publishers 8
    # 1,000 channels of 10 subscribers, publishes spread over them.
    run "$server" --scenario channel --clients 10000 --channel-size 10 --messages 20000 --publishers 4
    run "$server" --scenario paced --clients 1000 --messages 100 --rate 10
  fi
done

# The most connections this machine allows one process (RLIMIT_NOFILE is
# 20000 here, and cannot be raised), all receiving broadcasts.
if [ "$mode" = full ] && [[ " $servers " == *" herald "* ]]; then
  max=17000
  echo "== herald, $max connections"
  run herald --scenario broadcast --clients "$max" --messages 5 --connect-concurrency 512
fi

target/release/herald-bench report --input "$out/results.jsonl" \
  --markdown "$out/summary.md" --chart "$out/chart.svg"
cat "$out/summary.md"

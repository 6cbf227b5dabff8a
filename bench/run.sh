#!/usr/bin/env bash
# The benchmark suite: herald, the ceiling server (the same work with
# nothing else: tokio + tungstenite + hyper, bench/src/bin/ceiling.rs) and
# Socket.IO 4 (bench/socketio), each started fresh for every run and pinned
# to SERVER_CPU (default CPU 0), with the load generator pinned to
# GENERATOR_CPU (default CPU 1), where it runs on one thread.
# herald-redis (in the default list when redis-server is installed; about
# a minute of the full suite): two herald nodes on one private
# redis-server (REDIS_PORT, default 6391, no persistence), all three pinned
# to SERVER_CPU, on PORT and PORT+1 (bench/herald-redis.toml); clients are
# spread over both nodes and publishers POST to the first, so every message
# goes through Redis and half the deliveries cross from one node to the
# other. Its memory figures are the two nodes' (Redis's is not counted).
# Within a row of the table the servers take turns, one run each per round.
# Writes JSON lines, a Markdown summary of medians (each divided by the
# ceiling's, with the generator's CPU share) and a chart.
#
#   bench/run.sh            full suite, 3 repeats (about 12 minutes)
#   bench/run.sh quick      small sizes, 1 repeat (about a minute)
#   REPEATS=5 bench/run.sh  more repeats
#   SERVERS="herald ceiling" bench/run.sh
#   SERVERS="herald herald-redis" bench/run.sh quick
#   SCENARIOS="broadcast paced" bench/run.sh   only these scenarios
#
# The ceiling speaks no channels, so it has no channel scenario (that row
# has no ratio).
#
# Results go to bench/results/<date>/: results.jsonl, summary.md, chart.svg.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-full}
default_servers="herald ceiling socketio"
if command -v redis-server >/dev/null; then
  default_servers+=" herald-redis"
elif [ -z "${SERVERS:-}" ]; then
  echo "redis-server is not installed: herald-redis is left out" >&2
fi
servers=${SERVERS:-$default_servers}
server_cpu=${SERVER_CPU:-0}
generator_cpu=${GENERATOR_CPU:-1}
port=${PORT:-8011}
redis_port=${REDIS_PORT:-6391}
if [ "$mode" = quick ]; then repeats=${REPEATS:-1}; else repeats=${REPEATS:-3}; fi

cargo build --release -p herald -p herald-bench
if [[ " $servers " == *" socketio "* ]] && [ ! -d bench/socketio/node_modules ]; then
  (cd bench/socketio && npm ci --no-audit --no-fund --silent)
fi

out=bench/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
echo "results: $out"

# Every process of the server under test; the generator is given the
# addresses it answers on (clients round-robin, publishers on the first).
server_pids=()
addrs=()
# Waits until GET /health on port $1 answers (and holds $2, if given).
wait_health() {
  local body
  for _ in $(seq 100); do
    if body=$(curl -sf "http://127.0.0.1:$1/health" 2>/dev/null) && [[ $body == *"${2:-}"* ]]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

redis_ping() { [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ]; }

start_redis_nodes() {
  if redis_ping; then
    echo "a Redis already answers on port $redis_port: set REDIS_PORT" >&2
    return 1
  fi
  taskset -c "$server_cpu" redis-server --port "$redis_port" --bind 127.0.0.1 \
    --save "" --appendonly no --dir "$out" >>"$out/redis.log" 2>&1 &
  server_pids=($!)
  local tries=0
  until redis_ping; do
    if ((++tries > 100)); then
      echo "redis-server did not start on port $redis_port" >&2
      return 1
    fi
    sleep 0.1
  done
  local node
  for node in "$port" "$((port + 1))"; do
    HERALD_BROKER__URL=redis://127.0.0.1:$redis_port taskset -c "$server_cpu" \
      target/release/herald --config bench/herald-redis.toml --port "$node" \
      >>"$out/herald-redis.log" 2>&1 &
    server_pids+=($!)
    addrs+=(--addr "127.0.0.1:$node" --server-pid "$!")
  done
  for node in "$port" "$((port + 1))"; do
    if ! wait_health "$node" '"broker_connected":true'; then
      echo "herald-redis node on $node did not start" >&2
      return 1
    fi
  done
}

start_server() {
  server_pids=()
  addrs=()
  case $1 in
    herald-redis) start_redis_nodes; return ;;
    herald) taskset -c "$server_cpu" target/release/herald --config bench/herald.toml --port "$port" \
              >>"$out/herald.log" 2>&1 & ;;
    ceiling) PORT=$port taskset -c "$server_cpu" target/release/ceiling-server \
              >>"$out/ceiling.log" 2>&1 & ;;
    socketio) taskset -c "$server_cpu" node bench/socketio/server.js --port "$port" \
              >>"$out/socketio.log" 2>&1 & ;;
  esac
  server_pids=($!)
  addrs=(--addr "127.0.0.1:$port" --server-pid "$!")
  if wait_health "$port"; then return 0; fi
  echo "$1 did not start" >&2
  return 1
}

# Stops the herald nodes before their Redis, so none of them sees it go.
stop_server() {
  local i
  for ((i = ${#server_pids[@]} - 1; i >= 0; i--)); do
    kill "${server_pids[i]}" 2>/dev/null || true
    wait "${server_pids[i]}" 2>/dev/null || true
  done
  server_pids=()
}
trap stop_server EXIT

scenarios=${SCENARIOS:-idle connect broadcast direct channel paced}

# Whether <server> takes part in a row: run <server> --scenario <name> ...
takes_part() {
  local server=$1; shift
  [[ " $servers " == *" $server "* ]] || return 1
  [[ " $scenarios " == *" $2 "* ]] || return 1
  [ "$server" = ceiling ] && [ "$2" = channel ] && return 1
  # On Redis: the scenarios that publish, and broadcast to 1000 clients.
  if [ "$server" = herald-redis ]; then
    case $2 in idle | connect) return 1 ;; esac
    [ "$mode" = full ] && [ "$2" = broadcast ] && [ "$4" != 1000 ] && return 1
  fi
  return 0
}

# row [--only "<servers>"] --scenario <name> <more generator arguments...>:
# one row of the table, `repeats` rounds of every server taking part in
# turn (herald, the ceiling, ...), so that whatever else the machine does
# over the minutes of a row weighs on every server alike.
row() {
  local only=$servers
  if [ "$1" = --only ]; then only=$2; shift 2; fi
  local server round
  echo "== $*"
  for ((round = 1; round <= repeats; round++)); do
    for server in $only; do
      takes_part "$server" "$@" || continue
      start_server "$server"
      if ! taskset -c "$generator_cpu" target/release/herald-bench run "${addrs[@]}" \
           --flavor "${server%-redis}" --label "$server" "$@" >>"$out/results.jsonl"; then
        echo "invalid run: $server $*" >&2
      fi
      stop_server
    done
  done
}

if [ "$mode" = quick ]; then
  row --scenario idle --clients 1000 --hold-secs 1
  row --scenario broadcast --clients 200 --messages 50
  row --scenario direct --clients 200 --messages 2000 --publishers 4
  row --scenario paced --clients 200 --messages 20 --rate 20
else
  row --scenario idle --clients 10000 --hold-secs 5
  row --scenario connect --clients 5000
  for clients in 1000 5000 10000; do
    row --scenario broadcast --clients "$clients" --messages $((200000 / clients))
  done
  row --scenario direct --clients 1000 --messages 50000 --publishers 8
  # 1,000 channels of 10 subscribers, publishes spread over them.
  row --scenario channel --clients 10000 --channel-size 10 --messages 20000 --publishers 4
  row --scenario paced --clients 1000 --messages 100 --rate 10
fi

# The most connections this machine allows (RLIMIT_NOFILE is 20000 here and
# cannot be raised; herald keeps some descriptors for itself and fits its
# caps to the rest, about 17,400): held idle for 30 s (RSS, and the
# server's CPU, all heartbeats), then receiving 2 broadcasts a second
# (latency at that scale; a broadcast at full speed would measure the
# generator, whose one core reads 17,000 sockets).
if [ "$mode" = full ]; then
  max=17000
  echo "== $max connections"
  row --only "herald ceiling" --scenario idle --clients "$max" --hold-secs 30 --connect-concurrency 512
  row --only "herald ceiling" --scenario paced --clients "$max" --messages 20 --rate 2 --connect-concurrency 512
fi

target/release/herald-bench report --input "$out/results.jsonl" \
  --markdown "$out/summary.md" --chart "$out/chart.svg"
cat "$out/summary.md"

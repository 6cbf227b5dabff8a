#!/usr/bin/env bash
# A two-node herald cluster on one machine, for a demo: a private Redis on
# port 6390 and herald nodes on 8001 and 8002. Ctrl-C stops everything.
#
#   deploy/cluster-demo.sh
#   # browse http://127.0.0.1:8001/ and http://127.0.0.1:8002/, then:
#   curl 127.0.0.1:8002 -d message=Hello_from_node_2    # reaches both pages
set -euo pipefail
cd "$(dirname "$0")/.."
redis_port=${REDIS_PORT:-6390}

cargo build --release -p herald
dir=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >/dev/null &
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done

for port in 8001 8002; do
  cat >"$dir/node-$port.toml" <<TOML
port = $port
[broker]
kind = "redis"
url = "redis://127.0.0.1:$redis_port"
TOML
  target/release/herald --config "$dir/node-$port.toml" &
done
echo "herald nodes on http://127.0.0.1:8001 and http://127.0.0.1:8002 (Redis on $redis_port)"
wait

# Sourced by the scripts beside it: start and stop a herald for a run.

herald_pid=

# start_herald PORT COMMAND...: runs COMMAND (a herald, possibly behind
# taskset) in the background, its output in $herald_log (default: none),
# sets herald_pid, and waits until /health answers on PORT. Fails if herald
# exits or does not answer within 10 s.
start_herald() {
  local port=$1
  shift
  "$@" >"${herald_log:-/dev/null}" 2>&1 &
  herald_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0
    kill -0 "$herald_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "herald did not start on port $port" >&2
  return 1
}

# stop_herald: stops the herald started last, if any.
stop_herald() {
  if [ -n "$herald_pid" ]; then
    kill "$herald_pid" 2>/dev/null || true
    wait "$herald_pid" 2>/dev/null || true
    herald_pid=
  fi
}

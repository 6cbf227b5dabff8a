#!/usr/bin/env bash
# The README's run command, as written, on this checkout: `cargo run` must
# start herald on 127.0.0.1:8001 serving the console page at `/`, and
# SIGTERM must stop it with exit code 0. Fails otherwise.
#
#   scripts/first-run.sh            # limit: 600 s to build and start
set -euo pipefail
cd "$(dirname "$0")/.."

limit="${FIRST_RUN_LIMIT_SECS:-600}"
url="http://127.0.0.1:8001/"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

if curl -s -o /dev/null "$url"; then
  echo "something already answers on $url: stop it first" >&2
  exit 1
fi

# The README's command, exactly.
cargo run >"$log" 2>&1 &
pid=$!
deadline=$((SECONDS + limit))
until page="$(curl -s --max-time 2 "$url")" && [[ "$page" == *"herald console"* ]]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "FAIL: \`cargo run\` exited before herald answered:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  if ((SECONDS > deadline)); then
    echo "FAIL: herald did not answer on $url within ${limit}s" >&2
    kill "$pid" 2>/dev/null || true
    tail -20 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
js_status="$(curl -s -o /dev/null -w '%{http_code}' "${url}static/herald.js")"
if [[ "$js_status" != 200 ]]; then
  echo "FAIL: /static/herald.js answered $js_status" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
fi
# cargo replaces itself with herald on Unix; otherwise herald is its child.
herald_pid="$(pgrep -P "$pid" -x herald || echo "$pid")"
kill -TERM "$herald_pid"
status=0
wait "$pid" || status=$?
if [[ "$status" != 0 ]]; then
  echo "FAIL: herald exited with $status after SIGTERM" >&2
  tail -20 "$log" >&2
  exit 1
fi
echo "ok: \`cargo run\` served the console on $url and stopped with exit 0 on SIGTERM"

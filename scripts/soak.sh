#!/usr/bin/env bash
# Soak: herald under a steady mix of connects, disconnects, subscribes,
# publishes (broadcast, direct, channel) and slow readers for a set time;
# then every client leaves. Prints the server's memory, file descriptors,
# sessions, ids and channels over time, and whether the clients that stayed
# lost or doubled any message. Fails if they did, or if sessions, ids,
# channels or file descriptors do not return to their baseline.
#
#   scripts/soak.sh                 10 minutes
#   SOAK_SECS=60 scripts/soak.sh    1 minute (what .ci/run does)
#   STAYERS=500 CHURN=50 RATE=100 SLOW=50 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/herald.sh
secs=${SOAK_SECS:-600}
stayers=${STAYERS:-200}
churn=${CHURN:-20}
rate=${RATE:-50}
slow=${SLOW:-20}
port=${PORT:-8062}
sample=${SAMPLE_SECS:-$(( secs >= 300 ? 30 : 10 ))}

cargo build --release -q -p herald -p herald-bench
log=$(mktemp)
trap 'stop_herald; rm -f "$log"' EXIT
herald_log=$log start_herald "$port" target/release/herald --config bench/herald.toml --port "$port"
echo "soak: ${secs}s, $stayers stayers, $churn connects/s, $rate publishes/s, $slow slow readers"
result=$(mktemp)
status=0
target/release/herald-bench soak --addr "127.0.0.1:$port" --server-pid "$herald_pid" \
  --duration-secs "$secs" --stayers "$stayers" --churn-rate "$churn" \
  --publish-rate "$rate" --slow-readers "$slow" --sample-secs "$sample" >"$result" || status=$?
python3 - "$result" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
mib = lambda kib: kib / 1024
print("|      t (s) |  RSS (MiB) |   fds | sessions |   ids | channels | history (KiB) |")
print("|-----------:|-----------:|------:|---------:|------:|---------:|--------------:|")
for s in [r["baseline"]] + r["samples"]:
    print("| %10.1f | %10.1f | %5d | %8d | %5d | %8d | %13.1f |" % (
        s["t_s"], mib(s["rss_kib"]), s["fds"], s["sessions"], s["ids"], s["channels"],
        s["history_bytes"] / 1024))
print("(first row: before any client; last row: after every client left)")
print("published %d; stayers owed %d deliveries: delivered %d, lost %d, duplicated %d; stayers dropped %d"
      % (r["published"], r["expected"], r["delivered"], r["lost"], r["duplicated"], r["stayers_dropped"]))
ended = ", ".join("%s: %d" % kv for kv in r["slow_ended"].items()) or "none"
print("churn sessions %d (failed to open %d); slow-reader sessions %d, ended by the server: %s"
      % (r["churn_sessions"], r["churn_failed"], r["slow_sessions"], ended))
print("RSS: baseline %.1f MiB, peak %.1f MiB, after leaving %.1f MiB"
      % (mib(r["baseline"]["rss_kib"]), mib(r["peak"]["rss_kib"]), mib(r["end"]["rss_kib"])))
print("PASS" if r["valid"] else "FAIL: " + r["note"])
PY
echo "why herald closed sessions (its own log, reason=...):"
grep -o 'id="slow[0-9]*" reason=[a-z_ ]*' "$log" | sed 's/.*reason=/  slow readers: /' | sort | uniq -c || true
grep -o 'id="s[0-9]*" reason=[a-z_ ]*' "$log" | sed 's/.*reason=/  stayers: /' | sort | uniq -c || true
exit "$status"

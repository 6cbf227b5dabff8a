#!/usr/bin/env bash
# WebSocket protocol compliance: runs the Autobahn TestSuite cases with
# kosoku (a native runner of Autobahn's case files, from PyPI) against
# herald's echo route (the same frame code as /ws, enabled only
# by this script's config), prints a summary table, and fails on any case
# that is not OK, NON-STRICT or INFORMATIONAL.
#
#   scripts/autobahn.sh            sections 1-7 (framing, pings, reserved bits,
#                                  opcodes, fragmentation, UTF-8, close)
#   CASES="9.*" scripts/autobahn.sh  large messages (slow)
#
# Reports go to target/autobahn/ (index.json, index.html).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/herald.sh

cases=${CASES:-"1.* 2.* 3.* 4.* 5.* 6.* 7.*"}
port=${PORT:-9011}
out=target/autobahn

command -v kosoku >/dev/null 2>&1 || python3 -m pip install --quiet kosoku
cargo build -p herald

config=$(mktemp)
cat >"$config" <<TOML
port = $port
echo_route = true
max_frame_bytes = 16777216
max_connections_per_ip = 100000
max_tcp_connections_per_ip = 100000
TOML
trap 'stop_herald; rm -f "$config"' EXIT
start_herald "$port" target/debug/herald --config "$config"

includes=()
for c in $cases; do includes+=(-i "$c"); done
rm -rf "$out"
kosoku "ws://127.0.0.1:$port/echo" "${includes[@]}" -p 8 -o "$out" >"$out.log" 2>&1 || true

python3 - "$out/index.json" <<'PY'
import collections, json, sys
index = json.load(open(sys.argv[1]))
rows = collections.defaultdict(collections.Counter)
bad = []
for cases in index.values():
    for case, r in cases.items():
        section = case.split(".")[0]
        behavior, close = r["behavior"], r.get("behaviorClose")
        rows[section][behavior] += 1
        if behavior not in ("OK", "NON-STRICT", "INFORMATIONAL") or close not in ("OK", "INFORMATIONAL", None):
            bad.append(f"{case}: behavior={behavior} close={close}")
names = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR"]
print("| section | " + " | ".join(names) + " |")
print("|---" * (len(names) + 1) + "|")
for section in sorted(rows, key=int):
    print(f"| {section} | " + " | ".join(str(rows[section][n]) for n in names) + " |")
total = sum(sum(c.values()) for c in rows.values())
print(f"\n{total} cases, {len(bad)} failed")
for line in bad:
    print("FAILED", line)
sys.exit(1 if bad or total == 0 else 0)
PY

#!/usr/bin/env bash
# Overload: more clients than herald's connection caps open WebSockets at
# once. Those within the cap are admitted (101); the rest must get a quick
# refusal, 503 past `max_connections` or 429 past `max_connections_per_ip`,
# never a stall, a reset or a timeout. Prints the answers by status and how
# long they took, for each cap.
#
#   scripts/overload.sh                       6,000 clients against caps of 4,000
#   CLIENTS=3000 CAP=2000 scripts/overload.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/herald.sh
clients=${CLIENTS:-6000}
cap=${CAP:-4000}
port=${PORT:-8063}

cargo build --release -q -p herald
work=$(mktemp -d)
trap 'stop_herald; rm -rf "$work"' EXIT

run() { # $1: which cap, $2: max_connections, $3: max_connections_per_ip
  # The TCP caps (every connection, sessions or not) must not refuse first:
  # they go as high as the session caps allow, and herald lowers
  # max_tcp_connections to what its open-file limit holds.
  cat >"$work/herald.toml" <<TOML
port = $port
max_connections = $2
max_connections_per_ip = $3
max_tcp_connections = 1000000
max_tcp_connections_per_ip = 1000000
TOML
  start_herald "$port" target/release/herald --config "$work/herald.toml"
  python3 - "$port" "$clients" "$1" "$cap" <<'PY'
import asyncio, base64, os, sys, time
port, clients, which, cap = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
expected_refusal = {"max_connections": "503", "max_connections_per_ip": "429"}[which]
answers, times, held = {}, [], []

async def attempt(i, gate):
    async with gate:
        start = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 10)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET /ws?id=o{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 10)
            status = line.split()[1].decode() if len(line.split()) > 1 else "empty"
        except asyncio.TimeoutError:
            status, writer = "timeout", None
        except OSError as e:
            status, writer = type(e).__name__, None
        times.append(time.monotonic() - start)
        answers[status] = answers.get(status, 0) + 1
        if status == "101":
            held.append(writer)  # stays open, holding its slot
        elif writer is not None:
            writer.close()

async def main():
    gate = asyncio.Semaphore(512)
    start = time.monotonic()
    await asyncio.gather(*(attempt(i, gate) for i in range(clients)))
    took = time.monotonic() - start
    times.sort()
    pct = lambda p: times[min(len(times) - 1, int(p * len(times)))] * 1000
    print(f"{which} = {cap}: {clients} clients at once (512 handshakes in flight)")
    print("  answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items())))
    print(f"  time to answer: p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {times[-1]*1000:.1f} ms; all answered in {took:.2f} s")
    ok = answers.get("101", 0) == cap and answers.get(expected_refusal, 0) == clients - cap
    print("  PASS" if ok else f"  FAIL: expected {cap} admitted and {clients - cap} refused with {expected_refusal}")
    for w in held:
        w.close()
    return ok

sys.exit(0 if asyncio.run(main()) else 1)
PY
  status=$?
  stop_herald
  return $status
}

ok=0
run max_connections "$cap" 1000000 || ok=1
run max_connections_per_ip 1000000 "$cap" || ok=1
exit $ok

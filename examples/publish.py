#!/usr/bin/env python3
"""Publish to herald from a Python main site (standard library only).

    python3 examples/publish.py "Order 17 is ready" --id 63
    HERALD_KEY=... python3 examples/publish.py '{"event": "order", "id": 17}' --json

HERALD_URL names herald (default http://127.0.0.1:8001/), HERALD_RETRY_BASE_MS
the first wait before a retry (default 200); the waits double up to 25 times
it (5 s), the longest any wait may be, a Retry-After's included.
"""
import argparse
import json
import os
import random
import time
import urllib.error
import urllib.request
import uuid

RETRY = {503, 504}  # 503: not published; 504: perhaps, so only with the same key


def notify(message, user_id=None, channel=None, url="http://127.0.0.1:8001/",
           attempts=5, base_delay=0.2):
    """Publishes once: every attempt carries the same Idempotency-Key, so a
    retry after a 504 or a lost connection is never delivered twice."""
    body = {"message": message}
    if user_id is not None:
        body["id"] = str(user_id)
    if channel is not None:
        body["channel"] = channel
    headers = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
    if os.environ.get("HERALD_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["HERALD_KEY"]
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    for attempt in range(1, attempts + 1):
        wait = None
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.load(response)  # {"delivered": N or None, "seq": S, ...}
        except urllib.error.HTTPError as error:
            if error.code not in RETRY or attempt == attempts:
                raise RuntimeError(f"herald: {error.code} {error.read().decode()}") from None
            if error.headers.get("Retry-After", "").isdigit():
                wait = int(error.headers["Retry-After"])
        except OSError:  # refused, reset or timed out: retry with the same key
            if attempt == attempts:
                raise
        cap = 25 * base_delay  # 5 s: the longest wait, even when Retry-After asks more
        delay = min(base_delay * 2 ** (attempt - 1), cap)
        time.sleep(min(wait, cap) if wait is not None else random.uniform(delay / 2, delay))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("message")
    parser.add_argument("--id")
    parser.add_argument("--channel")
    parser.add_argument("--json", action="store_true", help="the message is JSON")
    parser.add_argument("--url", default=os.environ.get("HERALD_URL", "http://127.0.0.1:8001/"))
    args = parser.parse_args()
    message = json.loads(args.message) if args.json else args.message
    base_delay = int(os.environ.get("HERALD_RETRY_BASE_MS", "200")) / 1000
    try:
        print(json.dumps(notify(message, args.id, args.channel, args.url, base_delay=base_delay)))
    except (RuntimeError, OSError) as error:
        raise SystemExit(error)

#!/usr/bin/env python3
"""Publish to herald from a Python main site (standard library only).

    python3 examples/publish.py "Order 17 is ready" --id 63
    HERALD_KEY=... python3 examples/publish.py '{"event": "order", "id": 17}' --json
"""
import argparse
import json
import os
import urllib.request


def notify(message, user_id=None, channel=None, url="http://127.0.0.1:8001/"):
    body = {"message": message}
    if user_id is not None:
        body["id"] = str(user_id)
    if channel is not None:
        body["channel"] = channel
    headers = {"Content-Type": "application/json"}
    if os.environ.get("HERALD_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["HERALD_KEY"]
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=2) as response:
        return json.load(response)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("message")
    parser.add_argument("--id")
    parser.add_argument("--channel")
    parser.add_argument("--json", action="store_true", help="the message is JSON")
    parser.add_argument("--url", default=os.environ.get("HERALD_URL", "http://127.0.0.1:8001/"))
    args = parser.parse_args()
    message = json.loads(args.message) if args.json else args.message
    print(notify(message, args.id, args.channel, args.url))

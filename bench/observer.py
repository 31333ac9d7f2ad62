"""Record when each task update is published: the reference clock of SSE delivery times.

`python -m bench.observer REDIS_URL OUT_FILE DEADLINE_SECONDS CHANNEL...` subscribes to
the given result channels (Celery's Redis backend PUBLISHes each stored state on the
channel named after its key), prints `ready` once subscribed, and writes to OUT_FILE, as
JSON, `[[channel, current-or-"final", time.monotonic()], ...]` for every PROGRESS and
final state, until every channel has its final state or the deadline passes.

It runs in its own process so that its timestamps are not delayed by the SSE clients' event
loop; CLOCK_MONOTONIC is the same clock in every process of the machine.
"""

from __future__ import annotations

import json
import sys
import time

import redis

FINAL = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def main(argv: list[str]) -> int:
    url, out_file, deadline_s, *channels = argv
    deadline = time.monotonic() + float(deadline_s)
    client = redis.Redis.from_url(url, protocol=2)
    pubsub = client.pubsub()
    pubsub.subscribe(*channels)
    confirmed = 0
    while confirmed < len(channels):
        message = pubsub.get_message(timeout=5)
        if message is not None and message["type"] == "subscribe":
            confirmed += 1
    print("ready", flush=True)
    seen: list[list[object]] = []
    pending = set(channels)
    while pending and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message is None or message["type"] != "message":
            continue
        now = time.monotonic()
        channel = message["channel"].decode()
        meta = json.loads(message["data"])
        status = meta.get("status")
        if status == "PROGRESS" and isinstance(meta.get("result"), dict):
            seen.append([channel, meta["result"].get("current"), now])
        elif status in FINAL:
            seen.append([channel, "final", now])
            pending.discard(channel)
    with open(out_file, "w") as out:
        json.dump(seen, out)
    pubsub.close()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""queue-worker: takes jobs from a Redis list and marks each done (examples/queue-worker).

What the platform asks of a worker: a check command that passes once it can work (here
``worker.py --check``: it reached Redis and took up the queue), stopping cleanly on SIGTERM
after the job in hand, and its log on stdout. Redis comes from ``depends_on`` (REDIS_HOST,
REDIS_PORT) and its password from the secret file REDIS_PASSWORD_FILE.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import redis

QUEUE = "example-jobs"
VERSION = "1"
READY = Path("/tmp/ready")  # /tmp is the container's tmpfs: the root is read-only


def log(event: str, **fields: object) -> None:
    print(json.dumps({"service": "queue-worker", "event": event, "version": VERSION, **fields}), flush=True)


def connect() -> redis.Redis:
    password = Path(os.environ["REDIS_PASSWORD_FILE"]).read_text().strip()
    return redis.Redis(host=os.environ["REDIS_HOST"], port=int(os.environ["REDIS_PORT"]), password=password,
                       socket_timeout=10)


def check() -> int:
    """The readiness check: this container took up the queue and Redis answers."""
    try:
        return 0 if READY.exists() and connect().ping() else 1
    except redis.RedisError as exc:
        print(f"redis: {exc}", file=sys.stderr)
        return 1


def work() -> int:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    client = connect()
    client.ping()
    READY.write_text(str(time.time()))
    log("ready")
    while not stopping:
        item = client.blpop([QUEUE], timeout=1)
        if item is not None:
            job = item[1].decode()
            client.set(f"example-done:{job}", VERSION)
            log("done", job=job)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(check() if "--check" in sys.argv else work())

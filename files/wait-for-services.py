#!/usr/bin/env python3
"""Wait until every dependency answers, then exec the service (standard library only).

Targets are ``name:tcp://host:port`` or ``name:http://host:port/path`` (ready on HTTP
200). They come from the command line and from the WAIT_FOR environment variable
(comma or space separated). A target may carry its own timeout: ``name@30:tcp://...``.

    wait-for-services.py --timeout 60 postgres:tcp://postgres:5432 -- uvicorn app.main:app

Every target is polled every 0.2 s, in parallel; each logs one line when it comes up.
If any target is still down when its timeout runs out, the script exits 1 naming every
such target and its last error, and the service is never started.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

POLL_SECONDS = 0.2
OUTPUT_LOCK = threading.Lock()


@dataclass
class Target:
    name: str
    url: str
    timeout: float
    ready_after: float | None = None
    last_error: str = "not tried yet"


def parse_target(spec: str, default_timeout: float) -> Target:
    """Parse ``name[@timeout]:scheme://host:port[/path]``."""
    name, sep, url = spec.partition(":")
    if not sep or "://" not in url:
        raise ValueError(f"bad target {spec!r}: expected name:tcp://host:port or name:http://host:port/path")
    timeout = default_timeout
    if "@" in name:
        name, raw_timeout = name.split("@", 1)
        timeout = float(raw_timeout)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("tcp", "http") or not parsed.hostname or not parsed.port:
        raise ValueError(f"bad target {spec!r}: scheme must be tcp or http, with host and port")
    return Target(name=name, url=url, timeout=timeout)


def probe(url: str) -> None:
    """Raise unless the target answers: TCP connect, or HTTP 200."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "tcp":
        with socket.create_connection((parsed.hostname, parsed.port), timeout=1.0):
            return
    with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - http only
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")


def wait_for(target: Target, started: float) -> None:
    deadline = started + target.timeout
    while True:
        try:
            probe(target.url)
            target.ready_after = time.monotonic() - started
            with OUTPUT_LOCK:  # targets are waited for in threads: one whole line at a time
                print(f"wait-for-services: {target.name} is up ({target.url}) after {target.ready_after:.1f}s",
                      flush=True)
            return
        except (OSError, urllib.error.URLError, ValueError) as exc:
            target.last_error = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            return
        time.sleep(POLL_SECONDS)


def wait_all(targets: list[Target]) -> list[Target]:
    """Wait for all targets in parallel; return the ones that never came up."""
    started = time.monotonic()
    threads = [threading.Thread(target=wait_for, args=(t, started), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [t for t in targets if t.ready_after is None]


def main(argv: list[str]) -> int:
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(description="Wait for TCP/HTTP dependencies, then exec a command.")
    parser.add_argument("targets", nargs="*", help="name:tcp://host:port or name:http://host:port/path")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("WAIT_TIMEOUT", "60")),
                        help="seconds to wait for each target (default: $WAIT_TIMEOUT or 60)")
    args = parser.parse_args(argv)
    specs = list(args.targets) + os.environ.get("WAIT_FOR", "").replace(",", " ").split()
    try:
        targets = [parse_target(spec, args.timeout) for spec in specs]
    except ValueError as exc:
        print(f"wait-for-services: {exc}", file=sys.stderr)
        return 2
    missing = wait_all(targets)
    if missing:
        for target in missing:
            print(f"wait-for-services: {target.name} never came up ({target.url}) within "
                  f"{target.timeout:g}s: {target.last_error}", file=sys.stderr)
        print("wait-for-services: giving up on " + ", ".join(t.name for t in missing), file=sys.stderr)
        return 1
    if command:
        sys.stdout.flush()
        os.execvp(command[0], command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

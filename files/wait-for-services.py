#!/usr/bin/env python3
"""Wait until every dependency answers, then exec the service (standard library only).

Targets are ``name:tcp://host:port`` or ``name:http://host:port/path`` (ready on HTTP
200). They come from the command line and from the WAIT_FOR environment variable
(comma or space separated). A target may carry its own timeout: ``name@30:tcp://...``.

    wait-for-services.py --timeout 60 postgres:tcp://postgres:5432 -- uvicorn app.main:app

Every target is polled every 0.2 s, in parallel; each logs one line when it comes up.
If any target is still down when its timeout runs out, the script exits 1 naming every
such target and its last error, and the service is never started. The probe and the loop
are stackprobe.py's (copied beside this script), the same the deploy gates services with.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass

import stackprobe

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


def not_ready(url: str) -> str | None:
    """None when the target answers (TCP connect, or HTTP 200), else why not."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "tcp":
        return stackprobe.not_ready(parsed.hostname or "", parsed.port or 0, None)
    path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    return stackprobe.not_ready(parsed.hostname or "", parsed.port or 0, path, tcp=False)


def wait_for(target: Target, started: float) -> None:
    def check() -> str | None:
        reason = not_ready(target.url)
        if reason is not None:
            target.last_error = reason
        return reason

    ready, _ = stackprobe.poll({target.name: check}, {target.name: started + target.timeout})
    if ready:
        target.ready_after = time.monotonic() - started
        with OUTPUT_LOCK:  # targets are waited for in threads: one whole line at a time
            print(f"wait-for-services: {target.name} is up ({target.url}) after {target.ready_after:.1f}s",
                  flush=True)


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

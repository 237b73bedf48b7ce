#!/usr/bin/env python3
"""Search the stack's log store, on the host that runs it (logs.py runs this over SSH).

    python3 stacklogs.py search --project P --store log-store --since 2026-11-26T10:00:00Z \\
        [--service creator-hub,auth-service] [--grep REGEX] [--request-id ID] [--lines N]

The log store (rsyslog, stackdeploy/logstore.py) writes one JSON line per container message
into ``<log dir>/<YYYY-MM-DD>.log``: ``{"time", "from", "tag": "<service>/<container id>",
"severity", "msg"}``. Only the days from ``--since`` on are read, inside the container
(``docker exec ... cat``), and only matching lines leave this host: the last ``--lines`` of
them, in time order, as they are stored. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

LOG_DIR = "/var/log/stack"
DAY_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.log")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (``Z`` or an offset) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Query:
    since: datetime
    services: frozenset[str] = frozenset()
    grep: re.Pattern[str] | None = None
    request_id: str | None = None

    def days(self, names: Iterable[str]) -> list[str]:
        """The day files worth reading, oldest first."""
        first = self.since.astimezone(UTC).strftime("%Y-%m-%d")
        return sorted(n for n in names if (m := DAY_FILE.fullmatch(n)) and m.group(1) >= first)

    def matches(self, entry: dict) -> bool:
        if self.services and service_of(entry) not in self.services:
            return False
        message = entry.get("msg", "")
        if self.request_id and not has_request_id(message, self.request_id):
            return False
        if self.grep and not self.grep.search(message):
            return False
        try:
            return parse_time(entry["time"]) >= self.since
        except (KeyError, ValueError):
            return False


def service_of(entry: dict) -> str:
    """The service of a stored line: its tag is ``<service>/<container id>``."""
    return str(entry.get("tag", "")).split("/", 1)[0]


def has_request_id(message: str, wanted: str) -> bool:
    """Whether the message is a JSON log line of that request (a plain line: it names the id)."""
    if wanted not in message:
        return False
    try:
        found = json.loads(message)
    except ValueError:
        return True
    return not isinstance(found, dict) or found.get("request_id") == wanted


def search(lines: Iterable[str], query: Query, limit: int) -> list[str]:
    """The last ``limit`` stored lines that match, in the order they were stored."""
    kept: deque[str] = deque(maxlen=limit)
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by a full disk
        if isinstance(entry, dict) and query.matches(entry):
            kept.append(line.rstrip("\n"))
    return list(kept)


def store_container(project: str, store: str) -> str:
    """The log store's running container: a compose service, or a swarm task."""
    for labels in ([f"com.docker.compose.project={project}", f"com.docker.compose.service={store}"],
                   [f"com.docker.swarm.service.name={project}_{store}"]):
        filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
        found = subprocess.run(["docker", "ps", "-q", *filters], capture_output=True, text=True, check=True)
        if found.stdout.split():
            return found.stdout.split()[0]
    raise SystemExit(f"no running container of '{store}' in stack '{project}' on this host")


def stored_lines(container: str, days: list[str]) -> Iterator[str]:
    for day in days:
        with subprocess.Popen(["docker", "exec", container, "cat", f"{LOG_DIR}/{day}"], stdout=subprocess.PIPE,
                              text=True, errors="replace") as reader:
            assert reader.stdout is not None
            yield from reader.stdout


def cmd_search(args: argparse.Namespace) -> int:
    query = Query(since=parse_time(args.since),
                  services=frozenset(s for s in args.service.split(",") if s) if args.service else frozenset(),
                  grep=re.compile(args.grep) if args.grep else None, request_id=args.request_id or None)
    container = store_container(args.project, args.store)
    listing = subprocess.run(["docker", "exec", container, "ls", LOG_DIR], capture_output=True, text=True, check=True)
    for line in search(stored_lines(container, query.days(listing.stdout.split())), query, args.lines):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    found = sub.add_parser("search", help="print the stored lines that match")
    found.add_argument("--project", required=True)
    found.add_argument("--store", required=True)
    found.add_argument("--since", required=True, help="RFC 3339 time")
    found.add_argument("--service", default="", help="comma-separated services")
    found.add_argument("--grep", default="", help="a regular expression the message must contain")
    found.add_argument("--request-id", default="")
    found.add_argument("--lines", type=int, default=1000)
    found.set_defaults(run=cmd_search)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

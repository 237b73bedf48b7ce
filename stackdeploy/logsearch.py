"""logs.py: the stack's logs from its log store, filtered on the host, merged here in time order.

    pyinfra inventory/<env>.py logs.py --data service=creator-hub --data since=15m \\
        --data grep=upload --data request_id=3f2a... --data lines=200

The filtering runs where the logs are (``files/stacklogs.py search`` on the log store's host),
so only matching lines cross the network; this module turns the ``--data`` options into
that command, and the stored lines into one time-ordered listing with the host each line
came from.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stackdeploy.inputfiles import StackInputError
from stackdeploy.logstore import log_store
from stackdeploy.model import Stack
from stackdeploy.placement import Placement

DEFAULT_SINCE = "1h"
DEFAULT_LINES = 500
AGO = re.compile(r"(\d+)\s*([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class LogQuery:
    """What logs.py was asked for (``--data``), checked before any host is read."""

    since: datetime
    services: tuple[str, ...] = ()
    grep: str = ""
    request_id: str = ""
    lines: int = DEFAULT_LINES


def since_time(text: str, now: datetime) -> datetime:
    """``15m``, ``2h``, ``3d``, ``90s`` before ``now``, or an RFC 3339 time (UTC when it has no offset)."""
    ago = AGO.fullmatch(text.strip())
    if ago:
        return now - timedelta(**{UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StackInputError(f"since: must be like 15m, 2h, 3d or 2026-11-26T10:00:00Z, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def log_query(data: Mapping[str, Any], stack: Stack, now: datetime | None = None) -> LogQuery:
    """The query from host data; an unknown service or a bad pattern is refused with one line."""
    now = now or datetime.now(UTC)
    services = tuple(s for s in str(data.get("service") or "").split(",") if s)
    for name in services:
        if name not in stack.services:
            raise StackInputError(f"service: unknown service '{name}' (services: {', '.join(stack.services)})")
    grep = str(data.get("grep") or "")
    try:
        re.compile(grep)
    except re.error as exc:
        raise StackInputError(f"grep: not a regular expression: {exc}") from None
    lines = data.get("lines") or DEFAULT_LINES
    if not str(lines).isdigit() or int(lines) < 1:
        raise StackInputError(f"lines: must be a number of lines of at least 1, got {lines!r}")
    return LogQuery(since=since_time(str(data.get("since") or DEFAULT_SINCE), now), services=services, grep=grep,
                    request_id=str(data.get("request_id") or ""), lines=int(lines))


def search_arguments(query: LogQuery) -> dict[str, str]:
    """The query as ``stacklogs.py search`` options (plain strings: a fact's arguments)."""
    return {"since": query.since.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "service": ",".join(query.services), "grep": query.grep, "request-id": query.request_id,
            "lines": str(query.lines)}


@dataclass(frozen=True, order=True)
class LogLine:
    """One merged line: when, which host's container, which service, what it wrote."""

    time: datetime
    host: str
    service: str
    message: str


@dataclass(frozen=True)
class Senders:
    """Which host sent a stored line.

    First by the host name its dockerd wrote in the message (RFC 5424 HOSTNAME), when that
    name is unique in the inventory; then by the address it came from; else the store's own
    host. The address alone misleads: a host that sent while the log store was down keeps a
    UDP conntrack entry without Docker's NAT on the store's host, and once the store is back,
    that host's lines reach it through Docker's userland proxy, from the store host's bridge.
    """

    by_hostname: Mapping[str, str]
    by_address: Mapping[str, str]

    @classmethod
    def of(cls, hostnames: Mapping[str, str], addresses: Mapping[str, str]) -> Senders:
        """From each inventory host's host name and private address (either may be empty)."""
        taken = Counter(hostnames.values())
        return cls({name: host for host, name in hostnames.items() if name and taken[name] == 1},
                   {address: host for host, address in addresses.items() if address})

    def host(self, entry: Mapping[str, Any], store_host: str) -> str:
        return (self.by_hostname.get(str(entry.get("hostname", "")))
                or self.by_address.get(str(entry.get("from", "")), store_host))


def parse_stored(lines: Iterable[str], senders: Senders, store_host: str) -> list[LogLine]:
    """Stored lines as ``LogLine``s, in time order, each with the host that sent it."""
    parsed = []
    for text in lines:
        try:
            entry = json.loads(text)
            moment = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        parsed.append(LogLine(moment, senders.host(entry, store_host),
                              str(entry.get("tag", "")).split("/", 1)[0], str(entry.get("msg", "")).strip()))
    return sorted(parsed)


def merge(per_store: Iterable[list[LogLine]], limit: int) -> list[LogLine]:
    """Several stores' lines (each in time order) as one listing, the last ``limit`` of them."""
    return list(heapq.merge(*per_store))[-limit:]


def format_line(line: LogLine, width: int) -> str:
    stamp = line.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{stamp} {line.host} {line.service:<{width}} {line.message}"


def listing(lines: list[LogLine]) -> str:
    if not lines:
        return "(no matching log lines)"
    width = max(len(line.service) for line in lines)
    return "\n".join(format_line(line, width) for line in lines)


def store_hosts(where: Placement) -> list[str]:
    """The hosts that may run the log store (one on compose; its group's nodes on swarm)."""
    store = log_store(where.stack)
    if store is None:
        raise StackInputError("logs.py needs a log store: a service of kind 'logstore' (see README, Logs)")
    return where.hosts_of(store.name)

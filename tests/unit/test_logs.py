"""logs.py: the query from --data, the host-side filter (files/stacklogs.py) and the merge."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta

import pytest

from stackdeploy import FILES_DIR, SERVICES_DIR, commands
from stackdeploy.inputfiles import StackInputError
from stackdeploy.logsearch import (
    LogQuery,
    Senders,
    listing,
    log_query,
    merge,
    parse_stored,
    search_arguments,
    since_time,
)
from stackdeploy.model import load

sys.path.insert(0, str(FILES_DIR))
import stacklogs  # noqa: E402

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def stored(time: str, tag: str, msg: object, sender: str = "10.0.0.3", hostname: str = "") -> str:
    text = msg if isinstance(msg, str) else json.dumps(msg)
    return json.dumps({"time": time, "hostname": hostname, "from": sender, "tag": tag, "severity": "info",
                       "msg": " " + text})


@pytest.mark.parametrize(("text", "expected"), [
    ("15m", NOW - timedelta(minutes=15)), ("2h", NOW - timedelta(hours=2)), ("3d", NOW - timedelta(days=3)),
    ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, tzinfo=UTC)),
    ("2026-11-26T10:00:00", datetime(2026, 11, 26, 10, tzinfo=UTC)),
])
def test_since_is_a_duration_or_a_time(text, expected):
    assert since_time(text, NOW) == expected


def test_a_bad_query_is_refused_with_one_line(data):
    stack = load(data, SERVICES_DIR)
    with pytest.raises(StackInputError, match="since: must be like 15m"):
        log_query({"since": "yesterday"}, stack, NOW)
    with pytest.raises(StackInputError, match="service: unknown service 'creatorhub'"):
        log_query({"service": "creatorhub"}, stack, NOW)
    with pytest.raises(StackInputError, match="grep: not a regular expression"):
        log_query({"grep": "("}, stack, NOW)
    query = log_query({"service": "creator-hub,auth-service", "request_id": "abc"}, stack, NOW)
    assert query == LogQuery(NOW - timedelta(hours=1), ("creator-hub", "auth-service"), "", "abc", 500)


def test_the_search_command_quotes_every_value():
    query = LogQuery(NOW, ("creator-hub",), "-x'; rm -rf /", "r1", 10)
    command = commands.log_search("/opt/s", "creatorstack", "log-store", search_arguments(query)).get_raw_value()
    assert "'--grep=-x'\"'\"'; rm -rf /'" in command
    assert "--since=2026-11-26T12:00:00Z" in command and "--service=creator-hub" in command


def test_the_host_filters_by_service_time_grep_and_request_id():
    lines = [
        stored("2026-11-26T11:00:00.000001+00:00", "creator-hub/aaa", {"request_id": "r1", "path": "/uploads"}),
        stored("2026-11-26T11:00:00.000002+00:00", "auth-service/bbb", {"request_id": "r1", "path": "/verify"}),
        stored("2026-11-26T11:00:00.000003+00:00", "auth-service/bbb", {"request_id": "r10", "path": "/verify"}),
        stored("2026-11-26T09:00:00.000000+00:00", "auth-service/bbb", {"request_id": "r1", "path": "/old"}),
        stored("2026-11-26T11:00:01.000000+00:00", "api-gateway/ccc", "plain text mentioning r1"),
        "not json",
    ]
    since = datetime(2026, 11, 26, 10, tzinfo=UTC)
    by_request = stacklogs.search(lines, stacklogs.Query(since, request_id="r1"), 100)
    assert [json.loads(line)["tag"] for line in by_request] == ["creator-hub/aaa", "auth-service/bbb",
                                                                 "api-gateway/ccc"]
    by_service = stacklogs.search(lines, stacklogs.Query(since, services=frozenset({"auth-service"})), 100)
    assert len(by_service) == 2
    by_grep = stacklogs.search(lines, stacklogs.Query(since, grep=re.compile("/uploads")), 100)
    assert len(by_grep) == 1
    assert len(stacklogs.search(lines, stacklogs.Query(since), 2)) == 2  # the last N


def test_only_the_days_since_are_read():
    query = stacklogs.Query(datetime(2026, 11, 25, 23, tzinfo=UTC))
    assert query.days(["2026-11-24.log", "2026-11-26.log", "2026-11-25.log", "x.txt"]) == ["2026-11-25.log",
                                                                                            "2026-11-26.log"]


def test_lines_of_every_host_merge_in_time_order_with_their_host():
    hosts = Senders.of({}, {"h1": "10.0.0.1", "h3": "10.0.0.3"})
    first = parse_stored([stored("2026-11-26T11:00:00.000300+00:00", "creator-hub/a", {"n": 3}),
                          stored("2026-11-26T11:00:00.000100+00:00", "api-gateway/b", {"n": 1}),
                          stored("2026-11-26T11:00:00.000200+00:00", "auth-service/c", {"n": 2}, "172.18.0.1")],
                         hosts, "h1")
    second = parse_stored([stored("2026-11-26T11:00:00.000150+00:00", "log-store/d", "x", "10.0.0.1")], hosts, "h1")
    merged = merge([first, second], 10)
    assert [(line.host, line.service) for line in merged] == [
        ("h3", "api-gateway"), ("h1", "log-store"), ("h1", "auth-service"), ("h3", "creator-hub")]
    assert merge([first, second], 2) == merged[-2:]
    text = listing(merged).splitlines()
    assert text[0] == '2026-11-26T11:00:00.000Z h3 api-gateway  {"n": 1}'
    assert listing([]) == "(no matching log lines)"


def test_a_line_is_told_by_its_host_name_before_its_address():
    """A host that sent while the store was down reaches it through Docker's proxy once it is
    back, from the store host's bridge address: its host name still says who sent it."""
    senders = Senders.of({"h1": "web-1", "h2": "web-2", "h3": "web-2"}, {"h1": "10.0.0.1", "h2": "10.0.0.2",
                                                                         "h3": "10.0.0.3"})
    lines = parse_stored([stored("2026-11-26T11:00:00.000001+00:00", "ai-engine/a", "a", "172.18.0.1", "web-1"),
                          stored("2026-11-26T11:00:00.000002+00:00", "ai-engine/b", "b", "10.0.0.2", "web-2"),
                          stored("2026-11-26T11:00:00.000003+00:00", "ai-engine/c", "c", "10.0.0.3", "web-2"),
                          stored("2026-11-26T11:00:00.000004+00:00", "ai-engine/d", "d", "172.18.0.1", "elsewhere"),
                          stored("2026-11-26T11:00:00.000005+00:00", "ai-engine/e", "e", "10.0.0.2")], senders, "h3")
    # web-2 names two hosts, so their addresses decide; a name and an address nobody has: the store's host.
    assert [line.host for line in lines] == ["h1", "h2", "h3", "h3", "h2"]

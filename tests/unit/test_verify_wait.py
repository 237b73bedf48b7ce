"""A verify waits for each service within its timeout, but not for one whose dependency on
another host is down: every host of the run has passed its gates, so nothing would bring that
dependency up, and the operator would wait out the timeout (180 s) for a known answer."""

from __future__ import annotations

import argparse
import json

from tests.conftest import shipped_helper

MANIFEST = {
    "project": "p",
    "services": {"creator-hub": {"timeout": 120, "config_hash": "a"}, "redis": {"timeout": 30, "config_hash": "b"}},
    "remote": {"postgres@h1": {"service": "postgres", "host": "h1", "address": "10.0.0.1", "port": 5432,
                               "http": None, "consumers": ["creator-hub"]}},
}


def waited_for(helpers_dir, monkeypatch, capsys, postgres_answers: bool) -> tuple[list[str], dict]:
    polled: list[list[str]] = []
    with shipped_helper(helpers_dir, "stackctl") as stackctl:
        real_poll = stackctl.stackprobe.poll

        def poll(checks, deadlines, *args):
            polled.append(sorted(checks))
            return real_poll(checks, deadlines, *args)

        def not_ready(address, port, http, tcp=True):
            return None if postgres_answers else f"{address}:{port} not answering: refused"

        monkeypatch.setattr(stackctl, "manifest", lambda release: MANIFEST)
        monkeypatch.setattr(stackctl, "read_json", lambda path, default: default)
        monkeypatch.setattr(stackctl, "serving", lambda *args: None)
        monkeypatch.setattr(stackctl, "service_check", lambda m, name: lambda: None)
        monkeypatch.setattr(stackctl, "REMOTE_SETTLE", 0.3)
        monkeypatch.setattr(stackctl.stackprobe, "poll", poll)
        monkeypatch.setattr(stackctl.stackprobe, "not_ready", not_ready)
        assert stackctl.cmd_status(argparse.Namespace(release="r1", wait=True, remote_only=False)) == 0
    return polled[-1], json.loads(capsys.readouterr().out)


def test_a_service_whose_remote_dependency_is_down_is_not_waited_for(helpers_dir, monkeypatch, capsys):
    waited, rows = waited_for(helpers_dir, monkeypatch, capsys, postgres_answers=False)
    assert waited == ["redis"]
    assert rows["postgres@h1"]["check"] == "10.0.0.1:5432 not answering: refused"


def test_every_service_is_waited_for_when_its_remote_dependencies_answer(helpers_dir, monkeypatch, capsys):
    waited, rows = waited_for(helpers_dir, monkeypatch, capsys, postgres_answers=True)
    assert waited == ["creator-hub", "redis"]
    assert rows["postgres@h1"]["check"] == "ok"

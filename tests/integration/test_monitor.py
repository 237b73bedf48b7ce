"""stack-monitor on the test stack: a hung app is restarted and answers through the gateway
again; a dependency down is not a reason to restart; the gateway's readiness tells the truth;
and the monitor gives up, loudly, when restarts do not help."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stackdeploy import contract

from .conftest import GATEWAY, TEST_HOST_DATA, containers, deploy, docker, https

EVENTS = Path(TEST_HOST_DATA["deploy_dir"]) / contract.EVENTS_FILE
RECOVERY_BOUND_SECONDS = 90  # a bound on the wait, not the measure (benchmarks/run_monitor.py is)


def events_since(mark: int) -> list[contract.MonitorEvent]:
    lines = EVENTS.read_text().splitlines() if EVENTS.exists() else []
    return [json.loads(line) for line in lines[mark:]]


def event_mark() -> int:
    return len(EVENTS.read_text().splitlines()) if EVENTS.exists() else 0


def pids_of(service: str) -> list[int]:
    top = docker("top", containers()[service]["Id"], "-eo", "pid").splitlines()[1:]
    return [int(line.split()[0]) for line in top]


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # gone with a restart
            os.kill(pid, sig)


def wait_for(predicate, seconds: float = RECOVERY_BOUND_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)  # pacing of the bounded poll; callers assert on the result
    return False


def health_ok(path: str) -> bool:
    try:
        return https.get(f"{GATEWAY}{path}", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_hung_app_is_restarted_and_answers_through_the_gateway_again(stack):
    mark = event_mark()
    hung = pids_of("creator-hub")
    signal_all(hung, signal.SIGSTOP)
    try:
        assert wait_for(lambda: not health_ok("/api/creators/health"), 10)
        assert wait_for(lambda: health_ok("/api/creators/health"))
    finally:
        signal_all(hung, signal.SIGCONT)  # the old processes are gone after the restart; harmless
    seen = [(e["service"], e["event"]) for e in events_since(mark)]
    assert ("creator-hub", "restarted") in seen


def test_a_dependency_down_is_degraded_not_restarted_and_readiness_says_which_route(stack):
    assert wait_for(lambda: health_ok("/health/ready"), 30), https.get(f"{GATEWAY}/health/ready", timeout=30).text
    mark = event_mark()
    ai = containers()["ai-engine"]["Id"]
    docker("stop", ai)
    try:
        assert wait_for(lambda: https.get(f"{GATEWAY}/health/ready", timeout=10).status_code == 503, 30)
        ready = https.get(f"{GATEWAY}/health/ready", timeout=10).json()
        assert ready["routes"]["/api/ai/"].startswith("down") and ready["routes"]["/api/auth/"] == "ok"
        assert health_ok("/health")  # Docker's liveness check of the gateway stays about nginx
        assert wait_for(lambda: ("channel-service", "degraded") in
                        [(e["service"], e["event"]) for e in events_since(mark)], 30)
    finally:
        docker("start", ai)
    assert wait_for(lambda: health_ok("/health/ready"))
    assert not [e for e in events_since(mark) if e["event"] == "restarted"]


@pytest.fixture(scope="module")
def impatient_monitor(stack, session_tmp) -> Iterator[int]:
    """The monitor with one restart allowed per window, creator-hub restarted with auth-service,
    and backups expected every 7 seconds."""
    extra = {"backup_every_hours": 0.002, "service_overrides": {
        "stack-monitor": {"env": {"MONITOR_MAX_RESTARTS": "1", "MONITOR_BACKOFF_SECONDS": "2"}},
        "creator-hub": {"restarts_with": ["auth-service"]},
    }}
    mark = event_mark()
    result = deploy(session_tmp, extra)
    assert result.returncode == 0, result.output[-4000:]
    yield mark  # where this monitor's events begin
    restored = deploy(session_tmp)
    assert restored.returncode == 0, restored.output[-4000:]


def test_dependents_restart_with_it_and_the_monitor_gives_up_loudly(impatient_monitor):
    mark = event_mark()
    hung = pids_of("auth-service")
    signal_all(hung, signal.SIGSTOP)
    assert wait_for(lambda: ("auth-service", "recovered") in [(e["service"], e["event"]) for e in events_since(mark)])
    restarted = [(e["service"], e.get("reason", "")) for e in events_since(mark) if e["event"] == "restarted"]
    assert ("creator-hub", "restarts with auth-service") in restarted

    again = pids_of("auth-service")
    signal_all(again, signal.SIGSTOP)
    try:
        assert wait_for(lambda: ("auth-service", "gave_up") in [(e["service"], e["event"]) for e in events_since(mark)])
        logs = subprocess.run(["docker", "logs", "--tail", "50", containers()["stack-monitor"]["Id"]],
                              capture_output=True, text=True, timeout=30, check=True)
        assert '"event": "gave_up"' in logs.stderr  # loudly: on the monitor's stderr too
    finally:
        signal_all(again, signal.SIGCONT)
    assert wait_for(lambda: health_ok("/api/auth/health"))


def test_an_overdue_scheduled_backup_is_reported_loudly(impatient_monitor):
    # The log outlives a test run: only what this monitor (deployed by the fixture) logged counts.
    assert wait_for(lambda: any(e["event"] == "backup_missed" for e in events_since(impatient_monitor)), 60)
    logs = subprocess.run(["docker", "logs", containers()["stack-monitor"]["Id"]],
                          capture_output=True, text=True, timeout=30, check=True)
    assert '"event": "backup_missed"' in logs.stderr

"""Metrics and alerts on a real deploy of the test stack (one host): Prometheus scrapes every
target (up), and a stopped app fires its alert in Alertmanager within the rule's window (short
windows through the ``metrics`` setting, bounded waits). Across the simulated hosts:
test_multi_host.py.

Prometheus and Alertmanager are asked from inside their containers (python3 is in the offline
images), so the test does not depend on the UI port."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.integration.conftest import STACK, containers, deploy, docker

# Scrape every 2 s, alert after 6 s: a stopped app is down within ~10 s, so 90 s is generous.
FAST = {"metrics": {"scrape_interval": 2, "alert_after": 6, "rate_window": 30}}
ALERT_WAIT = 90
TARGETS_WAIT = 120


def ask(run, container: str, url: str) -> dict:
    """GET ``url`` from inside ``container`` (``run``: a docker CLI for its host)."""
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    return json.loads(run("exec", container, "python3", "-c", code))


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last[0]:
            return last[1]
        time.sleep(2)
    pytest.fail(f"{what} within {seconds:.0f}s; last seen: {last[1] if last else None}")


def targets_state(run, prometheus: str) -> tuple[bool, dict]:
    active = ask(run, prometheus, "http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
    state = {f"{t['labels']['job']}@{t['labels'].get('host')}": t["health"] for t in active}
    return bool(state) and all(h == "up" for h in state.values()), state


def firing(run, alertmanager: str, alertname: str, job: str) -> tuple[bool, list]:
    alerts = ask(run, alertmanager, "http://127.0.0.1:9093/api/v2/alerts?active=true")
    names = [(a["labels"]["alertname"], a["labels"].get("job")) for a in alerts]
    return (alertname, job) in names, names


@pytest.fixture(scope="module")
def metrics_stack(first_deploy, session_tmp):
    """The test stack with short windows; the next module's ``stack`` deploys the usual ones."""
    result = deploy(session_tmp, FAST)
    assert result.returncode == 0, result.output[-6000:]
    return result


def test_every_target_is_up_after_a_deploy(metrics_stack):
    running = containers()
    state = wait_for(lambda: targets_state(docker, running["prometheus"]["Name"].lstrip("/")),
                     TARGETS_WAIT, "every target up")
    jobs = {key.split("@")[0] for key in state}
    assert jobs == {"prometheus", "alertmanager", "auth-service", "creator-hub", "ai-engine", "channel-service",
                    "stack-monitor", "node-exporter", "nginx-exporter", "postgres-exporter", "redis-exporter"}


def test_a_stopped_app_fires_service_down_in_alertmanager(metrics_stack):
    running = containers()
    prometheus, alertmanager = (running[n]["Name"].lstrip("/") for n in ("prometheus", "alertmanager"))
    wait_for(lambda: targets_state(docker, prometheus), TARGETS_WAIT, "every target up")
    subprocess.run(["docker", "compose", "-p", STACK, "stop", "creator-hub"], check=True, timeout=120,
                   capture_output=True)
    try:
        wait_for(lambda: firing(docker, alertmanager, "ServiceDown", "creator-hub"), ALERT_WAIT,
                 "ServiceDown for creator-hub in Alertmanager")
    finally:
        subprocess.run(["docker", "compose", "-p", STACK, "start", "creator-hub"], check=False, timeout=120,
                       capture_output=True)

"""Central logs on one host: a request followed by its id through the gateway (over HTTPS,
verified against the stack CA), creator-hub and auth-service with logs.py; no token in any
log; logs outlive the containers that wrote them."""

from __future__ import annotations

import re
import subprocess
import time
import uuid

from .conftest import GATEWAY, ROOT, STACK, containers, deploy, docker, https, run_pyinfra

USER = {"username": f"logs-{uuid.uuid4().hex[:8]}", "password": "correct-horse-battery"}
# A line of logs.py: time, host, service, message.
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\S+Z) (\S+) (\S+) +(.*)$")


def logs(session_tmp, *data: str) -> list[tuple[str, str, str, str]]:
    """logs.py's lines for the test stack, as (time, host, service, message)."""
    args = [arg for item in data for arg in ("--data", item)]
    result = run_pyinfra(session_tmp, "logs.py", None, ROOT, *args)
    assert result.returncode == 0, result.output[-3000:]
    return [m.groups() for m in map(LINE.match, result.output.splitlines()) if m]


def services_found(session_tmp, request_id: str, wanted: set[str], timeout: float = 30) -> set[str]:
    """The services logs.py finds lines of for ``request_id``, polled until ``wanted`` are all
    there (the log driver sends asynchronously), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = {service for _, _, service, _ in logs(session_tmp, f"request_id={request_id}", "since=10m")}
        if wanted <= found or time.monotonic() > deadline:
            return found
        time.sleep(1)  # pacing of the bounded poll


def token() -> str:
    https.post(f"{GATEWAY}/api/auth/register", json=USER, timeout=10)
    response = https.post(f"{GATEWAY}/api/auth/login", json=USER, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_one_request_is_found_in_the_gateway_creator_hub_and_auth_service(stack, session_tmp):
    request_id = f"itest-{uuid.uuid4().hex}"
    listed = https.get(f"{GATEWAY}/api/creators/uploads", timeout=10,
                       headers={"Authorization": f"Bearer {token()}", "X-Request-ID": request_id})
    assert listed.status_code == 200 and listed.headers["x-request-id"] == request_id
    wanted = {"api-gateway", "creator-hub", "auth-service"}
    assert services_found(session_tmp, request_id, wanted) >= wanted
    lines = logs(session_tmp, f"request_id={request_id}", "service=api-gateway")
    assert lines and all(service == "api-gateway" for _, _, service, _ in lines)
    assert '"path":"/api/creators/uploads"' in lines[0][3] and '"status":200' in lines[0][3]


def test_the_gateway_makes_a_request_id_when_the_client_sent_none(stack, session_tmp):
    answered = https.get(f"{GATEWAY}/api/creators/uploads", timeout=10).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", answered)
    assert "api-gateway" in services_found(session_tmp, answered, {"api-gateway"})


def test_no_token_reaches_any_log(stack, session_tmp):
    secret, request_id = token(), f"itest-{uuid.uuid4().hex}"
    https.get(f"{GATEWAY}/api/creators/uploads?token={secret}", timeout=10,
              headers={"Authorization": f"Bearer {secret}", "X-Request-ID": request_id})
    # The request's lines have arrived (the log driver sends asynchronously) ...
    wanted = {"api-gateway", "creator-hub", "auth-service"}
    assert services_found(session_tmp, request_id, wanted) >= wanted
    # ... and none of them, nor any other line, holds the token.
    assert logs(session_tmp, f"grep={re.escape(secret[-40:])}", "since=10m") == []


def test_logs_outlive_a_recreated_app_and_a_recreated_log_store(stack, session_tmp):
    request_id = f"itest-{uuid.uuid4().hex}"
    https.get(f"{GATEWAY}/api/creators/uploads", timeout=10,
              headers={"Authorization": f"Bearer {token()}", "X-Request-ID": request_id})
    assert "creator-hub" in services_found(session_tmp, request_id, {"creator-hub"})
    # The app's container is removed and the deploy makes a new one.
    docker("rm", "-f", containers(STACK)["creator-hub"]["Id"])
    assert deploy(session_tmp).returncode == 0
    assert "creator-hub" in services_found(session_tmp, request_id, {"creator-hub"})
    # The log store itself is recreated (another retention): its volume keeps the files.
    before = containers(STACK)["log-store"]["Id"]
    changed = deploy(session_tmp, {"logs": {"keep_days": 13, "max_megabytes": 2048}})
    assert changed.returncode == 0, changed.output[-3000:]
    assert containers(STACK)["log-store"]["Id"] != before
    assert "creator-hub" in services_found(session_tmp, request_id, {"creator-hub"})
    assert deploy(session_tmp).returncode == 0  # back to the stack as the other modules expect it


def test_docker_logs_still_works_beside_the_log_store(stack):
    """Docker's dual logging: the syslog driver sends, `docker logs` still reads."""
    hub = containers(STACK)["creator-hub"]
    assert hub["HostConfig"]["LogConfig"]["Type"] == "syslog"
    request_id = f"itest-{uuid.uuid4().hex}"
    https.get(f"{GATEWAY}/api/creators/uploads", timeout=10,
              headers={"Authorization": f"Bearer {token()}", "X-Request-ID": request_id})
    deadline = time.monotonic() + 10
    while True:  # docker logs reads what the app wrote a moment ago, beside the syslog driver
        read = subprocess.run(["docker", "logs", "--since", "2m", hub["Id"]], capture_output=True, text=True,
                              timeout=60, check=True)
        if request_id in read.stdout + read.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # pacing of the bounded poll
    assert request_id in read.stdout + read.stderr, (read.stdout + read.stderr)[-2000:]

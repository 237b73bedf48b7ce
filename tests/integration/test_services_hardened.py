"""The reference services against hostile or careless clients, through the gateway of the
test stack ("itest"): each test is one reported failure (issue 8) that must not come back."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import statistics
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import websockets

from benchmarks.loadgen import register_and_login, tls_context
from stackdeploy import retryafter
from tests.versions import LIST_DISTRIBUTIONS, minimums, too_low_installed

from .conftest import GATEWAY, STACK_CA, TEST_HOST_DATA, containers, docker, https

WS = GATEWAY.replace("https://", "wss://")


@pytest.fixture(scope="module")
def token(stack) -> str:
    return register_and_login(GATEWAY, ca_file=STACK_CA)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed_token(claims: dict) -> str:
    """An HS256 JWT signed with the stack's real secret (standard library only)."""
    secret = json.loads((Path(TEST_HOST_DATA["deploy_dir"]) / ".secrets.json").read_text())["JWT_SECRET"]

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_history_rejects_a_negative_limit(token):
    response = https.get(f"{GATEWAY}/api/channels/channels/lobby/history?limit=-1", headers=auth(token), timeout=10)
    assert response.status_code == 422, response.text


def test_history_needs_a_token(stack):
    assert https.get(f"{GATEWAY}/api/channels/channels/lobby/history", timeout=10).status_code == 401


def test_a_filename_with_a_nul_byte_is_refused_and_leaves_nothing_behind(token):
    hub = containers()["creator-hub"]["Id"]
    before = docker("exec", hub, "ls", "/data/uploads").split()
    # Raw multipart: httpx would percent-encode the NUL byte of a filename, a raw client does not.
    boundary = "stackdeploy-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a'.encode() + b"\x00"
            + f'b.txt"\r\nContent-Type: text/plain\r\n\r\npayload\r\n--{boundary}--\r\n'.encode())
    response = https.post(f"{GATEWAY}/api/creators/uploads", content=body, timeout=10,
                          headers={**auth(token), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 422, response.text
    assert docker("exec", hub, "ls", "/data/uploads").split() == before


def test_a_binary_frame_closes_the_socket_with_1003(token):
    async def send_binary() -> int | None:
        async with websockets.connect(f"{WS}/api/channels/ws/lobby?token={token}", ssl=tls_context(STACK_CA)) as ws:
            await asyncio.wait_for(ws.recv(), 10)  # joined
            await ws.send(b"\x00\x01binary")
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(send_binary()) == 1003
    assert https.get(f"{GATEWAY}/api/channels/health", timeout=10).status_code == 200  # the service is fine


def test_logout_closes_the_open_sockets_of_that_token(stack):
    token = register_and_login(GATEWAY, ca_file=STACK_CA)

    async def logout_while_open() -> int | None:
        async with websockets.connect(f"{WS}/api/channels/ws/lobby?token={token}", ssl=tls_context(STACK_CA)) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            assert https.post(f"{GATEWAY}/api/auth/logout", headers=auth(token), timeout=10).status_code == 204
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                while True:  # other clients' messages may arrive first; the close comes within seconds
                    await asyncio.wait_for(ws.recv(), 10)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(logout_while_open()) == 1008


def test_an_empty_ai_prompt_is_answered_to_the_sender_only(token):
    async def empty_prompt() -> dict:
        async with websockets.connect(f"{WS}/api/channels/ws/empty-ai-{uuid.uuid4().hex[:6]}?token={token}",
                                      ssl=tls_context(STACK_CA)) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            await ws.send("/ai   ")
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert asyncio.run(empty_prompt()) == {"from": "channel-service", "error": "empty /ai prompt: nothing sent"}


def test_the_postgres_image_runs_other_commands_like_the_official_one(stack):
    image = containers()["postgres"]["Config"]["Image"]
    assert "psql (PostgreSQL) 15" in docker("run", "--rm", image, "psql", "--version")


def test_the_redis_healthcheck_fails_with_a_wrong_password(stack):
    redis = containers()["redis"]
    test = json.loads(docker("image", "inspect", redis["Config"]["Image"]))[0]["Config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD"
    good = docker("exec", redis["Id"], *test[1:])  # raises on a non-zero exit
    assert good == ""
    wrong = subprocess.run(["docker", "exec", "-e", "REDIS_PASSWORD=wrong", redis["Id"], *test[1:]],
                           capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 1, (wrong.returncode, wrong.stdout, wrong.stderr)  # the check failed, docker ran it


def test_a_signed_token_without_jti_is_refused_not_a_crash(stack):
    forged = signed_token({"sub": "1", "name": "x", "exp": int(time.time()) + 60})
    response = https.get(f"{GATEWAY}/api/auth/verify", headers=auth(forged), timeout=10)
    assert response.status_code == 401, response.text


def test_unknown_users_take_as_long_as_wrong_passwords(stack):
    user = {"username": f"timing-{uuid.uuid4().hex[:8]}", "password": "correct-horse-battery"}
    assert https.post(f"{GATEWAY}/api/auth/register", json=user, timeout=10).status_code == 201

    def median_seconds(body: dict) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            assert https.post(f"{GATEWAY}/api/auth/login", json=body, timeout=10).status_code == 401
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    unknown = median_seconds({"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "whatever-123"})
    wrong = median_seconds({**user, "password": "wrong-password"})
    assert unknown > wrong / 3  # both pay for an argon2 verification


def test_a_validation_error_does_not_echo_a_huge_input(stack):
    response = https.post(f"{GATEWAY}/api/auth/register", json={"username": "u" * 10_000, "password": "x" * 10},
                          timeout=10)
    assert response.status_code == 422
    assert len(response.content) < 2000


def test_the_gateways_own_errors_are_json(stack):
    missing = https.get(f"{GATEWAY}/no-such-route", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"error": "no such route", "status": 404}
    too_large = https.post(f"{GATEWAY}/api/creators/uploads", content=b"x" * (51 * 1024 * 1024), timeout=60)
    assert too_large.status_code == 413 and too_large.json() == {"error": "request body too large", "status": 413}
    app_error = https.get(f"{GATEWAY}/api/auth/no-such-endpoint", timeout=10)  # the app's own 404 passes through
    assert app_error.status_code == 404 and app_error.json() == {"detail": "Not Found"}


def test_ai_engine_needs_a_token_and_a_document_belongs_to_its_writer(token):
    doc = {"id": f"doc-{uuid.uuid4().hex[:8]}", "text": "owned by its first writer"}
    for path, body in (("documents", doc), ("query", {"text": "owned"}), ("complete", {"prompt": "hi"})):
        assert https.post(f"{GATEWAY}/api/ai/{path}", json=body, timeout=30).status_code == 401, path
    assert https.post(f"{GATEWAY}/api/ai/documents", json=doc, headers=auth(token), timeout=30).status_code == 201
    other = register_and_login(GATEWAY, ca_file=STACK_CA)
    overwrite = https.post(f"{GATEWAY}/api/ai/documents", json={**doc, "text": "hijacked"}, headers=auth(other),
                           timeout=30)
    assert overwrite.status_code == 403, overwrite.text
    matches = https.post(f"{GATEWAY}/api/ai/query", json={"text": "owned by its first writer", "n_results": 1},
                         headers=auth(token), timeout=30).json()["matches"]
    assert matches[0] == {**matches[0], "id": doc["id"], "text": doc["text"]}
    seen_by_other = https.post(f"{GATEWAY}/api/ai/query", json={"text": "owned by its first writer", "n_results": 50},
                               headers=auth(other), timeout=30)
    assert seen_by_other.status_code == 200 and seen_by_other.json()["matches"] == []  # only one's own documents


def test_an_unauthenticated_upload_is_refused_before_its_body_is_sent(stack):
    """The gateway answers 401 to the headers alone: 45 MB announced, not one byte sent."""
    host, port = GATEWAY.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            tls_context(STACK_CA).wrap_socket(raw, server_hostname=host) as conn:
        conn.sendall(b"POST /api/creators/uploads HTTP/1.1\r\nHost: test\r\nContent-Length: 45000000\r\n"
                     b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")
        conn.settimeout(10)
        status_line = conn.recv(4096).split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 401 Unauthorized"


def test_an_upload_downloads_whole_and_by_range_by_its_owner_only(token):
    content = bytes(range(256)) * 4096  # 1 MiB
    uploaded = https.post(f"{GATEWAY}/api/creators/uploads", headers=auth(token),
                          files={"file": ("data.bin", content)}, timeout=30).json()
    url = f"{GATEWAY}/api/creators/uploads/{uploaded['id']}"
    assert https.get(url, headers=auth(token), timeout=10).json()["sha256"] == hashlib.sha256(content).hexdigest()
    whole = https.get(f"{url}/content", headers=auth(token), timeout=30)
    assert whole.status_code == 200 and whole.content == content
    assert 'filename="data.bin"' in whole.headers["content-disposition"]
    part = https.get(f"{url}/content", headers={**auth(token), "Range": "bytes=1000-1999"}, timeout=10)
    assert part.status_code == 206 and part.content == content[1000:2000]
    other = register_and_login(GATEWAY, ca_file=STACK_CA)
    assert https.get(f"{url}/content", headers=auth(other), timeout=10).status_code == 404
    assert https.get(url, headers=auth(other), timeout=10).status_code == 404
    assert https.get(f"{url}/content", timeout=10).status_code == 401


# Lists the distributions of the image's Python (its venv's first), or {} where it has none.
FIND_PYTHON = ('for p in /opt/venv/bin/python3 /usr/bin/python3; do '
               '[ -x "$p" ] && exec "$p" -c "$0"; done; echo "{}"')


def test_every_image_of_the_stack_keeps_to_the_minimum_safe_versions(stack):
    floor = minimums()
    images = sorted({info["Config"]["Image"] for info in containers().values()})
    found = {image: json.loads(docker("run", "--rm", "--user", "0", "--entrypoint", "sh", image, "-c", FIND_PYTHON,
                                      LIST_DISTRIBUTIONS))
             for image in images}
    serving = [image for image, installed in found.items() if "starlette" in {n.lower() for n in installed}]
    assert len(serving) >= 5, serving  # the four apps and the monitor serve HTTP through Starlette
    assert {image: too_low_installed(installed, floor) for image, installed in found.items()
            if too_low_installed(installed, floor)} == {}


def test_no_container_shows_a_secret_and_each_reads_its_own_from_a_file(stack):
    deploy_dir = Path(TEST_HOST_DATA["deploy_dir"])
    values = json.loads((deploy_dir / ".secrets.json").read_text())
    everything = containers()
    inspected = json.dumps(list(everything.values()))
    assert [name for name, value in values.items() if value in inspected] == []
    auth = everything["auth-service"]
    assert "JWT_SECRET_FILE=/run/secrets/JWT_SECRET" in auth["Config"]["Env"]
    assert docker("exec", auth["Id"], "cat", "/run/secrets/JWT_SECRET") == values["JWT_SECRET"]  # as its own user
    secrets_dir = deploy_dir / "secrets"
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    assert "JWT_SECRET" not in docker("exec", everything["creator-hub"]["Id"], "ls", "/run/secrets").split()


def registered(password: str) -> str:
    """A fresh user's name (registered through the gateway, waiting out its login limit)."""
    username = f"throttle-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=GATEWAY, verify=tls_context(STACK_CA), timeout=10) as client:
        answer = retryafter.request(client, "POST", "/api/auth/register",
                                    json={"username": username, "password": password})
    assert answer.status_code == 201, answer.text
    return username


def login(username: str, password: str) -> httpx.Response:
    return https.post(f"{GATEWAY}/api/auth/login", json={"username": username, "password": password}, timeout=30)


def test_a_burst_against_one_user_gets_429s_while_another_logs_in(stack):
    victim, other = registered("victims-password"), registered("others-password")
    statuses = []
    for _ in range(8):  # one after another
        answer = login(victim, "a-wrong-guess")
        statuses.append(answer.status_code)
        time.sleep(0.15)  # within the gateway's per-address rate: this is auth-service's lockout
    assert statuses == [401] * 5 + [429] * 3, statuses
    assert 0 < int(answer.headers["Retry-After"]) <= 300
    assert "too many failed logins" in answer.json()["detail"]
    assert login(victim, "victims-password").status_code == 429  # locked, even with the right password
    assert login(other, "others-password").status_code == 200


def test_the_gateway_limits_logins_per_address_with_a_json_429(stack):
    def attempt(_: int) -> httpx.Response:
        return https.post(f"{GATEWAY}/api/auth/login", json={"username": "x"}, timeout=30)  # 422 from the app

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attempt, range(60)))
    limited = [a for a in answers if a.status_code == 429]
    assert limited and {a.status_code for a in answers} == {422, 429}
    assert limited[0].json() == {"error": "too many requests from this address", "status": 429}
    assert limited[0].headers["Retry-After"] == "1" and "X-Request-ID" in limited[0].headers
    assert https.get(f"{GATEWAY}/api/creators/health", timeout=10).status_code == 200  # other routes: not limited
    time.sleep(3)  # the address's allowance refills for the tests after this one


def process_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status of a container's first process, as this machine sees it."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_every_container_drops_its_capabilities_gains_none_and_has_limits(stack):
    running = {name: info for name, info in containers().items() if info["State"]["Running"]}
    assert len(running) >= 15
    for name, info in running.items():
        settings = info["HostConfig"]
        assert settings["CapDrop"] == ["ALL"] and "no-new-privileges:true" in settings["SecurityOpt"], name
        assert settings["PidsLimit"] > 0 and settings["Memory"] > 0 and settings["NanoCpus"] > 0, name
        status = process_status(info["State"]["Pid"])
        assert status["NoNewPrivs"].strip() == "1" and int(status["CapEff"], 16) == 0, (name, status["CapEff"])
    read_only = {name for name, info in running.items() if info["HostConfig"]["ReadonlyRootfs"]}
    assert {"auth-service", "creator-hub", "ai-engine", "channel-service", "stack-monitor"} <= read_only

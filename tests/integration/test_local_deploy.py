"""The whole stack on the local engine: healthy, non-root, working end to end, idempotent.

Tests run in file order and share one deployed stack; each later deploy leaves the
stack healthy for the next test.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import time
import uuid
from pathlib import Path

import pytest
import websockets

from benchmarks.loadgen import tls_context

from .conftest import (
    GATEWAY,
    ROOT,
    STACK_CA,
    TEST_HOST_DATA,
    changed_ops,
    changed_services,
    containers,
    deploy,
    docker,
    https,
    identities,
    run_report,
)

SERVICES = {"postgres", "redis", "ollama", "chromadb", "auth-service", "creator-hub", "ai-engine",
            "channel-service", "api-gateway", "stack-monitor", "log-store", "alertmanager", "prometheus",
            "node-exporter", "nginx-exporter", "postgres-exporter", "redis-exporter"}
USER = {"username": f"user-{uuid.uuid4().hex[:8]}", "password": "correct-horse-battery"}


def login(user: dict[str, str] = USER) -> str:
    response = https.post(f"{GATEWAY}/api/auth/login", json=user, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def account(stack) -> dict[str, str]:
    """A user of its own with one upload, for the tests that show data survives a change."""
    user = {"username": f"kept-{uuid.uuid4().hex[:8]}", "password": "correct-horse-battery"}
    assert https.post(f"{GATEWAY}/api/auth/register", json=user, timeout=10).status_code == 201
    upload = https.post(f"{GATEWAY}/api/creators/uploads", headers={"Authorization": f"Bearer {login(user)}"},
                        files={"file": ("notes.txt", b"kept across deploys")}, timeout=10)
    assert upload.status_code == 201, upload.text
    return user


def test_first_deploy_prints_summary_and_labels_the_standin(first_deploy):
    table = first_deploy.output.split("stack on @local:\n", 1)[1].splitlines()
    assert table[0].split()[:4] == ["service", "image", "size", "check"]
    rows = {line.split()[0]: line for line in table[2:2 + len(SERVICES)]}
    assert set(rows) == SERVICES  # one row per service, each checked ok
    assert all(" ok " in line for line in rows.values()), "\n".join(rows.values())
    assert rows["ollama"].startswith("ollama (STAND-IN)")
    assert "Ollama-API STAND-IN" in first_deploy.output


def test_all_nine_containers_become_healthy(stack):
    deadline = time.monotonic() + 90
    while True:
        health = {n: i["State"].get("Health", {}).get("Status") for n, i in containers().items()}
        if set(health) == SERVICES and all(h == "healthy" for h in health.values()):
            break
        assert time.monotonic() < deadline, f"not all healthy: {health}"
        time.sleep(1)  # pacing of the bounded poll (Docker's HEALTHCHECK runs every 10 s)


def test_no_container_runs_as_root_but_the_monitor_which_has_no_capabilities(stack):
    """The monitor holds the Docker socket (root on the host either way, as documented): it runs
    as root to reach it, with every capability dropped, no new privileges and a read-only root."""
    for name, info in containers().items():
        uid = docker("exec", info["Id"], "id", "-u").strip()
        if name == "stack-monitor":
            host_config = info["HostConfig"]
            assert host_config["CapDrop"] == ["ALL"] and host_config["ReadonlyRootfs"]
            assert "no-new-privileges:true" in host_config["SecurityOpt"]
            assert not host_config["PortBindings"] and list(info["NetworkSettings"]["Networks"]) == ["itest_backend"]
        else:
            assert uid != "0", f"{name} runs as root"


def test_secrets_stay_in_private_files(stack):
    root = Path(TEST_HOST_DATA["deploy_dir"])
    private = [root / ".secrets.json", *sorted((root / "current" / "env").glob("*.env"))]
    assert len(private) == 1 + len(SERVICES)  # .secrets.json and one env file per service
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((root / "current" / "env").stat().st_mode) == 0o700
    secrets = json.loads((root / ".secrets.json").read_text())
    assert set(secrets) == {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET"}
    for name, info in containers().items():  # never in an image's config or history
        image = json.loads(docker("image", "inspect", info["Config"]["Image"]))[0]
        history = docker("history", "--no-trunc", info["Config"]["Image"])
        assert not any(value in json.dumps(image) or value in history for value in secrets.values()), name


def test_only_the_gateway_is_published(stack):
    published = {n for n, i in containers().items() if any(i["NetworkSettings"]["Ports"].get(p)
                                                           for p in i["NetworkSettings"]["Ports"])}
    # And the log store, on 127.0.0.1 alone, for this host's dockerd (see test_logs.py), and
    # Prometheus's UI, on 127.0.0.1 alone too (an SSH tunnel's end).
    assert published == {"api-gateway", "log-store", "prometheus"}


def test_end_to_end_through_the_gateway(stack):
    assert https.get(f"{GATEWAY}/health", timeout=5).status_code == 200
    assert https.post(f"{GATEWAY}/api/auth/register", json=USER, timeout=10).status_code == 201
    assert https.post(f"{GATEWAY}/api/auth/register", json=USER, timeout=10).status_code == 409
    bad = https.post(f"{GATEWAY}/api/auth/login", json={**USER, "password": "wrong-password"}, timeout=10)
    assert bad.status_code == 401
    token = login()
    auth = {"Authorization": f"Bearer {token}"}

    upload = https.post(f"{GATEWAY}/api/creators/uploads", headers=auth,
                        files={"file": ("notes.txt", b"hello creator hub")}, timeout=10)
    assert upload.status_code == 201, upload.text
    listed = https.get(f"{GATEWAY}/api/creators/uploads", headers=auth, timeout=10).json()
    assert [u["filename"] for u in listed] == ["notes.txt"]
    assert https.get(f"{GATEWAY}/api/creators/uploads", timeout=10).status_code == 401

    for text in ("postgres stores relational data", "redis is an in-memory cache", "nginx is a web server"):
        assert https.post(f"{GATEWAY}/api/ai/documents", json={"text": text}, headers=auth,
                          timeout=30).status_code == 201
    matches = https.post(f"{GATEWAY}/api/ai/query", json={"text": "in-memory cache redis", "n_results": 3},
                         headers=auth, timeout=30).json()["matches"]
    assert matches[0]["text"] == "redis is an in-memory cache"
    completion = https.post(f"{GATEWAY}/api/ai/complete", json={"prompt": "hello"}, headers=auth, timeout=30).json()
    assert "stand-in" in completion["response"]

    async def two_clients() -> list[dict]:
        url = f"wss://127.0.0.1:18443/api/channels/ws/lobby?token={token}"
        tls = tls_context(STACK_CA)
        async with websockets.connect(url, ssl=tls) as first, websockets.connect(url, ssl=tls) as second:
            await asyncio.wait_for(first.recv(), 10)
            await asyncio.wait_for(second.recv(), 10)
            await first.send("hello from the first client")
            return [json.loads(await asyncio.wait_for(c.recv(), 10)) for c in (second, first)]

    received = asyncio.run(two_clients())
    assert all(m == {"from": USER["username"], "text": "hello from the first client"} for m in received)


def test_unauthenticated_websocket_is_refused(stack):
    async def connect() -> None:
        async with websockets.connect("wss://127.0.0.1:18443/api/channels/ws/lobby?token=bogus",
                                      ssl=tls_context(STACK_CA)) as ws:
            await asyncio.wait_for(ws.recv(), 10)

    # channel-service closes before accepting: the handshake is refused with 403 (a 502 of the
    # gateway, or a socket that opens, would be a different failure).
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        asyncio.run(connect())
    assert refused.value.response.status_code == 403


def test_second_deploy_changes_nothing(stack, session_tmp):
    """Nothing restarted, and nothing done at all: no operation changed anything (so no lock,
    no upload, no release recorded) and the audit log has no new line."""
    audit = Path(TEST_HOST_DATA["deploy_dir"]) / "state" / "audit.jsonl"
    deploy(session_tmp)  # whatever the stack fixture's deploy left to settle
    before, audited = identities(), audit.read_text().splitlines()
    result = deploy(session_tmp)
    assert result.returncode == 0, result.output[-4000:]
    assert changed_services(result) == []
    assert identities() == before
    assert changed_ops(result.output) == [], result.output[-4000:]
    assert audit.read_text().splitlines() == audited


def test_dry_run_reports_exactly_what_the_real_run_changes(stack, session_tmp):
    before = identities()
    change = {"service_overrides": {"creator-hub": {"env": {"FEATURE_FLAG": "on"}}}}
    result = deploy(session_tmp, change, ROOT, "--dry")
    assert result.returncode == 0, result.output[-4000:]
    assert "[@local] image source: local; build: nothing; (re)start: creator-hub (rolling); release: " in result.output
    assert identities() == before  # nothing happened


def test_env_change_recreates_one_service_without_rebuild_and_keeps_data(stack, session_tmp, account):
    before = identities()
    result = deploy(session_tmp, {"service_overrides": {"creator-hub": {"env": {"FEATURE_FLAG": "on"}}}})
    assert result.returncode == 0, result.output[-4000:]
    after = identities()
    assert {n for n in before if before[n] != after[n]} == {"creator-hub"}
    # The report sees a real change (so its empty list above cannot pass by seeing nothing).
    assert changed_services(result) == ["creator-hub@@local"]
    assert run_report(result)["hosts"]["@local"]["built"] == []
    token = login(account)  # the user and the upload survived the recreate
    listed = https.get(f"{GATEWAY}/api/creators/uploads", headers={"Authorization": f"Bearer {token}"},
                       timeout=10).json()
    assert [u["filename"] for u in listed] == ["notes.txt"]


def test_source_change_rebuilds_and_recreates_only_that_service(stack, session_tmp, account):
    copy = session_tmp / "project-copy"
    if not copy.exists():
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".deploy", ".git", "__pycache__"))
    main = copy / "files" / "services" / "ai-engine" / "app" / "main.py"
    original = main.read_text()
    keep_env = {"service_overrides": {"creator-hub": {"env": {"FEATURE_FLAG": "on"}}}}
    # Two code changes in a row: the first may find the build cache empty (a pruned cache is
    # not this test's subject); the second shows what a code-only change costs.
    for attempt in range(2):
        main.write_text(original + f"\n# code change {attempt} {uuid.uuid4().hex}\n")
        before = identities()
        # A fresh control machine (no .deploy/ secrets): it adopts the host's secrets.
        result = deploy(session_tmp, keep_env, copy)
        assert result.returncode == 0, result.output[-4000:]
    after = identities()
    assert {n for n in before if before[n] != after[n]} == {"ai-engine"}
    assert "build: ai-engine; (re)start: ai-engine (rolling)" in result.output
    report = json.loads((copy / ".deploy" / "last-report.json").read_text())["hosts"]["@local"]["services"]
    built = {name: row["build"] for name, row in report.items() if row["build"]}
    assert list(built) == ["ai-engine"]
    assert built["ai-engine"]["cached"] >= built["ai-engine"]["steps"] - 1  # only the code layer rebuilt
    login(account)  # secrets were not rotated: auth-service still reads the same database


def test_failed_build_names_the_service_and_shows_its_log(stack, session_tmp):
    copy = session_tmp / "broken-build"
    if not copy.exists():
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".deploy", ".git", "__pycache__"))
    requirements = copy / "files" / "services" / "ai-engine" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "no-such-package-stackdeploy-test==0.0.1\n")
    before = identities()
    result = deploy(session_tmp, {"service_overrides": {"creator-hub": {"env": {"FEATURE_FLAG": "on"}}}}, copy)
    assert result.returncode != 0
    assert "BUILD FAILED: service 'ai-engine' on host @local" in result.output
    assert "/var/tmp/stackdeploy-itest/logs/build-ai-engine.log" in result.output
    assert "no-such-package-stackdeploy-test" in result.output  # the log's tail
    assert identities() == before  # nothing was started with a half-built image


def test_failing_service_fails_loudly_with_its_logs(stack, session_tmp):
    # Long enough for uvicorn to listen even on a busy machine, so the check's own answer
    # (404), not "connection refused", is what the failure reports.
    before = identities()
    broken = {"service_overrides": {"creator-hub": {"health": {"http": "/no-such-endpoint"}, "wait_timeout": 20}}}
    result = deploy(session_tmp, broken)
    assert result.returncode != 0
    assert "SERVICE FAILED: 'creator-hub' on host @local" in result.output
    assert "GET /no-such-endpoint answered 404" in result.output
    assert "last 30 log lines of the new container:" in result.output
    # A real log line of the container: its own access line for the failing check.
    assert '"path": "/no-such-endpoint", "status": 404' in result.output
    assert "ROLLED BACK: the new container was removed; the previous version is still serving" in result.output
    assert identities()["creator-hub"] == before["creator-hub"]  # the old container never stopped


def test_redeploy_after_failure_recovers(stack, session_tmp, account):
    result = deploy(session_tmp)
    assert result.returncode == 0, result.output[-4000:]
    assert "stack on @local:" in result.output
    login(account)

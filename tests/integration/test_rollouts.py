"""Changing a running stack safely: zero-downtime rollouts, automatic rollback, releases,
the deploy lock and the audit log, on the real engine with the test stack ("itest").

Every test states the stack it needs with its own deploy, so none depends on the order the
tests run in. Load runs through the gateway on loopback and is bounded in time and count.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from benchmarks.loadgen import HttpLoad, SocketWatch, register_and_login

from .conftest import (
    DEPLOY_TIMEOUT,
    GATEWAY,
    PYINFRA,
    ROOT,
    STACK_CA,
    TEST_HOST_DATA,
    changed_services,
    containers,
    deploy,
    https,
    identities,
    project_copy,
    run_pyinfra,
    write_inventory,
)

DEPLOY_DIR = Path(TEST_HOST_DATA["deploy_dir"])
HEALTH_PATHS = ["/api/auth/health", "/api/creators/health", "/api/ai/health", "/api/channels/health"]
LOAD = {"rate": 60.0, "max_seconds": 900, "max_requests": 60_000}
# Clients that never retry: a keep-alive connection the gateway closes is a failed request.
NO_RETRY = {**LOAD, "retry_closed_keepalive": False}


def fresh_env() -> dict:
    """A config change of creator-hub that no earlier run made: one rolling update."""
    return {"service_overrides": {"creator-hub": {"env": {"ROLLOUT_MARK": uuid.uuid4().hex[:8]}}}}


def changed_code(copy: Path, *services: str) -> None:
    for service in services:
        main = copy / "files" / "services" / service / "app" / "main.py"
        original = main.read_text().split("\n# rollout change")[0]
        main.write_text(original + f"\n# rollout change {uuid.uuid4().hex}\n")


def labels(service: str) -> dict[str, str]:
    return containers()[service]["Config"]["Labels"]


def current_release() -> str:
    return os.readlink(DEPLOY_DIR / "current").rsplit("/", 1)[-1]


def manifest(release: str) -> dict:
    return json.loads((DEPLOY_DIR / "releases" / release / "release.json").read_text())


def gateway_workers() -> set[str]:
    """Pids of the gateway's nginx workers: a reload replaces every one of them."""
    top = subprocess.run(["docker", "top", containers()["api-gateway"]["Id"], "-eo", "pid,args"],
                         capture_output=True, text=True, timeout=30, check=True)
    workers = {line.split()[0] for line in top.stdout.splitlines()[1:] if "worker process" in line}
    assert workers, top.stdout
    return workers


def healthy(path: str) -> bool:
    return https.get(f"{GATEWAY}{path}", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def token(stack) -> str:
    return register_and_login(GATEWAY, ca_file=STACK_CA)


def test_code_change_rolls_out_with_zero_failed_requests(stack, session_tmp, token):
    copy = project_copy(session_tmp, "rollout-code")
    changed_code(copy, "auth-service", "channel-service")
    before, workers = identities(), gateway_workers()
    socket_url = f"wss://127.0.0.1:18443/api/channels/ws/lobby?token={token}"
    with HttpLoad(GATEWAY, HEALTH_PATHS, **NO_RETRY, ca_file=STACK_CA) as load, \
            SocketWatch(socket_url, max_seconds=900, ca_file=STACK_CA) as sockets:
        # The load is flowing and every socket is open before the deploy starts.
        deadline = time.monotonic() + 30
        while not (load.answered > 0 and sockets.connected >= sockets.sockets):
            assert time.monotonic() < deadline, f"load and sockets not started: {load.answered} answered, " \
                                                f"{sockets.connected} sockets open"
            time.sleep(0.05)  # pacing of a bounded wait, not a wait for something
        result = deploy(session_tmp, None, copy)
    assert result.returncode == 0, result.output[-4000:]
    assert "auth-service (rolling)" in result.output and "channel-service (rolling)" in result.output
    after = identities()
    assert {"auth-service", "channel-service"} <= {n for n in before if before[n] != after[n]}
    assert load.result.total > 100 and load.result.failed == 0, load.result.summary()
    assert gateway_workers() == workers  # the apps were switched with no nginx reload
    # The old channel-service closed its sockets with 1001 once the new one served; every
    # client reconnected at once and no connection attempt failed.
    assert sockets.result.close_codes and set(sockets.result.close_codes) == {1001}, sockets.result.summary()
    assert sockets.result.failed_connects == 0, sockets.result.summary()


def test_config_change_rolls_out_with_zero_failed_requests(stack, session_tmp):
    assert deploy(session_tmp, fresh_env()).returncode == 0
    before, workers = identities(), gateway_workers()
    with HttpLoad(GATEWAY, HEALTH_PATHS, **NO_RETRY, ca_file=STACK_CA) as load:
        result = deploy(session_tmp, fresh_env())
    assert result.returncode == 0, result.output[-4000:]
    after = identities()
    assert {n for n in before if before[n] != after[n]} == {"creator-hub"}
    assert load.result.failed == 0, load.result.summary()
    assert gateway_workers() == workers and "reload: api-gateway" not in result.output


def test_an_app_recreated_by_hand_is_given_its_live_alias_back_by_the_next_deploy(stack, session_tmp):
    """`docker compose up --force-recreate` by hand leaves the app off the gateway (its new
    container has no live alias): the next deploy sees that in its host read and syncs the
    gateway instead of reporting no change, and restarts nothing."""
    assert deploy(session_tmp).returncode == 0  # the release the deploys below ask for again
    current = DEPLOY_DIR / "current"
    subprocess.run(["docker", "compose", "--project-directory", str(current), "-f", str(current / "compose.yaml"),
                    "up", "-d", "--no-deps", "--force-recreate", "--wait", "creator-hub"],
                   capture_output=True, text=True, timeout=180, check=True)
    assert https.get(f"{GATEWAY}/api/creators/health", timeout=10).status_code == 502  # the gateway lost it
    before = identities()
    result = deploy(session_tmp)
    assert result.returncode == 0, result.output[-4000:]
    assert "live alias given back: creator-hub" in result.output
    assert changed_services(result) == ["api-gateway@@local"]
    assert healthy("/api/creators/health")
    assert identities() == before  # nothing restarted: the alias was given to the running container
    again = deploy(session_tmp)
    assert again.returncode == 0 and changed_services(again) == [], again.output[-4000:]
    assert "live alias given back" not in again.output and "reload:" not in again.output


def test_gateway_route_change_is_a_graceful_reload(stack, session_tmp):
    routes = {**{"/api/auth/": "auth-service", "/api/creators/": "creator-hub", "/api/ai/": "ai-engine",
                 "/api/channels/": "channel-service"}, "/api/v2/auth/": "auth-service"}
    extra = {"service_overrides": {"api-gateway": {"routes": routes}}}
    assert deploy(session_tmp).returncode == 0
    before = identities()
    with HttpLoad(GATEWAY, HEALTH_PATHS, **LOAD, ca_file=STACK_CA) as load:
        result = deploy(session_tmp, extra)
    assert result.returncode == 0, result.output[-4000:]
    assert "reload: api-gateway" in result.output
    assert identities() == before  # nothing restarted, the gateway included
    assert healthy("/api/v2/auth/health")
    assert load.result.failed == 0, load.result.summary()


def test_broken_release_is_rolled_back_while_the_old_one_serves(stack, session_tmp):
    assert deploy(session_tmp).returncode == 0
    copy = project_copy(session_tmp, "rollout-broken")
    main = copy / "files" / "services" / "auth-service" / "app" / "main.py"
    main.write_text(main.read_text() + f"\nraise RuntimeError('broken release {uuid.uuid4().hex}')\n")
    before = identities()
    with HttpLoad(GATEWAY, HEALTH_PATHS, **NO_RETRY, ca_file=STACK_CA) as load:
        result = deploy(session_tmp, None, copy)
    assert result.returncode != 0
    assert "SERVICE FAILED: 'auth-service' on host @local" in result.output
    # Caught as a crash, not after the 60 s wait_timeout meant for slow starts.
    assert "worker processes keep dying" in result.output or "crash-looping" in result.output
    assert "RuntimeError: broken release" in result.output  # the new container's own log
    assert "ROLLED BACK: the new container was removed; the previous version is still serving" in result.output
    assert identities()["auth-service"] == before["auth-service"]  # never stopped, never restarted
    assert load.result.failed == 0, load.result.summary()
    assert all(healthy(path) for path in HEALTH_PATHS)  # dependents stayed healthy
    assert not (DEPLOY_DIR / "state" / "deploy.lock").exists()  # a failed run releases its lock


def test_a_second_deploy_is_refused_while_one_runs(stack, session_tmp):
    lock = DEPLOY_DIR / "state" / "deploy.lock"
    inventory = write_inventory(session_tmp, fresh_env())
    first = subprocess.Popen([str(PYINFRA), "-y", str(inventory), "deploy.py"], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # pacing of the bounded wait for the lock file
        assert lock.exists(), "the first deploy never took the lock"
        second = deploy(session_tmp, fresh_env())
    finally:
        output, _ = first.communicate(timeout=DEPLOY_TIMEOUT)
    assert second.returncode != 0
    assert "DEPLOY LOCKED: host @local is held by root@" in second.output
    assert "Traceback" not in second.output  # the refusal is one line
    assert "(deploy of release " in second.output
    assert first.returncode == 0, output[-4000:]
    assert not lock.exists()


def test_a_dead_runs_lock_is_detected_and_taken_over_on_request(stack, session_tmp):
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = DEPLOY_DIR / "state" / "deploy.lock"
    lock.write_text(json.dumps({"user": "someone", "control_host": "gone-laptop", "commit": "", "action": "deploy",
                                "release": "20000101T000000Z", "since": time.time() - 600,
                                "anchor_pid": dead.pid, "anchor_start": "1"}))
    refused = deploy(session_tmp, fresh_env())
    assert refused.returncode != 0
    assert "held by someone@gone-laptop" in refused.output and "whose process is gone" in refused.output
    assert lock.exists()  # a refused run never touches another run's lock
    taken = deploy(session_tmp, {**fresh_env(), "take_over_lock": True})
    assert taken.returncode == 0, taken.output[-4000:]
    assert "took over the stale lock of someone@gone-laptop" in taken.output
    assert not lock.exists()


def test_rollback_returns_to_the_previous_release_with_zero_failed_requests(stack, session_tmp):
    assert deploy(session_tmp, fresh_env()).returncode == 0
    previous = current_release()
    assert deploy(session_tmp, fresh_env()).returncode == 0
    latest = current_release()
    assert latest != previous
    with HttpLoad(GATEWAY, HEALTH_PATHS, **NO_RETRY, ca_file=STACK_CA) as load:
        result = run_pyinfra(session_tmp, "rollback.py")
    assert result.returncode == 0, result.output[-4000:]
    assert current_release() == previous
    assert labels("creator-hub")["stackdeploy.config-hash"] == manifest(previous)["services"]["creator-hub"][
        "config_hash"]
    assert load.result.failed == 0, load.result.summary()

    history = run_pyinfra(session_tmp, "releases.py")
    assert history.returncode == 0, history.output[-4000:]
    marked = [line for line in history.output.splitlines() if line.strip().startswith("*")]
    assert len(marked) == 1 and previous in marked[0] and "rollback" in marked[0]
    assert latest in history.output

    forward = run_pyinfra(session_tmp, "rollback.py", {"release": latest})
    assert forward.returncode == 0, forward.output[-4000:]
    assert current_release() == latest

    unknown = run_pyinfra(session_tmp, "rollback.py", {"release": "19990101T000000Z"})
    assert unknown.returncode != 0
    assert "release 19990101T000000Z is not kept on this host" in unknown.output


def test_old_releases_and_their_images_are_pruned(stack, session_tmp):
    keep = {"keep_releases": 2}
    for _ in range(3):
        assert deploy(session_tmp, {**keep, **fresh_env()}).returncode == 0
    kept = sorted(p.name for p in (DEPLOY_DIR / "releases").iterdir())
    assert len(kept) <= 2 and current_release() in kept
    wanted = {spec["image"] for r in kept for spec in manifest(r)["services"].values()}
    stack_images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                                   "reference=itest/*"], capture_output=True, text=True, check=True).stdout.split()
    assert set(stack_images) <= wanted


def test_every_run_is_audited(stack, session_tmp):
    result = deploy(session_tmp, fresh_env())
    assert result.returncode == 0, result.output[-4000:]
    last = json.loads((DEPLOY_DIR / "state" / "audit.jsonl").read_text().splitlines()[-1])
    assert last["action"] == "deploy" and last["result"] == "ok" and last["changed"] == ["creator-hub"]
    assert last["release"] == current_release() and last["user"] == "root" and last["control_host"]
    assert last["seconds"] > 0
    record = json.loads((DEPLOY_DIR / "state" / "releases.json").read_text())[-1]
    assert record["id"] == current_release() and record["result"] == "ok"
    assert record["services"]["creator-hub"]["config_hash"] == labels("creator-hub")["stackdeploy.config-hash"]


def test_a_stopped_engine_is_started_and_nothing_is_rebuilt(stack, session_tmp):
    assert deploy(session_tmp).returncode == 0
    images = {name: info["Image"] for name, info in containers().items()}  # image ids
    pid = int(Path("/var/run/docker.pid").read_text())
    os.kill(pid, 15)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # pacing of the bounded wait for dockerd to exit
    assert not Path(f"/proc/{pid}").exists(), "dockerd did not stop within 60 s"
    dry = deploy(session_tmp, None, ROOT, "--dry")
    assert dry.returncode != 0
    assert "the Docker engine is installed but not answering" in dry.output
    result = deploy(session_tmp)
    assert result.returncode == 0, result.output[-4000:]
    assert "Docker engine not answering: starting it before reading the host" in result.output
    assert "[@local] image source: local; build: nothing;" in result.output
    assert {name: info["Image"] for name, info in containers().items()} == images  # no image was rebuilt
    assert all(healthy(path) for path in HEALTH_PATHS)

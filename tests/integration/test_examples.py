"""The user's own services, first class: examples/node-hello, a Node.js app from its own
Dockerfile (Debian's nodejs on the offline base), and examples/queue-worker, a worker with no
port that takes jobs from Redis, deployed into the test stack (the app behind its gateway),
rolled (the app under load with no failed request, the worker without losing a job), broken
releases rolled back, then removed. A prebuilt image is loaded from its archive.

The example is not part of the default stack: each test deploys the test stack with it added
(the module's ``with_example`` data), the way a user adds a service to group_data.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.loadgen import HttpLoad
from stackdeploy.model import read_settings

from .conftest import GATEWAY, ROOT, STACK_CA, containers, deploy, https, identities, project_copy

EXAMPLE = runpy.run_path(str(ROOT / "examples" / "node-hello" / "service.py"))
WORKER = runpy.run_path(str(ROOT / "examples" / "queue-worker" / "service.py"))["SERVICE"]
NO_RETRY = {"rate": 60.0, "max_seconds": 900, "max_requests": 60_000, "retry_closed_keepalive": False}


def with_example() -> dict:
    """The test stack's data with hello-node added to its services and its route to the gateway."""
    services = dict(read_settings(ROOT / "group_data" / "all.py")["services"])
    services["hello-node"] = EXAMPLE["SERVICE"]
    services["queue-worker"] = WORKER
    routes = {**services["api-gateway"]["routes"], **EXAMPLE["ROUTE"]}
    return {"services": services, "service_overrides": {"api-gateway": {"routes": routes}}}


def hello() -> dict:
    response = https.get(f"{GATEWAY}/api/hello/", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def redis_cli(*args: str) -> str:
    """redis-cli in the test stack's Redis, with its password from the secret file."""
    script = 'REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")" redis-cli "$@"'
    result = subprocess.run(["docker", "exec", containers()["redis"]["Id"], "sh", "-c", script, "redis-cli", *args],
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.strip()


def jobs_done(jobs: list[str], seconds: float = 30) -> dict[str, str]:
    """job -> the worker version that did it, waiting (bounded) until every one is done."""
    deadline = time.monotonic() + seconds
    while True:
        done = {job: redis_cli("GET", f"example-done:{job}") for job in jobs}
        if all(done.values()) or time.monotonic() > deadline:
            return done
        time.sleep(0.5)  # pacing of a bounded wait


def changed_worker(copy: Path, text: str) -> None:
    worker = copy / "examples" / "queue-worker" / "worker.py"
    worker.write_text(worker.read_text().replace('VERSION = "1"', text))


def changed_server(copy: Path, text: str) -> None:
    server = copy / "examples" / "node-hello" / "server.js"
    server.write_text(server.read_text().replace('const VERSION = process.env.HELLO_VERSION || "1";', text))


@pytest.fixture(scope="module")
def example(stack, session_tmp):
    result = deploy(session_tmp, with_example())
    assert result.returncode == 0, result.output[-6000:]
    yield result
    removed = deploy(session_tmp)  # the stack without it: the next test module's
    assert removed.returncode == 0, removed.output[-4000:]


def test_an_app_from_its_own_dockerfile_serves_through_the_gateway_hardened_and_without_python(example):
    body = hello()
    assert body["hello"] == "world" and body["version"] == "1"
    info = containers()["hello-node"]
    assert info["Config"]["Image"].startswith("itest/hello-node:")
    assert info["HostConfig"]["CapDrop"] == ["ALL"] and info["HostConfig"]["ReadonlyRootfs"]
    assert "no-new-privileges" in " ".join(info["HostConfig"]["SecurityOpt"])
    # Nothing of the platform's was put into the user's image or in front of its command: no
    # wait script, no probe module; it runs its own CMD.
    probe = subprocess.run(["docker", "exec", info["Id"], "ls", "/usr/local/bin", "/app"],
                           capture_output=True, text=True, timeout=30, check=True)
    assert "wait-for-services" not in probe.stdout and "stackprobe" not in probe.stdout, probe.stdout
    assert info["Config"]["Cmd"] == ["node", "/app/server.js"] and not info["Config"]["Entrypoint"]
    # Built FROM the offline base the deploy passed as BASE_IMAGE (this suite runs offline):
    # the base's layers are the image's first.
    bases = subprocess.run(["docker", "images", "-q", "stackdeploy/base"], capture_output=True, text=True,
                           timeout=30, check=True).stdout.split()
    layers = {image: image_layers(image) for image in [info["Image"], *bases]}
    assert any(layers[info["Image"]][:len(layers[base])] == layers[base] for base in bases), layers


def image_layers(image: str) -> list[str]:
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, timeout=30,
                           check=True)
    return json.loads(found.stdout)[0]["RootFS"]["Layers"]


def test_a_worker_with_no_port_takes_jobs_and_has_no_route(example):
    info = containers()["queue-worker"]
    assert not info["HostConfig"]["PortBindings"] and info["HostConfig"]["ReadonlyRootfs"]
    redis_cli("RPUSH", "example-jobs", "first")
    assert jobs_done(["first"]) == {"first": "1"}


def test_a_code_change_rolls_with_zero_failed_requests(example, session_tmp):
    copy = project_copy(session_tmp, "example-code")
    changed_server(copy, 'const VERSION = "2";')
    changed_worker(copy, 'VERSION = "2"')
    before = identities()
    with HttpLoad(GATEWAY, ["/api/hello/"], **NO_RETRY, ca_file=STACK_CA) as load:
        result = deploy(session_tmp, with_example(), copy)
    assert result.returncode == 0, result.output[-4000:]
    assert "hello-node (rolling)" in result.output and "queue-worker (rolling)" in result.output
    assert hello()["version"] == "2"
    after = identities()
    assert {name for name in before if before[name] != after.get(name)} == {"hello-node", "queue-worker"}
    redis_cli("RPUSH", "example-jobs", "after-roll")
    assert jobs_done(["after-roll"]) == {"after-roll": "2"}
    assert load.result.total > 50 and load.result.failed == 0, load.result.summary()


def test_a_broken_release_is_rolled_back_while_the_old_one_serves(example, session_tmp):
    assert deploy(session_tmp, with_example()).returncode == 0
    copy = project_copy(session_tmp, "example-broken")
    changed_server(copy, 'throw new Error("broken release");')
    before = identities()["hello-node"]
    with HttpLoad(GATEWAY, ["/api/hello/"], **NO_RETRY, ca_file=STACK_CA) as load:
        result = deploy(session_tmp, with_example(), copy)
    assert result.returncode != 0
    assert "SERVICE FAILED: 'hello-node'" in result.output and "broken release" in result.output
    assert identities()["hello-node"] == before  # the old container never stopped serving
    assert hello()["version"] == "1" and load.result.failed == 0, load.result.summary()


def test_a_broken_worker_is_rolled_back_and_the_old_one_keeps_working(example, session_tmp):
    """From whatever release the tests before left (the old worker's version is read, not assumed)."""
    redis_cli("RPUSH", "example-jobs", "before-broken")
    old = jobs_done(["before-broken"])["before-broken"]
    copy = project_copy(session_tmp, "example-broken-worker")
    changed_worker(copy, 'VERSION = "broken"\nraise SystemExit("broken release")')  # exits at start
    before = identities()["queue-worker"]
    result = deploy(session_tmp, with_example(), copy)
    assert result.returncode != 0
    assert "SERVICE FAILED: 'queue-worker'" in result.output and "broken release" in result.output
    assert identities()["queue-worker"] == before
    redis_cli("RPUSH", "example-jobs", "after-broken")
    assert old and jobs_done(["after-broken"]) == {"after-broken": old}


def test_a_prebuilt_image_is_loaded_from_its_archive_offline_once(example, session_tmp):
    """A vendor's image, here one saved with `docker save` under a tag of its own: offline, the
    deploy loads the archive into the engine that lacks it, serves it behind the gateway, and
    does not load it again once it is there."""
    image, archive = "example/hello-prebuilt:1.0", session_tmp / "hello-prebuilt.tar"
    subprocess.run(["docker", "tag", containers()["hello-node"]["Image"], image], check=True, timeout=60)
    subprocess.run(["docker", "save", "-o", str(archive), image], check=True, timeout=300)
    subprocess.run(["docker", "rmi", image], check=True, timeout=60, capture_output=True)
    data = with_example()
    data["services"]["hello-prebuilt"] = {"role": "app", "build": {"image": image, "archive": str(archive)},
                                          "port": 8080, "health": {"http": "/health"}}
    data["service_overrides"]["api-gateway"]["routes"]["/api/prebuilt/"] = "hello-prebuilt"
    result = deploy(session_tmp, data)
    assert result.returncode == 0, result.output[-4000:]
    assert f"load: {image}" in result.output
    assert https.get(f"{GATEWAY}/api/prebuilt/", timeout=10).json()["hello"] == "world"
    assert containers()["hello-prebuilt"]["Config"]["Image"] == image
    again = deploy(session_tmp, data)
    assert again.returncode == 0 and "load:" not in again.output and "hello-prebuilt (" not in again.output


def test_removing_it_from_the_services_removes_its_container(example, session_tmp):
    result = deploy(session_tmp)
    assert result.returncode == 0, result.output[-4000:]
    assert "hello-node" not in containers() and "queue-worker" not in containers()
    assert https.get(f"{GATEWAY}/api/hello/", timeout=10).status_code == 404
    again = deploy(session_tmp, with_example())  # back, for the fixture's own removal
    assert again.returncode == 0 and hello()["hello"] == "world"

"""Images through a registry (``image_distribution = "registry"``) on the swarm engine, on the
three simulated hosts (tests/hosts/inventory_swarm.py; h1 is the manager and the build host).

The registry is Debian's ``docker-registry`` (Distribution 2.8; scripts/test.sh installs it),
run by this module on the simulated hosts' bridge (10.77.0.1, which every host reaches), over
plain HTTP: ``insecure``, so provision.py lists it in every host's daemon.json. Images stay
offline-built (``image_source = "local"``): the registry only carries them to the nodes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import DeployResult, changed_ops, run_report
from .swarmhosts import STACK, SWARM_INVENTORY, docker, run_pyinfra, swarm_hosts, versions

pytestmark = pytest.mark.simhosts

REGISTRY = "10.77.0.1:5000"  # the simulated hosts' bridge gateway: this machine, seen from every host
REGISTRY_BINARY = "/usr/bin/docker-registry"
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: {address}
"""
EXTRA = {"image_source": "local", "image_distribution": "registry",
         "registry": {"address": REGISTRY, "insecure": True}}
H1, H2, H3 = "10.77.0.11", "10.77.0.12", "10.77.0.13"
DEPLOY_TIMEOUT = 2400  # a cold build on h1, then every image pushed once and pulled by two nodes


def ask_registry(path: str) -> dict:
    """The registry's HTTP API (no proxy: the address is this machine's own bridge)."""
    response = httpx.get(f"http://{REGISTRY}{path}", timeout=10, trust_env=False)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def hosts(simulated_hosts) -> Iterator[dict]:
    with swarm_hosts(simulated_hosts) as state:
        yield state


@pytest.fixture(scope="module")
def registry(hosts, tmp_path_factory) -> Iterator[str]:
    """A registry with nothing in it, on the bridge (which exists once the hosts are up)."""
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(root=root / "data", address=REGISTRY))
    log_path = root / "registry.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{REGISTRY}/v2/", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, f"docker-registry exited: {log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no answer in 30 s: {log_path.read_text()[-2000:]}"
            time.sleep(0.2)  # pacing of a bounded poll
        yield REGISTRY
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def provisioned(hosts, registry) -> DeployResult:
    # Not --serial (test_multi_host.py's way around the simulated hosts' shared /etc/passwd):
    # a host joins the swarm the first manager inits in the same operation, so hosts go in step.
    result = run_pyinfra(SWARM_INVENTORY, "provision.py", EXTRA)
    assert result.returncode == 0, result.output[-4000:]
    return result


@pytest.fixture(scope="module")
def deployed(hosts, provisioned) -> DeployResult:
    result = run_pyinfra(SWARM_INVENTORY, "deploy.py", EXTRA, DEPLOY_TIMEOUT)
    assert result.returncode == 0, result.output[-6000:]
    return result


def announced(result: DeployResult, address: str) -> str:
    """The line a run announced for one host: what it builds, moves and (re)starts there."""
    return next(line for line in result.output.splitlines() if f"[{address}] image source:" in line)


def stack_images(hosts: dict) -> list[str]:
    """The image every service of the swarm stack runs, as its spec names it."""
    services = docker(hosts, 0, "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}").split()
    assert services
    return sorted(set(docker(hosts, 0, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                             *services).split()))


def test_provision_makes_every_engine_trust_the_insecure_registry(hosts, provisioned):
    for index, host in enumerate(hosts["hosts"]):
        settings = json.loads((Path(host["data"]) / "etc-docker" / "daemon.json").read_text())
        assert settings["insecure-registries"] == [REGISTRY]
        indexes = json.loads(docker(hosts, index, "info", "--format", "{{json .RegistryConfig.IndexConfigs}}"))
        assert indexes[REGISTRY]["Secure"] is False  # applied by a reload: the engine runs on
    again = run_pyinfra(SWARM_INVENTORY, "provision.py", EXTRA)
    assert again.returncode == 0 and changed_ops(again.output) == [], again.output[-3000:]


def test_the_build_host_pushes_the_nodes_pull_and_nothing_is_shipped(hosts, deployed):
    rows = run_report(deployed)["hosts"][H1]["services"]  # the manager reports every swarm service
    assert rows and all(row["check"] == "ok" for row in rows.values()), rows
    assert httpx.get(f"http://{H3}:8080/health", timeout=10, trust_env=False).status_code == 200
    assert "; push: " in announced(deployed, H1)  # the registry started empty
    for address in (H1, H2, H3):
        assert "ship:" not in announced(deployed, address)
    assert "Images shipped from the build host" not in deployed.output and "docker load" not in deployed.output
    assert any(op.endswith("Images pushed to the registry") for op in changed_ops(deployed.output))


def test_the_registry_holds_every_image_the_stack_runs(hosts, deployed):
    images = stack_images(hosts)
    assert all(image.startswith(f"{REGISTRY}/") for image in images), images  # offline images: all built here
    catalog = set(ask_registry("/v2/_catalog")["repositories"])
    for image in images:
        repository, _, tag = image.removeprefix(f"{REGISTRY}/").rpartition(":")
        assert repository in catalog, (repository, catalog)
        assert tag in ask_registry(f"/v2/{repository}/tags/list")["tags"]


def test_the_other_nodes_run_images_pulled_from_the_registry(hosts, deployed):
    for index in (1, 2):  # h2 and h3: not the build host
        containers = docker(hosts, index, "ps", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}").split()
        assert containers, f"no task of the stack on h{index + 1}"
        for image in set(docker(hosts, index, "inspect", "--format", "{{.Config.Image}}", *containers).split()):
            digests = json.loads(docker(hosts, index, "image", "inspect", "--format", "{{json .RepoDigests}}", image))
            assert any(digest.startswith(f"{REGISTRY}/") for digest in digests), (index, image, digests)


def test_a_second_deploy_pushes_pulls_and_restarts_nothing(hosts, deployed):
    before, catalog = versions(hosts), ask_registry("/v2/_catalog")
    dry = run_pyinfra(SWARM_INVENTORY, "deploy.py", EXTRA, 600, "--dry")
    result = run_pyinfra(SWARM_INVENTORY, "deploy.py", EXTRA, 600)
    assert result.returncode == 0 and dry.returncode == 0, result.output[-3000:] + dry.output[-3000:]
    for run in (dry, result):
        for address in (H1, H2, H3):
            line = announced(run, address)
            assert "build: nothing; (re)start: nothing; release:" in line, line  # no push, pull, tag or ship
    assert not [op for op in changed_ops(result.output) if "registry" in op or "Images" in op]
    assert run_report(result)["changed"] == []
    assert versions(hosts) == before  # Swarm was not asked to update anything
    assert ask_registry("/v2/_catalog") == catalog

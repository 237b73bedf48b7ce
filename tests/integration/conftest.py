"""Integration fixtures: a real deploy of a separate test stack on the real Docker engine.

The test stack ("itest") uses its own project name, deploy directory and gateway ports,
so it never touches a stack a developer deployed with inventory/local.py. The deploy
itself installs and starts the Docker engine when none answers. Its gateway answers HTTPS
on 18443 (verified against the stack CA the deploy keeps in .deploy/tls/itest-itest/) and
plain HTTP on 18080 only with a redirect, and /health.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.loadgen import tls_context
from stackdeploy import contract

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).parent / "pyinfra"
SIMHOSTS = [sys.executable, str(ROOT / "tests" / "hosts" / "simhosts.py")]
STACK = "itest"
GATEWAY = "https://127.0.0.1:18443"
GATEWAY_HTTP = "http://127.0.0.1:18080"  # plain HTTP: /health, and a 308 to GATEWAY for the rest
TEST_HOST_DATA: dict[str, Any] = {
    "stack_name": STACK,
    "deploy_dir": "/var/tmp/stackdeploy-itest",
    "gateway_port": 18080,
    "gateway_bind": "127.0.0.1",
    "environment": "itest",
    "tls": {"source": "self-signed", "port": 18443, "server_names": ["localhost"]},
    # Beside the default stack on the same engine: ports of its own (the log store's, and
    # Prometheus's UI, which both stacks would publish on 127.0.0.1:9090). A test's own
    # service_overrides are merged into these, service by service (write_inventory).
    "service_overrides": {"log-store": {"port": 16514}, "prometheus": {"publish": 19090}},
}


def stack_ca(stack: str = STACK, environment: str = "itest", root: Path = ROOT) -> Path:
    """The stack CA's certificate a deploy keeps on this machine (stackdeploy.tls.store_of)."""
    return root / ".deploy" / "tls" / f"{stack}-{environment}" / "ca.pem"


STACK_CA = str(stack_ca())


class Https:
    """httpx's request functions for a gateway over HTTPS, verifying its certificate against a
    stack CA (read at each request: the first deploy writes it)."""

    def __init__(self, ca_file: str) -> None:
        self.ca_file = ca_file

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, url, verify=tls_context(self.ca_file), **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


https = Https(STACK_CA)
DEPLOY_TIMEOUT = 1800


@dataclass
class DeployResult:
    returncode: int
    output: str
    seconds: float
    started_at: float = 0.0  # wall clock (time.time()), to tell this run's report from an earlier one's


def write_inventory(tmp_path: Path, extra: dict[str, Any] | None = None) -> Path:
    inventory = tmp_path / f"inventory_{time.time_ns()}.py"
    extra = dict(extra or {})
    overrides = {name: dict(settings) for name, settings in TEST_HOST_DATA["service_overrides"].items()}
    for name, settings in extra.pop("service_overrides", {}).items():
        overrides[name] = {**overrides.get(name, {}), **settings}
    data = {**TEST_HOST_DATA, **extra, "service_overrides": overrides}
    inventory.write_text(f"itest = [('@local', {data!r})]\n")
    return inventory


def run_pyinfra(tmp_path: Path, script: str, extra: dict[str, Any] | None = None, root: Path = ROOT,
                *args: str) -> DeployResult:
    """Run ``pyinfra -y INVENTORY <script>`` for the test stack; output is kept for asserts."""
    inventory = write_inventory(tmp_path, extra)
    started_at, started = time.time(), time.monotonic()
    result = subprocess.run([str(PYINFRA), "-y", str(inventory), script, *args], cwd=root,
                            capture_output=True, text=True, timeout=DEPLOY_TIMEOUT, check=False)
    return DeployResult(result.returncode, result.stdout + result.stderr, time.monotonic() - started, started_at)


def deploy(tmp_path: Path, extra: dict[str, Any] | None = None, root: Path = ROOT,
           *args: str) -> DeployResult:
    """Run ``pyinfra -y INVENTORY deploy.py`` for the test stack."""
    return run_pyinfra(tmp_path, "deploy.py", extra, root, *args)


def project_copy(tmp_path: Path, name: str) -> Path:
    """A scratch copy of the project (no venv, no control-machine state), to change its code."""
    copy = tmp_path / name
    if not copy.exists():
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".deploy", ".git", "__pycache__"))
    return copy


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def containers(project: str = STACK) -> dict[str, dict]:
    """service name -> docker inspect of a compose project's containers (the test stack's)."""
    ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").split()
    if not ids:
        return {}
    return {info["Config"]["Labels"]["com.docker.compose.service"]: info
            for info in json.loads(docker("inspect", *ids))}


def identities(project: str = STACK) -> dict[str, tuple[str, str]]:
    """service -> (container id, start time): changes exactly when a container is recreated or restarted."""
    return {name: (info["Id"], info["State"]["StartedAt"]) for name, info in containers(project).items()}


@contextmanager
def local_stacks_paused() -> Iterator[None]:
    """The stacks on this machine's own engine (the test stack, the README's default stack)
    stopped while the simulated hosts work, and started again after: three more engines
    share the same two cores, and two idle stacks of 17 containers each (probes, scrapes,
    log shipping) pushed the load past 13, where rolling updates on the hosts timed out.
    Modules that need the test stack deploy it again anyway (the ``stack`` fixture)."""
    running = subprocess.run(["docker", "ps", "-q", "--filter", "label=com.docker.compose.project"],
                             capture_output=True, text=True, timeout=60, check=False).stdout.split()
    if running:
        subprocess.run(["docker", "stop", "-t", "10", *running], capture_output=True, timeout=300, check=False)
    try:
        yield
    finally:
        if running:
            subprocess.run(["docker", "start", *running], capture_output=True, timeout=300, check=False)


def run_report(result: DeployResult, root: Path = ROOT) -> dict:
    """The JSON report (.deploy/last-report.json under ``root``) of the deploy ``result`` is
    from: it fails when that run wrote none, so an earlier run's file never passes for it."""
    report = json.loads((root / ".deploy" / "last-report.json").read_text())
    assert any(entry["written_at"] >= result.started_at for entry in report["hosts"].values()), \
        f"the deploy wrote no report: {result.output[-2000:]}"
    return report


def changed_services(result: DeployResult, root: Path = ROOT) -> list[str]:
    """``service@host`` of every service the deploy ``result`` is from (re)started or reloaded,
    from its JSON report (not from pyinfra's human output)."""
    return run_report(result, root)["changed"]


def changed_ops(output: str) -> list[str]:
    """Names of operations pyinfra reported as changed ("Success") in a run's output. Only for
    provision.py, which has no containers and writes no report; a deploy's no-op is read from
    container identities and its report (``changed_services``)."""
    names, current = [], None
    for line in output.splitlines():
        if line.startswith("--> Starting operation: "):
            current = line.removeprefix("--> Starting operation: ").strip()
        elif line.strip().endswith("] Success") and current:
            names.append(current)
    return names


# Modules on the simulated hosts, in the order they run: they share one start of the hosts.
SIMHOST_MODULES = ("test_multi_host.py", "test_swarm.py", "test_registry.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules on this machine's own engine first, the README's deploy command last of
    them, then the modules on the simulated hosts. The README's command leaves the default
    stack (17 more containers) running, as the command does: every module after it on this
    engine would share the two cores with it, and the simulated hosts stop it while they work.
    The simulated hosts are started once (``simulated_hosts``) and the modules hand them on:
    the swarm module starts from the compose stack the multi-host module leaves."""
    def order(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        if name in SIMHOST_MODULES:
            return 2, SIMHOST_MODULES.index(name)
        return (1, 0) if name == "test_readme_deploy.py" else (0, 0)
    items.sort(key=order)  # stable: tests keep their order within a module


@pytest.fixture(scope="session")
def simulated_hosts() -> Iterator[dict]:
    """The three simulated hosts (tests/hosts/simhosts.py), up once for the session, as their
    hosts.json describes them; this machine's own stacks are stopped meanwhile (see
    ``local_stacks_paused``), and the hosts go down at the end."""
    result = subprocess.run([*SIMHOSTS, "up", "--count", "3"], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    try:
        with local_stacks_paused():
            yield json.loads(result.stdout)
    finally:
        subprocess.run([*SIMHOSTS, "down"], capture_output=True, timeout=300, check=False)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("itest")


@pytest.fixture(scope="session")
def first_deploy(session_tmp) -> Iterator[DeployResult]:
    result = deploy(session_tmp)
    assert result.returncode == 0, result.output[-6000:]
    yield result
    subprocess.run(["docker", "compose", "-p", STACK, "down", "-v", "--remove-orphans"],
                   capture_output=True, timeout=300, check=False)
    # The routes network is the deploy's own (compose.yaml names it external): compose leaves it.
    subprocess.run(["docker", "network", "rm", contract.routes_network(STACK)], capture_output=True, timeout=60,
                   check=False)


@pytest.fixture(scope="module")
def stack(first_deploy, session_tmp) -> DeployResult:
    """The test stack as this project deploys it, at the start of each module that uses it,
    whatever a module run before left (another config, a code copy's release, a stopped
    container): modules do not depend on the order they run in. A no-op when nothing did."""
    result = deploy(session_tmp)
    assert result.returncode == 0, result.output[-6000:]
    return result

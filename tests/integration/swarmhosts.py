"""The three simulated hosts as the swarm engine's tests use them: pyinfra run against their
inventories, docker asked on one of them, and left at the end of a module out of any swarm."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .conftest import ROOT, DeployResult

SWARM_INVENTORY = "tests/hosts/inventory_swarm.py"
COMPOSE_INVENTORY = "tests/hosts/inventory.py"
STACK = "creatorstack"


def run_pyinfra(inventory: str, script: str, extra: dict | None = None, timeout: int = 1500,
                *args: str) -> DeployResult:
    """``pyinfra -y INVENTORY SCRIPT`` with ``extra`` added to every host's data (SIMHOSTS_EXTRA_DATA)."""
    env = {**os.environ, "SIMHOSTS_EXTRA_DATA": json.dumps(extra or {})}
    started_at, started = time.time(), time.monotonic()
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "pyinfra"), "-y", *args, inventory, script], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return DeployResult(result.returncode, result.stdout + result.stderr, time.monotonic() - started, started_at)


def docker(hosts: dict, index: int, *args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", "-H", hosts["hosts"][index]["docker_host"], *args], capture_output=True,
                            text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} on h{index + 1}: {result.stderr}")
    return result.stdout


def versions(hosts: dict) -> dict[str, str]:
    """Service -> its spec version: any update of a service (even one that restarts nothing) bumps it."""
    out = docker(hosts, 0, "service", "ls", "--format", "{{.Name}}")
    names = out.split()
    lines = docker(hosts, 0, "service", "inspect", "--format", "{{.Spec.Name}} {{.Version.Index}}", *names)
    return dict(line.split() for line in lines.splitlines())


@contextmanager
def swarm_hosts(state: dict) -> Iterator[dict]:
    """The simulated hosts (``simulated_hosts``) for a swarm module; afterwards as the next
    module expects them: no swarm stack, out of any swarm."""
    try:
        yield state
    finally:
        docker(state, 0, "stack", "rm", STACK, check=False)
        for index in range(3):
            deadline = time.monotonic() + 120
            while docker(state, index, "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={STACK}",
                         check=False).split() and time.monotonic() < deadline:
                time.sleep(1)  # pacing of a bounded poll
        for index in range(3):
            docker(state, index, "swarm", "leave", "--force", check=False)

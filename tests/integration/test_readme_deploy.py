"""The README's deploy command, run as a user would: ./scripts/deploy-local.sh.

It deploys the default stack of inventory/local.py (project "creatorstack", gateway on
port 8080) to the local engine and leaves it running, exactly like the command does. On
a machine where that stack already runs from the same code, both runs are no-ops.
"""

from __future__ import annotations

import subprocess
import time

import httpx

from .conftest import (
    DEPLOY_TIMEOUT,
    PYINFRA,
    ROOT,
    DeployResult,
    Https,
    changed_services,
    containers,
    identities,
    stack_ca,
)


def run(command: list[str]) -> tuple[int, str]:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT, check=False)
    return result.returncode, result.stdout + result.stderr


def test_readme_deploy_command_brings_up_the_default_stack_and_reruns_as_a_noop():
    code, output = run(["./scripts/deploy-local.sh"])
    assert code == 0, output[-6000:]
    assert "stack on @local:" in output
    health = httpx.get("http://127.0.0.1:8080/health", timeout=10)  # plain HTTP: Docker's check
    assert health.status_code == 200 and health.json()["status"] == "ok"
    # Everything else over HTTPS, verified with the stack CA the deploy kept on this machine.
    assert httpx.get("http://127.0.0.1:8080/api/auth/health", timeout=10).status_code == 308
    secure = Https(str(stack_ca("creatorstack", "local"))).get("https://127.0.0.1:8443/health", timeout=10)
    assert secure.status_code == 200 and "max-age=" in secure.headers["strict-transport-security"]
    running = {n for n, i in containers("creatorstack").items() if i["State"]["Running"]}
    # Nine services, the monitor, the log store, Prometheus, Alertmanager and four exporters.
    assert len(running) == 17, running

    before, started_at = identities("creatorstack"), time.time()
    code, output = run([str(PYINFRA), "-y", "inventory/local.py", "deploy.py"])
    assert code == 0, output[-4000:]
    assert "[@local] image source: local; build: nothing; (re)start: nothing" in output
    assert changed_services(DeployResult(code, output, 0.0, started_at)) == []
    assert identities("creatorstack") == before


def test_stackdeploy_plans_no_change_and_verifies_the_default_stack():
    """The one command: `stackdeploy plan` (deploy.py --dry) exits 0 when nothing would change,
    and `stackdeploy verify` probes the stack the README's command left, neither prompting."""
    before = identities("creatorstack")
    code, output = run([str(PYINFRA.parent / "stackdeploy"), "plan"])
    assert code == 0, output[-4000:]
    assert "[@local] plan: no changes" in output
    code, output = run([str(PYINFRA.parent / "stackdeploy"), "verify"])
    assert code == 0 and "stack on @local:" in output, output[-4000:]
    assert identities("creatorstack") == before

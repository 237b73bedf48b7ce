"""The worked examples (inventory/staging.py, inventory/production.py) render valid stacks.

Loads them the way the pyinfra CLI does (with their group_data overrides), then plans
every host without connecting to any.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLANNER = """
import json, sys
from pyinfra.api import Config, Inventory, State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory
from stackdeploy.desired import inventory_placement, load_stack
from stackdeploy.plan import build_plan

secrets = {"POSTGRES_PASSWORD": "p", "REDIS_PASSWORD": "r", "JWT_SECRET": "j"}
with ctx_state.use(State(Inventory(([], {})), Config())):
    inventory = make_inventory(sys.argv[1], cwd=".")
State(inventory, Config())
out = {}
for host in inventory:
    stack = load_stack(host)
    plan = build_plan(stack, "local", secrets, inventory_placement(stack, host), host.name)
    out[host.name] = {"services": list(plan.services), "files": plan.files}
print(json.dumps(out))
"""


def plans(inventory_file: str) -> dict[str, SimpleNamespace]:
    """Plan every host of an inventory like the CLI loads it (in a subprocess: importing
    pyinfra's CLI monkey-patches the interpreter with gevent)."""
    result = subprocess.run([sys.executable, "-c", PLANNER, inventory_file], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=120)
    return {name: SimpleNamespace(**plan) for name, plan in json.loads(result.stdout).items()}


@pytest.mark.parametrize("inventory_file", ["inventory/staging.py", "inventory/production.py"])
def test_every_host_renders_a_valid_compose_file(tmp_path, inventory_file):
    for name, plan in plans(inventory_file).items():
        root = tmp_path / name
        for rel, content in plan.files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(content)
        result = subprocess.run([str(Path(sys.executable).parent / "docker-compose"), "-f",
                                 str(root / "compose.yaml"), "config", "-q"], capture_output=True, text=True,
                                cwd=root, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_production_places_replicas_and_balances_them():
    production = plans("inventory/production.py")
    assert set(production["app-1.prod.internal"].services) == {"auth-service", "creator-hub", "channel-service"}
    assert set(production["app-2.prod.internal"].services) == {"auth-service", "creator-hub", "channel-service"}
    conf = production["edge-1.prod.internal"].files["nginx/nginx.conf"]
    assert "upstream auth_service {\n        server 10.30.0.31:8001;\n        server 10.30.0.32:8001;" in conf
    compose = yaml.safe_load(production["app-1.prod.internal"].files["compose.yaml"])
    hub = compose["services"]["creator-hub"]
    assert hub["ports"] == ["10.30.0.31:8002:8002"]  # the gateway is on another host
    assert "depends_on" in hub and set(hub["depends_on"]) == {"auth-service"}  # postgres/redis are remote
    assert hub["cpus"] == 2.0 and hub["mem_limit"] == "1g"
    env = production["app-1.prod.internal"].files["env/creator-hub.env"]
    assert "POSTGRES_HOST=10.30.0.11" in env and "AUTH_SERVICE_HOST=auth-service" in env
    assert "\"--workers\", \"4\"" in production["app-1.prod.internal"].files["services/auth-service/Dockerfile"]


def test_staging_host_in_two_groups_runs_both():
    staging = plans("inventory/staging.py")
    assert set(staging["staging-apps-1.internal"].services) == {
        "auth-service", "creator-hub", "channel-service", "api-gateway"}
    compose = yaml.safe_load(staging["staging-data-1.internal"].files["compose.yaml"])
    assert compose["services"]["postgres"]["ports"] == ["10.20.0.11:5432:5432"]

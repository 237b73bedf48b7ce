"""The worked examples (inventory/staging.py, inventory/production.py) render valid stacks.

Loads them the way the pyinfra CLI does (with their group_data overrides), then plans
every host without connecting to any.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import plans, write_out, yamllint


@pytest.mark.parametrize("inventory_file", ["inventory/staging.py", "inventory/production.py"])
def test_every_host_renders_a_valid_compose_file(tmp_path, inventory_file):
    for name, plan in plans(inventory_file).items():
        root = write_out(plan, tmp_path / name)
        result = subprocess.run([str(Path(sys.executable).parent / "docker-compose"), "-f",
                                 str(root / "compose.yaml"), "config", "-q"], capture_output=True, text=True,
                                cwd=root, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"


@pytest.mark.parametrize("inventory_file", ["inventory/staging.py", "inventory/production.py"])
def test_every_host_renders_yamllint_clean_yaml(tmp_path, inventory_file):
    hosts = plans(inventory_file)
    for name, plan in hosts.items():
        write_out(plan, tmp_path / name)
    assert len(hosts) > 1 and len(list(tmp_path.glob("*/compose.yaml"))) == len(hosts)
    findings = yamllint(tmp_path)
    assert not findings, findings


def test_production_places_replicas_and_balances_them():
    production = plans("inventory/production.py")
    # The monitor and the node exporter are on every host.
    apps = {"auth-service", "creator-hub", "channel-service", "stack-monitor", "node-exporter"}
    assert set(production["app-1.prod.internal"].services) == apps
    assert set(production["app-2.prod.internal"].services) == apps
    assert all("stack-monitor" in plan.services for plan in production.values())
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
        "auth-service", "creator-hub", "channel-service", "api-gateway", "stack-monitor", "node-exporter",
        "nginx-exporter"}
    compose = yaml.safe_load(staging["staging-data-1.internal"].files["compose.yaml"])
    assert compose["services"]["postgres"]["ports"] == ["10.20.0.11:5432:5432"]

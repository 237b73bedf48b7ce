"""Metrics and alerts: Prometheus's config and rules as rendered per placement (checked by
promtool, from Debian's prometheus package: scripts/setup.sh --dev), the exporters' settings,
that nothing of it is public, and the apps' /metrics (files/common/stackmetrics.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stackdeploy import FILES_DIR, SERVICES_DIR
from stackdeploy.imagespec import image_tags
from stackdeploy.model import load, stack_for_image_source
from stackdeploy.placement import HostSpec, place
from stackdeploy.plan import build_plan
from stackdeploy.swarmstack import CONFIG_DIR, render_stack
from tests.certs import certificate
from tests.conftest import ROOT, plans

SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "REDIS_PASSWORD": "redis-secret", "JWT_SECRET": "j",
           "GRAFANA_ADMIN_PASSWORD": "grafana-secret"}
# The groups of tests/hosts/inventory.py (the simulated hosts), without needing them up.
SIMHOSTS = [HostSpec("10.77.0.11", frozenset({"data"}), "10.77.0.11"),
            HostSpec("10.77.0.12", frozenset({"ai", "monitoring"}), "10.77.0.12"),
            HostSpec("10.77.0.13", frozenset({"apps", "edge"}), "10.77.0.13")]
EXPORTERS = ("node-exporter", "nginx-exporter", "postgres-exporter", "redis-exporter")


def promtool() -> str:
    found = shutil.which("promtool") or (ROOT / ".tools" / "promtool")
    if not Path(found).exists():
        pytest.fail("promtool is missing: scripts/setup.sh --dev takes it from Debian's prometheus package")
    return str(found)


def compose_of(plan) -> dict:
    return yaml.safe_load(plan.files["compose.yaml"])


def config_named(compose: dict, service: str, target: str) -> str:
    """A config file's content as the container gets it (compose unescapes $$)."""
    source = next(c["source"] for c in compose["services"][service]["configs"] if c["target"] == target)
    return compose["configs"][source]["content"].replace("$$", "$")


def prometheus_files(compose: dict) -> tuple[dict, str]:
    return (yaml.safe_load(config_named(compose, "prometheus", "/etc/prometheus/prometheus.yml")),
            config_named(compose, "prometheus", "/etc/prometheus/alerts.yml"))


def targets(config: dict) -> dict[str, list[tuple[str, str, str]]]:
    """job -> (target, host label, metrics path), remote jobs folded into their service's job."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            name = static["labels"].get("job", job["job_name"])
            found.setdefault(name, []).extend((t, static["labels"]["host"], job["metrics_path"])
                                              for t in static["targets"])
    return found


def check_with_promtool(tmp_path: Path, config: dict, rules: str) -> None:
    (tmp_path / "alerts.yml").write_text(rules)
    config = {**config, "rule_files": [str(tmp_path / "alerts.yml")]}  # where the container has it
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for args in (["check", "rules", str(tmp_path / "alerts.yml")],
                 ["check", "config", str(tmp_path / "prometheus.yml")]):
        result = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_one_host_scrapes_every_target_by_name(data, tmp_path):
    stack = load({**data, "backup_every_hours": 24}, SERVICES_DIR)
    compose = compose_of(build_plan(stack, "local", SECRETS, certificate=certificate()))
    config, rules = prometheus_files(compose)
    found = targets(config)
    assert set(found) == set(stack.services["prometheus"].scrapes)
    assert found["auth-service"] == [("auth-service:8001", "@local", "/metrics")]
    assert found["node-exporter"] == [("node-exporter:9100", "@local", "/metrics")]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    alerts = {rule["alert"] for group in yaml.safe_load(rules)["groups"] for rule in group["rules"]}
    assert alerts == {"ServiceDown", "ServiceMissing", "HighErrorRatio", "HighLatencyP95", "DiskFilling",
                      "BackupOverdue"}
    check_with_promtool(tmp_path, config, rules)


def test_backup_alert_only_with_a_schedule(data):
    plan = build_plan(load(data, SERVICES_DIR), "local", SECRETS, certificate=certificate())
    _, rules = prometheus_files(compose_of(plan))
    assert "BackupOverdue" not in rules  # backup_every_hours = 0: nothing is scheduled
    _, rules = prometheus_files(compose_of(build_plan(load({**data, "backup_every_hours": 6}, SERVICES_DIR),
                                                      "local", SECRETS, certificate=certificate())))
    assert "time() - stack_backup_last_timestamp_seconds > 23760" in rules  # 6 h and 10 %


def test_alert_windows_come_from_the_metrics_setting(data, tmp_path):
    stack = load({**data, "metrics": {"scrape_interval": 2, "alert_after": 6, "rate_window": 30}}, SERVICES_DIR)
    config, rules = prometheus_files(compose_of(build_plan(stack, "local", SECRETS, certificate=certificate())))
    assert config["global"]["scrape_interval"] == "2s"
    assert {rule.get("for") for group in yaml.safe_load(rules)["groups"] for rule in group["rules"]} <= {"6s", None}
    assert "[30s]" in rules
    check_with_promtool(tmp_path, config, rules)


def test_simulated_hosts_scrape_across_hosts_over_private_addresses(data, tmp_path):
    stack = load(data, SERVICES_DIR)
    where = place(stack, SIMHOSTS)
    plans_ = {h.name: build_plan(stack, "local", SECRETS, where, h.name, certificate=certificate()) for h in SIMHOSTS}
    assert "prometheus" in plans_["10.77.0.12"].services
    config, rules = prometheus_files(compose_of(plans_["10.77.0.12"]))
    found = targets(config)
    # Each host's node exporter and monitor: its own by name, the others' at their private address.
    assert sorted(found["node-exporter"]) == [("10.77.0.11:9100", "10.77.0.11", "/metrics"),
                                              ("10.77.0.13:9100", "10.77.0.13", "/metrics"),
                                              ("node-exporter:9100", "10.77.0.12", "/metrics")]
    assert found["postgres-exporter"] == [("10.77.0.11:9187", "10.77.0.11", "/metrics")]
    assert found["nginx-exporter"] == [("10.77.0.13:9113", "10.77.0.13", "/metrics")]
    assert found["ai-engine"] == [("ai-engine:8003", "10.77.0.12", "/metrics")]
    # An app on another host is scraped through that host's monitor, so it publishes no port.
    assert found["creator-hub"] == [("10.77.0.13:8010", "10.77.0.13", "/scrape/creator-hub")]
    check_with_promtool(tmp_path, config, rules)
    # Published to the private address only, never to every interface; the UI on loopback.
    for host, plan in plans_.items():
        for name, service in compose_of(plan)["services"].items():
            for port in service.get("ports", []):
                if name == "api-gateway":
                    continue
                assert port.startswith((f"{host}:", "127.0.0.1:")), (host, name, port)
    h3 = compose_of(plans_["10.77.0.13"])["services"]
    assert "ports" not in h3["creator-hub"] and plans_["10.77.0.13"].services["creator-hub"].strategy == "rolling"
    assert h3["nginx-exporter"]["ports"] == ["10.77.0.13:9113:9113"]
    assert compose_of(plans_["10.77.0.12"])["services"]["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]


def test_staging_inventory_places_monitoring(tmp_path):
    staging = plans("inventory/staging.py")
    assert {"prometheus", "alertmanager"} <= set(staging["staging-ai-1.internal"].services)
    for plan in staging.values():
        assert "node-exporter" in plan.services and "stack-monitor" in plan.services


def test_exporters_get_their_secrets_and_nothing_else(data):
    plan = build_plan(load(data, SERVICES_DIR), "local", SECRETS, certificate=certificate())
    pg = plan.files["env/postgres-exporter.env"]
    assert "POSTGRES_PASSWORD_FILE=/run/secrets/POSTGRES_PASSWORD" in pg and "REDIS_PASSWORD" not in pg
    assert "POSTGRES_HOST=postgres" in pg and "POSTGRES_PORT=5432" in pg
    redis = plan.files["env/redis-exporter.env"]
    assert "REDIS_PASSWORD_FILE=/run/secrets/REDIS_PASSWORD" in redis and "POSTGRES_PASSWORD" not in redis
    compose = compose_of(plan)
    assert compose["services"]["postgres-exporter"]["entrypoint"][:2] == ["sh", "-c"]
    assert not any("pg-secret" in text for text in plan.files.values())  # files the helper writes
    for name in ("node-exporter", "nginx-exporter"):
        assert not (set(SECRETS.values()) & set(plan.files[f"env/{name}.env"].split("=")))
    assert compose["services"]["node-exporter"]["volumes"] == ["/:/host:ro"]


def test_swarm_scrapes_tasks_by_dns_and_runs_node_exporter_everywhere(data, tmp_path):
    stack = stack_for_image_source(load({**data, "engine": "swarm"}, SERVICES_DIR), "local")
    files, _ = render_stack(stack, image_tags(stack, "local"), "events {}\n", certificate())
    doc = yaml.safe_load(files["stack.yaml"])
    assert doc["services"]["node-exporter"]["deploy"]["mode"] == "global"
    assert "replicas" not in doc["services"]["node-exporter"]["deploy"]
    exporter_env = doc["services"]["postgres-exporter"]["environment"]
    assert exporter_env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/POSTGRES_PASSWORD"
    assert "ports" not in doc["services"]["prometheus"]  # Swarm would publish on every address
    source = next(c["source"] for c in doc["services"]["prometheus"]["configs"]
                  if c["target"] == "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(files[f"{CONFIG_DIR}/{source}"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["creator-hub"]["dns_sd_configs"] == [{"names": ["tasks.creator-hub"], "type": "A", "port": 8002,
                                                      "refresh_interval": "15s"}]
    assert "stack-monitor" not in doc["services"]  # no monitor on Swarm: its job is simply empty
    rules = files[f"{CONFIG_DIR}/" + next(c["source"] for c in doc["services"]["prometheus"]["configs"]
                                          if c["target"] == "/etc/prometheus/alerts.yml")]
    check_with_promtool(tmp_path, config, rules)


def test_the_gateway_serves_stub_status_on_an_internal_port_only(data):
    plan = build_plan(load(data, SERVICES_DIR), "local", SECRETS, certificate=certificate())
    conf = plan.files["nginx/nginx.conf"]
    assert "listen 8081;" in conf and "stub_status;" in conf
    # 8081 unpublished
    assert compose_of(plan)["services"]["api-gateway"]["ports"] == ["0.0.0.0:8080:8080", "0.0.0.0:8443:8443"]


@pytest.fixture
def metrics_app(tmp_path, monkeypatch):
    """A small app on stackapp (and so stackmetrics), in a fresh interpreter's import state."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(FILES_DIR / "common"))
    # prometheus_client picks its multiprocess mode at import: each test imports it afresh,
    # and leaves none of it behind for a later test (its directory goes with this one).
    def forget() -> None:
        for module in [m for m in sys.modules
                       if m in ("stackapp", "stackmetrics") or m.startswith("prometheus_client")]:
            del sys.modules[module]

    forget()
    import stackapp
    from fastapi.testclient import TestClient

    app = stackapp.create_app("demo", stackapp.Backends())

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        if item_id == 0:
            raise RuntimeError("boom")
        return {"id": item_id}

    # Not entered as a context: the lifespan would open backends and take over SIGTERM.
    yield TestClient(app, raise_server_exceptions=False)
    forget()


def test_app_metrics_count_requests_latency_and_errors_by_route(metrics_app):
    assert metrics_app.get("/items/1").status_code == 200
    assert metrics_app.get("/items/2").status_code == 200
    assert metrics_app.get("/items/0").status_code == 500
    assert metrics_app.get("/nowhere").status_code == 404
    text = metrics_app.get("/metrics").text
    route = 'method="GET",route="/items/{item_id}",service="demo"'
    assert f'http_requests_total{{{route},status="200"}} 2.0' in text
    assert f'http_requests_total{{{route},status="500"}} 1.0' in text
    assert f"http_request_errors_total{{{route}}} 1.0" in text
    assert f'http_request_duration_seconds_count{{{route}}} 3.0' in text
    assert 'route="unmatched"' in text and "/items/1" not in text  # templates, not raw paths


def test_app_metrics_are_not_served_through_the_gateway(metrics_app):
    assert metrics_app.get("/metrics", headers={"X-Forwarded-Prefix": "/api/auth/"}).status_code == 404

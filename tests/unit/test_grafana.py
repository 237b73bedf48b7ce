"""Grafana runs in registry mode only: an offline plan is exactly the plan of a stack without it,
and a registry plan provisions its data source (Prometheus as its host reaches it) and the stack
dashboard, whose queries are valid PromQL (promtool) and the ones docs/operations.md documents."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from stackdeploy import SERVICES_DIR
from stackdeploy.metricsconfig import DASHBOARD_PANELS, dashboard_queries, prometheus_duration
from stackdeploy.model import MetricsSettings, load, stack_for_image_source
from stackdeploy.placement import HostSpec, place
from stackdeploy.plan import build_plan
from stackdeploy.swarmstack import CONFIG_DIR, STACK_FILE, swarm_release
from tests.certs import certificate
from tests.conftest import ROOT
from tests.unit.test_metrics import SIMHOSTS, compose_of, config_named, promtool

SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "REDIS_PASSWORD": "redis-secret", "JWT_SECRET": "jwt-secret",
           "GRAFANA_ADMIN_PASSWORD": "grafana-admin-secret"}
OFFLINE_SECRETS = {k: v for k, v in SECRETS.items() if k != "GRAFANA_ADMIN_PASSWORD"}
DATASOURCE = "/etc/grafana/provisioning/datasources/stack.yml"
PROVIDER = "/etc/grafana/provisioning/dashboards/stack.yml"
DASHBOARD = "/etc/grafana/dashboards/stack.json"


def without_grafana(data: dict) -> dict:
    """group_data as it was before Grafana: no service, no placement entry, no secret."""
    data = json.loads(json.dumps(data))
    del data["services"]["grafana"]
    data["placement"] = {g: [n for n in names if n != "grafana"] for g, names in data["placement"].items()}
    data["secrets"] = [s for s in data["secrets"] if s != "GRAFANA_ADMIN_PASSWORD"]
    return data


def plans_of(data: dict, image_source: str, hosts: list[HostSpec], secrets: dict, **settings) -> dict:
    stack = load({**data, **settings}, SERVICES_DIR)
    where = place(stack, hosts)
    return {h.name: build_plan(stack, image_source, secrets, where, h.name, hosts[0].name, certificate=certificate())
            for h in hosts}


ONE_HOST = [HostSpec("@local", frozenset())]


@pytest.mark.parametrize("hosts", [ONE_HOST, SIMHOSTS], ids=["one-host", "simulated-hosts"])
@pytest.mark.parametrize("engine", ["compose", "swarm"])
def test_an_offline_plan_is_the_plan_of_the_stack_without_grafana(data, hosts, engine):
    offline = plans_of(data, "local", hosts, OFFLINE_SECRETS, engine=engine)
    before = plans_of(without_grafana(data), "local", hosts, OFFLINE_SECRETS, engine=engine)
    if engine == "swarm":
        offline = {h: swarm_release(p, manager=h == hosts[0].name, certificate=certificate())
                   for h, p in offline.items()}
        before = {h: swarm_release(p, manager=h == hosts[0].name, certificate=certificate())
                  for h, p in before.items()}
    for host, plan in offline.items():
        assert plan == before[host]  # every file byte for byte, every hash, image, wave and the stack itself
        assert "grafana" not in plan.stack.services and "GRAFANA_ADMIN_PASSWORD" not in plan.stack.secret_names
        assert not any("grafana" in text.lower() for text in plan.files.values()), host
        assert all("grafana" not in wave for wave in plan.waves)


def test_offline_asks_for_no_grafana_secret(data):
    """decide resolves the secrets of the stack it plans: offline, no Grafana password is made."""
    stack = load(data, SERVICES_DIR)
    assert "GRAFANA_ADMIN_PASSWORD" in stack.secret_names
    assert stack_for_image_source(stack, "registry") is stack
    assert stack_for_image_source(stack, "local").secret_names == ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET")


def test_a_secret_another_service_still_uses_is_kept_offline(data):
    data["services"]["grafana"]["secrets"] = ["GRAFANA_ADMIN_PASSWORD", "POSTGRES_PASSWORD"]
    assert "POSTGRES_PASSWORD" in stack_for_image_source(load(data, SERVICES_DIR), "local").secret_names


def test_a_placement_group_left_empty_offline_stays_a_group(data):
    """A host whose only group held Grafana runs the per-host services offline, not the whole stack."""
    data["placement"]["monitoring"].remove("grafana")
    data["placement"]["dashboards"] = ["grafana"]
    hosts = [*SIMHOSTS, HostSpec("10.77.0.14", frozenset({"dashboards"}), "10.77.0.14")]
    offline = plans_of(data, "local", hosts, OFFLINE_SECRETS)
    assert set(offline["10.77.0.14"].services) == {"stack-monitor", "node-exporter"}
    online = plans_of(data, "registry", hosts, SECRETS)
    assert set(online["10.77.0.14"].services) == {"stack-monitor", "node-exporter", "grafana"}


def registry_plan(data, **settings):
    return plans_of(data, "registry", ONE_HOST, SECRETS, **settings)["@local"]


def test_a_registry_plan_runs_grafana_beside_prometheus(data):
    plan = registry_plan(data)
    assert plan.services["grafana"].image == "grafana/grafana-oss:12.3.0" and plan.services["grafana"].build_dir is None
    assert any("grafana" in wave for wave in plan.waves)
    grafana = compose_of(plan)["services"]["grafana"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]  # like Prometheus's UI: this host's loopback only
    assert grafana["user"] == "472:0"
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_started"}}
    assert grafana["volumes"] == ["grafana-data:/var/lib/grafana"]
    release = json.loads(plan.files["release.json"])
    assert release["services"]["grafana"]["http"] == "/api/health"
    stack = load(data, SERVICES_DIR)
    assert "grafana" in stack.placement["monitoring"] and "prometheus" in stack.placement["monitoring"]


def test_the_data_source_is_prometheus_by_name_on_its_host(data):
    compose = compose_of(registry_plan(data))
    provisioned = yaml.safe_load(config_named(compose, "grafana", DATASOURCE))
    [source] = provisioned["datasources"]
    assert (source["type"], source["url"], source["uid"], source["isDefault"]) == \
        ("prometheus", "http://prometheus:9090", "stack-prometheus", True)
    provider = yaml.safe_load(config_named(compose, "grafana", PROVIDER))
    assert provider["providers"][0]["options"]["path"] == str(Path(DASHBOARD).parent)


def test_grafana_on_another_host_reaches_prometheus_at_its_private_address(data):
    data["placement"]["monitoring"].remove("grafana")
    data["placement"]["dashboards"] = ["grafana"]
    hosts = [*SIMHOSTS, HostSpec("10.77.0.14", frozenset({"dashboards"}), "10.77.0.14")]
    online = plans_of(data, "registry", hosts, SECRETS)
    source = yaml.safe_load(config_named(compose_of(online["10.77.0.14"]), "grafana", DATASOURCE))["datasources"][0]
    assert source["url"] == "http://10.77.0.12:9090"
    # Published for the Grafana host, on the private address only; its UI on loopback as before.
    assert compose_of(online["10.77.0.12"])["services"]["prometheus"]["ports"] == \
        ["127.0.0.1:9090:9090", "10.77.0.12:9090:9090"]
    offline = plans_of(data, "local", hosts, OFFLINE_SECRETS)
    assert compose_of(offline["10.77.0.12"])["services"]["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]


def test_on_swarm_grafana_reads_prometheus_by_service_name(data):
    plan = plans_of(data, "registry", ONE_HOST, SECRETS, engine="swarm")["@local"]
    files = swarm_release(plan, manager=True, certificate=certificate()).files
    grafana = yaml.safe_load(files[STACK_FILE])["services"]["grafana"]
    assert "ports" not in grafana  # Swarm would publish on every address
    assert grafana["user"] == "472:0" and grafana["secrets"] == ["GRAFANA_ADMIN_PASSWORD"]
    assert grafana["environment"]["GRAFANA_ADMIN_PASSWORD_FILE"] == "/run/secrets/GRAFANA_ADMIN_PASSWORD"
    source = next(c["source"] for c in grafana["configs"] if c["target"] == DATASOURCE)
    assert yaml.safe_load(files[f"{CONFIG_DIR}/{source}"])["datasources"][0]["url"] == "http://prometheus:9090"
    assert not any(SECRETS["GRAFANA_ADMIN_PASSWORD"] in text for text in files.values())


def test_the_admin_password_is_a_file_grafana_reads_at_start(data):
    plan = registry_plan(data)
    password = SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert [rel for rel, text in plan.files.items() if password in text] == []
    env = plan.files["env/grafana.env"].splitlines()
    assert "GRAFANA_ADMIN_PASSWORD_FILE=/run/secrets/GRAFANA_ADMIN_PASSWORD" in env
    assert compose_of(plan)["services"]["grafana"]["secrets"] == ["GRAFANA_ADMIN_PASSWORD"]
    entrypoint = compose_of(plan)["services"]["grafana"]["entrypoint"]
    assert "GF_SECURITY_ADMIN_PASSWORD" in entrypoint[-1] and password not in entrypoint[-1]


def dashboard_of(plan) -> dict:
    return json.loads(config_named(compose_of(plan), "grafana", DASHBOARD))


def test_the_dashboard_has_one_panel_per_documented_query(data):
    dashboard = dashboard_of(registry_plan(data))
    exprs = [panel["targets"][0]["expr"] for panel in dashboard["panels"]]
    assert exprs == [query for _, query in dashboard_queries(MetricsSettings())]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(DASHBOARD_PANELS)
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {"stack-prometheus"}
    readme = (ROOT / "docs" / "operations.md").read_text()
    for panel, query in dashboard_queries(MetricsSettings()):
        assert f"`{query}`" in readme, panel.title  # the documented table for the Prometheus UI


def test_every_dashboard_query_is_valid_promql(data, tmp_path):
    """promtool checks each query as the expression of a recording rule."""
    plan = registry_plan(data, metrics={"rate_window": 90})
    exprs = [panel["targets"][0]["expr"] for panel in dashboard_of(plan)["panels"]]
    for panel, expr in zip(DASHBOARD_PANELS, exprs, strict=True):
        assert ("[90s]" in expr) == ("$window" in panel.query), panel.title
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"stack_dashboard_panel_{i}", "expr": expr}
                                                         for i, expr in enumerate(exprs, 1)]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool(), "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(DASHBOARD_PANELS)} rules found" in result.stdout


@pytest.mark.parametrize(("seconds", "written"), [(300, "5m"), (90, "90s"), (7200, "2h"), (3660, "61m"), (30, "30s")])
def test_the_rate_window_is_written_as_promql_writes_it(seconds, written):
    assert prometheus_duration(seconds) == written


def test_decide_offline_makes_no_grafana_secret_and_plans_no_grafana(monkeypatch, tmp_path):
    """Through desired.decide (two hosts, h2 in monitoring): the image source it resolves decides."""
    from stackdeploy.facts.docker import EngineInsecureRegistries
    from stackdeploy.facts.registry import RegistryImages
    from stackdeploy.facts.stack import HostState, StackHostState
    from tests.unit.test_registry import TRUSTED, decide, registry_holding

    facts = {StackHostState: HostState(engine="up"), RegistryImages: registry_holding(set()),
             EngineInsecureRegistries: TRUSTED}
    offline, _, _ = decide(monkeypatch, tmp_path, "h2", facts)
    assert offline.plan.image_source == "local" and "grafana" not in offline.plan.services
    assert "GRAFANA_ADMIN_PASSWORD" not in json.loads(offline.secrets_json)
    online, _, _ = decide(monkeypatch, tmp_path, "h2", facts, image_source="registry")
    assert "grafana" in online.plan.services and "GRAFANA_ADMIN_PASSWORD" in json.loads(online.secrets_json)

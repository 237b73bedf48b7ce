"""Rendering and change detection: what lands on the host, and which hashes move."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import stackdeploy.imagespec as imagespec_module
from stackdeploy import FILES_DIR, SERVICES_DIR, contract
from stackdeploy.fingerprint import config_hash
from stackdeploy.model import load
from stackdeploy.plan import build_plan
from tests.certs import certificate
from tests.conftest import BIN, ROOT, write_out, yamllint

SECRETS = {"POSTGRES_PASSWORD": "pg-secret-value", "REDIS_PASSWORD": "redis-secret-value",
           "JWT_SECRET": "jwt-secret-value", "GRAFANA_ADMIN_PASSWORD": "grafana-secret-value"}


def make_plan(data, image_source="local"):
    return build_plan(load(data, SERVICES_DIR), image_source, SECRETS, certificate=certificate())


@pytest.mark.parametrize("image_source", ["local", "registry"])
def test_compose_passes_docker_compose_config(data, tmp_path, image_source):
    root = write_out(make_plan(data, image_source), tmp_path)
    result = subprocess.run([str(BIN / "docker-compose"), "-f", str(root / "compose.yaml"), "config", "-q"],
                            capture_output=True, text=True, cwd=root, check=False)
    assert result.returncode == 0, result.stderr


# Four Python services in both modes; the twelve offline infra images are built in local mode only.
@pytest.mark.parametrize(("image_source", "count"), [("local", 17), ("registry", 5)])
def test_dockerfiles_pass_hadolint(data, tmp_path, image_source, count):
    root = write_out(make_plan(data, image_source), tmp_path)
    dockerfiles = sorted(root.glob("*/*/Dockerfile"))
    assert len(dockerfiles) == count
    result = subprocess.run([str(BIN / "hadolint"), "--config", str(ROOT / ".hadolint.yaml"), *map(str, dockerfiles)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image_source", ["local", "registry"])
def test_rendered_yaml_passes_yamllint(data, tmp_path, image_source):
    root = write_out(make_plan(data, image_source), tmp_path)
    assert {p.name for p in root.rglob("*.y*ml")} == {"compose.yaml", "compose.build.yaml"}
    findings = yamllint(root)
    assert not findings, findings


def test_compose_shape(data):
    plan = make_plan(data)
    text = plan.files["compose.yaml"]
    compose = yaml.safe_load(text)
    assert {k for k in compose if k.startswith("x-")} == {"x-restart", "x-logging", "x-service", "x-env"}
    assert text.count("<<: *service") == 17
    assert compose["networks"]["backend"]["internal"] is True
    published = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"api-gateway", "log-store", "prometheus"}
    # Plain HTTP (the redirect and /health) and HTTPS, on the container's unprivileged ports.
    assert compose["services"]["api-gateway"]["ports"] == ["0.0.0.0:8080:8080", "0.0.0.0:8443:8443"]
    # One host without an address: this host's dockerd sends its containers' logs to loopback.
    assert compose["services"]["log-store"]["ports"] == ["127.0.0.1:6514:6514/udp"]
    assert compose["services"]["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]  # the UI: an SSH tunnel
    hub = compose["services"]["creator-hub"]
    assert hub["depends_on"] == {d: {"condition": "service_healthy"} for d in ("postgres", "redis", "auth-service")}
    assert hub["restart"] == "unless-stopped"
    assert hub["logging"]["driver"] == "syslog" and hub["logging"]["options"]["tag"] == "creator-hub/{{.ID}}"
    assert compose["services"]["log-store"]["logging"]["options"]["max-file"] == "3"  # json-file: not to itself
    assert set(compose["volumes"]) == {"postgres-data", "redis-data", "ollama-models", "chroma-data",
                                       "creator-uploads", "stack-logs", "prometheus-data", "alertmanager-data"}
    assert compose["secrets"]["ca"]["file"] == "/etc/ssl/certs/ca-certificates.crt"


def test_python_dockerfile(data):
    dockerfile = make_plan(data).files["services/auth-service/Dockerfile"]
    assert dockerfile.count("\nFROM ") == 2
    assert "AS builder" in dockerfile
    assert "--mount=type=cache,target=/root/.cache/pip" in dockerfile
    assert "--mount=type=secret,id=ca" in dockerfile
    assert "USER 10001:10001" in dockerfile
    assert "COPY --chown=appuser:appuser src/app/ /app/app/" in dockerfile
    assert 'HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\\n    CMD ["python3"' in dockerfile
    assert '"--workers", "2"' in dockerfile
    assert 'ENTRYPOINT ["python3", "/usr/local/bin/wait-for-services.py", "--timeout", "60", "--"]' in dockerfile


def test_env_files_wire_dependencies_and_name_their_secrets_files(data):
    plan = make_plan(data)
    env = dict(line.split("=", 1) for line in plan.files["env/channel-service.env"].splitlines()
               if line and not line.startswith("#"))
    assert env["AUTH_SERVICE_URL"] == "http://auth-service:8001"
    assert env["WAIT_FOR"] == ("postgres:tcp://postgres:5432,redis:tcp://redis:6379,"
                               "auth-service:http://auth-service:8001/health,ai-engine:http://ai-engine:8003/health")
    assert env["WAIT_TIMEOUT"] == "180"
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/POSTGRES_PASSWORD"
    assert "POSTGRES_PASSWORD" not in env and "JWT_SECRET_FILE" not in env
    assert plan.secret_files == {f"env/{n}.env" for n in plan.services} | {"nginx/tls/server.key"}
    # No value is in any file of the release: the helper writes them from .secrets.json.
    assert not any(value in text for text in plan.files.values() for value in SECRETS.values())
    public = [text for rel, text in plan.files.items() if rel not in plan.secret_files]
    assert not any("PRIVATE KEY" in text for text in public)  # the gateway's key: only in its 0600 file


def test_gateway_routes_and_websocket(data):
    conf = make_plan(data).files["nginx/nginx.conf"]
    for prefix, target in [("/api/auth/", "auth-service"), ("/api/creators/", "creator-hub"),
                           ("/api/ai/", "ai-engine"), ("/api/channels/", "channel-service")]:
        # The target is the container the helper gated: it alone has the live alias, looked up
        # per request on the routes network (no targets/ file, no reload to switch).
        location = conf.split(f"location {prefix} {{\n")[1].split("}")[0]
        port = data["services"][target]["port"]
        assert f"set $upstream {target}-live:{port};" in location
        assert "include" not in location
        # Writes to creator-hub and ai-engine are authenticated before their body is read.
        assert ("auth_request /__gateway_auth;" in location) == (prefix in {"/api/creators/", "/api/ai/"})
    assert conf.count("proxy_set_header Upgrade $http_upgrade;") == 1
    assert "location = /health" in conf
    check = conf.split("location = /__gateway_auth {\n")[1].split("\n        }\n")[0]
    assert "set $upstream auth-service-live:8001;" in check
    assert "resolver 127.0.0.11 valid=1s ipv6=off;" in conf
    assert "rewrite ^ /verify? break;" in check
    assert "proxy_pass_request_body off;" in check


def test_release_manifest_says_how_each_service_is_replaced(data):
    plan = make_plan(data)
    manifest = json.loads(plan.files["release.json"])
    strategies = {name: spec["strategy"] for name, spec in manifest["services"].items()}
    assert {n for n, s in strategies.items() if s == "rolling"} == {
        "auth-service", "creator-hub", "ai-engine", "channel-service"}
    assert manifest["gateway"] == {"service": "api-gateway", "routed": [
        "ai-engine", "auth-service", "channel-service", "creator-hub"], "targeted": [],  # one host: live aliases
        "port": 8080, "https_port": 8443, "routes": {
        "/api/ai/": "/health", "/api/auth/": "/health", "/api/channels/": "/health", "/api/creators/": "/health"},
        "tls": {"files": {"tls/server.crt": "nginx/tls/server.crt", "tls/server.key": "nginx/tls/server.key"},
                "keys": ["tls/server.key"], "seed_only": False}}
    assert strategies["stack-monitor"] == "recreate" and manifest["services"]["stack-monitor"]["role"] == "monitor"
    assert all(spec["config_hash"] == plan.services[n].config_hash for n, spec in manifest["services"].items())
    compose = yaml.safe_load(plan.files["compose.yaml"])
    assert compose["services"]["auth-service"]["labels"] == {
        "stackdeploy.config-hash": plan.services["auth-service"].config_hash}
    # The gateway looks the apps up on the routes network, which the helper makes and where it
    # connects an app only once gated: compose never attaches an app to it.
    assert compose["networks"]["routes"] == {"name": "creatorstack_routes", "external": True}
    assert "routes" in compose["services"]["api-gateway"]["networks"]
    on_routes = [name for name, entry in compose["services"].items() if "routes" in entry.get("networks", [])]
    assert on_routes == ["api-gateway"]


def test_dockerignore_keeps_only_the_service_files(data):
    ignore = make_plan(data).files["services/creator-hub/.dockerignore"].splitlines()
    assert ignore[1] == "*"
    assert "!src/app/" in ignore and "!src/requirements.txt" in ignore and "!wait-for-services.py" in ignore
    assert "**/__pycache__" in ignore


@pytest.mark.parametrize("image_source", ["local", "registry"])
def test_every_python_image_gets_the_probe_module_beside_wait_for_services(data, image_source):
    """wait-for-services.py, each container's entrypoint, imports stackprobe.py from its own directory."""
    plan = make_plan(data, image_source)
    built = {name for name, svc in plan.stack.services.items() if svc.built_from_source}
    assert "stack-monitor" in built and "auth-service" in built
    probe = (FILES_DIR / "stackprobe.py").read_text()
    for name in built:
        context = plan.builds[name].context
        assert context["stackprobe.py"] == probe, name
        dockerfile = context["Dockerfile"]
        assert "COPY --chown=appuser:appuser wait-for-services.py stackprobe.py /usr/local/bin/" in dockerfile
        assert "!stackprobe.py" in context[".dockerignore"].splitlines()
        assert plan.files[f"services/{name}/stackprobe.py"] == probe

    # The monitor reads release.json and writes event lines through the contract, imported
    # from /app (where common/ lands); the apps do not need it.
    contract_source = Path(contract.__file__).read_text()
    assert plan.builds["stack-monitor"].context["common/stackcontract.py"] == contract_source
    assert "import stackcontract as contract" in (SERVICES_DIR / "stack-monitor" / "app" / "main.py").read_text()
    assert "COPY --chown=appuser:appuser common/ /app/" in plan.builds["stack-monitor"].context["Dockerfile"]
    assert not any("common/stackcontract.py" in plan.builds[name].context for name in built - {"stack-monitor"})


def test_registry_mode_uses_public_images(data):
    plan = make_plan(data, "registry")
    assert plan.base_image is None
    assert plan.services["postgres"].image == "postgres:15"
    assert plan.services["postgres"].build_dir is None
    assert plan.files["services/ai-engine/Dockerfile"].startswith("# ai-engine")
    assert "FROM python:3.11-slim AS builder" in plan.files["services/ai-engine/Dockerfile"]
    assert "apt-get" not in plan.files["services/ai-engine/Dockerfile"]


# Renders the plans of the project's stack (both image sources) and prints one hash of what
# lands on hosts: every file, each service's image tag and config hash, the waves.
RENDER_AND_HASH = """
import hashlib
from stackdeploy import SERVICES_DIR
from stackdeploy.model import load
from stackdeploy.plan import build_plan
from tests.conftest import group_data
from tests.unit.test_plan import SECRETS
from tests.certs import NOW
from stackdeploy.tls import Certificate

certificate = lambda: Certificate(b"chain", b"key", None, "0" * 64, NOW, "")  # the same in every process
digest = hashlib.sha256()
for source in ("local", "registry"):
    plan = build_plan(load(group_data(), SERVICES_DIR), source, SECRETS, certificate=certificate())
    for path in sorted(plan.files):
        content = plan.files[path]
        digest.update(path.encode() + b"\\0" + (content if isinstance(content, bytes) else content.encode()) + b"\\0")
    for name, service in sorted(plan.services.items()):
        digest.update(f"{name} {service.image} {service.config_hash}\\n".encode())
    digest.update(repr(plan.waves).encode())
print(digest.hexdigest())
"""


def test_plan_is_the_same_in_processes_with_different_hash_seeds():
    """Two processes, two PYTHONHASHSEEDs: set and dict ordering that leaked into a rendered
    file or a fingerprint would differ between them (one process rendering twice cannot see it)."""
    hashes = []
    for seed in ("1", "2"):
        result = subprocess.run([str(BIN / "python"), "-c", RENDER_AND_HASH], cwd=ROOT, capture_output=True,
                                text=True, timeout=120, check=False, env={**os.environ, "PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr[-3000:]
        hashes.append(result.stdout.strip())
    assert len(hashes[0]) == 64 and hashes[0] == hashes[1]


def test_source_change_moves_only_that_image(data, tmp_path, monkeypatch):
    before = make_plan(data)
    copy = tmp_path / "services"
    shutil.copytree(SERVICES_DIR, copy)
    (copy / "ai-engine" / "app" / "main.py").write_text(
        (copy / "ai-engine" / "app" / "main.py").read_text() + "\n# changed\n")
    monkeypatch.setattr(imagespec_module, "SERVICES_DIR", copy)
    after = build_plan(load(data, copy), "local", SECRETS, certificate=certificate())
    changed_images = {n for n in before.services if before.services[n].image != after.services[n].image}
    changed_configs = {n for n in before.services
                       if before.services[n].config_hash != after.services[n].config_hash}
    assert changed_images == {"ai-engine"}
    assert changed_configs == {"ai-engine"}


def test_bytecode_caches_do_not_move_fingerprints(data, tmp_path, monkeypatch):
    before = make_plan(data)
    copy = tmp_path / "services"
    shutil.copytree(SERVICES_DIR, copy)
    (copy / "auth-service" / "app" / "__pycache__").mkdir(exist_ok=True)
    (copy / "auth-service" / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0junk")
    monkeypatch.setattr(imagespec_module, "SERVICES_DIR", copy)
    after = build_plan(load(data, copy), "local", SECRETS, certificate=certificate())
    assert after.services["auth-service"].image == before.services["auth-service"].image


@pytest.mark.parametrize("image_source", ["local", "registry"])
def test_config_hash_covers_the_settings_compose_reads(data, image_source):
    """The planner hashes its own data, not the rendered file: that data must be exactly what
    compose reads back from compose.yaml (less the build section and the hash label)."""
    data["service_overrides"] = {"auth-service": {"limits": {"cpus": "1.5", "memory": "512m"}},
                                 "creator-hub": {"limits": {"cpus": "2"}, "command": ["sh", "-c", "exec $0"]}}
    plan = make_plan(data, image_source)
    compose = yaml.safe_load(plan.files["compose.yaml"])
    for name, service in plan.services.items():
        read = compose["services"][name]
        assert read.pop("labels") == {"stackdeploy.config-hash": service.config_hash}
        read.pop("build", None)
        assert service.config_hash == config_hash(read, plan.files[f"env/{name}.env"],
                                                  {s: SECRETS[s] for s in read.get("secrets", [])}), name


def test_compose_mounts_each_service_the_files_of_its_own_secrets(data):
    plan = make_plan(data)
    compose = yaml.safe_load(plan.files["compose.yaml"])
    assert compose["services"]["channel-service"]["secrets"] == ["POSTGRES_PASSWORD", "REDIS_PASSWORD"]
    assert compose["services"]["auth-service"]["secrets"] == ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET"]
    assert "secrets" not in compose["services"]["node-exporter"]
    assert compose["secrets"]["JWT_SECRET"] == {"file": "/opt/creatorstack/secrets/JWT_SECRET"}


def test_a_changed_secret_recreates_only_the_services_that_read_it(data):
    before = make_plan(data)
    after = build_plan(load(data, SERVICES_DIR), "local", {**SECRETS, "JWT_SECRET": "rotated"},
                       certificate=certificate())
    changed = {n for n in before.services if before.services[n].config_hash != after.services[n].config_hash}
    assert changed == {n for n, s in before.stack.services.items() if "JWT_SECRET" in s.secrets} == {"auth-service"}


def test_env_change_recreates_without_rebuild(data):
    before = make_plan(data)
    data["service_overrides"] = {"creator-hub": {"env": {"FEATURE_FLAG": "on"}}}
    after = make_plan(data)
    assert {n for n in before.services if before.services[n].image != after.services[n].image} == set()
    assert {n for n in before.services
            if before.services[n].config_hash != after.services[n].config_hash} == {"creator-hub"}


def test_workers_change_rebuilds_that_service(data):
    before = make_plan(data)
    data["service_overrides"] = {"auth-service": {"workers": 3}}
    after = make_plan(data)
    assert {n for n in before.services if before.services[n].image != after.services[n].image} == {"auth-service"}


def test_nginx_change_reloads_the_gateway_without_recreating_it(data):
    before = make_plan(data)
    data["services"]["api-gateway"]["routes"]["/api/v2/auth/"] = "auth-service"
    after = make_plan(data)
    assert before.files["nginx/nginx.conf"] != after.files["nginx/nginx.conf"]
    assert {n for n in before.services
            if before.services[n].config_hash != after.services[n].config_hash} == set()


def test_an_instance_is_published_only_for_consumers_that_use_it(data):
    """auth-service on h2 and h3, ai-engine on h2: h2's ai-engine uses its own auth-service, so
    h3's stays unpublished (and rolls); h3's gateway balances over both, so h2's is published."""
    from stackdeploy.placement import HostSpec, place

    data["placement"] = {"data": ["postgres", "redis", "log-store"],
                         "ai": ["ollama", "chromadb", "ai-engine", "auth-service"],
                         "apps": ["auth-service", "creator-hub", "channel-service"],
                         "edge": ["api-gateway", "nginx-exporter"],
                         "monitoring": ["alertmanager", "prometheus", "grafana", "postgres-exporter",
                                        "redis-exporter"]}
    where = place(load(data, SERVICES_DIR), [HostSpec("h1", frozenset({"data"}), "10.0.0.1"),
                                             HostSpec("h2", frozenset({"ai"}), "10.0.0.2"),
                                             HostSpec("h3", frozenset({"apps", "edge", "monitoring"}), "10.0.0.3")])
    assert where.is_published("h2", "auth-service") and not where.is_published("h3", "auth-service")
    h3 = build_plan(where.stack, "local", SECRETS, where, "h3", certificate=certificate())
    assert h3.services["auth-service"].strategy == "rolling"
    h2 = build_plan(where.stack, "local", SECRETS, where, "h2", certificate=certificate())
    assert "auth-service@h3" not in json.loads(h2.files["release.json"])["remote"]


def test_every_container_drops_its_capabilities_and_has_limits(data):
    data["service_overrides"] = {"chromadb": {"limits": {"memory": "2g"}}}
    compose = yaml.safe_load(make_plan(data).files["compose.yaml"])
    for name, service in compose["services"].items():
        assert service["cap_drop"] == ["ALL"] and service["security_opt"] == ["no-new-privileges:true"], name
        assert service["pids_limit"] > 0 and service["mem_limit"] and float(service["cpus"]) > 0, name
    assert compose["services"]["postgres"]["cap_add"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
    assert "cap_add" not in compose["services"]["creator-hub"]
    assert compose["services"]["chromadb"]["mem_limit"] == "2g"  # an override, key by key
    assert compose["services"]["chromadb"]["pids_limit"] == 1024  # the rest from its role
    read_only = {name for name, service in compose["services"].items() if service.get("read_only")}
    assert read_only == {"auth-service", "creator-hub", "ai-engine", "channel-service", "stack-monitor"}
    assert all(compose["services"][name]["tmpfs"] == ["/tmp"] for name in read_only)


def test_a_service_can_be_given_a_read_only_root_and_a_pids_limit(data):
    data["service_overrides"] = {"redis": {"read_only": True, "limits": {"pids": 64}}}
    redis = yaml.safe_load(make_plan(data).files["compose.yaml"])["services"]["redis"]
    assert redis["read_only"] is True and redis["pids_limit"] == 64 and redis["mem_limit"] == "1g"

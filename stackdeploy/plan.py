"""The desired state of one host: every file to put there, every image, every hash.

``build_plan`` is pure: the same stack, image source and secrets always give the same
plan, byte for byte. That is what makes change detection exact: image tags carry the
fingerprint of their build context, and each service's ``config_hash`` covers everything
its container is created from (compose settings, env file, mounted config, image).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from stackdeploy import FILES_DIR, SERVICES_DIR, TEMPLATES_DIR, contract
from stackdeploy.fingerprint import data_digest, digest, short, tree_parts
from stackdeploy.graph import waves
from stackdeploy.model import Service, Stack
from stackdeploy.placement import HostSpec, Placement, place

REGISTRY_PYTHON_BASE = "python:3.11-slim"
CHROMADB_VERSION = "1.5.9"
GATEWAY_LISTEN_PORT = 8080
# Errors the gateway answers itself (not the apps'), as JSON.
GATEWAY_ERRORS = [(400, "bad request"), (401, "missing, invalid or revoked bearer token"), (404, "no such route"),
                  (405, "method not allowed"), (413, "request body too large"), (500, "gateway error"),
                  (502, "upstream unavailable"), (504, "upstream timed out")]
# Offline base and infrastructure images are content-addressed and not specific to one
# stack, so every stack on a host (and the test stack) shares them.
SHARED_IMAGE_NAMESPACE = "stackdeploy"
DOCKER_DNS = "127.0.0.11"
DOCKER_SOCKET = "/var/run/docker.sock"
BASE_SCRIPT = FILES_DIR / "images" / "build-base.sh"
WAIT_SCRIPT = FILES_DIR / "wait-for-services.py"
PROBE_MODULE = FILES_DIR / "stackprobe.py"  # wait-for-services.py imports it: copied beside it
COMMON_DIR = FILES_DIR / "common"

_jinja = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_jinja.filters["compose_json"] = lambda value: json.dumps(value).replace("$", "$$")


def render(template: str, **context: object) -> str:
    """Render one template from templates/ (the only renderer: deploy and tests share it)."""
    return _jinja.get_template(template).render(**context)


@dataclass(frozen=True)
class ServicePlan:
    """What one service needs on the host."""

    name: str
    image: str
    build_dir: str | None  # relative to the deploy dir; None for pulled images
    source_dir: Path | None  # local folder synced to <build_dir>/src
    config_hash: str = ""
    strategy: str = contract.RECREATE  # how a change reaches it: contract.ROLLING or contract.RECREATE


@dataclass(frozen=True)
class Plan:
    """The complete desired state of a host."""

    stack: Stack
    image_source: str
    base_image: str | None
    services: dict[str, ServicePlan]
    files: dict[str, str]  # path relative to a release directory -> content
    secret_files: frozenset[str]  # paths in ``files`` that hold secrets (mode 0600)
    waves: list[list[str]]  # waves of the whole stack (all hosts), by dependency
    builds: dict[str, ImageSpec] = field(default_factory=dict)  # images this host builds
    replicated: frozenset[str] = frozenset()  # services placed on several hosts (rolled host by host)

    @property
    def own_built_images(self) -> dict[str, str]:
        """Service -> image, for the images of this host's services that are built, not pulled."""
        return {name: svc.image for name, svc in self.services.items() if svc.build_dir}


def _read(path: Path) -> str:
    return path.read_text()


def _env_for(service: Service, where: Placement, host: str, secrets: dict[str, str]) -> dict[str, str]:
    stack = where.stack
    env = dict(stack.shared_env)
    if service.kind == "monitor" and stack.backup_every_hours:
        env["MONITOR_BACKUP_EVERY_HOURS"] = str(stack.backup_every_hours)
    env.update(service.env)
    waits = []
    for dep_name in service.depends_on:
        dep = stack.services[dep_name]
        end = where.endpoint(host, dep_name)
        env[f"{dep.env_prefix}_HOST"] = end.address
        env[f"{dep.env_prefix}_PORT"] = str(end.port)
        if dep.health.http:
            env[f"{dep.env_prefix}_URL"] = f"http://{end.address}:{end.port}"
        waits.append(f"{dep.name}:http://{end.address}:{end.port}{dep.health.http}" if dep.health.http
                     else f"{dep.name}:tcp://{end.address}:{end.port}")
    if waits:
        env["WAIT_FOR"] = ",".join(waits)
        env["WAIT_TIMEOUT"] = str(int(service.wait_timeout))
    for name in service.secrets:
        env[name] = secrets[name]
    return env


def _has_docker_health(service: Service, image_source: str) -> bool:
    return service.built_from_source or bool(service.health.command) or image_source == "local"


def _python_files(service: Service, base_image: str, install_venv: bool) -> dict[str, str | bytes]:
    src = SERVICES_DIR / service.name
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in src.iterdir()
                     if p.name not in {"__pycache__", "tests"})
    files: dict[str, str | bytes] = {
        "Dockerfile": render("Dockerfile.python.j2", service=service, base_image=base_image,
                             install_venv=install_venv),
        ".dockerignore": render("dockerignore.j2", entries=entries),
        "wait-for-services.py": _read(WAIT_SCRIPT),
        "stackprobe.py": _read(PROBE_MODULE),
    }
    if service.kind == "monitor":  # it reads release.json and writes event lines through the contract
        files["common/stackcontract.py"] = Path(contract.__file__).read_text()
    files.update({f"common/{p.name}": _read(p) for p in sorted(COMMON_DIR.glob("*.py"))})
    return files


def _infra_files(recipe: str, base_image: str) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {
        "Dockerfile": render(f"images/{recipe}.Dockerfile.j2", base_image=base_image,
                             chromadb_version=CHROMADB_VERSION),
    }
    extra = FILES_DIR / "images" / recipe
    if extra.is_dir():
        files.update({p.name: p.read_text() for p in sorted(extra.iterdir()) if p.is_file()})
    return files


def _compose_entry(service: Service, image: str, build_dir: str | None, image_source: str,
                   where: Placement, host: str) -> dict:
    """The per-service context for compose.yaml.j2 on ``host``."""
    stack = where.stack
    healthcheck = None
    if service.health.command:
        healthcheck = _jinja.filters["compose_json"](["CMD", *service.health.command])
    deps = [(dep, "service_healthy" if _has_docker_health(stack.services[dep], image_source)
             else "service_started") for dep in service.depends_on if where.endpoint(host, dep).local]
    ports = []
    config_mounts = []
    monitor = service.kind == "monitor"
    address = where.hosts[host].address
    command = list(service.command)
    if monitor:
        # The engine API (root on this host, the documented trade-off), the releases to read,
        # and a directory of its own for the event log.
        config_mounts += [(f"${{STACK_DOCKER_SOCKET:-{DOCKER_SOCKET}}}", DOCKER_SOCKET, "rw"),
                          (stack.deploy_dir, "/stack", "ro"),
                          (f"{stack.deploy_dir}/{contract.MONITOR_DIR}", "/monitor", "rw")]
    if service.kind == "gateway":
        ports.append(f"{stack.gateway_bind}:{stack.gateway_port}:{GATEWAY_LISTEN_PORT}")
        # A stable directory outside the releases: the helper keeps nginx.conf and the route
        # targets there and reloads nginx gracefully when they change.
        config_mounts.append((f"{stack.deploy_dir}/{contract.GATEWAY_DIR}", contract.GATEWAY_CONF_MOUNT, "ro"))
        command = ["nginx", "-c", f"{contract.GATEWAY_CONF_MOUNT}/nginx.conf", "-g", "daemon off;"]
    else:
        if service.publish:
            ports.append(f"{service.publish}:{service.port}")
        if where.is_published(host, service.name):
            ports.append(f"{address}:{service.port}:{service.port}")
    edge = bool(ports) or where.has_remote_dependency(host, service.name)
    return {
        "name": service.name,
        "image": image,
        "build": build_dir,
        "command": _jinja.filters["compose_json"](command) if command else None,
        "stop_grace": int(service.stop_grace),
        "healthcheck": healthcheck,
        "wait_timeout": int(service.wait_timeout),
        "depends_on": deps,
        "volumes": sorted(service.volumes.items()),
        "config_mounts": config_mounts,
        "ports": ports,
        "networks": ["backend", "edge"] if edge else ["backend"],
        "limits": dict(service.limits),
        # The socket belongs to root: the monitor runs as root, with no capabilities and a
        # read-only filesystem.
        "hardened_root": monitor,
    }


def _nginx_conf(gateway: Service, where: Placement, host: str, monitor: Service | None) -> str:
    """Routes: one target by name, resolved per request; several replicas as an upstream."""
    routes = []
    for prefix, target in sorted(gateway.routes.items()):
        ends = where.endpoints(host, target)
        routes.append({
            "prefix": prefix,
            "upstream": target.replace("-", "_") if len(ends) > 1 else None,
            # A local target is the container the helper has gated (targets/<service>.*),
            # so a new container gets traffic only once it is ready.
            "local": target if ends[0].local else None,
            "servers": [f"{e.address}:{e.port}" for e in ends if not e.local],
            "websocket": prefix in gateway.websocket_routes,
            "auth": prefix in gateway.auth_routes,
        })
    auth = None
    if gateway.auth_verify:  # the route it is under, and the path the gateway asks there
        route = max((r for r in routes if gateway.auth_verify.startswith(r["prefix"])), key=lambda r: len(r["prefix"]))
        auth = {"route": route, "path": "/" + gateway.auth_verify[len(route["prefix"]):]}
    return render("nginx.conf.j2", routes=routes, resolver=DOCKER_DNS, listen_port=GATEWAY_LISTEN_PORT,
                  targets=f"{contract.GATEWAY_CONF_MOUNT}/targets", errors=GATEWAY_ERRORS, auth=auth,
                  readiness=f"{monitor.name}:{monitor.port}" if monitor else None)


def _service_spec(service: Service, plan: ServicePlan) -> contract.ServiceSpec:
    return {"port": service.port, "tcp": service.health.tcp, "http": service.health.http,
            "command": list(service.health.command), "timeout": service.wait_timeout,
            "strategy": plan.strategy, "stop_grace": service.stop_grace, "config_hash": plan.config_hash,
            "image": plan.image, "kind": service.kind, "restarts_with": list(service.restarts_with),
            "backup": service.backup, "volumes": sorted(service.volumes)}


def _strategy(service: Service, entry: dict) -> str:
    """Apps roll (a second container beside the first); a published port can be held by one
    container only, and infrastructure and the gateway's image are stop-then-start by nature."""
    return contract.ROLLING if service.kind == "python" and not entry["ports"] else contract.RECREATE


def _remote_checks(where: Placement, host: str, names: list[str]) -> dict[str, dict]:
    """Dependencies of this host's services that run elsewhere, as seen from this host."""
    remote: dict[str, dict] = {}
    for name in names:
        svc = where.stack.services[name]
        for dep in (*svc.depends_on, *svc.routes.values()):
            for end in where.used_endpoints(host, name, dep):
                if not end.local:
                    health = where.stack.services[dep].health
                    remote[f"{dep}@{end.host}"] = {
                        "service": dep, "host": end.host, "address": end.address, "port": end.port,
                        "http": health.http, "consumers": sorted({*remote.get(f"{dep}@{end.host}", {})
                                                                  .get("consumers", []), name}),
                    }
    return remote


def single_host(stack: Stack, host: str = "@local") -> Placement:
    """The placement of a one-host deploy: everything on ``host``."""
    return place(stack, [HostSpec(host, frozenset())])


@dataclass(frozen=True)
class ImageSpec:
    """One image of the stack: its tag and, when it is built, its build context."""

    image: str
    build_dir: str | None
    context: dict[str, str]
    source_dir: Path | None


def _image_spec(service: Service, stack: Stack, image_source: str, base_image: str | None) -> ImageSpec:
    if service.built_from_source:
        context = _python_files(service, base_image or REGISTRY_PYTHON_BASE, install_venv=image_source == "local")
        source_dir = SERVICES_DIR / service.name
        fingerprint = digest({**context, **tree_parts(source_dir, "src")})
        return ImageSpec(f"{stack.image_namespace}/{service.name}:{short(fingerprint)}", f"services/{service.name}",
                         context, source_dir)
    if image_source == "local":
        recipe = service.image["local"]
        context = _infra_files(recipe, base_image or "")
        return ImageSpec(f"{SHARED_IMAGE_NAMESPACE}/{recipe}:{short(digest(context))}", f"images/{recipe}",
                         context, None)
    return ImageSpec(service.image["registry"], None, {}, None)


def build_plan(stack: Stack, image_source: str, secrets: dict[str, str],
               where: Placement | None = None, host: str = "@local", builder: str | None = None) -> Plan:
    """Compute every file, image tag and config hash for the part of ``stack`` on ``host``.

    ``builder`` names the host that can build every image (build-once distribution); None
    means each host builds the images of its own services (build-everywhere).
    """
    assert image_source in ("registry", "local"), image_source
    where = where or single_host(stack, host)
    base_script = _read(BASE_SCRIPT)
    base_tag = short(digest({"build-base.sh": base_script, "mirror": stack.debian_mirror}))
    base_image = f"{SHARED_IMAGE_NAMESPACE}/base:{base_tag}" if image_source == "local" else None
    names = list(where.services_on[host])
    here = [stack.services[n] for n in names]
    specs = {name: _image_spec(svc, stack, image_source, base_image) for name, svc in stack.services.items()}
    # Every host can build its own images (it does under build-everywhere, and under
    # build-once when the build host is not part of the run); the build host can build all.
    # The files therefore never depend on which hosts a run includes.
    builds_here = [n for n in (stack.services if builder == host else names) if specs[n].build_dir]

    files: dict[str, str] = {}
    for name in builds_here:
        files.update({f"{specs[name].build_dir}/{rel}": text for rel, text in specs[name].context.items()})
    files["compose.build.yaml"] = render("compose.build.yaml.j2", stack=stack,
                                         builds=[(n, specs[n]) for n in builds_here])
    service_plans: dict[str, ServicePlan] = {}
    entries: dict[str, dict] = {}
    for service in here:
        spec = specs[service.name]
        service_plans[service.name] = ServicePlan(service.name, spec.image, spec.build_dir, spec.source_dir)
        entries[service.name] = _compose_entry(service, spec.image, spec.build_dir if service.name in builds_here
                                               else None, image_source, where, host)
        files[f"env/{service.name}.env"] = render(
            "service.env.j2", service=service, env=_env_for(service, where, host, secrets))

    volumes = sorted({v for s in here for v in s.volumes})

    def compose_file(hashes: dict[str, str]) -> str:
        return render("compose.yaml.j2", stack=stack, services=list(entries.values()), volumes=volumes,
                      image_source=image_source, hashes=hashes, hash_label=contract.CONFIG_HASH_LABEL)

    gateway = next((s for s in here if s.kind == "gateway"), None)
    if gateway:
        monitor = next((s for s in here if s.kind == "monitor"), None)
        files["nginx/nginx.conf"] = _nginx_conf(gateway, where, host, monitor)
    files["images/build-base.sh"] = base_script

    # Each service's config hash covers what its container is created from (its compose
    # entry, env file and image) and becomes the container's label, so drift is read from
    # what really runs. The gateway's nginx.conf is not part of it: it is reloaded, not
    # recreated. The entry's build section depends on who builds; the container does not.
    compose = yaml.safe_load(compose_file({}))
    for service in here:
        name = service.name
        compose["services"][name].pop("build", None)
        config_hash = data_digest([compose["services"][name], files[f"env/{name}.env"]])
        service_plans[name] = replace(service_plans[name], config_hash=config_hash,
                                      strategy=_strategy(service, entries[name]))
    files["compose.yaml"] = compose_file({n: p.config_hash for n, p in service_plans.items()})

    all_waves = waves({n: s.depends_on for n, s in stack.services.items()})
    release: contract.ReleaseManifest = {
        "project": stack.name,
        "waves": [[n for n in wave if n in service_plans] for wave in all_waves],
        "services": {s.name: _service_spec(s, service_plans[s.name]) for s in here},
        "remote": _remote_checks(where, host, names),
        "gateway": {"service": gateway.name,
                    "routed": sorted({t for t in gateway.routes.values() if where.endpoint(host, t).local}),
                    "port": GATEWAY_LISTEN_PORT,
                    "routes": {p: stack.services[t].health.http or "/" for p, t in sorted(gateway.routes.items())}}
        if gateway else None,
        "builds": sorted(specs[n].image for n in builds_here),
        "namespace": stack.image_namespace,
    }
    files[contract.RELEASE_FILE] = json.dumps(release, indent=2, sort_keys=True) + "\n"

    return Plan(
        stack=stack,
        image_source=image_source,
        base_image=base_image if builds_here else None,
        services=service_plans,
        files=files,
        secret_files=frozenset(f"env/{name}.env" for name in names),
        waves=all_waves,
        builds={n: specs[n] for n in builds_here},
        replicated=frozenset(n for n in stack.services if len(where.hosts_of(n)) > 1),
    )

"""The stack definition: raw group_data in, validated frozen objects out.

Everything a phase needs comes from ``Stack``; no phase reads raw host data. All
validation happens here, before any operation exists, so bad input costs nothing:
each problem is one line led by the key path of the setting, as the user wrote it
(``services.creator-hub.role``, ``service_overrides.auth-service.workers``), and a
mistyped name or choice gets the nearest valid one suggested. What each setting may
hold is declared in ``stackdeploy.schema``; this module checks what involves several
settings (references, gateway prefixes, placement) and builds the dataclasses.
"""

from __future__ import annotations

import json
import runpy
import tarfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from stackdeploy import TEMPLATES_DIR, hardening
from stackdeploy.graph import find_cycle
from stackdeploy.schema import (
    DEFAULT_STOP_GRACE,
    BackupKindName,
    RoleName,
    ServiceSpec,
    StackSpec,
    closest,
    first_problem,
    is_ip_address,
    not_one_of,
)

ROLES = get_args(RoleName)
ROLLING_ROLES = ("app", "worker")  # start-first rolling updates, on one host or several
PLATFORM_ROLES = ("gateway", "monitor", "logstore")  # the platform's own parts: at most one each, offline too
# What an old ``kind`` is now, for the one line that refuses it.
KIND_SPELLINGS = {"python": '"role": "app", "build": {"template": "python"}', "infra": '"role": "stateful"',
                  "gateway": '"role": "gateway"', "monitor": '"role": "monitor", "build": {"template": "python"}',
                  "logstore": '"role": "logstore"'}
BACKUP_KINDS = get_args(BackupKindName)
RECIPES_DIR = TEMPLATES_DIR / "images"
CONFIG_TEMPLATES_DIR = TEMPLATES_DIR / "metrics"  # what ``config_files`` names
SERVICE_KEYS = frozenset(ServiceSpec.model_fields)
# Host data that belongs to pyinfra or its connectors, not to the stack.
FOREIGN_DATA_PREFIXES = ("ssh_", "local_", "docker_", "winrm_", "_", "pyinfra_")
class StackError(ValueError):
    """A problem in the stack definition, phrased for the person who wrote it.

    ``where`` is the key path it is about ("services.creator-hub.kind"). Its first part is the
    top-level setting, which tells the caller which of the user's files to name, unless
    ``setting`` names another: a setting that is missing is asked for by the one that needs it
    (``registry.address``, required by ``image_distribution``). ``where`` is empty for a
    problem that no single setting owns (two services publishing one port on a host).
    """

    def __init__(self, where: str, problem: str, *, setting: str | None = None) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self._setting = setting

    @property
    def setting(self) -> str:
        return self._setting or self.where.split(".", 1)[0]

    def __str__(self) -> str:
        """One line, even when the user's own key or value holds a line break."""
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


@dataclass(frozen=True)
class Health:
    """How readiness of a service is judged."""

    tcp: bool = False
    http: str | None = None
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Build:
    """What a service's image comes from: one of a bundled template, the user's Dockerfile (in its
    context folder, relative to the project) or a prebuilt image (``archive``: its `docker save`)."""

    template: str | None = None
    dockerfile: str | None = None
    context: str | None = None
    image: str | None = None
    archive: str | None = None


@dataclass(frozen=True)
class Service:
    """One validated service of the stack."""

    name: str
    role: str
    port: int | None  # None: a worker nothing connects to
    workers: int
    depends_on: tuple[str, ...]
    wait_timeout: float
    health: Health
    image: Mapping[str, str]
    volumes: Mapping[str, str]
    env: Mapping[str, str]
    secrets: tuple[str, ...]
    routes: Mapping[str, str]
    websocket_routes: tuple[str, ...]
    publish: int | None
    command: tuple[str, ...] = ()
    limits: Mapping[str, str] = field(default_factory=dict)  # {"cpus": "1.5", "memory": "512m", "pids": "512"}
    stop_grace: float = DEFAULT_STOP_GRACE  # seconds from SIGTERM to SIGKILL when a container is retired
    # Gateway: route prefixes whose requests with a body need a token that the gateway path
    # ``auth_verify`` accepts, checked before the body is read.
    auth_routes: tuple[str, ...] = ()
    auth_verify: str | None = None
    # Gateway: exact paths (logins, sign-ups) each client address may ask only so often.
    login_paths: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()  # given back after every capability is dropped
    read_only: bool = False  # a read-only root filesystem, with a tmpfs /tmp
    # Dependencies whose restart by the monitor restarts this service too (e.g. one that
    # cannot reconnect by itself).
    restarts_with: tuple[str, ...] = ()
    backup: str | None = None  # one of BACKUP_KINDS
    replicas: int = 1  # containers of an app under engine "swarm"; always 1 under compose
    publish_bind: str = "0.0.0.0"  # the host address ``publish`` binds to
    entrypoint: tuple[str, ...] = ()  # replaces the image's entrypoint (``command`` its arguments)
    # Placed on every host (compose) or one task per node (swarm ``mode: global``), like a
    # per-host exporter; not listed in ``placement``.
    every_host: bool = False
    host_paths: Mapping[str, str] = field(default_factory=dict)  # host path -> container path, read-only
    # Services whose metrics this one collects (Prometheus): it reaches every instance of each,
    # so an instance on another host is published to that host's private address.
    scrapes: tuple[str, ...] = ()
    # Files rendered for this host from templates/metrics/<template> and given to the container
    # at <path> (compose and swarm configs): path -> template.
    config_files: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None  # uid[:gid] the container runs as; None: the image's own user

    build: Build | None = None  # None: the platform's own image recipe (``image``: registry and local)

    @property
    def built_from_source(self) -> bool:
        """Built from the bundled Python template and its source folder in files/services/<name>."""
        return self.build is not None and self.build.template == "python"

    @property
    def own_dockerfile(self) -> bool:
        """Built from the user's own Dockerfile."""
        return self.build is not None and self.build.dockerfile is not None

    @property
    def rolls(self) -> bool:
        """Updated start-first (a second container beside the first) and placeable on several hosts."""
        return self.role in ROLLING_ROLES

    @property
    def registry_only(self) -> bool:
        """An image with no offline recipe (Grafana): the service runs only when images come from
        the registry, and an offline stack leaves it out (``stack_for_image_source``)."""
        return self.build is None and "local" not in self.image

    @property
    def env_prefix(self) -> str:
        """Prefix of the variables that tell consumers how to reach this service."""
        return self.name.upper().replace("-", "_")


@dataclass(frozen=True)
class SwarmSettings:
    """How the Docker Swarm engine runs the stack (read only when ``Stack.engine`` is "swarm")."""

    endpoint_mode: str = "dnsrr"  # "dnsrr": callers resolve every task's address; "vip": one virtual IP
    publish_mode: str = "host"  # "host": a published port on the node its task runs on; "ingress": on every node
    managers_group: str = "managers"  # the inventory group of the swarm's manager nodes


@dataclass(frozen=True)
class RegistrySettings:
    """The registry images travel through under ``image_distribution = "registry"``: the build
    host pushes what it built there, every other host pulls what it runs from there."""

    address: str  # host[:port][/path]: the stack's images are <address>/<their name>
    insecure: bool = False  # plain HTTP (or TLS unverified): every host's dockerd lists it in insecure-registries

    @property
    def host(self) -> str:
        """host[:port], without the path: what ``docker login`` and daemon.json's insecure-registries name."""
        return self.address.split("/", 1)[0]


@dataclass(frozen=True)
class TlsSettings:
    """HTTPS at the gateway: the certificate's source, the port and the names it must cover.
    ``Stack.gateway_port`` stays the plain-HTTP port: a permanent redirect, and ``/health``."""

    source: str = "self-signed"  # "self-signed" (a stack CA on the control machine), "files" or "acme"
    port: int = 443
    server_names: tuple[str, ...] = ("localhost",)  # DNS names and IP addresses the certificate covers
    cert_file: str | None = None  # source "files": on the control machine, absolute or from the project
    key_file: str | None = None
    acme_email: str | None = None  # source "acme": the Let's Encrypt account's address


@dataclass(frozen=True)
class LogSettings:
    """Retention of the log store (a service of kind "logstore"): whichever limit comes first."""

    keep_days: int = 14
    max_megabytes: int = 2048


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus's scrape interval and the alerts' thresholds (``metrics`` in group_data)."""

    scrape_interval: float = 15.0  # seconds
    alert_after: float = 120.0  # seconds a condition holds before its alert fires
    rate_window: float = 300.0  # seconds of the error ratio's and latency's rates
    error_ratio: float = 0.05  # share of 5xx answers of a service
    latency_p95: float = 1.0  # seconds
    disk_free_ratio: float = 0.10  # a filesystem with less free is filling


@dataclass(frozen=True)
class Stack:
    """The whole validated stack plus the deploy settings around it."""

    name: str
    deploy_dir: str
    image_source: str
    ca_bundle: str | None
    debian_mirror: str
    gateway_port: int
    gateway_bind: str
    services: Mapping[str, Service]
    secret_names: tuple[str, ...]
    shared_env: Mapping[str, str] = field(default_factory=dict)
    environment: str = "local"
    placement: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    image_distribution: str = "build-once"
    registry: RegistrySettings | None = None  # set exactly when image_distribution is "registry"
    keep_releases: int = 5  # releases kept on each host with their images; older ones are pruned
    rollout_batch: int = 1  # hosts updated at a time when a service runs on several hosts
    image_namespace: str = ""  # images are <image_namespace>/<service>:<fingerprint>
    # Promotion: ship every image from this host (SSH settings, pyinfra's ssh_* names) instead of
    # building, so production runs the very image ids staging verified. None: build as usual.
    images_from: Mapping[str, str] | None = None
    keep_backups: int = 7  # backups kept on each host (backups/<id>/); older ones are pruned
    backup_copy: str = "none"  # "control": every backup is also fetched to .deploy/backups/ here
    # How often backups are scheduled (cron): the monitor reports one missed after this. 0: none.
    backup_every_hours: float = 0.0
    engine: str = "compose"  # what runs the containers: "compose" on each host, or "swarm" across them
    swarm: SwarmSettings = field(default_factory=SwarmSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    logs: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


def local_recipes() -> tuple[str, ...]:
    """The recipes an infra image can be built from offline: templates/images/<recipe>.Dockerfile.j2."""
    return tuple(sorted(p.name.removesuffix(".Dockerfile.j2") for p in RECIPES_DIR.glob("*.Dockerfile.j2")))


def _setting_path(overridden: Mapping[str, Collection[str]], name: str, key: str) -> str:
    """The key path of a service's setting where the user wrote it: in ``service_overrides``
    when an override gave it, else in ``services``. The path decides which file is named."""
    return f"{'service_overrides' if key in overridden.get(name, ()) else 'services'}.{name}.{key}"


def _key_path(loc: tuple[Any, ...], overridden: Mapping[str, Collection[str]]) -> str:
    """A schema error's location as the user wrote it (see ``_setting_path``)."""
    if len(loc) >= 3 and loc[0] == "services":
        return ".".join([_setting_path(overridden, loc[1], loc[2]), *map(str, loc[3:])])
    return ".".join(map(str, loc))


def _merge_overrides(services: Any, overrides: Any) -> tuple[Any, dict[str, frozenset[str]]]:
    """``services`` with the per-environment ``service_overrides`` applied, without mutating
    either, and per service the keys an override gave: an error in one of them names
    ``service_overrides`` (and so the file that holds it), not ``services``. What is not a
    mapping is left as it is, for the schema to refuse."""
    overrides = {} if overrides is None else overrides
    if not isinstance(services, Mapping) or not isinstance(overrides, Mapping):
        return services, {}
    for name in overrides:
        if name not in services:
            raise StackError(f"service_overrides.{name}", f"unknown service{closest(name, services)}")
    merged, given = {}, {}
    for name, raw in services.items():
        changes = overrides.get(name)
        both = isinstance(raw, Mapping) and isinstance(changes, Mapping)
        merged[name] = {**raw, **changes} if both else raw
        given[name] = frozenset(changes) if both else frozenset()
    return merged, given


def _service(name: str, spec: ServiceSpec) -> Service:
    """The dataclass the phases use; its fields are the schema's, plus the name."""
    given = {key: str(value) for key, value in spec.limits.model_dump(exclude_none=True).items()}
    read_only = hardening.read_only_by_default(spec.role) if spec.read_only is None else spec.read_only
    build = Build(**dict(spec.build)) if spec.build is not None else None
    return Service(name=name, **{**dict(spec), "health": Health(**dict(spec.health)), "build": build,
                                 "limits": hardening.limits_of(spec.role, given), "read_only": read_only})


def _check_known(where: str, name: str, known: Collection[str], noun: str) -> None:
    """Refuse a reference (a service in depends_on, placement, routes) to something not defined."""
    if name not in known:
        raise StackError(where, f"unknown {noun} '{name}'{closest(name, known)}")


def _check_service(service: Service, engine: str, source_root: Path, at: Callable[[str], str]) -> None:
    """What the schema cannot see alone: what the image is built from (the source folder, the
    Dockerfile and its context, a recipe), the readiness an app needs, and replicas, which only
    the swarm engine runs."""
    if service.built_from_source and not (source_root / service.name).is_dir():
        raise StackError(f"services.{service.name}", f"source folder {source_root / service.name} does not exist")
    if service.own_dockerfile:
        _check_dockerfile(service, source_root, at)
    if service.build is not None and service.build.image is not None:
        _check_prebuilt(service.build, source_root, at)
    if service.build is None:
        if "registry" not in service.image or not set(service.image) <= {"registry", "local"}:
            raise StackError(at("image"), "must name a 'registry' image, and a 'local' recipe unless the service "
                                          "runs in registry mode only (or give 'build' instead)")
        if service.registry_only and service.role in PLATFORM_ROLES:
            raise StackError(at("image"), f"needs a 'local' recipe: role '{service.role}' must run offline too")
        if not service.registry_only and service.image["local"] not in local_recipes():
            raise StackError(f"{at('image')}.local", not_one_of(service.image["local"], local_recipes()))
    elif service.image:
        raise StackError(at("image"), "goes with the platform's own recipes only: 'build' says what this image "
                                      "comes from")
    if service.port is None:
        _check_portless(service, at)
    if service.role == "app" and not (service.health.http or service.health.command):
        raise StackError(at("health"), "an app needs a readiness check: an 'http' path or a 'command'")
    if service.replicas > 1 and not service.rolls:
        raise StackError(at("replicas"), f"more than 1 replica is only for apps and workers, "
                                         f"not role '{service.role}'")
    if service.replicas > 1 and engine != "swarm":
        raise StackError(at("replicas"), 'more than 1 replica needs engine = "swarm"')
    for path, template in service.config_files.items():
        if not (CONFIG_TEMPLATES_DIR / template).is_file():
            raise StackError(f"{at('config_files')}.{path}", f"no template {template} in {CONFIG_TEMPLATES_DIR}")


def _check_portless(service: Service, at: Callable[[str], str]) -> None:
    """Only a worker may have no port, and its readiness is then its check command alone."""
    if service.role != "worker" or service.built_from_source:
        raise StackError(f"services.{service.name}", "port is required (only a worker built from its own "
                                                      "Dockerfile or image may have none)")
    if service.health.tcp or service.health.http or not service.health.command:
        raise StackError(at("health"), "a worker without a port is ready when its check passes: give "
                                       "{'command': [...]} alone")
    if service.publish:
        raise StackError(at("publish"), "has no port to publish")


def _check_dockerfile(service: Service, source_root: Path, at: Callable[[str], str]) -> None:
    """The context is a folder of the project (files/services/<name> unless ``context`` names
    another) and holds the Dockerfile."""
    assert service.build is not None and service.build.dockerfile is not None
    context = build_context(service, source_root)
    project = project_of(source_root)
    if not context.resolve().is_relative_to(project):
        raise StackError(f"{at('build')}.context", f"{service.build.context} is outside the project ({project})")
    if not context.is_dir():
        raise StackError(f"{at('build')}.context" if service.build.context else at("build"),
                         f"the build context {context} does not exist")
    dockerfile = context / service.build.dockerfile
    if not dockerfile.resolve().is_relative_to(context.resolve()) or not dockerfile.is_file():
        raise StackError(f"{at('build')}.dockerfile", f"no Dockerfile {service.build.dockerfile} in {context}")


def _check_prebuilt(build: Build, source_root: Path, at: Callable[[str], str]) -> None:
    """A prebuilt image names its tag (an offline host cannot ask a registry what ``latest``
    is), and its archive, where given, exists and holds that image."""
    assert build.image is not None
    name, _, tag = build.image.rpartition(":")
    if not name or "/" in tag or tag == "latest":
        raise StackError(f"{at('build')}.image", f"{build.image} needs a tag of its own, not latest or none: "
                                                  "a deploy must know which image it runs")
    if build.archive is None:
        return
    path = archive_path(build, source_root)
    if not path.is_file():
        raise StackError(f"{at('build')}.archive", f"{path} does not exist (make it with `docker save -o "
                                                    f"{build.archive} {build.image}`)")
    tags = archive_tags(path)
    if build.image not in tags:
        raise StackError(f"{at('build')}.archive", f"{path} does not hold {build.image} (it holds "
                                                    f"{', '.join(sorted(tags)) or 'no tagged image'})")


def project_of(source_root: Path) -> Path:
    """The project a services folder (``files/services``) belongs to: what a ``context`` or an
    ``archive`` is relative to."""
    return source_root.resolve().parents[1]


def archive_path(build: Build, source_root: Path) -> Path:
    """The archive of a prebuilt image, on this control machine (relative: to the project)."""
    assert build.archive is not None
    return project_of(source_root) / build.archive


def archive_tags(path: Path) -> set[str]:
    """The image tags a `docker save` archive holds (its manifest.json's RepoTags); none for a
    file that is not such an archive."""
    try:
        with tarfile.open(path) as archive:
            member = archive.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else []
    except (tarfile.TarError, KeyError, ValueError, OSError):
        return set()
    return {tag for entry in manifest if isinstance(entry, dict) for tag in entry.get("RepoTags") or ()}


def build_context(service: Service, source_root: Path) -> Path:
    """The folder a service's own Dockerfile is built in: ``build.context`` (relative to the
    project) or files/services/<name>."""
    assert service.build is not None
    if service.build.context:
        return project_of(source_root) / service.build.context
    return source_root / service.name


def _check_references(services: Mapping[str, Service], secret_names: tuple[str, ...],
                      overridden: Mapping[str, frozenset[str]]) -> None:
    for service in services.values():
        at = partial(_setting_path, overridden, service.name)
        for dep in service.depends_on:
            _check_known(at("depends_on"), dep, services, "service")
            if services[dep].port is None:
                raise StackError(at("depends_on"), f"names {dep}, which has no port: nothing can connect to it")
        for secret in service.secrets:
            if secret not in secret_names:
                raise StackError(at("secrets"), f"secret '{secret}' is not declared in 'secrets'"
                                                f"{closest(secret, secret_names)}")
        for prefix, target in service.routes.items():
            _check_known(at("routes"), target, services, "service")
            if services[target].role != "app":
                raise StackError(f"{at('routes')}.{prefix}", f"routes to {target}, whose role is "
                                 f"'{services[target].role}': the gateway routes to apps only")
        for target in service.scrapes:
            _check_known(at("scrapes"), target, services, "service")
            if services[target].port is None:
                raise StackError(at("scrapes"), f"names {target}, which has no port to scrape")
        _check_gateway_prefixes(service, at)
        for dep in service.restarts_with:
            if dep not in service.depends_on:
                raise StackError(at("restarts_with"), f"names '{dep}', which is not in depends_on")
        _check_not_needing_registry_only(service, services, at)
    cycle = find_cycle({name: s.depends_on for name, s in services.items()})
    if cycle:
        # An override is what changed last, so a depends_on it gave is the likeliest cause.
        culprit = next((name for name in cycle if "depends_on" in overridden.get(name, ())), cycle[0])
        raise StackError(_setting_path(overridden, culprit, "depends_on"),
                         f"dependency cycle: {' -> '.join(cycle)}")


def _check_not_needing_registry_only(service: Service, services: Mapping[str, Service],
                                     at: Callable[[str], str]) -> None:
    """An offline stack leaves out a registry-only service, so nothing that runs offline may
    need it: only another registry-only service, which leaves with it, may name it."""
    if service.registry_only:
        return
    for key, names in (("depends_on", service.depends_on), ("scrapes", service.scrapes),
                       ("routes", service.routes.values())):
        for name in names:
            if services[name].registry_only:
                raise StackError(at(key), f"names '{name}', which runs in registry mode only (its image has no "
                                          "'local' recipe): a service that also runs offline cannot need it")


def _check_gateway_prefixes(service: Service, at: Callable[[str], str]) -> None:
    """websocket_routes and auth_routes name routes; auth_verify and login_paths are paths under one."""
    for key in ("websocket_routes", "auth_routes"):
        for prefix in getattr(service, key):
            if prefix not in service.routes:
                raise StackError(at(key), f"names {prefix}, which is not one of the routes"
                                          f"{closest(prefix, set(service.routes))}")
    if service.auth_routes and not service.auth_verify:
        raise StackError(at("auth_routes"), "needs auth_verify, the gateway path that accepts a valid token "
                                            "(e.g. \"/api/auth/verify\")")
    for path in (service.auth_verify, *service.login_paths):
        if path and not any(path.startswith(p) for p in service.routes):
            key = "auth_verify" if path == service.auth_verify else "login_paths"
            raise StackError(at(key), f"{path} is not under any of the routes")


def _check_registry(spec: StackSpec) -> None:
    """A registry block goes with the registry distribution, both ways: one without the other
    is a half-made change (images would quietly keep travelling over SSH). Promotion ships
    images by id over SSH, which the registry replaces."""
    if spec.image_distribution != "registry":
        if spec.registry is not None:
            raise StackError("registry", f'is used only with image_distribution = "registry" (it is '
                                         f'"{spec.image_distribution}"): set both, or neither')
        return
    if spec.registry is None or spec.registry.address is None:
        raise StackError("registry.address", 'required when image_distribution is "registry"',
                         setting="image_distribution" if spec.registry is None else None)
    if spec.images_from is not None:
        raise StackError("images_from", 'ships images over SSH, which image_distribution = "registry" replaces: '
                                        "use one or the other")


def _check_stack(spec: StackSpec, services: Mapping[str, Service], source_root: Path,
                 overridden: Mapping[str, frozenset[str]]) -> None:
    """The checks across settings, once each setting has the right shape."""
    for service in services.values():
        _check_service(service, spec.engine, source_root, partial(_setting_path, overridden, service.name))
    for role in PLATFORM_ROLES:
        if sum(1 for s in services.values() if s.role == role) > 1:
            raise StackError("services", f"at most one service may have role '{role}'")
    _check_references(services, spec.secrets, overridden)
    _check_registry(spec)
    for group, names in (spec.placement or {}).items():
        for name in names:
            _check_known(f"placement.{group}", name, services, "service")


def _check_tls(spec: StackSpec) -> None:
    """What each certificate source needs, and only it; the HTTPS port apart from the HTTP one."""
    tls = spec.tls
    if tls.port == spec.gateway_port:
        raise StackError("tls.port", f"must differ from gateway_port ({spec.gateway_port}), which answers plain "
                                     "HTTP with a redirect to it")
    for key in ("cert_file", "key_file"):
        if tls.source == "files" and getattr(tls, key) is None:
            raise StackError("tls", f'source "files" needs {key}, the path of the PEM file on this machine')
        if tls.source != "files" and getattr(tls, key) is not None:
            raise StackError(f"tls.{key}", 'is only read with source "files"')
    if tls.source != "acme":
        if tls.acme_email is not None:
            raise StackError("tls.acme_email", 'is only read with source "acme"')
        return
    if tls.acme_email is None:
        raise StackError("tls", 'source "acme" needs acme_email, the Let\'s Encrypt account\'s address')
    for name in tls.server_names:
        if name.startswith("*.") or is_ip_address(name):
            raise StackError("tls.server_names", f"{name!r}: source \"acme\" (HTTP-01) needs public DNS names, "
                                                 "no wildcard or IP address")
    if spec.engine != "compose":
        raise StackError("tls.source", 'source "acme" needs engine = "compose" (certbot runs on the gateway\'s host)')


def stack_for_image_source(stack: Stack, image_source: str) -> Stack:
    """The stack as it runs with images from ``image_source`` ("registry" or "local"): offline,
    without its registry-only services, in ``placement`` too, and without the secrets only they
    use, so that an offline stack is exactly the one that never had them. ``load`` made sure
    nothing else needs them. The same object when nothing is left out."""
    dropped = {name for name, svc in stack.services.items() if svc.registry_only} if image_source == "local" else set()
    if not dropped:
        return stack
    kept = {name: svc for name, svc in stack.services.items() if name not in dropped}
    still_used = {secret for svc in kept.values() for secret in svc.secrets}
    only_theirs = {secret for name in dropped for secret in stack.services[name].secrets} - still_used
    return replace(stack, services=kept,
                   placement={group: tuple(n for n in names if n not in dropped)
                              for group, names in stack.placement.items()},
                   secret_names=tuple(s for s in stack.secret_names if s not in only_theirs))


def _refuse_kind(services: Any, overridden: Mapping[str, frozenset[str]]) -> None:
    """``kind`` was split into ``role`` (how it runs) and ``build`` (what its image comes from):
    one line with the new spelling, before the schema would call it an unknown key."""
    if not isinstance(services, Mapping):
        return
    for name, raw in services.items():
        if isinstance(raw, Mapping) and "kind" in raw:
            new = KIND_SPELLINGS.get(raw["kind"]) if isinstance(raw["kind"], str) else None
            where = f"{'service_overrides' if 'kind' in overridden.get(name, ()) else 'services'}.{name}.kind"
            raise StackError(where, "is now two settings, 'role' and 'build': write "
                                    + (new or '"role": "app" (or worker, stateful), "build": {...}') + " instead")


def read_settings(path: Path) -> dict[str, Any]:
    """The public names a group_data file defines (how pyinfra reads it, minus pyinfra)."""
    values = runpy.run_path(str(path))
    return {k: v for k, v in values.items() if not k.startswith("__")}


def load(data: Mapping[str, Any], source_root: Path) -> Stack:
    """Validate raw stack data (host.data as a dict) and return the frozen ``Stack``."""
    settings = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith(FOREIGN_DATA_PREFIXES))}
    merged, overridden = _merge_overrides(settings.get("services"), settings.get("service_overrides"))
    _refuse_kind(merged, overridden)
    if "services" in settings:
        settings["services"] = merged
    try:
        spec = StackSpec.model_validate(settings)
    except ValidationError as exc:
        loc, problem = first_problem(exc)
        raise StackError(_key_path(loc, overridden), problem) from None
    services = {name: _service(name, service) for name, service in spec.services.items()}
    _check_stack(spec, services, source_root, overridden)
    _check_tls(spec)
    return Stack(
        name=spec.stack_name,
        deploy_dir=(spec.deploy_dir or f"/opt/{spec.stack_name}").rstrip("/"),
        image_source=spec.image_source,
        ca_bundle=spec.ca_bundle,
        debian_mirror=spec.debian_mirror,
        gateway_port=spec.gateway_port,
        gateway_bind=spec.gateway_bind,
        services=services,
        secret_names=spec.secrets,
        shared_env=spec.shared_env,
        environment=spec.environment,
        placement=dict(spec.placement or {}),
        image_distribution=spec.image_distribution,
        registry=RegistrySettings(spec.registry.address, spec.registry.insecure)
        if spec.registry and spec.registry.address else None,
        keep_releases=spec.keep_releases,
        rollout_batch=spec.rollout_batch,
        image_namespace=spec.image_namespace or spec.stack_name,
        images_from=spec.images_from.model_dump(exclude_none=True) if spec.images_from else None,
        keep_backups=spec.keep_backups,
        backup_copy=spec.backup_copy,
        backup_every_hours=spec.backup_every_hours,
        engine=spec.engine,
        swarm=SwarmSettings(**dict(spec.swarm)),
        tls=TlsSettings(**dict(spec.tls)),
        logs=LogSettings(**dict(spec.logs)),
        metrics=MetricsSettings(**dict(spec.metrics)),
    )

"""The stack definition: raw group_data in, validated frozen objects out.

Everything a phase needs comes from ``Stack``; no phase reads raw host data. All
validation happens here, before any operation exists, so bad input costs nothing:
each problem is one line led by the key path of the setting, as the user wrote it
(``services.creator-hub.kind``, ``service_overrides.auth-service.workers``), and a
mistyped name or choice gets the nearest valid one suggested.
"""

from __future__ import annotations

import difflib
import re
import runpy
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from stackdeploy import TEMPLATES_DIR
from stackdeploy.graph import find_cycle

KINDS = ("python", "infra", "gateway", "monitor")
# Kinds built from their source folder in files/services/<name> (the monitor is a Python app too).
SOURCE_KINDS = ("python", "monitor")
IMAGE_SOURCES = ("registry", "local", "auto")
DISTRIBUTIONS = ("build-everywhere", "build-once")
RECIPES_DIR = TEMPLATES_DIR / "images"
SERVICE_KEYS = {
    "kind", "port", "workers", "depends_on", "wait_timeout", "health", "image",
    "volumes", "env", "secrets", "routes", "websocket_routes", "publish", "command", "limits", "stop_grace",
    "auth_routes", "auth_verify", "restarts_with", "backup",
}
# How backup.py saves a stateful service (files/stackbackup.py).
BACKUP_KINDS = ("pg_dump", "redis_rdb", "volumes")
BACKUP_COPIES = ("none", "control")
HEALTH_KEYS = {"tcp", "http", "command"}
SETTINGS = {
    "stack_name", "deploy_dir", "image_source", "ca_bundle", "debian_mirror",
    "gateway_port", "gateway_bind", "services", "service_overrides", "secrets",
    "shared_env", "environment", "placement", "private_address", "deploy_user",
    "deploy_user_public_key", "image_distribution", "build_host", "keep_releases", "rollout_batch",
    "images_from", "image_namespace", "keep_backups", "backup_copy", "backup_every_hours",
    # Flags of one run, given with --data: rollback.py's target, taking over a dead run's lock,
    # restore.py's backup and service.
    "release", "take_over_lock", "backup", "service",
}
# Host data that belongs to pyinfra or its connectors, not to the stack.
FOREIGN_DATA_PREFIXES = ("ssh_", "local_", "docker_", "winrm_", "_", "pyinfra_")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
DEFAULT_WAIT_TIMEOUT = 60.0
DEFAULT_STOP_GRACE = 20.0


class StackError(ValueError):
    """A problem in the stack definition, phrased for the person who wrote it.

    ``where`` is the key path it is about ("services.creator-hub.kind"). Its first part is the
    top-level setting, which tells the caller which of the user's files to name. It is empty
    for a problem that no single setting owns (two services publishing one port on a host).
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where

    @property
    def setting(self) -> str:
        return self.where.split(".", 1)[0]

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
class Service:
    """One validated service of the stack."""

    name: str
    kind: str
    port: int
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
    limits: Mapping[str, str] = field(default_factory=dict)  # {"cpus": "1.5", "memory": "512m"}
    stop_grace: float = DEFAULT_STOP_GRACE  # seconds from SIGTERM to SIGKILL when a container is retired
    # Gateway: route prefixes whose requests with a body need a token that the gateway path
    # ``auth_verify`` accepts, checked before the body is read.
    auth_routes: tuple[str, ...] = ()
    auth_verify: str | None = None
    # Dependencies whose restart by the monitor restarts this service too (e.g. one that
    # cannot reconnect by itself).
    restarts_with: tuple[str, ...] = ()
    backup: str | None = None  # one of BACKUP_KINDS

    @property
    def built_from_source(self) -> bool:
        return self.kind in SOURCE_KINDS

    @property
    def env_prefix(self) -> str:
        """Prefix of the variables that tell consumers how to reach this service."""
        return self.name.upper().replace("-", "_")


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


def closest(word: object, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" naming the allowed value nearest a mistyped one, or ""."""
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _choice(where: str, value: Any, choices: Sequence[str]) -> str:
    """A value from a fixed set (kind, image_source, ...); a typo is answered with the nearest one."""
    if value not in choices:
        raise StackError(where, f"must be one of {', '.join(choices)}, got {value!r}{closest(value, choices)}")
    return value


def _check_keys(where: str, keys: Iterable[str], allowed: Collection[str], noun: str = "key") -> None:
    """Refuse a key outside ``allowed``; the key path points at it and the nearest key is suggested."""
    for key in keys:
        if key not in allowed:
            raise StackError(f"{where}.{key}" if where else str(key), f"unknown {noun}{closest(key, allowed)}")


def _check_known(where: str, name: str, known: Collection[str], noun: str) -> None:
    """Refuse a reference (a service in depends_on, placement, routes) to something not defined."""
    if name not in known:
        raise StackError(where, f"unknown {noun} '{name}'{closest(name, known)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise StackError(where, f"must be a number of seconds above 0, got {value!r}")
    return float(value)


def _positive_int(where: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise StackError(where, f"must be an integer of at least 1, got {value!r}")
    return value


def _check_port(where: str, value: Any) -> int:
    if not _is_int(value) or not 1 <= value <= 65535:
        raise StackError(where, f"must be an integer from 1 to 65535, got {value!r}")
    return value


def _string_list(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise StackError(where, f"must be a list of names, got {value!r}")
    return tuple(value)


def _optional_path(where: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.startswith("/")):
        raise StackError(where, f"must be a path starting with '/', got {value!r}")
    return value


def _hours(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 24 * 366:
        raise StackError(where, f"must be a number of hours from 0 (off) to a year, got {value!r}")
    return float(value)


def _string_map(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise StackError(where, f"must be a mapping of names to values, got {value!r}")
    return {k: str(v) for k, v in value.items()}


def _name(where: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise StackError(where, f"must be lowercase letters, digits and '-', got {value!r}")
    return value


def _parse_health(where: str, raw: Any) -> Health:
    if not isinstance(raw, Mapping) or not raw:
        raise StackError(where, "must be a mapping with 'tcp', 'http' or 'command'")
    _check_keys(where, raw, HEALTH_KEYS)
    http = raw.get("http")
    if http is not None and (not isinstance(http, str) or not http.startswith("/")):
        raise StackError(f"{where}.http", f"must be a path starting with '/', got {http!r}")
    command = _string_list(f"{where}.command", raw.get("command", []))
    return Health(tcp=bool(raw.get("tcp", False)), http=http, command=command)


LIMIT_KEYS = {"cpus", "memory"}
MEMORY_PATTERN = re.compile(r"^[0-9]+[kmg]$")


def _parse_limits(where: str, raw: Any) -> dict[str, str]:
    limits = _string_map(where, raw)
    _check_keys(where, limits, LIMIT_KEYS)
    if "memory" in limits and not MEMORY_PATTERN.match(limits["memory"]):
        raise StackError(f"{where}.memory", f"must look like 512m or 2g, got {limits['memory']!r}")
    if "cpus" in limits:
        try:
            if float(limits["cpus"]) <= 0:
                raise ValueError
        except ValueError:
            raise StackError(f"{where}.cpus", f"must be a number above 0, got {limits['cpus']!r}") from None
    return limits


def local_recipes() -> tuple[str, ...]:
    """The recipes an infra image can be built from offline: templates/images/<recipe>.Dockerfile.j2."""
    return tuple(sorted(p.name.removesuffix(".Dockerfile.j2") for p in RECIPES_DIR.glob("*.Dockerfile.j2")))


def _setting_path(overridden: Mapping[str, Collection[str]], name: str, key: str) -> str:
    """The key path of a service's setting where the user wrote it: in ``service_overrides``
    when an override gave it, else in ``services``. The path decides which file is named."""
    return f"{'service_overrides' if key in overridden.get(name, ()) else 'services'}.{name}.{key}"


def _parse_service(name: str, raw: Any, source_root: Path, overridden: Mapping[str, Collection[str]]) -> Service:
    where = f"services.{name}"
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise StackError(where, "name must be lowercase letters, digits and '-'")
    if not isinstance(raw, Mapping):
        raise StackError(where, f"must be a mapping of settings, got {type(raw).__name__}")
    _check_keys(where, raw, SERVICE_KEYS)
    at = partial(_setting_path, overridden, name)
    kind = _choice(at("kind"), raw.get("kind"), KINDS)
    if "port" not in raw:
        raise StackError(where, "port is required")
    image = _string_map(at("image"), raw.get("image", {}))
    if kind not in SOURCE_KINDS:
        if set(image) != {"registry", "local"}:
            raise StackError(at("image"), "must name both a 'registry' image and a 'local' recipe")
        _choice(f"{at('image')}.local", image["local"], local_recipes())
    if kind in SOURCE_KINDS and not (source_root / name).is_dir():
        raise StackError(where, f"source folder {source_root / name} does not exist")
    publish = raw.get("publish")
    return Service(
        name=name,
        kind=kind,
        port=_check_port(at("port"), raw["port"]),
        workers=_positive_int(at("workers"), raw.get("workers", 1)),
        depends_on=_string_list(at("depends_on"), raw.get("depends_on", [])),
        wait_timeout=_seconds(at("wait_timeout"), raw.get("wait_timeout", DEFAULT_WAIT_TIMEOUT)),
        health=_parse_health(at("health"), raw.get("health", {"tcp": True})),
        image=image,
        volumes=_string_map(at("volumes"), raw.get("volumes", {})),
        env=_string_map(at("env"), raw.get("env", {})),
        secrets=_string_list(at("secrets"), raw.get("secrets", [])),
        routes=_string_map(at("routes"), raw.get("routes", {})),
        websocket_routes=_string_list(at("websocket_routes"), raw.get("websocket_routes", [])),
        publish=None if publish is None else _check_port(at("publish"), publish),
        command=_string_list(at("command"), raw.get("command", [])),
        limits=_parse_limits(at("limits"), raw.get("limits", {})),
        stop_grace=_seconds(at("stop_grace"), raw.get("stop_grace", DEFAULT_STOP_GRACE)),
        auth_routes=_string_list(at("auth_routes"), raw.get("auth_routes", [])),
        auth_verify=_optional_path(at("auth_verify"), raw.get("auth_verify")),
        restarts_with=_string_list(at("restarts_with"), raw.get("restarts_with", [])),
        backup=None if raw.get("backup") is None else _choice(at("backup"), raw["backup"], BACKUP_KINDS),
    )


def _merge_overrides(services: Mapping[str, Any], overrides: Any) -> tuple[dict[str, Any], dict[str, frozenset[str]]]:
    """Apply per-environment overrides (``service_overrides``) without mutating inputs.

    Also returns, per service, the keys an override gave: an error in one of them names
    ``service_overrides`` (and so the file that holds it), not ``services``.
    """
    if not isinstance(overrides, Mapping):
        raise StackError("service_overrides", "must be a mapping of service name to settings")
    merged = {name: dict(raw) if isinstance(raw, Mapping) else raw for name, raw in services.items()}
    _check_keys("service_overrides", overrides, merged, "service")
    for name, changes in overrides.items():
        if not isinstance(changes, Mapping):
            raise StackError(f"service_overrides.{name}", "must be a mapping of settings")
        _check_keys(f"service_overrides.{name}", changes, SERVICE_KEYS)
        if isinstance(merged[name], dict):
            merged[name].update(changes)
    return merged, {name: frozenset(overrides.get(name, ())) for name in merged}


def _check_references(services: Mapping[str, Service], secret_names: tuple[str, ...],
                      overridden: Mapping[str, frozenset[str]]) -> None:
    for service in services.values():
        at = partial(_setting_path, overridden, service.name)
        for dep in service.depends_on:
            _check_known(at("depends_on"), dep, services, "service")
        for secret in service.secrets:
            if secret not in secret_names:
                raise StackError(at("secrets"), f"secret '{secret}' is not declared in 'secrets'"
                                                f"{closest(secret, secret_names)}")
        for target in service.routes.values():
            _check_known(at("routes"), target, services, "service")
        _check_gateway_prefixes(service, at)
        for dep in service.restarts_with:
            if dep not in service.depends_on:
                raise StackError(at("restarts_with"), f"names '{dep}', which is not in depends_on")
    cycle = find_cycle({name: s.depends_on for name, s in services.items()})
    if cycle:
        # An override is what changed last, so a depends_on it gave is the likeliest cause.
        culprit = next((name for name in cycle if "depends_on" in overridden[name]), cycle[0])
        raise StackError(_setting_path(overridden, culprit, "depends_on"),
                         f"dependency cycle: {' -> '.join(cycle)}")


def _check_gateway_prefixes(service: Service, at: Callable[[str], str]) -> None:
    """websocket_routes and auth_routes name routes; auth_verify is a path under one."""
    for key in ("websocket_routes", "auth_routes"):
        for prefix in getattr(service, key):
            if prefix not in service.routes:
                raise StackError(at(key), f"names {prefix}, which is not one of the routes"
                                          f"{closest(prefix, set(service.routes))}")
    if service.auth_routes and not service.auth_verify:
        raise StackError(at("auth_routes"), "needs auth_verify, the gateway path that accepts a valid token "
                                            "(e.g. \"/api/auth/verify\")")
    if service.auth_verify and not any(service.auth_verify.startswith(p) for p in service.routes):
        raise StackError(at("auth_verify"), f"{service.auth_verify} is not under any of the routes")


def _parse_placement(raw: Any, services: Mapping[str, Service]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        raise StackError("placement", "must be a mapping of inventory group to service names")
    placement = {group: _string_list(f"placement.{group}", names) for group, names in raw.items()}
    for group, names in placement.items():
        for name in names:
            _check_known(f"placement.{group}", name, services, "service")
    return placement


SSH_SOURCE_KEYS = {"ssh_hostname", "ssh_user", "ssh_key", "ssh_port", "ssh_known_hosts_file",
                   "ssh_strict_host_key_checking"}


def _ssh_source(value: Any) -> dict[str, str] | None:
    """``images_from``: None, an SSH destination ("user@host", your ssh config applies), or
    a mapping of pyinfra's ssh_* settings with at least ssh_hostname."""
    if value is None:
        return None
    if isinstance(value, str) and value:
        user, _, hostname = value.rpartition("@")
        return {"ssh_hostname": hostname, **({"ssh_user": user} if user else {})}
    source = _string_map("images_from", value)
    _check_keys("images_from", source, SSH_SOURCE_KEYS)
    if "ssh_hostname" not in source:
        raise StackError("images_from", "ssh_hostname is required")
    return source


def read_settings(path: Path) -> dict[str, Any]:
    """The public names a group_data file defines (how pyinfra reads it, minus pyinfra)."""
    values = runpy.run_path(str(path))
    return {k: v for k, v in values.items() if not k.startswith("__")}


def load(data: Mapping[str, Any], source_root: Path) -> Stack:
    """Validate raw stack data (host.data as a dict) and return the frozen ``Stack``."""
    _check_keys("", [key for key in data if not key.startswith(FOREIGN_DATA_PREFIXES)], SETTINGS, "setting")
    name = _name("stack_name", data.get("stack_name", "stack"))
    deploy_dir = data.get("deploy_dir", f"/opt/{name}")
    if not isinstance(deploy_dir, str) or not deploy_dir.startswith("/"):
        raise StackError("deploy_dir", f"must be an absolute path, got {deploy_dir!r}")
    image_source = _choice("image_source", data.get("image_source", "auto"), IMAGE_SOURCES)
    ca_bundle = data.get("ca_bundle")
    if ca_bundle is not None and (not isinstance(ca_bundle, str) or not ca_bundle.startswith("/")):
        raise StackError("ca_bundle", f"must be an absolute path on the host or None, got {ca_bundle!r}")
    gateway_port = _check_port("gateway_port", data.get("gateway_port", 8080))
    secret_names = _string_list("secrets", data.get("secrets", []))
    raw_services = data.get("services")
    if not isinstance(raw_services, Mapping) or not raw_services:
        raise StackError("services", "must be a non-empty mapping of service name to settings")
    merged, overridden = _merge_overrides(raw_services, data.get("service_overrides", {}) or {})
    services = {name: _parse_service(name, raw, source_root, overridden) for name, raw in merged.items()}
    for kind in ("gateway", "monitor"):
        if sum(1 for s in services.values() if s.kind == kind) > 1:
            raise StackError("services", f"at most one service may be of kind '{kind}'")
    _check_references(services, secret_names, overridden)
    placement = _parse_placement(data.get("placement", {}) or {}, services)
    return Stack(
        name=name,
        deploy_dir=deploy_dir.rstrip("/"),
        image_source=image_source,
        ca_bundle=ca_bundle,
        debian_mirror=str(data.get("debian_mirror", "http://deb.debian.org/debian")),
        gateway_port=gateway_port,
        gateway_bind=str(data.get("gateway_bind", "0.0.0.0")),
        services=services,
        secret_names=secret_names,
        shared_env=_string_map("shared_env", data.get("shared_env", {})),
        environment=_name("environment", data.get("environment", "local")),
        placement=placement,
        image_distribution=_choice("image_distribution", data.get("image_distribution", "build-once"),
                                   DISTRIBUTIONS),
        keep_releases=_positive_int("keep_releases", data.get("keep_releases", 5)),
        rollout_batch=_positive_int("rollout_batch", data.get("rollout_batch", 1)),
        image_namespace=_name("image_namespace", data.get("image_namespace", name)),
        images_from=_ssh_source(data.get("images_from")),
        keep_backups=_positive_int("keep_backups", data.get("keep_backups", 7)),
        backup_copy=_choice("backup_copy", data.get("backup_copy", "none"), BACKUP_COPIES),
        backup_every_hours=_hours("backup_every_hours", data.get("backup_every_hours", 0)),
    )

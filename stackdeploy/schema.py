"""The group_data schema: what each setting may hold, declared once as pydantic models.

``stackdeploy.model`` validates the raw host data with ``StackSpec``, checks what involves
several settings at once (references between services, gateway prefixes, placement) and
turns the result into its frozen dataclasses. Each type here carries the sentence the user
reads when a value does not fit it (``described``, ``one_of``, ``a_mapping``), so that a
refusal is one line in the user's words rather than pydantic's; ``first_problem`` picks it.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    Strict,
    StrictBool,
    StrictStr,
    ValidationError,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# How a service runs: an app serves HTTP behind the gateway, a worker has no route, a stateful
# service keeps volumes (stop-then-start, one host); the rest are the platform's own parts.
RoleName = Literal["app", "worker", "stateful", "gateway", "monitor", "logstore"]
TemplateName = Literal["python"]  # the bundled templates a service can be built from (build.template)
ImageSourceName = Literal["registry", "local", "auto"]
DistributionName = Literal["build-everywhere", "build-once", "registry"]
BackupKindName = Literal["pg_dump", "redis_rdb", "volumes"]  # how backup.py saves a stateful service
BackupCopyName = Literal["none", "control"]
EngineName = Literal["compose", "swarm"]
EndpointModeName = Literal["dnsrr", "vip"]
PublishModeName = Literal["host", "ingress"]
TlsSourceName = Literal["self-signed", "files", "acme"]  # where the gateway's certificate comes from
NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,40}")
# A DNS name (a leading "*." for a wildcard), as a certificate names it.
DNS_NAME_PATTERN = re.compile(r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MEMORY_PATTERN = re.compile(r"[0-9]+[kmg]")
# host[:port][/path] of a registry, as the first part of an image name: Docker's own grammar
# (distribution/reference), a host name or an IPv4 or [IPv6] address, lowercase path components.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
REGISTRY_ADDRESS = re.compile(rf"(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::(?P<port>[0-9]{{1,5}}))?"
                              r"(?P<path>(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)")
DEFAULT_WAIT_TIMEOUT = 60.0
DEFAULT_STOP_GRACE = 20.0
PROBLEM = "stack_problem"  # the error type of a refusal already worded for the user
UNKNOWN_KEY = ("extra_forbidden", "invalid_key")  # a key no field has; "invalid_key": not even a string


def closest(word: object, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" naming the allowed value nearest a mistyped one, or ""."""
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def not_one_of(value: object, choices: Iterable[str]) -> str:
    """The refusal of a value outside a fixed set, with the nearest choice suggested."""
    choices = tuple(choices)
    return f"must be one of {', '.join(choices)}, got {value!r}{closest(value, choices)}"


def refusal(problem: str) -> PydanticCustomError:
    """An error whose message is ``problem`` as it stands (passed as context, so that braces in
    the user's value are not read as a template)."""
    return PydanticCustomError(PROBLEM, "{problem}", {"problem": problem})


def _worded(problem: str, value: object) -> str:
    return problem.format(value=value, type=type(value).__name__)


def _refusing(problem_of: Callable[[Any], str]) -> WrapValidator:
    """Whatever the type underneath finds wrong with a value, the user reads ``problem_of(value)``:
    one sentence per setting, not one per pydantic check."""
    def validate(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise refusal(problem_of(value)) from None
    return WrapValidator(validate)


def described(problem: str) -> WrapValidator:
    """Refuse what does not fit the type underneath with ``problem``, its ``{value!r}`` and
    ``{type}`` filled in."""
    return _refusing(lambda value: _worded(problem, value))


def one_of(choices: Any) -> WrapValidator:
    """Refuse a value outside the Literal ``choices`` naming them and the nearest one."""
    return _refusing(lambda value: not_one_of(value, get_args(choices)))


def a_mapping(problem: str, *, empty: bool = True) -> BeforeValidator:
    """Refuse anything but a mapping (and an empty one unless ``empty``) with ``problem``; unlike
    ``described`` it leaves what is wrong inside the mapping to the types within, whose words
    are more precise."""
    def check(value: Any) -> Any:
        if not isinstance(value, Mapping) or not (value or empty):
            raise refusal(_worded(problem, value))
        return value
    return BeforeValidator(check)


def _name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError("not a name")
    return value


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("not an absolute path")
    return value


def _registry_address(value: Any) -> Any:
    """host[:port][/path], with no scheme. Docker takes the first part of an image name for a
    registry only when it has a '.' or a port, or is localhost: a bare name is a Docker Hub
    account, and images would silently go there."""
    if isinstance(value, str) and "://" in value:
        raise refusal(f"must be host[:port][/path] without a scheme, got {value!r}")
    found = REGISTRY_ADDRESS.fullmatch(value) if isinstance(value, str) else None
    if not (found and (found["port"] is None or 1 <= int(found["port"]) <= 65535)
            and ("." in found["host"] or found["port"] or found["host"] == "localhost" or found["host"][0] == "[")):
        raise refusal(f"must be host[:port][/path], with a '.' or a port in host, or localhost (Docker reads a "
                      f"bare name as a Docker Hub account), got {value!r}")
    return value


def is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _server_name(value: str) -> str:
    """A DNS name or an IP address, as a certificate's subject alternative names hold them."""
    if not (is_ip_address(value) or (DNS_NAME_PATTERN.fullmatch(value) and len(value) <= 253)):
        raise ValueError("not a server name")
    return value


def _list_or_tuple(value: Any) -> Any:
    """Refuse a set (or any other collection): the order of names is the user's, and kept."""
    if not isinstance(value, (list, tuple)):
        raise ValueError("not a list")
    return value


def _above_zero(value: str) -> str:
    if not float(value) > 0:  # float() refuses what is not a number, with a ValueError
        raise ValueError("not above 0")
    return value


def _memory(value: str) -> str:
    if not MEMORY_PATTERN.fullmatch(value):
        raise ValueError("not a size")
    return value


Name = Annotated[StrictStr, AfterValidator(_name),
                 described("must be lowercase letters, digits and '-', got {value!r}")]
ServiceName = Annotated[StrictStr, AfterValidator(_name), described("name must be lowercase letters, digits and '-'")]
Port = Annotated[int, Strict(), Field(ge=1, le=65535), described("must be an integer from 1 to 65535, got {value!r}")]
Count = Annotated[PositiveInt, Strict(), described("must be an integer of at least 1, got {value!r}")]
Seconds = Annotated[float, Strict(), Field(gt=0), described("must be a number of seconds above 0, got {value!r}")]
Hours = Annotated[float, Strict(), Field(ge=0, le=24 * 366),
                  described("must be a number of hours from 0 (off) to a year, got {value!r}")]
Names = Annotated[tuple[StrictStr, ...], BeforeValidator(_list_or_tuple),
                  described("must be a list of names, got {value!r}")]
ServerNames = Annotated[tuple[Annotated[StrictStr, AfterValidator(_server_name)], ...],
                        BeforeValidator(_list_or_tuple), Field(min_length=1),
                        described("must be a non-empty list of lowercase DNS names or IP addresses, got {value!r}")]
Text = Annotated[str, BeforeValidator(str)]  # any value, as the text it would be in an env file
Texts = Annotated[dict[StrictStr, Text], described("must be a mapping of names to values, got {value!r}")]
UrlPath = Annotated[StrictStr, AfterValidator(_absolute), described("must be a path starting with '/', got {value!r}")]
# A limit is checked as the text it becomes (BeforeValidator(str) is outermost, so it runs first).
Cpus = Annotated[str, AfterValidator(_above_zero), described("must be a number above 0, got {value!r}"),
                 BeforeValidator(str)]
Memory = Annotated[str, AfterValidator(_memory), described("must look like 512m or 2g, got {value!r}"),
                   BeforeValidator(str)]


class Schema(BaseModel):
    """A mapping of settings: a key it does not declare is refused (and answered with the
    nearest one it does), and the result cannot change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthSpec(Schema):
    """How readiness of a service is judged."""

    tcp: Annotated[StrictBool, described("must be True or False, got {value!r}")] = False
    http: UrlPath | None = None
    command: Names = ()


class LimitsSpec(Schema):
    """Resource limits of a container, as Compose takes them."""

    cpus: Cpus | None = None
    memory: Memory | None = None
    pids: Count | None = None  # processes and threads


class BuildSpec(Schema):
    """What a service's image comes from (``build``): exactly one of a bundled ``template``, the
    user's own ``dockerfile`` (in ``context``, a folder of the repository; files/services/<name>
    by default) or a prebuilt ``image``."""

    template: Annotated[TemplateName, one_of(TemplateName)] | None = None
    dockerfile: Annotated[StrictStr, Field(min_length=1),
                          described("must be the Dockerfile's path in its context, got {value!r}")] | None = None
    context: Annotated[StrictStr, Field(min_length=1),
                       described("must be a folder of the repository, got {value!r}")] | None = None
    image: Annotated[StrictStr, Field(min_length=1), described("must be an image name, got {value!r}")] | None = None
    archive: Annotated[StrictStr, Field(min_length=1),
                       described("must be the path of a `docker save` archive, got {value!r}")] | None = None

    @model_validator(mode="after")
    def exactly_one_source(self) -> BuildSpec:
        given = [key for key in ("template", "dockerfile", "image") if getattr(self, key) is not None]
        if len(given) != 1:
            raise refusal("must name exactly one of 'template', 'dockerfile' or 'image'"
                          + (f", not {' and '.join(repr(k) for k in given)}" if given else ""))
        if self.context is not None and self.dockerfile is None:
            raise refusal("'context' goes with 'dockerfile' only")
        if self.archive is not None and self.image is None:
            raise refusal("'archive' goes with 'image' only")
        return self


class ServiceSpec(Schema):
    """One service as written in ``services`` (with its ``service_overrides`` applied)."""

    role: Annotated[RoleName, one_of(RoleName)]
    port: Port | None = None  # required for every role but a worker (stackdeploy.model)
    build: Annotated[BuildSpec, a_mapping("must be a mapping with 'template', 'dockerfile' or 'image'",
                                          empty=False)] | None = None
    workers: Count = 1
    depends_on: Names = ()
    wait_timeout: Seconds = DEFAULT_WAIT_TIMEOUT
    health: Annotated[HealthSpec, a_mapping("must be a mapping with 'tcp', 'http' or 'command'",
                                            empty=False)] = HealthSpec(tcp=True)
    image: Texts = {}
    volumes: Texts = {}
    env: Texts = {}
    secrets: Names = ()
    routes: Texts = {}
    websocket_routes: Names = ()
    publish: Port | None = None
    command: Names = ()
    limits: Annotated[LimitsSpec, a_mapping("must be a mapping of names to values, got {value!r}")] = LimitsSpec()
    stop_grace: Seconds = DEFAULT_STOP_GRACE
    auth_routes: Names = ()
    auth_verify: UrlPath | None = None
    cap_add: Names = ()  # capabilities given back after dropping all (e.g. CHOWN for an image that starts as root)
    # A read-only root with a tmpfs /tmp; None: by role (stackdeploy/hardening.py).
    read_only: Annotated[StrictBool, described("must be True or False, got {value!r}")] | None = None
    login_paths: Names = ()  # gateway: paths limited per client address (nginx limit_req), e.g. login
    restarts_with: Names = ()
    backup: Annotated[BackupKindName, one_of(BackupKindName)] | None = None
    replicas: Count = 1
    publish_bind: Text = "0.0.0.0"  # the address ``publish`` binds to (127.0.0.1: reached by SSH tunnel)
    entrypoint: Names = ()
    every_host: Annotated[StrictBool, described("must be True or False, got {value!r}")] = False
    host_paths: Texts = {}  # host path -> path in the container, mounted read-only
    scrapes: Names = ()  # services whose /metrics this one collects (Prometheus)
    config_files: Texts = {}  # path in the container -> template in templates/metrics/, rendered per host
    user: Annotated[StrictStr, Field(pattern=r"^[0-9]+(:[0-9]+)?$"),
                    described("must be a numeric uid or uid:gid, got {value!r}")] | None = None


def _ssh_destination(value: Any) -> Any:
    """"user@host" (your ssh config applies) as the mapping of pyinfra's ssh_* settings it means."""
    if isinstance(value, str) and value:
        user, _, hostname = value.rpartition("@")
        return {"ssh_hostname": hostname, **({"ssh_user": user} if user else {})}
    return value


class SshSource(Schema):
    """``images_from``: the host to ship images from, in pyinfra's ssh_* settings."""

    ssh_hostname: Text
    ssh_user: Text | None = None
    ssh_key: Text | None = None
    ssh_port: Text | None = None
    ssh_known_hosts_file: Text | None = None
    ssh_strict_host_key_checking: Text | None = None


class SwarmSpec(Schema):
    """How the Docker Swarm engine (``engine = "swarm"``) runs the stack."""

    endpoint_mode: Annotated[EndpointModeName, one_of(EndpointModeName)] = "dnsrr"
    publish_mode: Annotated[PublishModeName, one_of(PublishModeName)] = "host"
    managers_group: Annotated[StrictStr, Field(min_length=1),
                              described("must be the name of an inventory group, got {value!r}")] = "managers"


class RegistrySpec(Schema):
    """``registry``: the container registry images travel through (``image_distribution = "registry"``)."""

    # Required with that distribution: checked with it, in stackdeploy.model, in the user's words.
    address: Annotated[str, BeforeValidator(_registry_address)] | None = None
    insecure: Annotated[StrictBool, described("must be True or False, got {value!r}")] = False


class TlsSpec(Schema):
    """HTTPS at the gateway (``tls``): where its certificate comes from and the port it answers on.
    The plain-HTTP port (``gateway_port``) then only redirects, apart from ``/health``."""

    source: Annotated[TlsSourceName, one_of(TlsSourceName)] = "self-signed"
    port: Port = 443
    server_names: ServerNames = ("localhost",)
    # source "files": the certificate (PEM, the chain after it) and its key on the control
    # machine, absolute or relative to the project.
    cert_file: Annotated[StrictStr, Field(min_length=1), described("must be a file path, got {value!r}")] | None = None
    key_file: Annotated[StrictStr, Field(min_length=1), described("must be a file path, got {value!r}")] | None = None
    # source "acme": the account address Let's Encrypt writes to about expiring certificates.
    acme_email: Annotated[StrictStr, Field(pattern=r"^[^@\s]+@[^@\s]+$"),
                          described("must be an e-mail address, got {value!r}")] | None = None


class LogsSpec(Schema):
    """``logs``: how long the log store keeps the stack's logs (whichever limit comes first)."""

    keep_days: Count = 14
    max_megabytes: Count = 2048


class MetricsSpec(Schema):
    """How often Prometheus scrapes and when its alerts fire (templates/metrics/)."""

    scrape_interval: Seconds = 15.0
    alert_after: Seconds = 120.0  # a condition must hold this long before its alert fires
    rate_window: Seconds = 300.0  # the window of the error ratio and latency rates
    error_ratio: Annotated[float, Strict(), Field(gt=0, le=1),
                           described("must be a number above 0 and at most 1, got {value!r}")] = 0.05
    latency_p95: Seconds = 1.0
    disk_free_ratio: Annotated[float, Strict(), Field(gt=0, lt=1),
                               described("must be a number between 0 and 1, got {value!r}")] = 0.10


class StackSpec(Schema):
    """Every setting of the stack (host data minus pyinfra's own), in the order they are checked."""

    stack_name: Name = "stack"
    deploy_dir: Annotated[StrictStr, AfterValidator(_absolute),
                          described("must be an absolute path, got {value!r}")] | None = None  # /opt/<stack_name>
    engine: Annotated[EngineName, one_of(EngineName)] = "compose"
    image_source: Annotated[ImageSourceName, one_of(ImageSourceName)] = "auto"
    ca_bundle: Annotated[StrictStr, AfterValidator(_absolute),
                         described("must be an absolute path on the host or None, got {value!r}")] | None = None
    gateway_port: Port = 8080
    secrets: Names = ()
    services: Annotated[
        dict[ServiceName, Annotated[ServiceSpec, a_mapping("must be a mapping of settings, got {type}")]],
        a_mapping("must be a non-empty mapping of service name to settings", empty=False),
    ] = Field(default=None, validate_default=True)
    # Already applied to ``services`` by model.load; here only their shape is checked.
    service_overrides: Annotated[
        dict[Any, Annotated[dict[Any, Any], a_mapping("must be a mapping of settings")]],
        a_mapping("must be a mapping of service name to settings"),
    ] | None = None
    placement: Annotated[dict[Any, Names],
                         a_mapping("must be a mapping of inventory group to service names")] | None = None
    shared_env: Texts = {}
    environment: Name = "local"
    image_distribution: Annotated[DistributionName, one_of(DistributionName)] = "build-once"
    registry: Annotated[RegistrySpec, a_mapping("must be a mapping of settings, got {type}")] | None = None
    keep_releases: Count = 5
    rollout_batch: Count = 1
    image_namespace: Name | None = None  # <stack_name>
    images_from: Annotated[SshSource, a_mapping("must be a mapping of names to values, got {value!r}"),
                           BeforeValidator(_ssh_destination)] | None = None
    keep_backups: Count = 7
    backup_copy: Annotated[BackupCopyName, one_of(BackupCopyName)] = "none"
    backup_every_hours: Hours = 0.0
    debian_mirror: Text = "http://deb.debian.org/debian"
    gateway_bind: Text = "0.0.0.0"
    swarm: Annotated[SwarmSpec, a_mapping("must be a mapping of settings, got {type}")] = SwarmSpec()
    tls: Annotated[TlsSpec, a_mapping("must be a mapping of settings, got {type}")] = TlsSpec()
    logs: Annotated[LogsSpec, a_mapping("must be a mapping of settings, got {type}")] = LogsSpec()
    metrics: Annotated[MetricsSpec, a_mapping("must be a mapping of settings, got {type}")] = MetricsSpec()
    # Host data that other phases read from pyinfra themselves (desired, provision), and the flags
    # of one run given with --data: rollback.py's target, taking over a dead run's lock,
    # restore.py's backup and service, provision.py's prune_nodes (swarm nodes that left the
    # inventory). Declared so that they are not taken for typos.
    private_address: Any = None
    deploy_user: Any = None
    deploy_user_public_key: Any = None
    build_host: Any = None
    release: Any = None
    take_over_lock: Any = None
    backup: Any = None
    service: Any = None
    prune_nodes: Any = None
    # logs.py's filters (--data service=... since=... grep=... request_id=... lines=...).
    since: Any = None
    grep: Any = None
    request_id: Any = None
    lines: Any = None


def _bare(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` and ``... | None``."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at ``loc``: the fields of the model found by following
    ``loc`` down from ``StackSpec`` (a model's field by name, a dict's value by any key)."""
    annotation: Any = StackSpec
    for part in loc:
        annotation = _bare(annotation)
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        annotation = annotation.model_fields[part].annotation if is_model else get_args(annotation)[-1]
    return list(_bare(annotation).model_fields)


def _own_loc(error: Any) -> tuple[Any, ...]:
    """Where an error is; a refused dict key is at the key itself (pydantic adds "[key]")."""
    loc = error["loc"]
    return loc[:-1] if loc[-1:] == ("[key]",) else loc


def first_problem(error: ValidationError) -> tuple[tuple[Any, ...], str]:
    """The one refusal to show for ``error``, as (key path, sentence): pydantic's first, unless
    the mapping it is in also holds an unknown key. That is most often a typo, which explains
    the rest (a required setting missing, say), so it is named first."""
    errors = error.errors()
    first = _own_loc(errors[0])
    found = next((e for e in errors if e["type"] in UNKNOWN_KEY
                  and len(first) >= len(e["loc"]) and first[:len(e["loc"]) - 1] == e["loc"][:-1]), errors[0])
    loc = _own_loc(found)
    if found["type"] in UNKNOWN_KEY:
        return loc, f"unknown {'setting' if len(loc) == 1 else 'key'}{closest(loc[-1], _keys_at(loc[:-1]))}"
    if found["type"] == "missing":
        return loc[:-1], f"{loc[-1]} is required"
    if found["type"] == PROBLEM:
        return loc, found["ctx"]["problem"]
    return loc, f"{found['msg']}, got {found['input']!r}"  # a type without words of its own: pydantic's

"""The contract between the deploy (control machine) and what runs on the host: the helpers
(stackctl.py, stackbackup.py) and the monitor.

Standard library only: this very file is shipped next to ``stackctl.py`` as
``stackcontract.py`` (and into the monitor's image), so every side reads and writes the same
shapes from one definition. Every state file and JSON document one side writes and another
reads is typed here.

Layout of a deploy directory on a host::

    releases/<id>/          one complete rendered release (compose.yaml, env/, nginx/,
                            build contexts, release.json); never edited after it is complete
    current -> releases/<id>   the release the host runs; switched atomically (rename)
    gateway/                the gateway's live config: nginx.conf, targets/<service>.conf and
                            tls/ (its certificate, and its key 0600 for the gateway's nginx user);
                            acme/ (certbot's HTTP-01 webroot, tls source "acme")
    state/                  lock, audit.jsonl, releases.json, builds.json, ready.json, waves.json
    monitor/events.jsonl    the monitor's event log (stackbackup.py adds its results)
    backups/<id>/           one file per service or volume, and manifest.json
    logs/                   build logs
    secrets/<NAME>          each secret as a file (0700 directory), mounted by the services that use it
    stackctl.py, stackprobe.py, stackbackup.py, stackcontract.py, .secrets.json
"""

from __future__ import annotations

import time
from typing import NotRequired, TypedDict

RELEASES_DIR = "releases"
CURRENT_LINK = "current"
GATEWAY_DIR = "gateway"
# <deploy_dir>/secrets/<NAME>: each generated secret as a file in a 0700 directory, written by
# the helper from .secrets.json; a service mounts the ones it lists at /run/secrets/<NAME> and
# reads <NAME>_FILE, so no value is in its environment (or in ``docker inspect``). On the swarm
# engine the same paths are Docker secrets.
SECRETS_DIR = "secrets"
SECRETS_MOUNT = "/run/secrets"
STATE_DIR = "state"
RELEASE_FILE = "release.json"  # inside each release directory
LOCK_FILE = "state/deploy.lock"
MONITOR_DIR = "monitor"  # the monitor's event log (events.jsonl), beside state/
EVENTS_FILE = "monitor/events.jsonl"
BACKUPS_DIR = "backups"  # backups/<id>/: one file per service or volume, and manifest.json
BACKUP_MANIFEST = "manifest.json"
AUDIT_FILE = "state/audit.jsonl"
RELEASES_FILE = "state/releases.json"
# Deploy-directory files outside the releases, each written by the deploy and hashed by one
# fact (FileHashes): the helpers (shipped before the lock, which they take), then the host's
# state files (under the lock). A file missing from these lists would look changed on every run.
HELPER_FILES = ("stackctl.py", "stackcontract.py", "stackprobe.py", "stackbackup.py", "stackswarm.py",
                "stacklogs.py")
ACME_SCRIPTS = ("acme/issue.sh", "acme/deploy-hook.sh")  # tls source "acme" only
STATE_FILES = (".secrets.json", ".tls.json", "state/image-source", *ACME_SCRIPTS)
TOP_FILES = (*HELPER_FILES, *STATE_FILES, f"{GATEWAY_DIR}/nginx.conf")
BUILDS_FILE = "state/builds.json"  # service -> BuildResult of its last build
READY_FILE = "state/ready.json"  # service -> seconds its last gate took
WAVES_FILE = "state/waves.json"  # "svc,svc" (one ``up`` call) -> seconds it took
CONFIG_HASH_LABEL = "stackdeploy.config-hash"
STACK_NAMESPACE_LABEL = "com.docker.stack.namespace"  # Docker's label on a swarm stack's services and tasks
# Container path of the gateway's config directory (the host's ``gateway/``).
GATEWAY_CONF_MOUNT = "/etc/nginx/stack"
# The gateway's certificate and key under gateway/ (and under nginx/ in a release), and
# certbot's (tls source "acme": seeded from the release's, then replaced by certbot's hook).
TLS_CERT, TLS_KEY = "tls/server.crt", "tls/server.key"
ACME_CERT, ACME_KEY = "tls/acme/fullchain.pem", "tls/acme/privkey.pem"
ACME_WEBROOT = "acme"  # gateway/acme/: certbot --webroot writes its HTTP-01 answers here
# The user the offline gateway image's nginx runs as (www-data, fixed by Debian's base-passwd):
# the key is 0600 and its owner. The registry image's nginx master runs as root and reads it too.
GATEWAY_UID = 33

ROLLING = "rolling"  # start beside the old container, gate, switch traffic, drain the old
# Compose: the network on which the gateway looks up each app it routes to, per request, by its
# live alias. The helper makes it (compose.yaml names it external) and connects an app's
# container to it, with the alias, only once the container passed its gate: a new container
# gets traffic from the gateway's next lookup on, with no reload of nginx.
ROUTES_NETWORK = "routes"
# How long the gateway trusts a looked-up address (nginx's resolver valid=, both engines): a
# rollout waits this long after the new container went live before the old one refuses; a
# swarm task removed from DNS stops 2 s later (its gossip delay), so it must be shorter.
RESOLVER_VALID_SECONDS = 1
RECREATE = "recreate"  # stop-then-start: infrastructure, the gateway image, published apps


def routes_network(project: str) -> str:
    """The docker network name of ROUTES_NETWORK for the compose project ``project``."""
    return f"{project}_{ROUTES_NETWORK}"


def live_alias(service: str) -> str:
    """The name the gateway resolves ``service`` by on the routes network."""
    return f"{service}-live"


class ServiceSpec(TypedDict):
    """One service of a release on this host: how to judge it ready and how to replace it."""

    port: int
    tcp: bool
    http: str | None
    command: list[str]
    timeout: float  # seconds a start may take (slow starts; crashes fail within seconds)
    strategy: str  # ROLLING or RECREATE
    stop_grace: float  # seconds between SIGTERM and SIGKILL when a container is retired
    config_hash: str  # also the CONFIG_HASH_LABEL of a container running this release
    image: str
    role: str  # app, worker, stateful, gateway, monitor or logstore (the monitor skips itself)
    backup: str | None  # how stackbackup.py saves it (pg_dump, redis_rdb, volumes), None: stateless
    volumes: list[str]  # its named volumes (without the project prefix)
    restarts_with: list[str]  # restarted by the monitor together with any of these


class RemoteCheck(TypedDict):
    """A dependency on another host, as this host must reach it (key "service@host")."""

    service: str
    host: str
    address: str
    port: int
    http: str | None
    consumers: list[str]


class GatewayTls(TypedDict):
    """The gateway's certificate files, copied from the release into gateway/ when its config is."""

    files: dict[str, str]  # path under gateway/ -> path in the release directory
    keys: list[str]  # those of ``files`` that are private keys: 0600, owned by GATEWAY_UID
    seed_only: bool  # tls source "acme": certbot owns them once there, the release only fills a missing one


class GatewaySpec(TypedDict):
    """The local gateway and the local services it routes to (their containers are its targets)."""

    service: str
    routed: list[str]
    # Those of ``routed`` the gateway names through targets/ files (an upstream that balances
    # them with other hosts' instances; changing a target reloads nginx). The others it finds by
    # their live alias. Absent in a release from before live aliases: every routed service.
    targeted: NotRequired[list[str]]
    port: int  # where nginx listens inside the stack network (plain HTTP: /health and the redirect)
    https_port: NotRequired[int]  # where it serves the routes (HTTPS); absent in a release from before TLS
    routes: dict[str, str]  # route prefix -> its target's health path (the monitor's readiness)
    tls: NotRequired[GatewayTls]  # absent in a release from before TLS


def targeted(gateway: GatewaySpec | None) -> list[str]:
    """Routed services the gateway names in targets/ files (balanced with other hosts)."""
    return gateway.get("targeted", gateway["routed"]) if gateway else []


def by_alias(gateway: GatewaySpec | None) -> list[str]:
    """Routed services the gateway finds by their live alias (read by the helper, and by a
    no-op on the control machine that checks each still has its alias)."""
    return sorted(set(gateway["routed"]) - set(targeted(gateway))) if gateway else []


class _ReleaseManifest(TypedDict):
    project: str
    waves: list[list[str]]  # the stack's waves, filtered to this host (empty waves kept)
    services: dict[str, ServiceSpec]
    remote: dict[str, RemoteCheck]
    gateway: GatewaySpec | None
    builds: list[str]  # images this host builds, and their registry names (the build host builds some it does not run)
    namespace: str  # the stack's own images are <namespace>/<service>:<tag> (pruned with old releases)


class ReleaseManifest(_ReleaseManifest, total=False):
    """``releases/<id>/release.json``: everything the helper needs to run that release."""

    # image_distribution "registry": its address. The stack's images are also
    # <registry>/<namespace>/<service>:<tag> there, and pruned like the others.
    registry: str


class Actor(TypedDict):
    """Who runs a deploy, rollback or provision, and from where."""

    user: str
    control_host: str
    commit: str  # git commit of the deploy repository ("" outside a git checkout)


class LockRequest(Actor):
    """``stackctl.py lock acquire --holder``: who asks for the lock, and for what."""

    action: str
    release: str


class LockHolder(LockRequest):
    """``state/deploy.lock``: held for the whole of a run (the monitor pauses while it exists)."""

    since: float  # unix time
    anchor_pid: int  # the process whose life is the run's (sshd session or local pyinfra)
    anchor_start: str  # its start time (/proc/<pid>/stat field 22), against pid reuse


class ReleaseRecord(Actor):
    """One entry of ``state/releases.json`` (oldest first)."""

    id: str
    action: str  # deploy or rollback
    at: float
    result: str  # ok or failed
    services: dict[str, dict[str, str]]  # service -> {"image": ..., "config_hash": ...}


class AuditEntry(Actor):
    """One line of ``state/audit.jsonl`` (append-only)."""

    at: float
    action: str
    release: str
    changed: list[str]
    result: str
    seconds: float


class ReleaseListing(TypedDict):
    """``stackctl.py releases``: what the control machine's ReleaseHistory fact reads."""

    current: str  # "" before the first release
    present: list[str]  # release directories on the host
    releases: list[ReleaseRecord]  # the recorded history, oldest first
    manifests: dict[str, ReleaseManifest]  # of every release directory present


class BuildResult(TypedDict):
    """One service's entry of ``state/builds.json`` (stackctl.py build writes, verify reads)."""

    ok: bool
    seconds: float
    steps: int  # build steps of ours (FROM lines not counted)
    cached: int  # of those, how many BuildKit took from its cache


class _ServiceStatus(TypedDict):
    container: str | None  # short id of the container serving it
    image: str | None
    size: int | None  # bytes
    state: str  # Docker's State.Status, "missing" or "remote"
    health: str | None  # Docker's HEALTHCHECK status
    check: str  # the deploy's own probe: "ok", or why not
    seconds_to_ready: float | None  # how long its last start took to pass the probe


class ServiceStatus(_ServiceStatus, total=False):
    """One row of ``stackctl.py status``: a service on this host, or (keyed ``service@host``,
    state "remote") a dependency on another host as this one reaches it."""

    started_at: str  # rows with a container
    current: bool  # runs the config of the release probed
    host: str  # remote rows: the host and address probed
    address: str


def backup_files(service: str, kind: str, volumes: list[str]) -> list[str]:
    """The files a backup of ``service`` holds (stackbackup.py writes them, backup.py fetches them)."""
    if kind == "pg_dump":
        return [f"{service}.dump"]
    if kind == "redis_rdb":
        return [f"{service}.rdb"]
    return [f"{volume}.tar.gz" for volume in volumes]


class _BackupFile(TypedDict):
    service: str
    kind: str  # pg_dump, redis_rdb or volumes (ServiceSpec's ``backup``)
    file: str  # its name inside backups/<id>/ (backup_files)
    size: int  # bytes
    sha256: str


class BackupFile(_BackupFile, total=False):
    """One file of a backup, as its manifest lists it."""

    volume: str  # kind "volumes": the named volume (without the project prefix) it holds


class BackupManifest(TypedDict):
    """``backups/<id>/manifest.json`` (stackbackup.py writes it; restore, retention, backup.py's
    copy and the benchmarks read it). Also ``stackbackup.py list``, one per backup."""

    id: str
    host: str
    stack: str
    release: str  # the release running when it was taken
    time: str  # UTC, ISO 8601: retention goes by it (the host's clock, not the id)
    files: list[BackupFile]


class BackupCheckResult(TypedDict):
    """``stackbackup.py check``: what a restore would restore here, or why it cannot."""

    ok: bool
    error: str  # "" when ok
    files: list[BackupFile]  # the entries a restore would restore ([] unless ok)


class _MonitorEvent(TypedDict):
    time: str  # UTC, ISO 8601
    service: str  # "*" for the host as a whole
    event: str  # failing, restarted, recovered, degraded, gave_up, paused, backup_ok, backup_failed, ...


class MonitorEvent(_MonitorEvent, total=False):
    """One line of ``monitor/events.jsonl`` (the monitor and stackbackup.py append; tests,
    benchmarks and operators read). Beside the three keys every line has, an event carries
    those of its details that apply."""

    container: str  # the container it concerns
    detail: str  # what was seen, or what went wrong
    reason: str  # restarted: why
    action: str  # degraded: what the monitor does about it
    last_problem: str  # gave_up
    last_backup: str  # backup_missed: the newest backup's time, or "never"
    every_hours: float  # backup_missed: the schedule
    backup: str  # backup_ok, backup_failed, restore_ok: the backup id
    files: int  # backup_ok, restore_ok
    bytes: int  # backup_ok
    interval: float  # started: the monitor's settings
    failures_to_act: int
    max_restarts: int
    window_seconds: float


def monitor_event(service: str, event: str, **details: object) -> MonitorEvent:
    """A line of the event log, stamped now (``details``: MonitorEvent's optional keys)."""
    entry: MonitorEvent = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "service": service,
                           "event": event}
    entry.update(details)  # type: ignore[typeddict-item]
    return entry

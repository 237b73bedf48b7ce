"""The contract between the deploy (control machine) and the host helper (stackctl.py).

Standard library only: this very file is shipped next to ``stackctl.py`` as
``stackcontract.py``, so both sides read and write the same shapes from one definition.

Layout of a deploy directory on a host::

    releases/<id>/          one complete rendered release (compose.yaml, env/, nginx/,
                            build contexts, release.json); never edited after it is complete
    current -> releases/<id>   the release the host runs; switched atomically (rename)
    gateway/                the gateway's live config: nginx.conf and targets/<service>.conf
    state/                  lock, audit.jsonl, releases.json, builds.json, ready.json
    logs/                   build logs
    stackctl.py, stackcontract.py, .secrets.json
"""

from __future__ import annotations

from typing import TypedDict

RELEASES_DIR = "releases"
CURRENT_LINK = "current"
GATEWAY_DIR = "gateway"
STATE_DIR = "state"
RELEASE_FILE = "release.json"  # inside each release directory
LOCK_FILE = "state/deploy.lock"
MONITOR_DIR = "monitor"  # the monitor's event log (events.jsonl), beside state/
BACKUPS_DIR = "backups"  # backups/<id>/: one file per service or volume, and manifest.json
BACKUP_MANIFEST = "manifest.json"


def backup_files(service: str, kind: str, volumes: list[str]) -> list[str]:
    """The files a backup of ``service`` holds (stackbackup.py writes them, backup.py fetches them)."""
    if kind == "pg_dump":
        return [f"{service}.dump"]
    if kind == "redis_rdb":
        return [f"{service}.rdb"]
    return [f"{volume}.tar.gz" for volume in volumes]
AUDIT_FILE = "state/audit.jsonl"
RELEASES_FILE = "state/releases.json"
CONFIG_HASH_LABEL = "stackdeploy.config-hash"
# Container path of the gateway's config directory (the host's ``gateway/``).
GATEWAY_CONF_MOUNT = "/etc/nginx/stack"

ROLLING = "rolling"  # start beside the old container, gate, switch traffic, drain the old
RECREATE = "recreate"  # stop-then-start: infrastructure, the gateway image, published apps


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
    kind: str  # the monitor skips its own kind
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


class GatewaySpec(TypedDict):
    """The local gateway and the local services it routes to (their containers are its targets)."""

    service: str
    routed: list[str]
    port: int  # where nginx listens inside the stack network
    routes: dict[str, str]  # route prefix -> its target's health path (the monitor's readiness)


class ReleaseManifest(TypedDict):
    """``releases/<id>/release.json``: everything the helper needs to run that release."""

    project: str
    waves: list[list[str]]  # the stack's waves, filtered to this host (empty waves kept)
    services: dict[str, ServiceSpec]
    remote: dict[str, RemoteCheck]
    gateway: GatewaySpec | None
    builds: list[str]  # images this host builds (the build host builds some it does not run)
    namespace: str  # the stack's own images are <namespace>/<service>:<tag> (pruned with old releases)


class Actor(TypedDict):
    """Who runs a deploy, rollback or provision, and from where."""

    user: str
    control_host: str
    commit: str  # git commit of the deploy repository ("" outside a git checkout)


class LockHolder(Actor):
    """``state/deploy.lock``: held for the whole of a run."""

    action: str
    release: str
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

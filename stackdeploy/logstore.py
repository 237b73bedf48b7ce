"""The stack's log store: one rsyslog on one host holds the logs of every container of every host.

Each host's dockerd sends every container's stdout and stderr with its ``syslog`` log driver
(RFC 5424 with microsecond timestamps, one message per line, tagged ``<service>/<container id>``)
to the log store's published port; Docker's dual logging keeps ``docker logs`` working beside
it. The log driver runs in dockerd, on the host, not in a container network: the log store is
published on its host's private address (127.0.0.1 on a one-host stack without one), and
every host, its own included, sends there.

UDP, not TCP: Docker's syslog driver connects when a container starts, and over TCP a log
store that is not listening (restarting, its host rebooting, not deployed yet) makes the
start of every container fail ("failed to initialize logging driver"). Over UDP a container
always starts; a message sent while the store is down is lost, which a log cannot be worth a
service being down for. rsyslog also listens on TCP (octet-counted RFC 6587 framing) on the
same port, for the readiness check and for shippers.

rsyslog writes one JSON line per message into one file per day (UTC) in a named volume, so
the logs outlive every container; a loop in the same container deletes the days older than
``logs.keep_days`` and, oldest first, whole days while the volume holds more than
``logs.max_megabytes``. Its configuration is rendered here and handed to the container as an
argument of its command, so it is part of the config hash (a change recreates it) and the
same on both engines and both image sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from stackdeploy.model import Service, Stack
from stackdeploy.placement import Placement
from stackdeploy.templating import render

LOG_DIR = "/var/log/stack"  # inside the log store's container, its named volume
PROTOCOL = "udp"  # what each dockerd sends with (see the module docstring)
LOOPBACK = "127.0.0.1"
RETENTION_EVERY_SECONDS = 600


@dataclass(frozen=True)
class LogTarget:
    """Where every host's dockerd sends container logs."""

    service: str
    address: str
    port: int

    @property
    def url(self) -> str:
        return f"{PROTOCOL}://{self.address}:{self.port}"


def log_store(stack: Stack) -> Service | None:
    return next((s for s in stack.services.values() if s.role == "logstore"), None)


def log_target(where: Placement) -> LogTarget | None:
    """The log store's address as every host's dockerd reaches it: its host's private address,
    or the loopback address when the whole stack is on one host that has none."""
    store = log_store(where.stack)
    if store is None:
        return None
    hosts = where.hosts_of(store.name)
    if not hosts:  # not placed: place() reports it
        return None
    # On several hosts, place() has refused a log store host without a private address.
    return LogTarget(store.name, where.hosts[hosts[0]].address or LOOPBACK, store.port)


def logging_options(service: str, target: LogTarget | None) -> dict:
    """The ``logging`` section of a container: to the log store, or json-file (the log store
    itself, whose own container cannot start by logging to itself, and a stack without one)."""
    if target is None or service == target.service:
        return {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
    return {"driver": "syslog", "options": {
        "syslog-address": target.url,
        "syslog-format": "rfc5424micro",
        # The service first: logs.py filters on it; the container id tells replicas apart.
        "tag": f"{service}/{{{{.ID}}}}",
        # A slow or absent log store never blocks a container's writes (4 MB buffered).
        "mode": "non-blocking",
        "max-buffer-size": "4m",
    }}


def rsyslog_conf(store: Service) -> str:
    return render("logstore/rsyslog.conf.j2", port=store.port, log_dir=LOG_DIR)


def command(stack: Stack, store: Service) -> list[str]:
    """The log store container's command: write the configuration, keep the retention loop
    running beside rsyslog, run rsyslog in the foreground."""
    script = render("logstore/run.sh.j2", log_dir=LOG_DIR, keep_days=stack.logs.keep_days,
                    max_megabytes=stack.logs.max_megabytes, every=RETENTION_EVERY_SECONDS).strip()
    return ["sh", "-c", script, "log-store", rsyslog_conf(store)]

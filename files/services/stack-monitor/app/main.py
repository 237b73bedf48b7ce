"""stack-monitor: watches this host's containers of the stack and restarts a hung or unhealthy one.

Runs on every host of the stack (kind "monitor"). Every ``MONITOR_INTERVAL`` seconds it reads
the running release's manifest (``/stack/current/release.json``) and Docker's own view of the
stack's containers (the engine API over its socket), and probes each running container's
readiness check itself: HTTP for the apps (a hung process answers nothing, which Docker's
healthcheck takes 30 s to call unhealthy), TCP plus Docker's health status for the others.

A container that fails ``FAILURES_TO_ACT`` probes in a row is restarted, with exponential
backoff between restarts of the same service. After ``MAX_RESTARTS`` restarts within
``WINDOW_SECONDS`` it gives up on that service until it is healthy again, and says so loudly.
Services that list it in ``restarts_with`` are restarted with it. Nothing is touched while a
deploy holds the lock, or for a container an operator stopped. Every observation and action
is one JSON line in ``/monitor/events.jsonl`` (``<deploy_dir>/monitor/events.jsonl`` on the
host).

On a host with the gateway, ``GET /gateway/ready`` reports each route's state as seen through
the gateway (the gateway's ``/health/ready`` is this), 503 when a route has no healthy upstream.

The shapes it reads (release.json, the lock, backup manifests) and the event lines it writes
are stackcontract.py's (stackdeploy/contract.py, copied into this image beside the app).

Its /metrics counts its restarts (``stack_monitor_restarts_total``) and gives the newest
backup's time (``stack_backup_last_timestamp_seconds``) to Prometheus.

Security: the Docker socket amounts to root on this host. The container publishes its port
only to another host's Prometheus (at this host's private address, firewalled), joins the
internal backend network (for its probes), has a read-only view of the deploy directory and
no capabilities.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import stackcontract as contract
import stacklog
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter, Gauge
from stackmetrics import instrument

STACK = os.environ.get("STACK_NAME", "stack")
DEPLOY = Path(os.environ.get("MONITOR_DEPLOY_DIR", "/stack"))
EVENTS = Path(os.environ.get("MONITOR_EVENTS", "/monitor/events.jsonl"))
INTERVAL = float(os.environ.get("MONITOR_INTERVAL", "1"))
FAILURES_TO_ACT = int(os.environ.get("MONITOR_FAILURES_TO_ACT", "3"))
# Two probes that get no answer at all, a probe timeout apart, already say "hung".
HUNG_FAILURES_TO_ACT = min(2, FAILURES_TO_ACT)
# Its metrics (/metrics, scraped by Prometheus): what it did, and the newest backup's time.
RESTARTS = Counter("stack_monitor_restarts_total", "Containers the monitor restarted, by service and outcome",
                   ["service", "outcome"])
LAST_BACKUP = Gauge("stack_backup_last_timestamp_seconds", "Newest backup on this host (Unix time), or the "
                    "monitor's start when there is none yet", multiprocess_mode="max")
PROBE_TIMEOUT = 4.0  # above the apps' own 2.5 s per dependency check (stackapp.CHECK_TIMEOUT)
STOP_TIMEOUT = 1  # seconds from SIGTERM to SIGKILL when restarting: the container is already failing
# Seconds before a restarted service is judged again, doubled with each restart in the window.
BACKOFF_BASE = float(os.environ.get("MONITOR_BACKOFF_SECONDS", "15"))
BACKOFF_MAX = 300.0
MAX_RESTARTS = int(os.environ.get("MONITOR_MAX_RESTARTS", "5"))
WINDOW_SECONDS = float(os.environ.get("MONITOR_WINDOW_SECONDS", "600"))
# backup_every_hours of the stack: a host with stateful services whose newest backup is older
# than this (and 10 % more) has missed one. 0: backups are not scheduled.
BACKUP_EVERY_SECONDS = float(os.environ.get("MONITOR_BACKUP_EVERY_HOURS", "0")) * 3600
STALE_LOCK_SECONDS = 3600  # a lock older than this belongs to a run that died: watch anyway


def log_event(service: str, event: str, **details: Any) -> None:
    """One JSON line per observation or action; loud ones also go to stderr (docker logs)."""
    entry = contract.monitor_event(service, event, **details)
    try:  # a full disk must not end the watch: the line still reaches docker logs below
        EVENTS.parent.mkdir(parents=True, exist_ok=True)
        with EVENTS.open("a") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")
    except OSError:
        pass
    loud = event in ("gave_up", "restart_failed", "backup_missed", "backup_failed")
    # On stdout/stderr (and so in the log store) shaped like every app's lines: the watched
    # service is "target", this one the "service".
    fields = {k: v for k, v in entry.items() if k not in ("time", "service", "event")}
    stacklog.emit("stack-monitor", "error" if loud else "info", event, out=sys.stderr if loud else sys.stdout,
                  target=service, **fields)


STARTING = "starting"  # Docker's health status during a container's start period


def role_of(spec: dict[str, Any]) -> str:
    """A service's role in a release manifest; releases written before roles say ``kind``
    ("python" was an app)."""
    role = spec.get("role") or spec.get("kind", "")
    return "app" if role == "python" else role


@dataclass(frozen=True)
class Problem:
    detail: str
    restart: bool  # False: the service says a dependency is down; restarting it would not help
    hung: bool = False  # no answer at all: acted on sooner (HUNG_FAILURES_TO_ACT)


def _dependency_down(response: httpx.Response) -> bool:
    """A /health that answers 503 naming failed dependency checks (stackapp's shape) is
    healthy itself: the dependency is the one to watch."""
    try:
        checks = response.json().get("checks", {})
    except ValueError:
        return False
    return isinstance(checks, dict) and any(str(v) != "ok" for v in checks.values())


@dataclass
class ServiceWatch:
    """What the monitor remembers about one service between rounds."""

    failures: int = 0
    restarts: deque[float] = field(default_factory=deque)  # times of recent restarts
    quiet_until: float = 0.0  # no judgement before this (a restart's backoff)
    gave_up: bool = False
    degraded: bool = False  # up, reporting a dependency down
    unrecovered: bool = False  # restarted, not yet seen healthy

    def backoff(self) -> float:
        return min(BACKOFF_BASE * 2 ** max(len(self.restarts) - 1, 0), BACKOFF_MAX)


class Monitor:
    def __init__(self) -> None:
        self.docker = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds="/var/run/docker.sock"),
                                        base_url="http://docker", timeout=30.0)
        self.http = httpx.AsyncClient(timeout=PROBE_TIMEOUT)
        self.insecure_http = httpx.AsyncClient(timeout=PROBE_TIMEOUT, verify=False)  # the gateway's routes only
        self.watches: dict[str, ServiceWatch] = {}
        self.readiness: dict[str, str] = {}
        self.heartbeat = 0.0
        self.paused = False
        self.started = time.time()
        self.missed_reported_for = -1.0  # the newest backup's time when a miss was last reported
        self.paused_seen: dict[str, str] = {}  # service -> the paused container already reported
        self.running: dict[str, list[dict[str, Any]]] = {}  # service -> its running containers, last round
        self.ports: dict[str, int] = {}  # service -> its port, from the running release

    async def close(self) -> None:
        await self.docker.aclose()
        await self.http.aclose()

    def manifest(self) -> contract.ReleaseManifest | None:
        try:
            return json.loads((DEPLOY / contract.CURRENT_LINK / contract.RELEASE_FILE).read_text())
        except (OSError, ValueError):
            return None

    def deploy_running(self) -> bool:
        try:
            holder: contract.LockHolder = json.loads((DEPLOY / contract.LOCK_FILE).read_text())
        except (OSError, ValueError):
            return False
        return time.time() - float(holder.get("since", 0)) < STALE_LOCK_SECONDS

    async def containers(self) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [f"com.docker.compose.project={STACK}"]})
        listed = (await self.docker.get("/containers/json", params={"all": "1", "filters": filters})).json()
        return [(await self.docker.get(f"/containers/{c['Id']}/json")).json() for c in listed]

    async def probe(self, info: dict[str, Any], spec: contract.ServiceSpec) -> Problem | None:
        """None when the container answers its readiness check, else what is wrong and whether
        a restart is the cure (not when the service only reports a dependency down)."""
        networks = info["NetworkSettings"]["Networks"]
        address = (networks.get(f"{STACK}_backend") or next(iter(networks.values()), {})).get("IPAddress")
        if not address:
            return Problem("no address on the stack network", restart=False)
        try:
            if spec.get("http"):
                response = await self.http.get(f"http://{address}:{spec['port']}{spec['http']}")
                if response.status_code == 200:
                    return None
                return Problem(f"HTTP {response.status_code}", restart=not _dependency_down(response))
            if spec.get("tcp"):
                _, writer = await asyncio.wait_for(asyncio.open_connection(address, spec["port"]), PROBE_TIMEOUT)
                writer.close()
        except (TimeoutError, httpx.TimeoutException):
            return Problem(f"no answer within {PROBE_TIMEOUT:.0f}s (hung?)", restart=True, hung=True)
        except (httpx.HTTPError, OSError) as exc:
            return Problem(f"{type(exc).__name__}: {exc}"[:200], restart=True)
        # Without an HTTP check of our own, Docker's healthcheck (pg_isready, redis PING) is the
        # service's own judgement of itself.
        if (info["State"].get("Health") or {}).get("Status") == "unhealthy":
            return Problem("docker healthcheck: unhealthy", restart=True)
        return None

    async def restart(self, service: str, container: dict[str, Any], reason: str, spec: contract.ServiceSpec,
                      hung: bool = False) -> bool:
        """Restart one container, unless a run took the lock since this round began. A hung one
        cannot act on SIGTERM, and an app keeps nothing: both are killed after a second. Any
        other service (a database that is unhealthy but running) gets its own stop grace."""
        if self.deploy_running():
            return False
        patient = not hung and role_of(spec) not in ("app", "worker")
        grace = int(spec.get("stop_grace", STOP_TIMEOUT)) if patient else STOP_TIMEOUT
        response = await self.docker.post(f"/containers/{container['Id']}/restart", params={"t": grace},
                                          timeout=grace + 60)
        ok = response.status_code == 204
        RESTARTS.labels(service, "restarted" if ok else "failed").inc()
        log_event(service, "restarted" if ok else "restart_failed", container=container["Name"].lstrip("/"),
                  reason=reason, **({} if ok else {"detail": response.text[:200]}))
        return ok

    async def round(self) -> None:
        manifest = self.manifest()
        if manifest is None:
            return
        specs = manifest["services"]
        running: dict[str, list[dict[str, Any]]] = {}
        for info in await self.containers():
            name = info["Config"]["Labels"].get("com.docker.compose.service", "")
            if name in specs and role_of(specs[name]) != "monitor":  # never itself
                if info["State"]["Status"] == "running":
                    running.setdefault(name, []).append(info)
                elif info["State"]["Status"] == "paused":
                    self.note_paused(name, info)
        self.running, self.ports = running, {name: spec["port"] for name, spec in specs.items()}
        # Readiness is observed even while a run holds the lock; only actions wait for it.
        if manifest.get("gateway") and manifest["gateway"].get("routes"):
            await self.check_routes(manifest["gateway"], running)
        if self.deploy_running():
            if not self.paused:
                log_event("*", "paused", detail="a deploy, rollback, backup or restore holds the lock")
            self.paused = True
            return
        if self.paused:
            log_event("*", "resumed")
            self.paused = False
        if BACKUP_EVERY_SECONDS and any(spec.get("backup") for spec in specs.values()):
            self.check_backups()
        problems = dict(zip(running, await asyncio.gather(*(self.first_problem(running[n], specs[n])
                                                               for n in running)), strict=True))
        now = time.monotonic()
        for name, problem in problems.items():
            await self.judge(name, problem, running, specs, now)

    def note_paused(self, name: str, info: dict[str, Any]) -> None:
        """A container left paused (by a backup that died) serves nothing: say so, loudly, once."""
        if self.paused_seen.get(name) != info["Id"] and not self.deploy_running():
            self.paused_seen[name] = info["Id"]
            log_event(name, "left_paused", container=info["Name"].lstrip("/"),
                      detail="paused with no run holding the lock: docker unpause it")

    def check_backups(self) -> None:
        """Say once, loudly, when the scheduled backup of this host is overdue (the schedule runs
        on the control machine, so only the host can tell that it did not happen)."""
        manifests = list((DEPLOY / contract.BACKUPS_DIR).glob(f"*/{contract.BACKUP_MANIFEST}"))
        newest = max((p.stat().st_mtime for p in manifests), default=0.0)
        since = max(newest, self.started)
        LAST_BACKUP.set(since)
        if time.time() - since > BACKUP_EVERY_SECONDS * 1.1 and self.missed_reported_for != newest:
            self.missed_reported_for = newest
            last = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest)) if newest else "never"
            log_event("*", "backup_missed", last_backup=last, every_hours=BACKUP_EVERY_SECONDS / 3600)

    async def first_problem(self, containers: list[dict[str, Any]],
                            spec: contract.ServiceSpec) -> tuple[dict, Problem] | None | str:
        """The first container of a service with a problem. One still in its start period (after
        a restart, a slow start) counts only when it is hung: one that is still starting refuses
        connections, and that is no reason to restart it; otherwise it is STARTING, not judged."""
        for info in containers:
            problem = await self.probe(info, spec)
            if (info["State"].get("Health") or {}).get("Status") == "starting":
                if problem and problem.hung:
                    return info, problem
                return STARTING
            if problem:
                return info, problem
        return None

    async def judge(self, name: str, found: tuple[dict, Problem] | None | str,
                    running: dict[str, list[dict[str, Any]]], specs: dict[str, contract.ServiceSpec],
                    now: float) -> None:
        if found == STARTING:
            return
        assert not isinstance(found, str)
        watch = self.watches.setdefault(name, ServiceWatch())
        if found is None:
            if watch.unrecovered or watch.gave_up or watch.degraded:
                log_event(name, "recovered")
            watch.failures, watch.gave_up, watch.degraded, watch.unrecovered = 0, False, False, False
            return
        container, found_problem = found
        problem = found_problem.detail
        if not found_problem.restart:
            if not watch.degraded:
                log_event(name, "degraded", container=container["Name"].lstrip("/"), detail=problem,
                          action="none: it reports a dependency down")
            watch.degraded, watch.failures = True, 0
            return
        if now < watch.quiet_until:
            return
        watch.failures += 1
        if watch.failures == 1:
            log_event(name, "failing", container=container["Name"].lstrip("/"), detail=problem)
        if watch.failures < (HUNG_FAILURES_TO_ACT if found_problem.hung else FAILURES_TO_ACT) or watch.gave_up:
            return
        while watch.restarts and now - watch.restarts[0] > WINDOW_SECONDS:
            watch.restarts.popleft()
        if len(watch.restarts) >= MAX_RESTARTS:
            watch.gave_up = True
            log_event(name, "gave_up", detail=f"{len(watch.restarts)} restarts within {int(WINDOW_SECONDS)} s did "
                                              f"not help; marked failed, not restarting until it is healthy again",
                      last_problem=problem)
            return
        watch.restarts.append(now)
        watch.failures = 0
        watch.quiet_until = now + watch.backoff()
        watch.unrecovered = True
        if await self.restart(name, container, problem, specs[name], hung=found_problem.hung):
            for dependent, spec in specs.items():
                if name in spec.get("restarts_with", []):
                    dependent_watch = self.watches.setdefault(dependent, ServiceWatch())
                    dependent_watch.quiet_until = now + BACKOFF_BASE
                    dependent_watch.failures = 0
                    for info in running.get(dependent, []):
                        await self.restart(dependent, info, f"restarts with {name}", spec)

    async def check_routes(self, gateway: contract.GatewaySpec, running: dict[str, list[dict[str, Any]]]) -> None:
        """Each route's health as the gateway serves it (local and remote upstreams alike)."""
        containers = running.get(gateway["service"], [])
        if not containers:
            self.readiness = {prefix: "down: the gateway is not running" for prefix in gateway["routes"]}
            return
        address = containers[0]["NetworkSettings"]["Networks"].get(f"{STACK}_backend", {}).get("IPAddress")
        # The routes are served over HTTPS (plain HTTP only redirects), asked at the container's
        # own address, which the certificate need not name: reachability is what is checked here.
        base = (f"https://{address}:{gateway['https_port']}" if "https_port" in gateway
                else f"http://{address}:{gateway['port']}")

        async def check(prefix: str, health: str) -> str:
            try:
                response = await self.insecure_http.get(f"{base}{prefix}{health.lstrip('/')}")
                return "ok" if response.status_code == 200 else f"down: HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                return f"down: {type(exc).__name__}"
        results = await asyncio.gather(*(check(p, h) for p, h in gateway["routes"].items()))
        self.readiness = dict(zip(gateway["routes"], results, strict=True))

    async def run(self) -> None:
        log_event("*", "started", interval=INTERVAL, failures_to_act=FAILURES_TO_ACT, max_restarts=MAX_RESTARTS,
                  window_seconds=WINDOW_SECONDS)
        while True:
            try:
                await self.round()
            except Exception as exc:  # one bad round must not end the watch
                log_event("*", "round_failed", detail=f"{type(exc).__name__}: {exc}"[:300])
            self.heartbeat = time.monotonic()
            await asyncio.sleep(INTERVAL)


monitor = Monitor()


@asynccontextmanager
async def lifespan(_: FastAPI):
    task = asyncio.create_task(monitor.run())
    yield
    task.cancel()
    await monitor.close()


stacklog.configure_logging("stack-monitor")
app = FastAPI(title="stack-monitor", lifespan=lifespan)
# Polled: the healthcheck, the gateway's readiness, and Prometheus's scrapes (its own and its apps').
app.add_middleware(stacklog.AccessLog, service="stack-monitor",
                   quiet_paths=frozenset({"/health", "/gateway/ready", "/metrics", "/scrape/"}))
instrument(app, "stack-monitor")


@app.get("/health")
async def health() -> JSONResponse:
    """Alive while the watch loop keeps turning."""
    age = time.monotonic() - monitor.heartbeat
    alive = age < max(5 * INTERVAL, 30.0)
    return JSONResponse({"service": "stack-monitor", "status": "ok" if alive else "stalled",
                         "last_round_seconds_ago": round(age, 1)}, status_code=200 if alive else 503)


@app.get("/scrape/{service}")
async def scrape(service: str) -> Response:
    """An app's /metrics, for a Prometheus on another host: apps publish no port (a rolling
    update runs two containers at once, and a host port can be held by one), so the monitor of
    their host, which reaches them on the stack network, answers for them. 503: none runs."""
    for info in monitor.running.get(service, []):
        address = info["NetworkSettings"]["Networks"].get(f"{STACK}_backend", {}).get("IPAddress")
        try:
            response = await monitor.http.get(f"http://{address}:{monitor.ports[service]}/metrics")
        except httpx.HTTPError:
            continue
        return Response(response.content, status_code=response.status_code,
                        media_type=response.headers.get("content-type", "text/plain"))
    return Response(f"no running container of {service} on this host\n", status_code=503, media_type="text/plain")


@app.get("/gateway/ready")
async def gateway_ready() -> JSONResponse:
    """Ready when every route of the gateway reaches a healthy upstream."""
    ready = bool(monitor.readiness) and all(state == "ok" for state in monitor.readiness.values())
    return JSONResponse({"service": "api-gateway", "status": "ready" if ready else "not ready",
                         "routes": monitor.readiness}, status_code=200 if ready else 503)

#!/usr/bin/env python3
"""Host-side helper of the deploy (standard library only; runs on each Docker host).

pyinfra decides *what* must change (from facts, before anything runs); this script does
the parts that need a loop on the host itself. The shapes it reads and writes are defined
once, in stackcontract.py (shipped beside it from stackdeploy/contract.py); what "ready" means
and the one loop that waits for it, in stackprobe.py (shipped beside it, and into every
Python service's image for wait-for-services.py).

    stackctl.py build --release R SVC...   build images in parallel, one log per service
    stackctl.py up --release R SVC...      roll out services, gated on readiness, with rollback
    stackctl.py status [--release R]       one probe of every service, as JSON
    stackctl.py logs SVC...                the last log lines of services
    stackctl.py lock acquire               take the deploy lock (``finish`` releases it)
    stackctl.py finish --release R ...     switch ``current``, record the release, prune, audit, unlock
    stackctl.py releases                   the release history and the current release, as JSON

Rolling services start a new container beside the old one; once it is ready it gets the
service's live alias on the routes network, where the gateway looks it up per request (no
nginx reload), and the old one is drained: it refuses new connections, which the gateway
retries on the new one, then SIGTERM and its grace period. A new container that fails its
gate is removed and the old one never stops serving.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import stackcontract as contract
import stackprobe

LOG_LINES = 30
CRASH_RESTARTS = 2  # a container Docker restarted this often is crash-looping: fail now
RELOAD_TIMEOUT = 15.0
# A build step in plain progress output: "#7 [builder 3/5] RUN ..." (FROM lines are the
# base image, not steps of ours, and are not counted).
STEP_RE = re.compile(r"^#(\d+) \[[^\]]*\d+/\d+\] (?!FROM )")
CACHED_RE = re.compile(r"^#(\d+) CACHED")
# uvicorn with several workers keeps its container up and respawns workers that crash:
# its log is the only sign that the app cannot start.
WORKER_DIED_RE = re.compile(r"Child process \[\d+\] died")
# What a worker that crashed leaves in the log (a worker killed for answering its supervisor's
# ping too slowly leaves nothing): a traceback, or Python's last line of one.
CRASH_SIGN_RE = re.compile(r"^(Traceback \(most recent call last\):|[A-Za-z_.]*(Error|Exception): .*)$", re.M)
SHELLS = {"sh", "bash", "dash", "zsh", "sudo", "su", "timeout", "env", "nice"}
ROOT = Path(__file__).resolve().parent
# The engine this helper's docker calls reach (DOCKER_HOST where the host sets one): compose
# mounts the same socket into the monitor (compose.yaml reads STACK_DOCKER_SOCKET).
os.environ.setdefault("STACK_DOCKER_SOCKET",
                      os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://"))
GATEWAY = ROOT / contract.GATEWAY_DIR
GATEWAY_LOCK = threading.Lock()
READY: dict[str, float] = {}  # service -> seconds its gate took, in this call
# Services of a wave roll out in parallel, but `docker compose up` calls run one at a time:
# concurrent ones would each create the project's networks (Docker allows duplicate names).
COMPOSE_LOCK = threading.Lock()
# Seconds past the gateway's resolver validity before it has surely looked again: nginx keeps
# time in whole seconds, so an answer valid for 1 s is used for up to 2 s; then half a second.
LOOKUP_MARGIN = 1.5
ACCEPT_SETTLE = 0.3  # seconds for an app to accept what reached it before it refused new connections
REMOTE_SETTLE = 10.0  # seconds a verify gives a dependency on another host to answer again


class Failed(Exception):
    """A service could not be rolled out; the message is for the person running the deploy."""


def run(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def checked(args: list[str], timeout: float | None = None) -> str:
    result = run(args, timeout)
    if result.returncode != 0:
        raise Failed(f"{' '.join(args)} failed: {(result.stderr or result.stdout).strip()[-1500:]}")
    return result.stdout


def read_json(path: Path, default: object) -> object:
    return json.loads(path.read_text()) if path.exists() else default


def replace_file(path: Path, text: str, *, private_to: int | None = None) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file.
    ``private_to``: a key, mode 0600 from its creation on, owned by that uid (when this runs as root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if private_to is None:
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
    else:
        tmp.unlink(missing_ok=True)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            handle.write(text)
        if os.geteuid() == 0:
            os.chown(tmp, private_to, private_to)
    tmp.replace(path)


def write_json(path: Path, value: object) -> None:
    replace_file(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def update_json(path: Path, values: dict) -> None:
    current = read_json(path, {})
    assert isinstance(current, dict)
    write_json(path, {**current, **values})


# ---------------------------------------------------------------- releases

def release_dir(release: str) -> Path:
    return ROOT / contract.RELEASES_DIR / release


def current_release() -> str:
    link = ROOT / contract.CURRENT_LINK
    return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else ""


def manifest(release: str) -> contract.ReleaseManifest:
    path = release_dir(release) / contract.RELEASE_FILE
    if not path.exists():
        raise Failed(f"release {release} is not on this host ({path} missing)")
    return json.loads(path.read_text())


def compose(release: str, *args: str, file: str = "compose.yaml") -> list[str]:
    directory = release_dir(release)
    return ["docker", "compose", "--project-directory", str(directory), "-f", str(directory / file), *args]


# ---------------------------------------------------------------- containers

def containers(project: str, service: str | None = None) -> list[dict]:
    """``docker inspect`` of the project's containers (of one service), oldest first."""
    label = f"label=com.docker.compose.project={project}"
    filters = ["--filter", label] + (["--filter", f"label=com.docker.compose.service={service}"] if service else [])
    ids = checked(["docker", "ps", "-aq", "--filter", "is-task=false", *filters]).split()  # not Swarm's tasks
    if not ids:
        return []
    # A container another thread removes between the two calls is simply not there any more:
    # inspect then exits non-zero but still prints the others.
    result = run(["docker", "inspect", *ids])
    infos = json.loads(result.stdout or "[]")
    if not infos and result.returncode != 0:
        raise Failed(f"docker inspect failed: {result.stderr.strip()[-500:]}")
    return sorted(infos, key=lambda info: info["Created"])


def service_of(info: dict) -> str:
    return info["Config"]["Labels"].get("com.docker.compose.service", "")


def config_hash(info: dict) -> str:
    return info["Config"]["Labels"].get(contract.CONFIG_HASH_LABEL, "")


def running(info: dict) -> bool:
    return bool(info["State"].get("Running")) and not info["State"].get("Restarting")


def serving(project: str, service: str, wanted_hash: str = "") -> dict | None:
    """The container that serves ``service``: the newest running one, preferring ``wanted_hash``."""
    live = [c for c in containers(project, service) if running(c)]
    matching = [c for c in live if config_hash(c) == wanted_hash]
    return (matching or live or [None])[-1]


def name_of(info: dict) -> str:
    return info["Name"].lstrip("/")


def container_address(info: dict, project: str) -> str | None:
    networks = info["NetworkSettings"]["Networks"]
    preferred = networks.get(f"{project}_backend") or next(iter(networks.values()), None)
    return (preferred or {}).get("IPAddress") or None


def retire(infos: list[dict], grace: float, live: tuple[dict, int] | None = None) -> None:
    """Stop gracefully (SIGTERM, then ``grace`` seconds) and remove, in parallel. ``live``: the
    gateway container and the port the containers serve it on by their live alias; they take no
    new connection from it (or from anyone) while they drain, nor does a dead address of theirs
    that the gateway still has for RESOLVER_VALID_SECONDS after they are gone."""
    fenced: list[list[str]] = []
    if live:
        gateway, port = live
        for info in infos:
            refuse_new_connections(info, ["INPUT", "!", "-i", "lo", "--dport", str(port)])
        for address in filter(None, ((routes_endpoint(info) or {}).get("IPAddress") for info in infos)):
            rule = ["OUTPUT", "-d", address, "--dport", str(port)]
            if refuse_new_connections(gateway, rule):
                fenced.append(rule)
        if not fenced:
            progress(f"note: {', '.join(map(name_of, infos))} cannot refuse new connections while draining "
                     "(that needs root and nsenter on the host): a request sent to it then may fail")
        time.sleep(ACCEPT_SETTLE)

    def one(info: dict) -> None:
        run(["docker", "stop", "-t", str(int(grace)), info["Id"]], timeout=grace + 60)
        run(["docker", "rm", "-f", info["Id"]], timeout=60)
    with ThreadPoolExecutor(max_workers=max(1, len(infos))) as pool:
        list(pool.map(one, infos))
    if fenced:
        time.sleep(contract.RESOLVER_VALID_SECONDS + LOOKUP_MARGIN)
        for rule in fenced:
            refuse_new_connections(gateway, rule, remove=True)


def last_logs(container_id: str) -> str:
    result = run(["docker", "logs", "--tail", str(LOG_LINES), container_id])
    lines = (result.stdout + result.stderr).splitlines()[-LOG_LINES:]
    return "\n".join(f"  | {line}" for line in lines) or "  (no log output)"


# ---------------------------------------------------------------- readiness

def probe(info: dict, spec: contract.ServiceSpec, project: str) -> str | None:
    """None when the container is ready, else why not."""
    state = info["State"]
    if not running(info):
        return f"container is {state.get('Status')} (exit code {state.get('ExitCode')})"
    address = container_address(info, project)
    if address is None:
        return "container has no network address yet"
    reason = stackprobe.not_ready(address, spec["port"], spec["http"], spec["tcp"])
    if reason:
        return reason
    if spec["command"]:
        result = run(["docker", "exec", info["Id"], *spec["command"]], timeout=10)
        if result.returncode != 0:
            out = (result.stdout + result.stderr).strip()[-300:]
            return f"check command {spec['command'][0]} exited {result.returncode}: {out}"
    return None


def workers_dying(container_id: str) -> str | None:
    """A crash of the app's workers, told from a slow start: uvicorn's supervisor logs "Child
    process [N] died" both for a worker that exited and for one it killed for not answering its
    ping within 5 s, as happens on a host whose cores are busy. Only a crash leaves a traceback;
    slow workers are left to the readiness gate's own timeout."""
    result = run(["docker", "logs", "--tail", "200", container_id], timeout=10)
    log = result.stdout + result.stderr
    deaths = len(WORKER_DIED_RE.findall(log))
    crash = [found.group(0) for found in CRASH_SIGN_RE.finditer(log)]
    if deaths < CRASH_RESTARTS or not crash:
        return None
    return f"its worker processes keep dying ({deaths} so far): {crash[-1][:200]}"


def crashed(info: dict) -> str | None:
    """A container that exited or crash-loops will not become ready: say so at once."""
    state = info["State"]
    restarts = info.get("RestartCount", 0)
    if state.get("Status") in ("exited", "dead") and (
            info["HostConfig"]["RestartPolicy"]["Name"] == "no" or restarts >= CRASH_RESTARTS):
        return f"container exited with code {state.get('ExitCode')} (restarted {restarts} times)"
    if restarts >= CRASH_RESTARTS:
        return f"container is crash-looping: restarted {restarts} times (last exit code {state.get('ExitCode')})"
    return None


def gate(container_id: str, spec: contract.ServiceSpec, project: str) -> float:
    """Wait until one container is ready; fail at once when it crashes."""
    last: list[dict] = []  # the latest inspect, which fatal() judges

    def check() -> str | None:
        last[:] = json.loads(checked(["docker", "inspect", container_id]))
        return probe(last[0], spec, project)

    polls = itertools.count(1)

    def fatal(_key: str) -> str | None:
        if not last:
            return None
        # The log is read on every 5th poll (about once a second): cheap enough, soon enough.
        return crashed(last[0]) or (workers_dying(container_id) if next(polls) % 5 == 0 else None)

    ready, failed = stackprobe.poll({container_id: check}, {container_id: time.monotonic() + spec["timeout"]}, fatal)
    if failed:
        raise Failed(failed[container_id])
    return ready[container_id]


def wait_for_remote(manifest_: contract.ReleaseManifest, services: list[str], host: str) -> None:
    """Before starting ``services``, wait until their dependencies on other hosts answer
    from here (bounded by the consumer's timeout); fail naming the remote host and service."""
    needed = {key: spec for key, spec in manifest_["remote"].items() if set(spec["consumers"]) & set(services)}
    if not needed:
        return
    limit = time.monotonic() + max(manifest_["services"][s]["timeout"] for s in services)
    checks = {key: (lambda s=spec: stackprobe.not_ready(s["address"], s["port"], s["http"]))
              for key, spec in needed.items()}
    ready, failed = stackprobe.poll(checks, dict.fromkeys(needed, limit))
    for key in ready:
        spec = needed[key]
        print(f"reachable {spec['service']} on host {spec['host']} ({spec['address']}:{spec['port']})", flush=True)
    if failed:
        raise Failed("\n".join(
            f"SERVICE FAILED: '{needed[key]['service']}' on host {needed[key]['host']} is not reachable from host "
            f"{host} ({needed[key]['address']}:{needed[key]['port']}), needed by "
            f"{', '.join(needed[key]['consumers'])}: {why}" for key, why in failed.items()))


# ---------------------------------------------------------------- routes

def ensure_routes_network(project: str) -> None:
    """The routes network of ``project``, made if missing (compose.yaml names it external: a
    routed app can go live before the gateway's first ``compose up``)."""
    name = contract.routes_network(project)
    if run(["docker", "network", "inspect", "--format", "{{.Id}}", name], timeout=30).returncode != 0:
        checked(["docker", "network", "create", "--internal", "--label", f"stackdeploy.stack={project}", name],
                timeout=60)


def routes_endpoint(info: dict) -> dict | None:
    """The container's endpoint on its stack's routes network (aliases, address), if attached."""
    project = info["Config"]["Labels"].get("com.docker.compose.project", "")
    return info["NetworkSettings"]["Networks"].get(contract.routes_network(project))


def is_live(info: dict, service: str) -> bool:
    return contract.live_alias(service) in ((routes_endpoint(info) or {}).get("Aliases") or [])


def go_live(info: dict, service: str, project: str) -> bool:
    """Give a gated container ``service``'s live alias on the routes network (cmd_up made it):
    the gateway sends it requests from its next lookup on. Returns whether it was not live."""
    if is_live(info, service):
        return False
    network = contract.routes_network(project)
    if routes_endpoint(info):  # on the network without the alias (by hand): only a reconnect gives it one
        checked(["docker", "network", "disconnect", network, info["Id"]], timeout=60)
    checked(["docker", "network", "connect", "--alias", contract.live_alias(service), network, info["Id"]],
            timeout=60)
    return True


def live_container(project: str, service: str) -> dict | None:
    """The running container of ``service`` that has its live alias, if one has."""
    live = [c for c in containers(project, service) if running(c) and is_live(c, service)]
    return live[-1] if live else None


def refuse_new_connections(info: dict, match: list[str], *, remove: bool = False) -> bool:
    """In the running container's own network namespace, answer a new TCP connection that
    ``match`` selects (a chain, then iptables matches) with a reset; established ones go on.
    A refused connection is one the gateway retries on the next address, whatever the method
    (nothing was sent), where a lost one is an error. A SIGTERM alone does not refuse: an app's
    supervisor can keep the listening socket open, unaccepted, until its workers have drained
    (uvicorn's does). The rule goes with the namespace. Needs root on the host (nsenter);
    returns whether the rule was changed."""
    pid = info["State"].get("Pid")
    if os.geteuid() != 0 or not pid or not shutil.which("nsenter") or not shutil.which("iptables"):
        return False
    chain, *matches = match
    result = run(["nsenter", "--target", str(pid), "--net", "iptables", "-D" if remove else "-I", chain,
                  "-p", "tcp", "--syn", *matches, "-j", "REJECT", "--reject-with", "tcp-reset"], timeout=30)
    return result.returncode == 0


def switch_traffic(release: str, m: contract.ReleaseManifest, service: str, new: dict, replacing: bool) -> None:
    """Send the gateway's requests for ``service`` to the gated container ``new``. A live alias
    needs no reload; with a container to replace, wait until the gateway has looked the alias up
    again, so that it knows the new container before the old one refuses connections."""
    if service in contract.targeted(m["gateway"]):
        sync_gateway(release, m, {service: name_of(new)})
    elif service in contract.by_alias(m["gateway"]) and go_live(new, service, m["project"]) and replacing:
        time.sleep(contract.RESOLVER_VALID_SECONDS + LOOKUP_MARGIN)


# ---------------------------------------------------------------- gateway

def gateway_service(m: contract.ReleaseManifest) -> str | None:
    return m["gateway"]["service"] if m["gateway"] else None


def gateway_container(m: contract.ReleaseManifest) -> dict | None:
    """The running gateway that reads the live config (one from before releases does not)."""
    if not m["gateway"]:
        return None
    gateway = serving(m["project"], m["gateway"]["service"])
    return gateway if gateway and contract.CONFIG_HASH_LABEL in gateway["Config"]["Labels"] else None


def worker_pids(container_id: str) -> set[str] | None:
    """Pids of the nginx workers that take new connections (not those shutting down), seen
    with ``docker top`` (None when the host cannot list them)."""
    result = run(["docker", "top", container_id, "-eo", "pid,args"], timeout=10)
    if result.returncode != 0:
        return None
    return {line.strip().partition(" ")[0] for line in result.stdout.splitlines()[1:]
            if "worker process" in line and "shutting down" not in line}


def reload_gateway(container_id: str) -> None:
    """Graceful nginx reload (validated first); returns once new workers took over."""
    test = run(["docker", "exec", container_id, "nginx", "-t", "-q", "-c", f"{contract.GATEWAY_CONF_MOUNT}/nginx.conf"],
               timeout=30)
    if test.returncode != 0:
        raise Failed(f"gateway config rejected by nginx -t: {(test.stderr or test.stdout).strip()[-800:]}")
    before = worker_pids(container_id)
    checked(["docker", "kill", "--signal", "HUP", container_id], timeout=30)
    if before is None:
        time.sleep(1.0)  # no process listing on this host: give the master a moment
        return

    def new_workers() -> str | None:
        now = worker_pids(container_id)
        return None if now and not (now & before) else "the old workers still take new connections"

    _, failed = stackprobe.poll({"reload": new_workers}, {"reload": time.monotonic() + RELOAD_TIMEOUT})
    if failed:
        raise Failed(f"gateway did not start new workers within {RELOAD_TIMEOUT:g}s of a reload")


def write_if_changed(path: Path, text: str, *, private_to: int | None = None) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    replace_file(path, text, private_to=private_to)
    return True


def write_secret_files() -> None:
    """secrets/<NAME> for each secret in .secrets.json, in a directory only this user can enter:
    compose mounts each file where a service that lists the secret reads it (<NAME>_FILE).
    The files are 0644 so that any container user can read its own mount; the 0700 directory
    keeps everyone else on the host out, as it keeps them out of .secrets.json (0600)."""
    values = read_json(ROOT / ".secrets.json", {})
    assert isinstance(values, dict)
    directory = ROOT / contract.SECRETS_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    for name, value in values.items():
        write_if_changed(directory / name, value)
    for stale in set(os.listdir(directory)) - set(values):
        (directory / stale).unlink()


def tls_files(release: str, m: contract.ReleaseManifest) -> dict[str, str]:
    """The gateway's certificate and key from ``release``, by their path under gateway/; for
    tls source "acme" only those certbot has not written yet (its hook replaces them)."""
    tls = m["gateway"].get("tls") if m["gateway"] else None
    if not tls:
        return {}
    return {rel: (release_dir(release) / source).read_text() for rel, source in tls["files"].items()
            if not (tls["seed_only"] and (GATEWAY / rel).exists())}


def gateway_keys(m: contract.ReleaseManifest) -> set[str]:
    tls = m["gateway"].get("tls") if m["gateway"] else None
    return set(tls["keys"]) if tls else set()


def target_files(service: str, target: str) -> dict[str, str]:
    """The two forms the rendered nginx.conf includes: a per-request target and upstream servers."""
    return {f"targets/{service}.conf": f"set $upstream {target};\n",
            f"targets/{service}.servers": f"server {target};\n"}


def targeted_container_runs(service: str) -> bool:
    """Whether the gateway's current target for ``service`` names a running container."""
    path = GATEWAY / "targets" / f"{service}.conf"
    if not path.exists():
        return False
    name = path.read_text().split()[-1].rsplit(":", 1)[0]
    state = run(["docker", "inspect", "--format", "{{.State.Running}}", name], timeout=10)
    return state.returncode == 0 and state.stdout.strip() == "true"


def sync_gateway(release: str, m: contract.ReleaseManifest, override: dict[str, str] | None = None) -> bool:
    """Bring the gateway's live config (nginx.conf and targets) to ``release``; targets name the
    serving container of each routed service (``override``: service -> container name).
    Reloads a running gateway when anything changed. Returns whether anything changed."""
    if not m["gateway"]:
        return False
    with GATEWAY_LOCK:
        # The certificate and key first: the nginx.conf that names them is written after them.
        files = {**tls_files(release, m), "nginx.conf": (release_dir(release) / "nginx" / "nginx.conf").read_text()}
        keys = gateway_keys(m)
        for service in contract.by_alias(m["gateway"]):
            if live_container(m["project"], service) is None:  # from before live aliases, or not started
                info = serving(m["project"], service, m["services"][service]["config_hash"])
                if info is not None:
                    go_live(info, service, m["project"])
        for service in contract.targeted(m["gateway"]):
            chosen = (override or {}).get(service)
            if chosen is None and targeted_container_runs(service):
                continue  # only a gated container becomes a target: leave a live one alone
            if chosen is None:
                info = serving(m["project"], service, m["services"][service]["config_hash"])
                chosen = name_of(info) if info else service  # not started yet: its DNS name
            files.update(target_files(service, f"{chosen}:{m['services'][service]['port']}"))
        previous = {rel: (GATEWAY / rel).read_text() if (GATEWAY / rel).exists() else None for rel in files}
        changed = [rel for rel, text in files.items()
                   if write_if_changed(GATEWAY / rel, text, private_to=contract.GATEWAY_UID if rel in keys else None)]
        gateway = gateway_container(m)
        if changed and gateway is not None:
            try:
                reload_gateway(gateway["Id"])
            except Failed:
                for rel in changed:  # back to the config that worked, and make nginx read it
                    if previous[rel] is None:
                        (GATEWAY / rel).unlink(missing_ok=True)
                    else:
                        write_if_changed(GATEWAY / rel, previous[rel],
                                         private_to=contract.GATEWAY_UID if rel in keys else None)
                run(["docker", "kill", "--signal", "HUP", gateway["Id"]], timeout=30)
                raise
        return bool(changed)


# ---------------------------------------------------------------- rollout

def roll(release: str, m: contract.ReleaseManifest, service: str, host: str) -> str:
    """Start the new container beside the old one, gate it, switch the gateway, drain the old."""
    spec, project = m["services"][service], m["project"]
    existing = containers(project, service)
    broken = [c for c in existing if not running(c)]
    if broken:
        run(["docker", "rm", "-f", *(c["Id"] for c in broken)], timeout=60)
    old = [c for c in existing if running(c)]
    reuse = [c for c in old if config_hash(c) == spec["config_hash"]]
    created = not reuse
    if reuse:  # an interrupted run already started it (or left a duplicate beside it)
        new = reuse[-1]
    else:
        with COMPOSE_LOCK:
            checked(compose(release, "up", "-d", "--no-deps", "--no-build", "--no-recreate",
                            "--scale", f"{service}={len(old) + 1}", service), timeout=600)
        fresh = [c for c in containers(project, service) if c["Id"] not in {o["Id"] for o in old}]
        if not fresh:
            raise Failed("docker compose did not create a new container")
        new = fresh[-1]
    previous = [c for c in old if c["Id"] != new["Id"]]
    try:
        seconds = gate(new["Id"], spec, project)
        switch_traffic(release, m, service, new, replacing=bool(previous))
    except Failed as exc:
        logs = last_logs(new["Id"])
        if created:  # never remove a container this run did not start: it may be the one serving
            run(["docker", "rm", "-f", new["Id"]], timeout=60)
        still = (f"the previous version is still serving: container {name_of(previous[-1])}, image "
                 f"{previous[-1]['Config']['Image']}" if previous else "no previous version was running")
        raise Failed(f"{exc}\nlast {LOG_LINES} log lines of the new container:\n{logs}\n"
                     f"ROLLED BACK: {'the new container was removed; ' if created else ''}{still}") from None
    gateway = gateway_container(m) if service in contract.by_alias(m["gateway"]) else None
    retire(previous, spec["stop_grace"], (gateway, spec["port"]) if gateway else None)
    READY[service] = seconds
    return f"ready {service} after {seconds:.1f}s (rolling: {len(previous)} old container(s) drained)"


def recreate(release: str, m: contract.ReleaseManifest, service: str, host: str) -> str:
    """Stop-then-start (infrastructure, gateway image, published apps); on failure the previous
    release's container is brought back when there is one."""
    spec, project = m["services"][service], m["project"]
    is_gateway = service == gateway_service(m)
    if is_gateway:
        sync_gateway(release, m)  # its config and targets must be in place before it starts
    with COMPOSE_LOCK:
        checked(compose(release, "up", "-d", "--no-deps", "--no-build", "--force-recreate", service), timeout=600)
    new = serving(project, service, spec["config_hash"]) or (containers(project, service) or [None])[-1]
    if new is None:
        raise Failed("docker compose did not create a container")
    try:
        READY[service] = gate(new["Id"], spec, project)
        switch_traffic(release, m, service, new, replacing=False)
        return f"ready {service} after {READY[service]:.1f}s (stop-then-start)"
    except Failed as exc:
        logs = last_logs(new["Id"])
        previous = current_release()
        if previous and previous != release and service in manifest(previous)["services"]:
            if is_gateway:
                sync_gateway(previous, manifest(previous))  # the config the old gateway ran with
            with COMPOSE_LOCK:
                run(compose(previous, "up", "-d", "--no-deps", "--no-build", "--force-recreate", service),
                    timeout=600)
            back = serving(project, service)
            try:
                if back is not None:
                    switch_traffic(previous, manifest(previous), service, back, replacing=False)
            except Failed as again:
                logs += f"\n(and the restored container could not be made the gateway's target: {again})"
            restored = f"ROLLED BACK: {service} was recreated from the running release {previous}"
        else:
            restored = "no previous release to restore"
        raise Failed(f"{exc}\nlast {LOG_LINES} log lines:\n{logs}\n{restored}") from None


def up_to_date(m: contract.ReleaseManifest, service: str) -> bool:
    live = [c for c in containers(m["project"], service)]
    return len(live) == 1 and running(live[0]) and config_hash(live[0]) == m["services"][service]["config_hash"]


PROGRESS_LOCK = threading.Lock()


def progress(line: str) -> None:
    """One line of progress on stdout, as it happens and whole (the deploy shows build and up
    output live; parallel services must not interleave halves of lines)."""
    with PROGRESS_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def cmd_up(args: argparse.Namespace) -> int:
    m = manifest(args.release)
    names = list(args.services)
    if not names:
        print("nothing to change")
        return 0
    try:
        wait_for_remote(m, names, args.host)
    except Failed as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    write_secret_files()
    if m["gateway"]:  # before any service starts: compose.yaml names it external, go_live joins it
        ensure_routes_network(m["project"])

    def one(service: str) -> tuple[str, str | None]:
        try:
            if service == gateway_service(m) and up_to_date(m, service):
                changed = sync_gateway(args.release, m)
                line = f"{service}: config {'reloaded gracefully' if changed else 'unchanged'}"
            elif m["services"][service]["strategy"] == contract.ROLLING:
                progress(f"start {service} (rolling)")
                line = roll(args.release, m, service, args.host)
            else:
                progress(f"start {service} (stop-then-start)")
                line = recreate(args.release, m, service, args.host)
        except Failed as exc:
            print(f"\nSERVICE FAILED: '{service}' on host {args.host}: {exc}", file=sys.stderr, flush=True)
            return service, None
        progress(line)
        return service, line

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(pool.map(one, names))
    if all(line for _s, line in results):
        progress(f"wave ready in {time.monotonic() - started:.1f} s: {', '.join(names)}")
    update_json(ROOT / contract.WAVES_FILE, {",".join(sorted(names)): round(time.monotonic() - started, 2)})
    update_json(ROOT / contract.READY_FILE, {s: round(READY[s], 2) for s, line in results if line and s in READY})
    return 1 if any(line is None for _s, line in results) else 0


# ---------------------------------------------------------------- build

def build_one(release: str, service: str) -> dict:
    logs = ROOT / "logs"
    logs.mkdir(exist_ok=True)
    log_path = logs / f"build-{service}.log"
    started = time.monotonic()
    progress(f"build {service} started")
    with log_path.open("w") as log:
        result = subprocess.run(compose(release, "build", "--progress", "plain", service, file="compose.build.yaml"),
                                stdout=log, stderr=subprocess.STDOUT, text=True, check=False)
    text = log_path.read_text(errors="replace").splitlines()
    steps = {m.group(1) for line in text if (m := STEP_RE.match(line))}
    cached = {m.group(1) for line in text if (m := CACHED_RE.match(line))} & steps
    seconds = round(time.monotonic() - started, 1)
    progress(f"build {service} done in {seconds} s, {len(cached)}/{len(steps)} steps cached" if result.returncode == 0
             else f"build {service} FAILED after {seconds} s")
    return {"service": service, "ok": result.returncode == 0, "seconds": seconds,
            "steps": len(steps), "cached": len(cached), "log": str(log_path), "tail": text[-LOG_LINES:]}


def cmd_build(args: argparse.Namespace) -> int:
    with ThreadPoolExecutor(max_workers=max(1, len(args.services))) as pool:
        results = list(pool.map(lambda s: build_one(args.release, s), args.services))
    report: dict[str, contract.BuildResult] = {}
    for r in results:
        report[r["service"]] = {"ok": r["ok"], "seconds": r["seconds"], "steps": r["steps"], "cached": r["cached"]}
    update_json(ROOT / contract.BUILDS_FILE, report)
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print(f"\nBUILD FAILED: service '{r['service']}' on host {args.host} (full log: {r['log']})", file=sys.stderr)
        print("\n".join(f"  | {line}" for line in r["tail"]), file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------- status and logs

def image_size(image: str) -> int | None:
    result = run(["docker", "image", "inspect", "--format", "{{.Size}}", image])
    return int(result.stdout.strip()) if result.returncode == 0 else None


def service_check(m: contract.ReleaseManifest, name: str) -> Callable[[], str | None]:
    """A readiness check of whichever container serves ``name`` at the time it is called."""
    spec = m["services"][name]

    def check() -> str | None:
        info = serving(m["project"], name, spec["config_hash"])
        return probe(info, spec, m["project"]) if info else "no container"
    return check


def cmd_status(args: argparse.Namespace) -> int:
    release = args.release or current_release()
    m = manifest(release)
    ready = read_json(ROOT / contract.READY_FILE, {})
    assert isinstance(ready, dict)
    if args.wait:  # e.g. right after the engine restarted every container: let them come up
        # Not for a service whose dependency on another host stays down for REMOTE_SETTLE:
        # every host of the run has passed its gates by now, so nothing will bring it up
        # within the service's wait, and the report names that dependency at once.
        _, down = stackprobe.poll(
            {key: (lambda s=spec: stackprobe.not_ready(s["address"], s["port"], s["http"]))
             for key, spec in m["remote"].items()},
            dict.fromkeys(m["remote"], time.monotonic() + REMOTE_SETTLE))
        stuck = {consumer for key in down for consumer in m["remote"][key]["consumers"]}
        waited = [name for name in m["services"] if name not in stuck]
        stackprobe.poll({name: service_check(m, name) for name in waited},
             {name: time.monotonic() + m["services"][name]["timeout"] for name in waited})
    rows: dict[str, contract.ServiceStatus] = {}
    lock = threading.Lock()

    def one(name: str) -> None:
        spec = m["services"][name]
        info = serving(m["project"], name, spec["config_hash"])
        row: contract.ServiceStatus = {"container": None, "image": None, "size": None, "state": "missing",
                                       "health": None, "check": "no container", "seconds_to_ready": ready.get(name)}
        if info:
            row.update(container=info["Id"][:12], image=info["Config"]["Image"],
                       size=image_size(info["Config"]["Image"]), state=info["State"]["Status"],
                       health=info["State"].get("Health", {}).get("Status"), started_at=info["State"]["StartedAt"],
                       current=config_hash(info) == spec["config_hash"], check=probe(info, spec, m["project"]) or "ok")
        with lock:
            rows[name] = row

    def remote(key: str, spec: contract.RemoteCheck) -> None:
        reason = stackprobe.not_ready(spec["address"], spec["port"], spec["http"])
        row: contract.ServiceStatus = {"container": None, "image": None, "size": None, "state": "remote",
                                       "health": None, "check": reason or "ok", "seconds_to_ready": None,
                                       "host": spec["host"], "address": f"{spec['address']}:{spec['port']}"}
        with lock:
            rows[key] = row

    local = [] if args.remote_only else list(m["services"])
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, local))
        list(pool.map(remote, m["remote"], m["remote"].values()))
    print(json.dumps({n: rows[n] for n in [*local, *m["remote"]]}, indent=2))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    project = manifest(current_release())["project"]
    for name in args.services:
        info = serving(project, name) or (containers(project, name) or [None])[-1]
        text = last_logs(info["Id"]) if info else "  (no container)"
        print(f"last {LOG_LINES} log lines of {name} on host {args.host}:\n{text}")
    return 0


# ---------------------------------------------------------------- lock

def process_start(pid: int) -> str:
    """Start time of a process (clock ticks since boot), or "" when it does not exist."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def anchor() -> tuple[int, str]:
    """The process whose life is this run's: the first ancestor that is not a shell (the sshd
    session of a remote run, or pyinfra itself on @local). The lock dies with it."""
    pid = os.getppid()
    while pid > 1:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if comm not in SHELLS:
            return pid, process_start(pid)
        pid = parent
    return os.getppid(), process_start(os.getppid())


def holder_alive(holder: contract.LockHolder) -> bool:
    return process_start(holder["anchor_pid"]) == holder["anchor_start"] != ""


def describe(holder: contract.LockHolder) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder["since"]))
    return (f"{holder['user']}@{holder['control_host']} since {since} ({holder['action']} of release "
            f"{holder['release'] or '-'}, process {holder['anchor_pid']})")


def cmd_lock(args: argparse.Namespace) -> int:
    path = ROOT / contract.LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pid, start = anchor()
    current = read_json(path, None)
    mine = bool(current) and current["anchor_pid"] == pid and current["anchor_start"] == start
    request: contract.LockRequest = json.loads(args.holder)
    holder: contract.LockHolder = {**request, "since": time.time(), "anchor_pid": pid, "anchor_start": start}
    if mine:
        print(f"locked host {args.host} (already held by this run)")
        return 0
    if current:
        if holder_alive(current):
            print(f"DEPLOY LOCKED: host {args.host} is held by {describe(current)}. "
                  f"Wait for it to finish.", file=sys.stderr)
            return 1
        if not args.take_over:
            print(f"DEPLOY LOCKED: host {args.host} is held by {describe(current)}, whose process is gone "
                  f"(the run died). Take the lock over with --data take_over_lock=true.", file=sys.stderr)
            return 1
        try:  # a rename succeeds for one taker only
            path.rename(path.with_name(f"{path.name}.stale-{pid}"))
        except FileNotFoundError:
            print(f"DEPLOY LOCKED: host {args.host}: another run took the stale lock over first", file=sys.stderr)
            return 1
        path.with_name(f"{path.name}.stale-{pid}").unlink()
        print(f"took over the stale lock of {describe(current)}")
    # Complete before it is visible: written aside, then linked into place (fails if taken).
    tmp = path.with_name(f".{path.name}.{pid}.tmp")
    tmp.write_text(json.dumps(holder, indent=2, sort_keys=True))
    try:
        os.link(tmp, path)
    except FileExistsError:
        print(f"DEPLOY LOCKED: host {args.host} was locked a moment ago by another run", file=sys.stderr)
        return 1
    finally:
        tmp.unlink()
    if args.expect_current is not None and current_release() != args.expect_current:
        path.unlink()  # another run changed the host after this one read it: its plan is stale
        print(f"DEPLOY REFUSED: host {args.host} changed since this run read it (current release is now "
              f"{current_release() or 'none'}, was {args.expect_current or 'none'}). Run it again.", file=sys.stderr)
        return 1
    print(f"locked host {args.host} for {holder['action']} by {holder['user']}@{holder['control_host']}")
    return 0


# ---------------------------------------------------------------- releases

def releases() -> list[contract.ReleaseRecord]:
    value = read_json(ROOT / contract.RELEASES_FILE, [])
    assert isinstance(value, list)
    return value


def switch_current(release: str) -> None:
    """Point ``current`` at ``release`` with one rename: readers see the old or the new, never none."""
    tmp = ROOT / f".{contract.CURRENT_LINK}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"{contract.RELEASES_DIR}/{release}")
    tmp.replace(ROOT / contract.CURRENT_LINK)


def prune(project: str, keep: int) -> list[str]:
    """Keep the newest ``keep`` good releases (and the current one) with their images; remove
    other release directories and the stack's own images no kept release or container uses."""
    good = [r["id"] for r in releases() if r["result"] == "ok"]
    kept = {*list(dict.fromkeys(reversed(good)))[:keep], current_release()}
    removed = []
    base = ROOT / contract.RELEASES_DIR
    for directory in sorted(base.iterdir()) if base.exists() else []:
        if directory.name not in kept:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory.name)
    manifests = [manifest(r) for r in kept if (release_dir(r) / contract.RELEASE_FILE).exists()]
    wanted = {spec["image"] for m in manifests for spec in m["services"].values()}
    wanted |= {image for m in manifests for image in m.get("builds", [])}
    in_use = set(checked(["docker", "ps", "-a", "--format", "{{.Image}}"]).split())
    current = manifest(current_release())
    namespace = current.get("namespace", project)
    # The stack's images under their registry names too (image_distribution "registry").
    owned = [namespace, *([f"{current['registry']}/{namespace}"] if current.get("registry") else [])]
    listing = run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                   *(arg for prefix in owned for arg in ("--filter", f"reference={prefix}/*"))]).stdout.split()
    stale = [image for image in listing if image not in wanted | in_use]
    if stale:
        run(["docker", "image", "rm", *stale], timeout=300)
    return removed + stale


def audit(actor: contract.Actor, action: str, release: str, changed: list[str], result: str,
          started: float) -> None:
    """Append one line to the audit log (opened in append mode: lines are never rewritten)."""
    entry: contract.AuditEntry = {**actor, "at": time.time(), "action": action, "release": release,
                                  "changed": changed, "result": result, "seconds": round(time.time() - started, 1)}
    path = ROOT / contract.AUDIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")


def cmd_finish(args: argparse.Namespace) -> int:
    """End of a run: on success switch ``current`` and record the release; always audit and unlock."""
    actor: contract.Actor = json.loads(args.actor)
    changed = [s for s in args.changed.split(",") if s]
    holder = read_json(ROOT / contract.LOCK_FILE, None)
    pid, start = anchor()
    if not holder or (holder["anchor_pid"], holder["anchor_start"]) != (pid, start):
        # This run never got the lock (another holds it, or it failed before taking it):
        # record the attempt, touch nothing else.
        audit(actor, args.action, args.release, changed, "refused" if holder else args.result, args.started)
        return 0
    try:
        if args.result == "ok" and args.action in ("deploy", "rollback"):  # backups change no release
            complete(args.release, args.action, args.keep, actor)
        elif args.release != current_release() and (release_dir(args.release) / contract.RELEASE_FILE).exists():
            record(args.release, args.action, "failed", actor)
    finally:  # whatever happened above, the run is over: audit it and unlock
        audit(actor, args.action, args.release, changed, args.result, args.started)
        (ROOT / contract.LOCK_FILE).unlink(missing_ok=True)
    print(f"{args.action} {args.result}: release {args.release}" + (" (now current)" if args.result == "ok" else ""))
    return 0


def record(release: str, action: str, result: str, actor: contract.Actor) -> None:
    m = manifest(release)
    entry: contract.ReleaseRecord = {
        **actor, "id": release, "action": action, "at": time.time(), "result": result,
        "services": {n: {"image": s["image"], "config_hash": s["config_hash"]} for n, s in m["services"].items()},
    }
    write_json(ROOT / contract.RELEASES_FILE, [*releases(), entry])


def complete(release: str, action: str, keep: int, actor: contract.Actor) -> None:
    """A good run: switch ``current``, record the release, remove orphans, prune, drop old layout files."""
    if release != current_release() or action == "rollback":
        switch_current(release)
        record(release, action, "ok", actor)
    m = manifest(release)
    orphans = [c for c in containers(m["project"]) if service_of(c) not in m["services"]]
    for orphan in orphans:  # services no longer placed here; compose set StopTimeout from stop_grace
        retire([orphan], orphan["Config"].get("StopTimeout") or 20)
    removed = prune(m["project"], keep) + [name_of(c) for c in orphans]
    if removed:
        print(f"removed: {', '.join(removed)}")
    for legacy in ("compose.yaml", "compose.build.yaml", "env", "services", "images", "nginx",
                   "state/applied", "state/checks.json"):  # files of the layout before releases
        path = ROOT / legacy
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def cmd_releases(args: argparse.Namespace) -> int:
    base = ROOT / contract.RELEASES_DIR
    present = sorted(d.name for d in base.iterdir()) if base.exists() else []
    listing: contract.ReleaseListing = {
        "current": current_release(), "present": present, "releases": releases(),
        "manifests": {r: manifest(r) for r in present if (release_dir(r) / contract.RELEASE_FILE).exists()}}
    print(json.dumps(listing, indent=2))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=socket.gethostname(), help="host name used in messages")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build")
    build.add_argument("--release", required=True)
    build.add_argument("services", nargs="+")
    build.set_defaults(func=cmd_build)
    up = sub.add_parser("up")
    up.add_argument("--release", required=True)
    up.add_argument("services", nargs="*")
    up.set_defaults(func=cmd_up)
    status = sub.add_parser("status")
    status.add_argument("--release", default="")
    status.add_argument("--wait", action="store_true", help="first wait (within each timeout) for every service")
    status.add_argument("--remote-only", action="store_true",
                        help="only the dependencies on other hosts (this host's own were read from Docker)")
    status.set_defaults(func=cmd_status)
    logs = sub.add_parser("logs")
    logs.add_argument("services", nargs="+")
    logs.set_defaults(func=cmd_logs)
    lock = sub.add_parser("lock")
    lock.add_argument("action", choices=("acquire",))
    lock.add_argument("--holder", default="{}", help="JSON: user, control_host, commit, action, release")
    lock.add_argument("--take-over", action="store_true", help="take over a lock whose holder died")
    lock.add_argument("--expect-current", help="refuse unless this is still the current release")
    lock.set_defaults(func=cmd_lock)
    finish = sub.add_parser("finish")
    finish.add_argument("--release", required=True)
    finish.add_argument("--action", default="deploy")
    finish.add_argument("--result", choices=("ok", "failed"), required=True)
    finish.add_argument("--changed", default="")
    finish.add_argument("--actor", default='{"user": "", "control_host": "", "commit": ""}')
    finish.add_argument("--started", type=float, default=time.time())
    finish.add_argument("--keep", type=int, default=5)
    finish.set_defaults(func=cmd_finish)
    sub.add_parser("releases").set_defaults(func=cmd_releases)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Failed as exc:
        print(f"stackctl {args.command} failed on host {args.host}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

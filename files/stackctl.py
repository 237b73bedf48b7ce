#!/usr/bin/env python3
"""Host-side helper of the deploy (standard library only; runs on each Docker host).

pyinfra decides *what* must change (from facts, before anything runs); this script does
the parts that need a loop on the host itself:

    stackctl.py build SVC...          build images in parallel, one log per service
    stackctl.py up SVC=HASH...        (re)create a wave's services, then gate on readiness
    stackctl.py gate SVC...           wait until services are ready (poll every 0.2 s)
    stackctl.py status                one probe of every service, as JSON
    stackctl.py logs SVC...           the last log lines of services

Readiness is probed directly (TCP connect / HTTP 200 to the container's address, or a
command inside it), never by sleeping and never by waiting for Docker's own health
interval. A failure prints the service, the host, the check's output and the last log
lines, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

POLL_SECONDS = 0.2
LOG_LINES = 30
# A build step in plain progress output: "#7 [builder 3/5] RUN ..." (FROM lines are the
# base image, not steps of ours, and are not counted).
STEP_RE = re.compile(r"^#(\d+) \[[^\]]*\d+/\d+\] (?!FROM )")
CACHED_RE = re.compile(r"^#(\d+) CACHED")
ROOT = Path(__file__).resolve().parent
STATE = ROOT / "state"


def run(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def compose(*args: str, file: str = "compose.yaml") -> list[str]:
    return ["docker", "compose", "--project-directory", str(ROOT), "-f", str(ROOT / file), *args]


def project() -> str:
    return os.environ.get("STACK_PROJECT") or json.loads((STATE / "project.json").read_text())["name"]


def checks() -> dict[str, dict]:
    """Readiness checks of the services on this host."""
    return json.loads((STATE / "checks.json").read_text())["local"]


def remote_checks() -> dict[str, dict]:
    """Dependencies on other hosts, keyed "service@host", as this host must reach them."""
    return json.loads((STATE / "checks.json").read_text())["remote"]


def update_json(path: Path, values: dict) -> None:
    """Merge ``values`` into a JSON object file (created when missing)."""
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(values)
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- build

def build_one(service: str) -> dict:
    logs = ROOT / "logs"
    logs.mkdir(exist_ok=True)
    log_path = logs / f"build-{service}.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        result = subprocess.run(compose("build", "--progress", "plain", service, file="compose.build.yaml"), stdout=log,
                                stderr=subprocess.STDOUT, text=True, check=False)
    text = log_path.read_text(errors="replace").splitlines()
    steps = {m.group(1) for line in text if (m := STEP_RE.match(line))}
    cached = {m.group(1) for line in text if (m := CACHED_RE.match(line))} & steps
    return {"service": service, "ok": result.returncode == 0, "seconds": round(time.monotonic() - started, 1),
            "steps": len(steps), "cached": len(cached), "log": str(log_path), "tail": text[-LOG_LINES:]}


def cmd_build(args: argparse.Namespace) -> int:
    with ThreadPoolExecutor(max_workers=max(1, len(args.services))) as pool:
        results = list(pool.map(build_one, args.services))
    report = {}
    for r in results:
        state = "built" if r["ok"] else "FAILED"
        print(f"build {r['service']}: {state} in {r['seconds']}s, {r['cached']}/{r['steps']} steps cached")
        report[r["service"]] = {k: r[k] for k in ("ok", "seconds", "steps", "cached")}
    update_json(STATE / "builds.json", report)
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print(f"\nBUILD FAILED: service '{r['service']}' on host {args.host} (full log: {r['log']})", file=sys.stderr)
        print("\n".join(f"  | {line}" for line in r["tail"]), file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------- readiness

def containers(names: list[str]) -> dict[str, dict]:
    """Inspect the compose containers of ``names`` (missing ones are left out)."""
    listing = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project()}"])
    ids = listing.stdout.split()
    if not ids:
        return {}
    found = {}
    for info in json.loads(run(["docker", "inspect", *ids]).stdout or "[]"):
        service = info["Config"]["Labels"].get("com.docker.compose.service")
        if service in names:
            found[service] = info
    return found


def container_address(info: dict) -> str | None:
    networks = info["NetworkSettings"]["Networks"]
    preferred = networks.get(f"{project()}_backend") or next(iter(networks.values()), None)
    return (preferred or {}).get("IPAddress") or None


def probe_address(address: str, port: int, http: str | None, tcp: bool = True) -> str | None:
    """None when ``address:port`` answers (TCP connect, and HTTP 200 on ``http``), else why not."""
    try:
        if tcp:
            with socket.create_connection((address, port), timeout=1.0):
                pass
        if http:
            with urllib.request.urlopen(f"http://{address}:{port}{http}", timeout=2.0) as response:  # noqa: S310
                if response.status != 200:
                    return f"GET {http} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"GET {http} answered {exc.code}: {exc.read(300).decode(errors='replace')}"
    except OSError as exc:
        return f"{address}:{port} not answering: {exc}"
    return None


def probe(info: dict, spec: dict) -> str | None:
    """None when ready, else why not."""
    state = info["State"]
    if not state.get("Running") or state.get("Restarting"):
        return f"container is {state.get('Status')} (exit code {state.get('ExitCode')})"
    address = container_address(info)
    if address is None:
        return "container has no network address yet"
    reason = probe_address(address, spec["port"], spec.get("http"), bool(spec.get("tcp")))
    if reason:
        return reason
    if spec.get("command"):
        result = run(["docker", "exec", info["Id"], *spec["command"]], timeout=10)
        if result.returncode != 0:
            out = (result.stdout + result.stderr).strip()[-300:]
            return f"check command {spec['command'][0]} exited {result.returncode}: {out}"
    return None


def fatal_state(info: dict) -> str | None:
    """A container that crashed repeatedly will not become ready: stop waiting early."""
    state = info["State"]
    if state.get("Status") in ("exited", "dead") and info["HostConfig"]["RestartPolicy"]["Name"] == "no":
        return f"container exited with code {state.get('ExitCode')}"
    if info.get("RestartCount", 0) >= 3:
        return f"container restarted {info['RestartCount']} times (last exit code {state.get('ExitCode')})"
    return None


def last_logs(name: str) -> str:
    info = containers([name]).get(name)
    if not info:
        return "  (no container)"
    result = run(["docker", "logs", "--tail", str(LOG_LINES), info["Id"]])
    lines = (result.stdout + result.stderr).splitlines()[-LOG_LINES:]
    return "\n".join(f"  | {line}" for line in lines) or "  (no log output)"


def gate(names: list[str], host: str, started: float | None = None) -> dict[str, float]:
    """Wait for every service in ``names``; return seconds to ready, or raise SystemExit."""
    specs = checks()
    started = started or time.monotonic()
    ready: dict[str, float] = {}
    failed: dict[str, str] = {}
    pending = list(names)
    while pending:
        infos = containers(pending)
        elapsed = time.monotonic() - started
        for name in pending:
            info = infos.get(name)
            reason = "no container" if info is None else probe(info, specs[name])
            if reason is None:
                ready[name] = round(time.monotonic() - started, 2)
                print(f"ready {name} after {ready[name]:.1f}s", flush=True)
                continue
            fatal = fatal_state(info) if info else None
            if fatal or elapsed > specs[name]["timeout"]:
                failed[name] = fatal or f"not ready within {specs[name]['timeout']:g}s: {reason}"
        pending = [n for n in names if n not in ready and n not in failed]
        if pending:
            time.sleep(POLL_SECONDS)
    for name, why in failed.items():
        print(f"\nSERVICE FAILED: '{name}' on host {host}: {why}\nlast {LOG_LINES} log lines of {name}:\n"
              f"{last_logs(name)}", file=sys.stderr)
    if failed:
        raise SystemExit(1)
    return ready


def cmd_logs(args: argparse.Namespace) -> int:
    for name in args.services:
        print(f"last {LOG_LINES} log lines of {name} on host {args.host}:\n{last_logs(name)}")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    gate(args.services, args.host)
    return 0


def wait_for_remote(services: list[str], host: str) -> None:
    """Before starting ``services``, wait until their dependencies on other hosts answer
    from here (bounded by the consumer's timeout); fail naming the remote host and service."""
    specs, timeouts = remote_checks(), checks()
    needed = {key: spec for key, spec in specs.items() if set(spec["consumers"]) & set(services)}
    deadline = time.monotonic() + max((timeouts[s]["timeout"] for s in services), default=0)
    reasons: dict[str, str] = {}
    while needed:
        for key, spec in list(needed.items()):
            reason = probe_address(spec["address"], spec["port"], spec["http"])
            if reason is None:
                print(f"reachable {spec['service']} on host {spec['host']} ({spec['address']}:{spec['port']})",
                      flush=True)
                del needed[key]
            else:
                reasons[key] = reason
        if needed and time.monotonic() > deadline:
            for key, spec in needed.items():
                print(f"\nSERVICE FAILED: '{spec['service']}' on host {spec['host']} is not reachable from host "
                      f"{host} ({spec['address']}:{spec['port']}), needed by {', '.join(spec['consumers'])}: "
                      f"{reasons[key]}", file=sys.stderr)
            raise SystemExit(1)
        if needed:
            time.sleep(POLL_SECONDS)


def cmd_up(args: argparse.Namespace) -> int:
    wanted = dict(item.split("=", 1) for item in args.services)
    wait_for_remote(list(wanted), args.host)
    started = time.monotonic()
    result = run(compose("up", "-d", "--no-deps", "--no-build", *wanted))
    if result.returncode != 0:
        print(f"SERVICE FAILED: 'docker compose up' for {', '.join(wanted)} on host {args.host}:\n"
              f"{result.stderr.strip()}", file=sys.stderr)
        return 1
    ready = gate(list(wanted), args.host, started)
    update_json(STATE / "waves.json", {",".join(sorted(wanted)): round(time.monotonic() - started, 2)})
    applied = STATE / "applied"
    applied.mkdir(exist_ok=True)
    for name, config_hash in wanted.items():
        (applied / name).write_text(config_hash + "\n")
    update_json(STATE / "ready.json", ready)
    return 0


# ---------------------------------------------------------------- status

def image_size(image: str) -> int | None:
    result = run(["docker", "image", "inspect", "--format", "{{.Size}}", image])
    return int(result.stdout.strip()) if result.returncode == 0 else None


def cmd_status(args: argparse.Namespace) -> int:
    specs = checks()
    infos = containers(list(specs))
    ready = json.loads((STATE / "ready.json").read_text()) if (STATE / "ready.json").exists() else {}
    rows: dict[str, dict] = {}
    lock = threading.Lock()

    def one(name: str) -> None:
        info = infos.get(name)
        row = {"container": None, "image": None, "size": None, "state": "missing",
               "health": None, "check": "no container", "seconds_to_ready": ready.get(name)}
        if info:
            health = info["State"].get("Health", {}).get("Status")
            row.update(container=info["Id"][:12], image=info["Config"]["Image"],
                       size=image_size(info["Config"]["Image"]), state=info["State"]["Status"],
                       health=health, started_at=info["State"]["StartedAt"],
                       check=probe(info, specs[name]) or "ok")
        with lock:
            rows[name] = row

    def remote(key: str, spec: dict) -> None:
        reason = probe_address(spec["address"], spec["port"], spec["http"])
        with lock:
            rows[key] = {"container": None, "image": None, "size": None, "state": "remote", "health": None,
                         "check": reason or "ok", "seconds_to_ready": None,
                         "host": spec["host"], "address": f"{spec['address']}:{spec['port']}"}

    remotes = remote_checks()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, specs))
        list(pool.map(remote, remotes, remotes.values()))
    print(json.dumps({n: rows[n] for n in [*specs, *remotes]}, indent=2))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=socket.gethostname(), help="host name used in messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("build", cmd_build), ("up", cmd_up), ("gate", cmd_gate), ("logs", cmd_logs)):
        p = sub.add_parser(name)
        p.add_argument("services", nargs="+")
        p.set_defaults(func=func)
    sub.add_parser("status").set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Benchmark rollouts under load: what a client sees while the stack changes.

A load client (benchmarks/loadgen.py: keep-alive and new-connection clients that never retry,
60 req/s over the four apps' health routes, bounded in time and count, loopback only) runs
through the gateway while, one after the other, each app gets a code change, creator-hub a
config change, auth-service a broken release, and the stack is rolled back. Then each app
gets REPEATS config changes in a row, every one a rolling update. For each: failed requests,
the longest gap, the deploy's wall time, and whether nginx reloaded (its worker pids changed).
For comparison, the same load during a plain ``docker compose up -d --force-recreate`` of one
app (what a redeploy did before rolling updates). WebSockets to channel-service are watched
during its change.

Uses its own stack ("rollbench", port 28180). Prints a table and writes
benchmarks/results/<date>-rollouts.md and benchmarks/results/rollouts.json.

    .venv/bin/python benchmarks/run_rollouts.py [--repeats N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import HttpLoad, SocketWatch, register_and_login  # noqa: E402
from stackdeploy import contract  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PYINFRA = Path(sys.executable).parent / "pyinfra"
STACK = "rollbench"
DEPLOY_DIR = "/var/tmp/stackdeploy-rollbench"
GATEWAY = "https://127.0.0.1:28543"  # plain HTTP on 28180 redirects
STACK_CA = str(ROOT / ".deploy" / "tls" / "rollbench-rollbench" / "ca.pem")
HOST_DATA: dict[str, Any] = {"stack_name": STACK, "deploy_dir": DEPLOY_DIR, "gateway_port": 28180,
                             "gateway_bind": "127.0.0.1", "environment": "rollbench",
                             "tls": {"source": "self-signed", "port": 28543, "server_names": ["localhost"]},
                             # Beside the default stack: loopback ports of its own.
                             "service_overrides": {"log-store": {"port": 26514}, "prometheus": {"publish": 29090}}}
PATHS = ["/api/auth/health", "/api/creators/health", "/api/ai/health", "/api/channels/health"]
APPS = ["auth-service", "creator-hub", "ai-engine", "channel-service"]
REPEATS = 10


def gateway_workers() -> set[str]:
    """Pids of the bench gateway's nginx workers: a reload replaces every one of them."""
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={STACK}",
                          "--filter", "label=com.docker.compose.service=api-gateway"],
                         capture_output=True, text=True, timeout=30, check=True).stdout.split()
    top = subprocess.run(["docker", "top", ids[0], "-eo", "pid,args"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return {line.split()[0] for line in top.splitlines()[1:] if "worker process" in line}


def pyinfra(workdir: Path, script: str, extra: dict | None = None, root: Path = ROOT) -> tuple[int, float, str]:
    inventory = workdir / f"inv_{uuid.uuid4().hex[:8]}.py"
    overrides = {**HOST_DATA["service_overrides"]}
    for service, settings in (extra or {}).get("service_overrides", {}).items():
        overrides[service] = {**overrides.get(service, {}), **settings}
    data = {**HOST_DATA, **(extra or {}), "service_overrides": overrides}
    inventory.write_text(f"bench = [('@local', {data!r})]\n")
    started = time.monotonic()
    result = subprocess.run([str(PYINFRA), "-y", str(inventory), script], cwd=root, capture_output=True,
                            text=True, timeout=3600, check=False)
    return result.returncode, time.monotonic() - started, result.stdout + result.stderr


def under_load(action, socket_url: str | None = None, paths: list[str] = PATHS) -> dict[str, Any]:
    """Run ``action`` (returns (returncode, seconds, output)) with the load client running on ``paths``."""
    watch = SocketWatch(socket_url, max_seconds=900, ca_file=STACK_CA) if socket_url else None
    workers = gateway_workers()
    with HttpLoad(GATEWAY, paths, rate=60.0, max_seconds=900, max_requests=60_000, ca_file=STACK_CA,
                  retry_closed_keepalive=False) as load:
        if watch:
            watch.start()
        time.sleep(1.0)
        code, seconds, output = action()
        time.sleep(1.0)
        if watch:
            watch.stop()
    row = {"ok": code == 0, "deploy_s": round(seconds, 1), "requests": load.result.total,
           "failed": load.result.failed, "gap_s": round(load.result.longest_gap_seconds, 2),
           "rate": round(load.result.requests_per_second, 1), "reloaded": gateway_workers() != workers,
           "failures": [reason for _, _, reason in load.result.failures][:5],
           "rolled": sorted(set(re.findall(r"([\w-]+) \(rolling\)", output)))}
    if watch:
        row["ws_close_codes"] = sorted(set(watch.result.close_codes))
        row["ws_failed_connects"] = watch.result.failed_connects
    if code != 0 and "SERVICE FAILED" not in output:
        raise RuntimeError(f"unexpected failure:\n{output[-4000:]}")
    return row


def code_change(copy: Path, service: str, broken: bool = False) -> None:
    main = copy / "files" / "services" / service / "app" / "main.py"
    original = (ROOT / "files" / "services" / service / "app" / "main.py").read_text()
    tail = "raise RuntimeError('broken release')" if broken else "# benchmark change"
    main.write_text(original + f"\n{tail}  # {uuid.uuid4().hex}\n")


def reset() -> None:
    subprocess.run(["docker", "compose", "-p", STACK, "down", "-v", "--remove-orphans"], capture_output=True,
                   timeout=600, check=False)
    # The routes network is the deploy's own (compose.yaml names it external): compose leaves it.
    subprocess.run(["docker", "network", "rm", contract.routes_network(STACK)], capture_output=True, timeout=60,
                   check=False)
    shutil.rmtree(DEPLOY_DIR, ignore_errors=True)


def main(repeats: int) -> int:
    reset()
    workdir = Path(tempfile.mkdtemp(prefix="rollbench-"))
    copy = workdir / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".deploy", ".git", "__pycache__"))
    (ROOT / ".deploy").mkdir(exist_ok=True)
    (copy / ".deploy").symlink_to(ROOT / ".deploy")  # the stack's CA where STACK_CA names it
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "rows": {}}
    try:
        code, seconds, output = pyinfra(workdir, "deploy.py", root=copy)
        if code != 0:
            raise RuntimeError(output[-4000:])
        results["cold_deploy_s"] = round(seconds, 1)
        token = register_and_login(GATEWAY, ca_file=STACK_CA)
        socket_url = f"wss://127.0.0.1:28543/api/channels/ws/lobby?token={token}"
        rows = results["rows"]
        for service in APPS:
            code_change(copy, service)
            rows[f"code change {service}"] = under_load(lambda: pyinfra(workdir, "deploy.py", root=copy),
                                                        socket_url if service == "channel-service" else None)
            print(f"code change {service}: {rows[f'code change {service}']}", flush=True)
        env = {"service_overrides": {"creator-hub": {"env": {"BENCH": uuid.uuid4().hex[:8]}}}}
        rows["config change creator-hub"] = under_load(lambda: pyinfra(workdir, "deploy.py", env, copy))
        code_change(copy, "auth-service", broken=True)
        rows["broken release auth-service"] = under_load(lambda: pyinfra(workdir, "deploy.py", env, copy))
        code_change(copy, "auth-service")
        rows["rollback (previous release)"] = under_load(lambda: pyinfra(workdir, "rollback.py", env, copy))

        # Unmeasured: the stack as the copy's code renders it (the rollback left an older release),
        # so that each change below rolls only the app it changes.
        settled, _, output = pyinfra(workdir, "deploy.py", root=copy)
        if settled != 0:
            raise RuntimeError(output[-4000:])
        marks: dict[str, str] = {}
        for service in APPS:
            runs = []
            for _ in range(repeats):
                marks[service] = uuid.uuid4().hex[:8]  # the other apps keep theirs: only this one changes
                env = {"service_overrides": {name: {"env": {"BENCH": mark}} for name, mark in marks.items()}}
                runs.append(under_load(lambda env=env: pyinfra(workdir, "deploy.py", env, copy)))
                if not runs[-1]["ok"] or runs[-1]["rolled"] != [service]:
                    raise RuntimeError(f"config change of {service} was not a rolling update: {runs[-1]}")
            rows[f"{repeats} config changes {service}"] = {
                "ok": True, "deploy_s": round(sum(r["deploy_s"] for r in runs) / repeats, 1),
                "requests": sum(r["requests"] for r in runs), "failed": sum(r["failed"] for r in runs),
                "gap_s": max(r["gap_s"] for r in runs), "reloaded": any(r["reloaded"] for r in runs),
                "failures": [f for r in runs for f in r["failures"]][:5], "rolled": [service]}
            print(f"{repeats} config changes {service}: {rows[f'{repeats} config changes {service}']}", flush=True)

        def plain_recreate() -> tuple[int, float, str]:
            started = time.monotonic()
            result = subprocess.run(["docker", "compose", "-p", STACK, "--project-directory", f"{DEPLOY_DIR}/current",
                                     "-f", f"{DEPLOY_DIR}/current/compose.yaml", "up", "-d", "--no-deps",
                                     "--force-recreate", "--wait", "auth-service"], capture_output=True,
                                    text=True, timeout=600, check=False)
            return result.returncode, time.monotonic() - started, result.stdout + result.stderr

        # Last: a container compose recreates by itself has no live alias, so the gateway has no
        # auth-service until a deploy rolls it again.
        rows["plain compose recreate auth-service (before)"] = under_load(plain_recreate)
    finally:
        reset()
        shutil.rmtree(workdir, ignore_errors=True)
    write(results)
    return 0


def write(results: dict[str, Any]) -> None:
    header = (f"{'scenario':<46} {'result':<11} {'deploy s':>8} {'requests':>8} {'failed':>6} {'gap s':>6} "
              f"{'reload':>6}  websockets")
    lines = [header, "-" * len(header)]
    for name, row in results["rows"].items():
        ws = (f"close codes {row['ws_close_codes']}, failed connects {row['ws_failed_connects']}"
              if "ws_close_codes" in row else "-")
        # A run that failed here failed its gate and was rolled back (anything else raises).
        outcome = "ok" if row["ok"] else "rolled back"
        reloaded = {True: "yes", False: "no"}.get(row.get("reloaded"), "-")
        lines.append(f"{name:<46} {outcome:<11} {row['deploy_s']:>8.1f} {row['requests']:>8} "
                     f"{row['failed']:>6} {row['gap_s']:>6.2f} {reloaded:>6}  {ws}")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    day = results["date"][:10]
    (RESULTS / f"{day}-rollouts.md").write_text(
        f"# Rollouts under load, {results['date']}\n\nLoad: 60 req/s through the gateway (2 keep-alive and 2 "
        f"new-connection clients, neither retrying) over the four apps' /health routes; 2 WebSockets during "
        f"the channel-service change. Cold deploy of the bench stack: {results['cold_deploy_s']} s."
        f"\n\n```\n{table}\n```\n")
    (RESULTS / "rollouts.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--rewrite"]:  # re-render the table of the last run (benchmarks/results/rollouts.json)
        write(json.loads((RESULTS / "rollouts.json").read_text()))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help="config changes per app in a row")
    sys.exit(main(parser.parse_args().repeats))

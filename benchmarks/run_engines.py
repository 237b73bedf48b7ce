#!/usr/bin/env python3
"""Benchmark the two engines on the same three simulated hosts: compose-per-host and swarm.

For each engine, with every image already on the hosts (builds are the same for both):
1. cold start: the stack removed (volumes kept), then deploy.py until verified;
2. no-op: deploy.py again with nothing changed;
3. one-app update: an env change of auth-service, under HTTP load through the gateway
   (failed requests counted);
4. node loss: the app node h2 killed (simhosts.py stop --crash) under load; measured is the
   time until auth-service runs its wanted tasks again and the failed requests. The compose
   engine does not move services between hosts: it only keeps serving from the app
   instance on h3 (the gateway's upstream), and h2's instance is back only with h2.

Loopback and the simulated hosts' addresses only; every wait is bounded. Prints a table and
writes benchmarks/results/<date>-engines.md and benchmarks/results/engines.json.

    .venv/bin/python benchmarks/run_engines.py      (as root; simulated hosts come up by themselves)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import HttpLoad  # noqa: E402

STACK_CA = str(ROOT / ".deploy" / "tls" / "creatorstack-simhosts" / "ca.pem")
RESULTS = ROOT / "benchmarks" / "results"
PYINFRA = Path(sys.executable).parent / "pyinfra"
SIMHOSTS = [sys.executable, str(ROOT / "tests" / "hosts" / "simhosts.py")]
INVENTORY = {"swarm": "tests/hosts/inventory_swarm.py"}
RECOVERY_LIMIT_SECONDS = 180


def pyinfra(engine: str, script: str, extra: dict | None = None) -> tuple[int, float, str]:
    """A run over the swarm inventory's hosts and groups (auth-service on the two app nodes,
    h2 and h3), with ``engine`` given as host data so both engines place alike."""
    env = {**os.environ, "SIMHOSTS_EXTRA_DATA": json.dumps({**(extra or {}), "engine": engine})}
    started = time.monotonic()
    result = subprocess.run([str(PYINFRA), "-y", INVENTORY["swarm"], script], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=3600, check=False)
    return result.returncode, time.monotonic() - started, result.stdout + result.stderr


def docker(host: dict, *args: str) -> str:
    return subprocess.run(["docker", "-H", host["docker_host"], *args], capture_output=True, text=True,
                          timeout=120, check=False).stdout


def remove_stack(hosts: list[dict], engine: str) -> None:
    """Every container of the stack gone, volumes and images kept."""
    if engine == "swarm":
        docker(hosts[0], "stack", "rm", "creatorstack")
    deadline = time.monotonic() + 120
    for host in hosts:
        while time.monotonic() < deadline:
            ids = docker(host, "ps", "-aq", "--filter", "label=com.docker.compose.project=creatorstack").split()
            if engine == "compose" and ids:
                docker(host, "rm", "-f", *ids)
            if not ids:
                break
            time.sleep(1)


def auth_running(hosts: list[dict], engine: str) -> int:
    if engine == "swarm":
        out = docker(hosts[0], "service", "ps", "--filter", "desired-state=running", "--format",
                     "{{.CurrentState}}", "creatorstack_auth-service")
        return sum(1 for line in out.splitlines() if line.startswith("Running"))
    return sum(1 for h in hosts[1:] if "auth-service" in docker(h, "ps", "--format", "{{.Names}}"))


def measure(engine: str, hosts: list[dict], gateway: str) -> dict:
    extra = {"service_overrides": {"auth-service": {"replicas": 2}}} if engine == "swarm" else {}
    if engine == "swarm":
        code, _, output = pyinfra(engine, "provision.py", extra)
        assert code == 0, output[-3000:]
    code, _, output = pyinfra(engine, "deploy.py", extra)  # the switch, and images everywhere
    assert code == 0, output[-3000:]
    remove_stack(hosts, engine)
    code, cold, output = pyinfra(engine, "deploy.py", extra)
    assert code == 0, output[-3000:]
    code, noop, output = pyinfra(engine, "deploy.py", extra)
    assert code == 0, output[-3000:]
    changed = json.loads(json.dumps(extra))
    changed.setdefault("service_overrides", {}).setdefault("auth-service", {})["env"] = {"MARK": uuid.uuid4().hex}
    with HttpLoad(gateway, ["/api/auth/health"], rate=20, max_seconds=900, ca_file=STACK_CA) as load:
        code, update, output = pyinfra(engine, "deploy.py", changed)
    assert code == 0, output[-3000:]
    update_failed = load.result.failed
    wanted = auth_running(hosts, engine)
    with HttpLoad(gateway, ["/api/auth/health"], rate=20, max_seconds=RECOVERY_LIMIT_SECONDS + 30,
                  ca_file=STACK_CA) as load:
        time.sleep(2)  # pacing: traffic before the loss
        lost_at = time.monotonic()
        subprocess.run([*SIMHOSTS, "stop", "--host", "h2", "--crash"], check=True, timeout=120)
        recovered = None
        while time.monotonic() - lost_at < RECOVERY_LIMIT_SECONDS:
            if engine == "swarm" and auth_running(hosts, engine) >= wanted:
                recovered = time.monotonic() - lost_at
                break
            if engine == "compose" and time.monotonic() - lost_at > 30:
                break  # nothing to wait for: compose does not reschedule
            time.sleep(1)  # pacing of a bounded poll
    loss_failed = load.result.failed
    loss_total = load.result.total
    subprocess.run([*SIMHOSTS, "up", "--count", "3"], check=True, timeout=300, capture_output=True)
    return {"cold_start_s": round(cold, 1), "noop_s": round(noop, 1), "update_s": round(update, 1),
            "update_failed_requests": update_failed, "node_loss_recovery_s": None if recovered is None
            else round(recovered, 1), "node_loss_failed_requests": f"{loss_failed}/{loss_total}"}


def main() -> int:
    state = json.loads(subprocess.run([*SIMHOSTS, "up", "--count", "3"], capture_output=True, text=True,
                                      check=True, timeout=300).stdout)
    hosts = state["hosts"]
    gateway = f"https://{hosts[2]['address']}:8443"
    results = {engine: measure(engine, hosts, gateway) for engine in ("compose", "swarm")}
    pyinfra("compose", "deploy.py")  # leave the hosts on the default engine
    for host in hosts:
        docker(host, "swarm", "leave", "--force")
    keys = list(results["compose"])
    lines = ["| measure | compose | swarm |", "|---|---|---|"]
    lines += [f"| {key} | {results['compose'][key]} | {results['swarm'][key]} |" for key in keys]
    table = "\n".join(lines)
    print(table)
    day = dt.date.today().isoformat()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{day}-engines.md").write_text(
        f"# Engines on three simulated hosts ({day})\n\nbenchmarks/run_engines.py; images present on the "
        "hosts (builds are the same for both engines).\n\n" + table + "\n")
    (RESULTS / "engines.json").write_text(json.dumps({"date": day, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

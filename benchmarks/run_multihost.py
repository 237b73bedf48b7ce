#!/usr/bin/env python3
"""Benchmark many hosts: 3 simulated hosts against 1, and build-everywhere against
build-once-and-ship. Run as root; uses tests/hosts/simhosts.py (and wipes its hosts).

Every cold run starts from empty hosts (no images, no build cache, no volumes). Prints a
table and writes benchmarks/results/<date>-multi-host.md and multi-host.json.

    .venv/bin/python benchmarks/run_multihost.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PYINFRA = Path(sys.executable).parent / "pyinfra"
SIMHOSTS = [sys.executable, str(ROOT / "tests" / "hosts" / "simhosts.py")]
THREE_HOSTS = str(ROOT / "tests" / "hosts" / "inventory.py")
ONE_HOST = """\
import json
from pathlib import Path
_state = json.loads(Path("/var/lib/stackdeploy-simhosts/hosts.json").read_text())
_h = _state["hosts"][0]
single = [(_h["address"], {"ssh_user": "root", "ssh_key": _state["ssh_key"], "ssh_known_hosts_file": "/dev/null",
                           "ssh_strict_host_key_checking": "off", "environment": "simhosts",
                           "private_address": _h["address"]})]
"""


def fresh_hosts(count: int) -> None:
    subprocess.run([*SIMHOSTS, "down", "--purge"], check=True, capture_output=True, timeout=600)
    subprocess.run([*SIMHOSTS, "up", "--count", str(count)], check=True, capture_output=True, timeout=600)


def deploy(inventory: str, extra: dict | None = None) -> float:
    env = {**os.environ, "SIMHOSTS_EXTRA_DATA": json.dumps(extra or {})}
    started = time.monotonic()
    result = subprocess.run([str(PYINFRA), "-y", inventory, "deploy.py"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=3600, check=False)
    if result.returncode != 0:
        raise RuntimeError((result.stdout + result.stderr)[-5000:])
    return time.monotonic() - started


def main() -> None:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        one_host = Path(work) / "single.py"
        one_host.write_text(ONE_HOST)

        fresh_hosts(3)
        # Both modes are named explicitly: the default (build-once) must not be measured twice.
        everywhere = {"image_distribution": "build-everywhere"}
        results["three_build_everywhere_s"] = deploy(THREE_HOSTS, everywhere)
        print(f"3 hosts, cold, build-everywhere: {results['three_build_everywhere_s']:.1f}s", flush=True)
        results["three_noop_s"] = deploy(THREE_HOSTS, everywhere)
        print(f"3 hosts, no-op: {results['three_noop_s']:.1f}s", flush=True)

        fresh_hosts(3)
        results["three_build_once_s"] = deploy(THREE_HOSTS, {"image_distribution": "build-once"})
        print(f"3 hosts, cold, build-once + ship: {results['three_build_once_s']:.1f}s", flush=True)
        results["three_build_once_noop_s"] = deploy(THREE_HOSTS, {"image_distribution": "build-once"})

        fresh_hosts(1)
        results["one_host_s"] = deploy(str(one_host))
        print(f"1 host, cold: {results['one_host_s']:.1f}s", flush=True)
        results["one_host_noop_s"] = deploy(str(one_host))
        subprocess.run([*SIMHOSTS, "down", "--purge"], check=False, capture_output=True, timeout=600)

    best = min(results["three_build_everywhere_s"], results["three_build_once_s"])
    rows = [
        ("1 host, cold (SSH, offline images)", results["one_host_s"]),
        ("3 hosts, cold, build-everywhere", results["three_build_everywhere_s"]),
        ("3 hosts, cold, build-once + ship over SSH", results["three_build_once_s"]),
        ("1 host, no-op", results["one_host_noop_s"]),
        ("3 hosts, no-op (build-everywhere)", results["three_noop_s"]),
        ("3 hosts, no-op (build-once)", results["three_build_once_noop_s"]),
    ]
    table = "\n".join(f"{name:<45} {seconds:7.1f} s" for name, seconds in rows)
    table += f"\n{'ratio 3 hosts (faster mode) / 1 host':<45} {best / results['one_host_s']:7.2f}   (target <= 1.3)"
    date = dt.datetime.now(dt.UTC)
    header = (f"machine: {os.cpu_count()} CPUs, hosts are network namespaces on this one machine; "
              f"{date:%Y-%m-%d %H:%M} UTC")
    print("\n" + header + "\n" + table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = f"# Multi-host benchmark\n\n{header}\n\n```\n{table}\n```\n"
    (RESULTS / f"{date:%Y-%m-%d}-multi-host.md").write_text(report)
    (RESULTS / "multi-host.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

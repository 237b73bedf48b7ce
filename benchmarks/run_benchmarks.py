#!/usr/bin/env python3
"""Benchmark the deploy against itself and against plain `docker compose up --build --wait`.

Runs on one machine, in one go, against a separate "bench" stack (port 28080) so it never
touches another stack. Prints a table and writes benchmarks/results/<date>.md plus
benchmarks/results/latest.json. Each scenario is one real run (no repeats): compare
numbers across runs on the same machine, not across machines.

    .venv/bin/python benchmarks/run_benchmarks.py [--skip-full-cold]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PYINFRA = Path(sys.executable).parent / "pyinfra"
STACK = "bench"
DEPLOY_DIR = "/var/tmp/stackdeploy-bench"
HOST_DATA: dict[str, Any] = {"stack_name": STACK, "deploy_dir": DEPLOY_DIR, "gateway_port": 28080,
                             "gateway_bind": "127.0.0.1", "environment": "bench",
                             "tls": {"source": "self-signed", "port": 28443, "server_names": ["localhost"]}}


def sh(*args: str, check: bool = True, timeout: float = 1800) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def deploy(workdir: Path, root: Path = ROOT) -> tuple[float, str]:
    inventory = workdir / f"inv_{uuid.uuid4().hex[:8]}.py"
    inventory.write_text(f"bench = [('@local', {HOST_DATA!r})]\n")
    started = time.monotonic()
    result = subprocess.run([str(PYINFRA), "-y", str(inventory), "deploy.py"], cwd=root,
                            capture_output=True, text=True, timeout=3600, check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"deploy failed:\n{(result.stdout + result.stderr)[-5000:]}")
    return seconds, result.stdout


def identities(project: str = STACK) -> dict[str, tuple[str, str]]:
    ids = sh("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").split()
    if not ids:
        return {}
    infos = json.loads(sh("docker", "inspect", *ids))
    return {i["Config"]["Labels"]["com.docker.compose.service"]: (i["Id"], i["State"]["StartedAt"]) for i in infos}


def changed(before: dict, after: dict) -> list[str]:
    return sorted(n for n in after if before.get(n) != after[n])


def reset(keep_base: bool) -> None:
    """Remove the bench stack, its images and the build cache (optionally keep the base)."""
    for project in (STACK, f"{STACK}plain"):
        sh("docker", "compose", "-p", project, "down", "-v", "--remove-orphans", check=False)
    images = sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    doomed = [i for i in images if i.startswith((f"{STACK}/", "stackdeploy/"))
              and not (keep_base and i.startswith("stackdeploy/base:"))]
    if doomed:
        sh("docker", "rmi", "-f", *doomed, check=False)
    sh("docker", "builder", "prune", "-af", check=False)
    shutil.rmtree(DEPLOY_DIR, ignore_errors=True)


def state_json(name: str) -> dict:
    path = Path(DEPLOY_DIR) / "state" / name
    return json.loads(path.read_text()) if path.exists() else {}


def readiness(waves: list[list[str]]) -> tuple[float, float]:
    """(start -> all ready as measured per wave, sum over waves of the slowest real readiness)."""
    wave_seconds = state_json("waves.json")
    ready = state_json("ready.json")
    measured = sum(wave_seconds.get(",".join(sorted(w)), 0.0) for w in waves)
    critical = sum(max(ready.get(s, 0.0) for s in w) for w in waves)
    return measured, critical


def plain_compose(up_args: list[str]) -> float:
    started = time.monotonic()
    sh("docker", "compose", "-p", f"{STACK}plain", "--project-directory", f"{DEPLOY_DIR}/current",
       "-f", f"{DEPLOY_DIR}/current/compose.yaml", "up", *up_args)
    return time.monotonic() - started


def machine() -> dict[str, str]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "memory": sh("sh", "-c", "free -g | awk '/Mem:/ {print $2 \" GiB\"}'").strip(),
        "kernel": platform.release(),
        "docker": sh("docker", "version", "--format", "{{.Server.Version}}").strip(),
        "compose": sh("docker", "compose", "version", "--short").strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full-cold", action="store_true", help="keep the debootstrap base image")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from stackdeploy.graph import waves as compute_waves
    from stackdeploy.model import read_settings

    services = read_settings(ROOT / "group_data" / "all.py")["services"]
    stack_waves = compute_waves({n: s.get("depends_on", []) for n, s in services.items()})
    results: dict[str, Any] = {"machine": machine()}
    work = Path(tempfile.mkdtemp(prefix="stackbench-"))

    if not args.skip_full_cold:
        reset(keep_base=False)
        results["cold_full_s"], _ = deploy(work)
        print(f"cold deploy, empty engine (incl. debootstrap base): {results['cold_full_s']:.1f}s", flush=True)

    reset(keep_base=True)
    results["cold_s"], output = deploy(work)
    results["start_to_ready_s"], results["critical_path_ready_s"] = readiness(stack_waves)
    print(f"cold deploy, base image present: {results['cold_s']:.1f}s", flush=True)

    before = identities()
    results["noop_s"], _ = deploy(work)
    results["noop_restarted"] = len(changed(before, identities()))
    print(f"no-op redeploy: {results['noop_s']:.1f}s, {results['noop_restarted']} restarted", flush=True)

    copy = work / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "benchmarks"))
    shutil.copytree(ROOT / ".deploy", copy / ".deploy", dirs_exist_ok=True)
    main_py = copy / "files" / "services" / "ai-engine" / "app" / "main.py"
    main_py.write_text(main_py.read_text() + "\n# benchmark code change\n")
    before = identities()
    results["change_s"], _ = deploy(work, copy)
    report = json.loads((copy / ".deploy" / "last-report.json").read_text())["hosts"]["@local"]["services"]
    results["change_rebuilt"] = sorted(name for name, row in report.items() if row.get("build"))
    results["change_recreated"] = changed(before, identities())
    build = state_json("builds.json").get("ai-engine", {})
    results["change_cached_steps"] = f"{build.get('cached')}/{build.get('steps')}"
    results["image_mb"] = {n: round((r.get("size") or 0) / 1e6) for n, r in report.items()}
    total_steps = sum(b.get("steps", 0) for b in state_json("builds.json").values())
    results["stack_steps_reused_pct"] = round(100 * (1 - (build.get("steps", 0) - build.get("cached", 0))
                                                     / max(total_steps, 1)), 1)
    print(f"one-service change: {results['change_s']:.1f}s, rebuilt {results['change_rebuilt']}, "
          f"recreated {results['change_recreated']}", flush=True)

    # Plain compose on the very same rendered files, from the same starting point.
    reset(keep_base=True)
    deploy(work)  # renders the files (and builds) so compose has them ...
    sh("docker", "compose", "-p", STACK, "down", "-v", "--remove-orphans")
    images = [i for i in sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").split()
              if i.startswith((f"{STACK}/", "stackdeploy/")) and not i.startswith("stackdeploy/base:")]
    sh("docker", "rmi", "-f", *images, check=False)  # ... then starts it from the same cold state
    sh("docker", "builder", "prune", "-af", check=False)
    results["compose_cold_s"] = plain_compose(["-d", "--build", "--wait", "--wait-timeout", "600"])
    results["compose_noop_s"] = plain_compose(["-d", "--build", "--wait", "--wait-timeout", "600"])
    sh("docker", "compose", "-p", f"{STACK}plain", "down", "-v", "--remove-orphans", check=False)
    print(f"plain compose: cold {results['compose_cold_s']:.1f}s, no-op {results['compose_noop_s']:.1f}s", flush=True)

    results["cold_ratio"] = round(results["cold_s"] / results["compose_cold_s"], 2)
    results["noop_ratio"] = round(results["noop_s"] / results["compose_noop_s"], 2)
    results["change_pct_of_cold"] = round(100 * results["change_s"] / results["cold_s"], 1)
    write(results)
    reset(keep_base=True)
    shutil.rmtree(work, ignore_errors=True)


def write(results: dict[str, Any]) -> None:
    m = results["machine"]
    rows = [
        ("cold deploy, empty engine incl. debootstrap base", f"{results.get('cold_full_s', float('nan')):.1f} s"),
        ("cold deploy, base image present, no build cache", f"{results['cold_s']:.1f} s"),
        ("plain compose up --build --wait, same files, same state", f"{results['compose_cold_s']:.1f} s"),
        ("  ratio deploy / plain compose (target <= 1.10)", f"{results['cold_ratio']}"),
        ("no-op redeploy (target <= 5 s)", f"{results['noop_s']:.1f} s"),
        ("  containers restarted (target 0)", str(results["noop_restarted"])),
        ("plain compose no-op up --build --wait", f"{results['compose_noop_s']:.1f} s"),
        ("one-service code change", f"{results['change_s']:.1f} s"),
        ("  % of cold deploy (target <= 20 %)", f"{results['change_pct_of_cold']} %"),
        ("  images rebuilt", ", ".join(results["change_rebuilt"]) or "-"),
        ("  containers recreated", ", ".join(results["change_recreated"]) or "-"),
        ("  build steps cached in the rebuilt image", results["change_cached_steps"]),
        ("  build steps reused across the stack", f"{results['stack_steps_reused_pct']} %"),
        ("start -> all ready (sum of waves)", f"{results['start_to_ready_s']:.1f} s"),
        ("  sum of real readiness on the critical path", f"{results['critical_path_ready_s']:.1f} s"),
    ] + [(f"image size {name}", f"{mb} MB") for name, mb in sorted(results["image_mb"].items())]
    width = max(len(r[0]) for r in rows)
    table = "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
    header = (f"machine: {m['cpus']} CPUs, {m['memory']}, kernel {m['kernel']}, Docker Engine {m['docker']}, "
              f"Compose {m['compose']}; {m['date']}")
    print("\n" + header + "\n" + table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    (RESULTS / f"{stamp}-single-host.md").write_text(f"# Single-host benchmark\n\n{header}\n\n```\n{table}\n```\n")
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark the rollout's judgement with both cores saturated: a healthy release must roll,
a broken one must roll back, however slow the host is.

On a busy host uvicorn's supervisor restarts children that are slow to answer its ping, and a
Docker healthcheck in full Python misses its timeout: a gate that read either as a crash
rolled back good releases. Here a bounded CPU burner (one busy process per core, at the
deploy's own priority, stopped at the end and after BURN_LIMIT seconds in any case) runs
while creator-hub gets TRIES config changes (healthy: each must roll) and then TRIES code
changes that raise at import (broken: each must be rolled back, the old container serving).
Prints how many of each were judged right, the deploy times and the load average; writes
benchmarks/results/<date>-judgements.md and benchmarks/results/judgements.json.

Uses the rollouts benchmark's own stack ("rollbench", port 28180).

    .venv/bin/python benchmarks/run_judgements.py [--tries N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run_rollouts import RESULTS, code_change, pyinfra, reset  # noqa: E402

TRIES = 10
SERVICE = "creator-hub"
BURN_LIMIT = 3600  # seconds: a burner outlives neither the run nor this bound
BURNER = "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"


def start_burners() -> list[subprocess.Popen]:
    """One busy process per core, each bounded in time by itself."""
    code = BURNER.format(limit=BURN_LIMIT)
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 2)]


def judged(outcome: tuple[int, float, str], healthy: bool) -> dict[str, Any]:
    code, seconds, output = outcome
    rolled = code == 0 and f"{SERVICE} (rolling)" in output
    rolled_back = code != 0 and "ROLLED BACK: the new container was removed" in output
    right = rolled if healthy else rolled_back
    why = next((line for line in output.splitlines() if "SERVICE FAILED" in line), "")
    return {"right": right, "seconds": round(seconds, 1), "load": round(os.getloadavg()[0], 1),
            "why": "" if right and healthy else why[:300]}


def main(tries: int) -> int:
    reset()
    workdir = Path(tempfile.mkdtemp(prefix="judgebench-"))
    copy = workdir / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".deploy", ".git", "__pycache__"))
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "tries": tries,
                               "cores": os.cpu_count()}
    burners: list[subprocess.Popen] = []
    try:
        code, seconds, output = pyinfra(workdir, "deploy.py", root=copy)
        if code != 0:
            raise RuntimeError(output[-4000:])
        burners = start_burners()
        healthy = []
        for _ in range(tries):
            env = {"service_overrides": {SERVICE: {"env": {"BENCH": uuid.uuid4().hex[:8]}}}}
            healthy.append(judged(pyinfra(workdir, "deploy.py", env, copy), healthy=True))
            print(f"healthy: {healthy[-1]}", flush=True)
        broken = []
        for _ in range(tries):
            code_change(copy, SERVICE, broken=True)
            broken.append(judged(pyinfra(workdir, "deploy.py", root=copy), healthy=False))
            print(f"broken: {broken[-1]}", flush=True)
        results.update(healthy=healthy, broken=broken)
    finally:
        for burner in burners:
            burner.kill()
        reset()
        shutil.rmtree(workdir, ignore_errors=True)
    write(results)
    return 0 if all(r["right"] for r in results["healthy"] + results["broken"]) else 1


def write(results: dict[str, Any]) -> None:
    lines = [f"{'release':<8} {'judged right':>12} {'median deploy s':>16} {'max deploy s':>13} {'load (1 min)':>13}"]
    for kind in ("healthy", "broken"):
        rows = results[kind]
        lines.append(f"{kind:<8} {sum(r['right'] for r in rows):>7}/{len(rows):<4} "
                     f"{statistics.median(r['seconds'] for r in rows):>16.1f} {max(r['seconds'] for r in rows):>13.1f} "
                     f"{statistics.median(r['load'] for r in rows):>13.1f}")
    wrong = [f"- {kind}: {r['why']}" for kind in ("healthy", "broken") for r in results[kind] if not r["right"]]
    table = "\n".join(lines)
    print(table)
    print("\n".join(wrong) or "misjudged: none")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{results['date'][:10]}-judgements.md").write_text(
        f"# Rollout judgements with every core busy, {results['date']}\n\n"
        f"{results['cores']} cores, each saturated by a busy process for the whole run. {SERVICE}: "
        f"{results['tries']} healthy config changes (each must roll), then {results['tries']} code changes "
        f"that raise at import (each must be rolled back).\n\n```\n{table}\n```\n\n"
        f"Misjudged: {len(wrong) or 'none'}\n" + "".join(f"{line}\n" for line in wrong))
    (RESULTS / "judgements.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=TRIES, help="healthy and broken releases, each")
    sys.exit(main(parser.parse_args().tries))

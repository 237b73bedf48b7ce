#!/usr/bin/env python3
"""Benchmark day-2 operations: the monitor's recovery of a hung app, and backup and restore.

1. For each app in turn, every process of its container is frozen with SIGSTOP; measured is
   the time from the freeze to that app's /health answering 200 again through the gateway
   (the monitor restarts it). Loopback only, bounded by RECOVERY_LIMIT_SECONDS.
2. UPLOAD_MB of uploads (UPLOAD_FILES files through the gateway), then backup.py and
   restore.py of the whole stack, timed, with the backup's size.
3. smoke.py, timed.

Uses its own stack ("day2bench", port 28280), removed at the end. Prints a table and writes
benchmarks/results/<date>-day2.md and benchmarks/results/day2.json.

    .venv/bin/python benchmarks/run_day2.py
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import register_and_login, tls_context  # noqa: E402
from stackdeploy import contract  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PYINFRA = Path(sys.executable).parent / "pyinfra"
STACK = "day2bench"
DEPLOY_DIR = "/var/tmp/stackdeploy-day2bench"
GATEWAY = "https://127.0.0.1:28643"  # plain HTTP on 28280 redirects
STACK_CA = str(ROOT / ".deploy" / "tls" / "day2bench-day2bench" / "ca.pem")
HOST_DATA: dict[str, Any] = {"stack_name": STACK, "deploy_dir": DEPLOY_DIR, "gateway_port": 28280,
                             "gateway_bind": "127.0.0.1", "environment": "day2bench",
                             "tls": {"source": "self-signed", "port": 28643, "server_names": ["localhost"]}}
APPS = {"creator-hub": "/api/creators/health", "auth-service": "/api/auth/health",
        "ai-engine": "/api/ai/health", "channel-service": "/api/channels/health"}
RECOVERY_LIMIT_SECONDS = 120
UPLOAD_FILES, UPLOAD_MB = 7, 45  # 315 MB; each under the gateway's 50 MB body limit


def pyinfra(workdir: Path, script: str, *args: str) -> tuple[int, float, str]:
    inventory = workdir / f"inv_{uuid.uuid4().hex[:8]}.py"
    inventory.write_text(f"bench = [('@local', {HOST_DATA!r})]\n")
    started = time.monotonic()
    result = subprocess.run([str(PYINFRA), "-y", str(inventory), script, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=3600, check=False)
    return result.returncode, time.monotonic() - started, result.stdout + result.stderr


def container_pids(service: str) -> list[int]:
    cid = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={STACK}",
                          "--filter", f"label=com.docker.compose.service={service}"],
                         capture_output=True, text=True, check=True).stdout.split()[0]
    top = subprocess.run(["docker", "top", cid, "-eo", "pid"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in top.splitlines()[1:]]


def answers(path: str) -> bool:
    try:
        return httpx.get(f"{GATEWAY}{path}", verify=tls_context(STACK_CA), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def hang_and_recover(service: str, path: str) -> float | None:
    """Seconds from SIGSTOP of every process of ``service`` to 200 through the gateway again."""
    pids = container_pids(service)
    frozen = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        while time.monotonic() - frozen < RECOVERY_LIMIT_SECONDS:
            if not answers(path):
                break
            time.sleep(0.2)
        while time.monotonic() - frozen < RECOVERY_LIMIT_SECONDS:
            if answers(path):
                return time.monotonic() - frozen
            time.sleep(0.2)
        return None
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # gone with the restart
                os.kill(pid, signal.SIGCONT)


def upload_files(token: str) -> list[str]:
    ids = []
    for i in range(UPLOAD_FILES):
        content = secrets.token_bytes(UPLOAD_MB * 1024 * 1024)
        response = httpx.post(f"{GATEWAY}/api/creators/uploads", verify=tls_context(STACK_CA),
                              headers={"Authorization": f"Bearer {token}"},
                              files={"file": (f"bench-{i}.bin", content)}, timeout=300)
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def main() -> int:
    results: dict[str, Any] = {"date": dt.date.today().isoformat(), "host": os.uname().nodename, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rc, seconds, output = pyinfra(workdir, "deploy.py")
        if rc:
            print(output[-3000:])
            return 1
        results["deploy_seconds"] = round(seconds, 1)
        try:
            time.sleep(5)  # the monitor's first rounds after the deploy lock is released
            recovery = {}
            for service, path in APPS.items():
                took = hang_and_recover(service, path)
                recovery[service] = None if took is None else round(took, 1)
                print(f"hung {service}: answering again after {recovery[service]} s", flush=True)
                time.sleep(5)
            results["hang_to_200_seconds"] = recovery

            token = register_and_login(GATEWAY, ca_file=STACK_CA)
            upload_files(token)
            rc, seconds, output = pyinfra(workdir, "backup.py")
            if rc:
                print(output[-3000:])
                return 1
            backups = sorted(Path(DEPLOY_DIR, contract.BACKUPS_DIR).glob(f"*/{contract.BACKUP_MANIFEST}"))
            manifest: contract.BackupManifest = json.loads(backups[-1].read_text())
            results["backup"] = {"seconds": round(seconds, 1), "bytes": sum(f["size"] for f in manifest["files"]),
                                 "uploads_mb": UPLOAD_FILES * UPLOAD_MB}
            print(f"backup: {seconds:.1f} s, {results['backup']['bytes'] / 1e6:.0f} MB", flush=True)
            rc, seconds, output = pyinfra(workdir, "restore.py", "--data", f"backup={manifest['id']}")
            if rc:
                print(output[-3000:])
                return 1
            results["restore"] = {"seconds": round(seconds, 1), "includes": "the smoke test at its end"}
            print(f"restore: {seconds:.1f} s", flush=True)
            rc, seconds, output = pyinfra(workdir, "smoke.py")
            results["smoke_seconds"] = round(seconds, 1) if rc == 0 else None
        finally:
            subprocess.run(["docker", "compose", "-p", STACK, "down", "-v", "--remove-orphans"], capture_output=True,
                           timeout=300, check=False)
            subprocess.run(["rm", "-rf", DEPLOY_DIR], check=False)
    write(results)
    return 0


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "day2.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = "\n".join(f"| {service} | {seconds} s |" for service, seconds in results["hang_to_200_seconds"].items())
    text = f"""# Day-2 operations, {results['date']} ({results['cpus']} cores, offline images)

`benchmarks/run_day2.py`, own stack on port 28280.

## Monitor: SIGSTOP of every process of an app, to 200 through the gateway again

| app | seconds |
|---|---|
{rows}

## Backup and restore, default stack with {results['backup']['uploads_mb']} MB of uploads

| | seconds | size |
|---|---|---|
| backup.py | {results['backup']['seconds']} | {results['backup']['bytes'] / 1e6:.0f} MB |
| restore.py (ends with the smoke test) | {results['restore']['seconds']} | |
| smoke.py | {results['smoke_seconds']} | |

Times are wall time of the whole `pyinfra` command (connect, facts, lock, work, unlock).
"""
    (RESULTS / f"{results['date']}-day2.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A redeploy with nothing to change, against Ansible's community.docker.docker_compose_v2 on the
same rendered compose file, run side by side.

The default stack must be running (``./scripts/deploy-local.sh``). Each round runs this deploy
(``pyinfra -y inventory/local.py deploy.py``) and then an Ansible play with one task,
``docker_compose_v2`` (``state: present``, ``wait: true``) on the current release's compose.yaml
of the same project, alternating, after one warm-up of each. Ansible is installed from PyPI into
``.bench/ansible`` the first time. Also checks that the no-op is one: no container restarted and
no audit line written. Prints the medians and their ratio, and writes
benchmarks/results/<date>-noop.md and noop.json.

    .venv/bin/python benchmarks/run_noop.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import run_benchmarks as bench  # noqa: E402
from stackdeploy.model import read_settings  # noqa: E402

ANSIBLE_VERSION = "12.3.0"  # the ansible package (community.docker among its collections); the last for Python 3.11
ANSIBLE_VENV = ROOT / ".bench" / "ansible"
PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The stack's compose project is present
      community.docker.docker_compose_v2:
        project_src: {project_src}
        project_name: {project}
        files: [compose.yaml]
        state: present
        wait: true
"""


def ensure_ansible() -> Path:
    playbook = ANSIBLE_VENV / "bin" / "ansible-playbook"
    if not playbook.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True, timeout=300)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "--quiet", f"ansible=={ANSIBLE_VERSION}"],
                       check=True, timeout=1800)
    return playbook


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return seconds


def audit_lines(deploy_dir: str) -> int:
    path = Path(deploy_dir) / "state" / "audit.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = read_settings(ROOT / "group_data" / "all.py")
    project, deploy_dir = settings["stack_name"], settings["deploy_dir"]
    current = Path(deploy_dir) / "current"
    if not (current / "compose.yaml").exists():
        raise SystemExit(f"nothing deployed in {deploy_dir}: run ./scripts/deploy-local.sh first")
    work = Path(tempfile.mkdtemp(prefix="stacknoop-"))
    playbook = work / "compose-present.yml"
    playbook.write_text(PLAYBOOK.format(project_src=current.resolve(), project=project))
    ours = [str(bench.PYINFRA), "-y", "inventory/local.py", "deploy.py"]
    # Its own venv's Python for the module: interpreter discovery may find a shim that runs nothing.
    theirs = [str(ensure_ansible()), "-i", "localhost,", "-e", f"ansible_python_interpreter={ANSIBLE_VENV}/bin/python",
              str(playbook)]
    timed(ours), timed(theirs)  # warm-up: page cache, the Docker CLI, Ansible's collection loading
    before, audited = bench.identities(project), audit_lines(deploy_dir)
    times: dict[str, list[float]] = {"stackdeploy": [], "ansible": []}
    for _ in range(args.rounds):
        times["stackdeploy"].append(timed(ours))
        times["ansible"].append(timed(theirs))
    restarted = bench.changed(before, bench.identities(project))
    medians = {name: round(statistics.median(values), 2) for name, values in times.items()}
    pairwise = [a / b for a, b in zip(times["stackdeploy"], times["ansible"], strict=True)]
    results = {
        "machine": bench.machine(), "containers": len(before), "rounds": args.rounds,
        "seconds": {name: [round(v, 2) for v in values] for name, values in times.items()},
        "median_s": medians, "ratio_of_medians": round(medians["stackdeploy"] / medians["ansible"], 2),
        "median_pairwise_ratio": round(statistics.median(pairwise), 2),
        "restarted": restarted, "audit_lines_written": audit_lines(deploy_dir) - audited,
    }
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    (bench.RESULTS / "noop.json").write_text(json.dumps(results, indent=2) + "\n")
    summary = (f"no-op redeploy, {len(before)} containers (target <= 1.5 s)   {medians['stackdeploy']:.2f} s\n"
               f"ansible docker_compose_v2, state present, wait   {medians['ansible']:.2f} s\n"
               f"ratio stackdeploy / ansible (median of pairs)     {results['median_pairwise_ratio']:.2f}\n"
               f"containers restarted, audit lines written         {len(restarted)}, "
               f"{results['audit_lines_written']}")
    (bench.RESULTS / f"{day}-noop.md").write_text(
        f"# No-op redeploy against Ansible ({results['machine']['date']})\n\n"
        f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['memory']}, Docker "
        f"{results['machine']['docker']}. The default stack, offline images; {args.rounds} alternating rounds "
        f"after one warm-up each; ansible {ANSIBLE_VERSION}.\n\n```\n{summary}\n```\n\n"
        f"Every run (s): stackdeploy {results['seconds']['stackdeploy']}, ansible {results['seconds']['ansible']}.\n")
    print(summary)


if __name__ == "__main__":
    main()

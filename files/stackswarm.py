#!/usr/bin/env python3
"""Host-side helper of the swarm engine (standard library only; runs on the first manager).

    stackswarm.py deploy --release R     Docker secrets, then the stack wave by wave, each gated
    stackswarm.py deploy --release R --rollback   the same, going back: a service whose previous
                                         spec is R's is first rolled back by Swarm itself
    stackswarm.py status [--wait S]      every service: tasks running/healthy vs wanted, as JSON
    stackswarm.py rollback SVC...        Swarm's own rollback of services to their previous spec
    stackswarm.py logs SVC...            the last log lines of services (every task)

Swarm schedules, restarts, rolls and rolls back; this only does what Swarm does not:
dependency order (Swarm ignores ``depends_on``) and the deploy's gate on real health. The
release's files (stack.yaml, stack.wave-N.yaml, swarm.json) are rendered by
stackdeploy/swarmstack.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
POLL_SECONDS = 1.0
LOG_LINES = 30
UPDATE_FAILED = {"rollback_paused", "rollback_completed", "paused"}  # the run stops: the old spec is back (or stuck)
NAMESPACE_LABEL = "com.docker.stack.namespace"


class Failed(Exception):
    """The rollout cannot go on; the message is for the person running the deploy."""


def run(args: list[str], stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)


def checked(args: list[str], stdin: str | None = None, timeout: float = 120) -> str:
    result = run(args, stdin, timeout)
    if result.returncode != 0:
        raise Failed(f"{' '.join(args[:4])}: {result.stderr.strip()[-1500:]}")
    return result.stdout


def manifest(release: str) -> dict:
    return json.loads((ROOT / "releases" / release / "swarm.json").read_text())


def current_manifest() -> dict:
    return json.loads((ROOT / "current" / "swarm.json").read_text())


def ensure_secrets(stack: str, names: list[str]) -> list[str]:
    """Create the Docker secrets that do not exist yet from the host copy (.secrets.json).
    An existing secret is never replaced: Docker secrets are immutable, and a deploy must
    never rotate one."""
    present = set(checked(["docker", "secret", "ls", "--format", "{{.Name}}"]).split())
    values = json.loads((ROOT / ".secrets.json").read_text())
    created = []
    for name in names:
        full = f"{stack}_{name}"
        if full not in present:
            # Not labelled as the stack's: `docker stack rm` (switching back to compose)
            # would delete them.
            checked(["docker", "secret", "create", "--label", f"stackdeploy.stack={stack}", full, "-"],
                    stdin=values[name])
            created.append(name)
    return created


def services(stack: str) -> dict[str, dict]:
    """Short name -> ``docker service inspect`` of the stack's services."""
    ids = checked(["docker", "service", "ls", "-q", "--filter", f"label={NAMESPACE_LABEL}={stack}"]).split()
    if not ids:
        return {}
    found = json.loads(checked(["docker", "service", "inspect", *ids]))
    return {s["Spec"]["Name"].removeprefix(f"{stack}_"): s for s in found}


def tasks(stack: str, name: str) -> list[dict]:
    """The tasks Swarm wants running for a service, with their container's health."""
    out = checked(["docker", "service", "ps", "--no-trunc", "--filter", "desired-state=running",
                   "--format", "{{json .}}", f"{stack}_{name}"])
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def healthy_tasks(stack: str, name: str, spec: dict) -> tuple[int, int, str]:
    """(tasks running the wanted image, tasks wanted, what is wrong). Swarm reports a task with a
    healthcheck as Running only once the check passed, so Running is the real gate."""
    found = tasks(stack, name)
    wanted = spec["replicas"] if spec["replicas"] is not None else max(len(found), 1)
    good = [t for t in found if t["CurrentState"].startswith("Running") and t["Image"].split("@")[0] == spec["image"]]
    problem = next((t["Error"] or t["CurrentState"] for t in found if t not in good), "")
    return len(good), wanted, problem


def check(stack: str, name: str, spec: dict, deployed: dict | None) -> str | None:
    """None when the service runs its wanted spec on every wanted task; else why not."""
    if deployed is None:
        return "not deployed"
    labels = deployed["Spec"].get("Labels") or {}
    if labels.get("stackdeploy.config-hash") != spec["config_hash"]:
        state = (deployed.get("UpdateStatus") or {}).get("State", "")
        if state in UPDATE_FAILED:
            message = (deployed.get("UpdateStatus") or {}).get("Message", "")
            raise Failed(f"{name}: Swarm rolled the update back ({state}): {message}")
        return "an older spec"
    update = (deployed.get("UpdateStatus") or {}).get("State", "")
    if update == "updating":  # old tasks still run until each new one is healthy
        return "update in progress"
    if update == "rollback_started":  # the deploy fails once the old spec runs again
        return "Swarm is rolling the update back"
    good, wanted, problem = healthy_tasks(stack, name, spec)
    if good < wanted:
        return f"{good}/{wanted} tasks running and healthy" + (f" ({problem})" if problem else "")
    return None


def gate(stack: str, names: list[str], specs: dict[str, dict], started: float) -> dict[str, float]:
    """Wait until every service in ``names`` is converged and healthy; seconds each took."""
    ready: dict[str, float] = {}
    deadline = {n: started + specs[n]["timeout"] + 60 for n in names}  # Swarm's health interval, pulls
    while True:
        deployed = services(stack)
        for name in names:
            if name not in ready and check(stack, name, specs[name], deployed.get(name)) is None:
                ready[name] = round(time.monotonic() - started, 1)
                print(f"  {name} ready in {ready[name]} s", file=sys.stderr, flush=True)
        waiting = [n for n in names if n not in ready]
        if not waiting:
            return ready
        late = [n for n in waiting if time.monotonic() > deadline[n]]
        if late:
            reasons = [f"{n}: {check(stack, n, specs[n], deployed.get(n))}" for n in late]
            raise Failed("not ready in time: " + "; ".join(reasons) + "\n" + logs(stack, late))
        time.sleep(POLL_SECONDS)


def logs(stack: str, names: list[str]) -> str:
    out = []
    for name in names:
        result = run(["docker", "service", "logs", "--no-task-ids", "--tail", str(LOG_LINES), f"{stack}_{name}"])
        out.append(f"--- {name} (last {LOG_LINES} lines of each task)\n{result.stdout}{result.stderr}")
    return "\n".join(out)


def stack_deploy_options(m: dict, last: bool) -> list[str]:
    """``docker stack deploy`` options for one wave of the release ``m``. Images are never
    resolved to digests: their tags are fingerprints already, and the spec stays what was
    rendered (its config hash). With a registry (image_distribution "registry"), the
    manager's credentials (``docker login``) go with the services, so every node can pull."""
    return ["--detach=true", "--resolve-image", "never", *(["--with-registry-auth"] if m.get("registry") else []),
            *(["--prune"] if last else [])]


def cmd_deploy(args: argparse.Namespace) -> int:
    m = manifest(args.release)
    stack, specs = m["stack"], m["services"]
    created = ensure_secrets(stack, m["secrets"])
    if created:
        print(f"secrets created: {', '.join(created)}", file=sys.stderr, flush=True)
    release = ROOT / "releases" / args.release
    ready: dict[str, float] = {}
    if args.rollback:
        native_rollbacks(stack, specs)
    try:
        for number, wave in enumerate(m["waves"], 1):
            last = number == len(m["waves"])
            print(f"wave {number}: {', '.join(wave)}", file=sys.stderr, flush=True)
            started = time.monotonic()
            # Without --prune until the last wave: services of later waves keep running as
            # they are until their turn. The last file is the whole stack, and prunes.
            checked(["docker", "stack", "deploy", *stack_deploy_options(m, last),
                     "-c", str(release / f"stack.wave-{number}.yaml"), stack], timeout=300)
            ready.update(gate(stack, wave, specs, started))
    except Failed as exc:
        print(f"SWARM ROLLOUT FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"ready": ready}))
    return 0


def native_rollbacks(stack: str, specs: dict[str, dict]) -> None:
    """``docker service rollback`` for each service whose previous spec is the one wanted: Swarm
    swaps the specs back itself (start-first for apps). The waves that follow find them done."""
    for name, deployed in services(stack).items():
        previous = ((deployed.get("PreviousSpec") or {}).get("Labels") or {}).get("stackdeploy.config-hash")
        current = (deployed["Spec"].get("Labels") or {}).get("stackdeploy.config-hash")
        wanted = specs.get(name, {}).get("config_hash")
        if wanted and current != wanted and previous == wanted:
            print(f"{name}: docker service rollback", file=sys.stderr, flush=True)
            checked(["docker", "service", "rollback", "--detach=true", "--quiet", f"{stack}_{name}"])


def status_rows(m: dict) -> dict[str, dict]:
    stack = m["stack"]
    deployed = services(stack)
    rows = {}
    for name, spec in m["services"].items():
        try:
            problem = check(stack, name, spec, deployed.get(name))
        except Failed as exc:
            problem = str(exc)
        good, wanted, _ = healthy_tasks(stack, name, spec) if name in deployed else (0, spec["replicas"] or 1, "")
        rows[name] = {"image": spec["image"], "size": None, "state": f"{good}/{wanted} tasks",
                      "health": f"{good}/{wanted} healthy", "check": problem or "ok", "container": None,
                      "seconds_to_ready": None}
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    m = manifest(args.release) if args.release else current_manifest()
    deadline = time.monotonic() + args.wait
    while True:
        rows = status_rows(m)
        if all(r["check"] == "ok" for r in rows.values()) or time.monotonic() >= deadline:
            print(json.dumps(rows, indent=2, sort_keys=True))
            return 0
        time.sleep(POLL_SECONDS)


def cmd_rollback(args: argparse.Namespace) -> int:
    stack = current_manifest()["stack"]
    for name in args.services:
        print(f"rolling back {name}", file=sys.stderr, flush=True)
        result = run(["docker", "service", "rollback", "--detach=false", "--quiet", f"{stack}_{name}"], timeout=600)
        if result.returncode != 0:
            print(f"ROLLBACK FAILED: {name}: {result.stderr.strip()[-1500:]}", file=sys.stderr)
            return 1
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    print(logs(current_manifest()["stack"], args.services))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    deploy = sub.add_parser("deploy")
    deploy.add_argument("--release", required=True)
    deploy.add_argument("--rollback", action="store_true", help="roll back natively where Swarm can")
    deploy.set_defaults(func=cmd_deploy)
    status = sub.add_parser("status")
    status.add_argument("--release")
    status.add_argument("--wait", type=float, default=0.0, help="seconds to wait for every service to be ok")
    status.set_defaults(func=cmd_status)
    rollback = sub.add_parser("rollback")
    rollback.add_argument("services", nargs="+")
    rollback.set_defaults(func=cmd_rollback)
    logs_ = sub.add_parser("logs")
    logs_.add_argument("services", nargs="+")
    logs_.set_defaults(func=cmd_logs)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Failed as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

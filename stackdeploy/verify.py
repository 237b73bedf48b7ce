"""Phase 5: probe every service (and dependencies on other hosts), print and save the summary."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import click
from pyinfra import host
from pyinfra.api import OperationError, StringCommand, deploy, operation

from stackdeploy import STATE_DIR, commands, contract
from stackdeploy.callback import callback
from stackdeploy.control import run_on_control_machine
from stackdeploy.facts import read_fact
from stackdeploy.facts.stack import HostState, StackStatus, parse_status
from stackdeploy.plan import Plan
from stackdeploy.report import render_table, write_report
from stackdeploy.runinfo import RELEASE_ID

LAST_REPORT = STATE_DIR / "last-report.json"


def _summarise(plan: Plan, release: str, status: dict[str, contract.ServiceStatus],
               builds: dict[str, contract.BuildResult], started: list[str], report_to: Path | None) -> None:
    """Print the table and write the report (unless ``report_to`` is None); builds and
    readiness only for this run."""
    rows = {
        name: {**row, "standin": plan.is_standin(name), "build": builds.get(name),
               "seconds_to_ready": row.get("seconds_to_ready") if name in started else None}
        for name, row in status.items()
    }
    click.echo(render_table(host.name, rows), err=False)
    if report_to is not None:
        write_report(report_to, host.name, rows, run=RELEASE_ID, release=release, changed=started, built=list(builds))
    failed = {n: r for n, r in rows.items() if r["check"] != "ok"}
    if failed and host.state.is_executing:
        raise OperationError("\n".join(_failure(plan, name, row) for name, row in failed.items()))


def _failure(plan: Plan, name: str, row: dict) -> str:
    """One failed service: where, why, and its last log lines (fetched from its own host)."""
    if row["state"] != "remote":
        ok, output = host.run_shell_command(commands.stackctl(plan.stack.deploy_dir, host.name, "logs", name))
        logs = output.stdout if ok else output.stderr
        return f"SERVICE FAILED: '{name}' on host {host.name}: {row['check']}\n{logs}"
    service, owner = name.split("@", 1)
    where = f"SERVICE FAILED: '{service}' on host {owner} (seen from {host.name}): {row['check']}"
    logs = commands.stackctl(plan.stack.deploy_dir, owner, "logs", service)
    result = run_on_control_machine(commands.run_over_ssh(commands.ssh_to(host.inventory.get_host(owner)), logs),
                                    timeout=60)
    return f"{where}\n{result.stdout or result.stderr}"


def _run(command: StringCommand) -> str:
    ok, output = host.run_shell_command(command)
    if not ok:
        raise OperationError(f"{command} failed: {output.stderr}")
    return output.stdout


def _verify_now(plan: Plan, release: str, built: list[str], started: list[str], report_to: Path | None) -> None:
    deploy_dir = plan.stack.deploy_dir
    status = parse_status(_run(commands.stackctl(deploy_dir, host.name, "status", "--wait", "--release", release)))
    builds: dict[str, contract.BuildResult] = json.loads(
        _run(commands.json_file_or_empty(posixpath.join(deploy_dir, contract.BUILDS_FILE))))
    _summarise(plan, release, status, {n: b for n, b in builds.items() if n in built}, started, report_to)


def _remote_dependencies(plan: Plan) -> dict[str, contract.RemoteCheck]:
    """The dependencies of this host's services on other hosts, as its release manifest has them."""
    return json.loads(plan.files[contract.RELEASE_FILE])["remote"]


def _status_from_host_read(plan: Plan, observed: HostState) -> dict[str, contract.ServiceStatus] | None:
    """Every service's row from the host read the run was decided from, when each one is
    running and healthy by Docker's own healthcheck; None when any is not (then it is probed).
    Dependencies on other hosts are no part of that read: they are probed from here, as any
    run probes them, so a no-op still fails on a database that stopped on another host."""
    rows: dict[str, contract.ServiceStatus] = {}
    for name, service in plan.services.items():
        found = observed.containers.get(name, ())
        if len(found) != 1 or not found[0].healthy:
            return None
        rows[name] = {"container": found[0].id[:12], "image": service.image, "size": None, "state": found[0].state,
                      "health": None if found[0].health == "none" else found[0].health, "check": "ok",
                      "seconds_to_ready": None}
    if _remote_dependencies(plan):
        remote = read_fact(host, StackStatus, deploy_dir=plan.stack.deploy_dir, remote_only=True)
        if remote is None:
            return None
        rows.update(remote)
    return rows


@operation(is_idempotent=True)
def verified(plan: Plan, release: str, built: list[str], started: list[str], base_built: bool,
             report_to: Path | None, observed: HostState | None = None):
    """Probe every service; print and save the summary.

    Without changes the check is read, not run: from ``observed`` (the host read that found
    nothing to change: a no-op deploy costs no second round of probes) or else as a fact, so an
    untouched healthy stack reports no change at all. Other hosts' services are probed only by
    a run that changed something, and by verify.py. pyinfra runs this body twice (prepare, then
    execute): print only when executing.
    """
    if not (built or started or base_built):
        status = _status_from_host_read(plan, observed) if observed is not None else None
        if status is None:
            status = read_fact(host, StackStatus, deploy_dir=plan.stack.deploy_dir)
        if status is not None and all(row["check"] == "ok" for row in status.values()):
            if host.state.is_executing:
                _summarise(plan, release, status, {}, [], report_to)
            host.noop(f"all {len(status)} services healthy")
            return
    yield callback(_verify_now, plan, release, built, started, report_to)


@deploy("Verify the stack")
def verify_stack(plan: Plan, release: str, built: list[str], started: list[str], base_built: bool, *,
                 report_to: Path | None = LAST_REPORT, observed: HostState | None = None) -> None:
    """Probe every service of ``release``; only a run that changed something re-probes as a change.

    The report goes to ``report_to``: the deploy's (and rollback's) record, which a check
    that changes nothing (verify.py) leaves as it is by passing None. ``observed``: the host
    read a deploy was decided from (see ``verified``).
    """
    verified(name="Health of every service", plan=plan, release=release, built=built, started=started,
             base_built=base_built, report_to=report_to, observed=observed)

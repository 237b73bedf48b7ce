"""Phase 5: probe every service (and dependencies on other hosts), print and save the summary."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import click
from pyinfra import host
from pyinfra.api import FunctionCommand, OperationError, deploy, operation

from stackdeploy import STATE_DIR
from stackdeploy.facts import StackStatus
from stackdeploy.plan import Plan
from stackdeploy.remote import is_standin, ssh_command, stackctl
from stackdeploy.report import render_table, write_report

LAST_REPORT = STATE_DIR / "last-report.json"


def _summarise(plan: Plan, status: dict, builds: dict, started: list[str], report_to: Path | None) -> None:
    """Print the table and write the report (unless ``report_to`` is None); builds and
    readiness only for this run."""
    rows = {
        name: {**row, "standin": is_standin(plan, name), "build": builds.get(name),
               "seconds_to_ready": row.get("seconds_to_ready") if name in started else None}
        for name, row in status.items()
    }
    click.echo(render_table(host.name, rows), err=False)
    if report_to is not None:
        write_report(report_to, host.name, rows)
    failed = {n: r for n, r in rows.items() if r["check"] != "ok"}
    if failed and host.state.is_executing:
        raise OperationError("\n".join(_failure(plan, name, row) for name, row in failed.items()))


def _failure(plan: Plan, name: str, row: dict) -> str:
    """One failed service: where, why, and its last log lines (fetched from its own host)."""
    if row["state"] != "remote":
        ok, output = host.run_shell_command(stackctl(plan.stack.deploy_dir, "logs", name))
        logs = output.stdout if ok else output.stderr
        return f"SERVICE FAILED: '{name}' on host {host.name}: {row['check']}\n{logs}"
    service, owner = name.split("@", 1)
    where = f"SERVICE FAILED: '{service}' on host {owner} (seen from {host.name}): {row['check']}"
    command = [*ssh_command(host.inventory.get_host(owner)), stackctl(plan.stack.deploy_dir, "logs", service,
                                                                      host_name=owner)]
    result = subprocess.run(command if len(command) > 1 else ["sh", "-c", command[0]], capture_output=True,
                            text=True, timeout=60, check=False)
    return f"{where}\n{result.stdout or result.stderr}"


def _run(command: str) -> str:
    ok, output = host.run_shell_command(command)
    if not ok:
        raise OperationError(f"{command} failed: {output.stderr}")
    return output.stdout


def _verify_now(plan: Plan, release: str, built: list[str], started: list[str], report_to: Path | None) -> None:
    status = json.loads(_run(stackctl(plan.stack.deploy_dir, "status", "--wait", "--release", release)))
    builds_file = shlex.quote(f"{plan.stack.deploy_dir}/state/builds.json")
    builds = json.loads(_run(f"if [ -f {builds_file} ]; then cat {builds_file}; else echo '{{}}'; fi"))
    _summarise(plan, status, {n: b for n, b in builds.items() if n in built}, started, report_to)


@operation(is_idempotent=True)
def verified(plan: Plan, release: str, built: list[str], started: list[str], base_built: bool,
             report_to: Path | None):
    """Probe every service; print and save the summary.

    Without changes the probe is a fact, so an untouched healthy stack reports no change
    at all. pyinfra runs this body twice (prepare, then execute): print only when executing.
    """
    if not (built or started or base_built):
        status = host.get_fact(StackStatus, deploy_dir=plan.stack.deploy_dir)
        if all(row["check"] == "ok" for row in status.values()):
            if host.state.is_executing:
                _summarise(plan, status, {}, [], report_to)
            host.noop(f"all {len(status)} services healthy")
            return
    yield FunctionCommand(_verify_now, (plan, release, built, started, report_to), {})


@deploy("Verify the stack")
def verify_stack(plan: Plan, release: str, built: list[str], started: list[str], base_built: bool, *,
                 report_to: Path | None = LAST_REPORT) -> None:
    """Probe every service of ``release``; only a run that changed something re-probes as a change.

    The report goes to ``report_to``: the deploy's (and rollback's) record, which a check
    that changes nothing (verify.py) leaves as it is by passing None.
    """
    verified(name="Health of every service", plan=plan, release=release, built=built, started=started,
             base_built=base_built, report_to=report_to)

"""The run around the phases: the deploy lock, the release record and the audit log.

A run that changes a host takes that host's lock first (``stackctl.py lock acquire``): a
second run, from any control machine, is refused at once and told who holds it. The lock
is tied to the run's own process on the host (its sshd session, or pyinfra on @local), so
a run that died is recognised and its lock can be taken over with ``take_over_lock``.
A run that ends records the release and an audit line and unlocks (``stackctl.py
finish``): on success as its last operation, on failure from a pyinfra callback, since
pyinfra drops a failed host from every later operation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import Host, OperationError, State, StringCommand, deploy, operation
from pyinfra.api.state import BaseStateCallback

from stackdeploy import contract
from stackdeploy.callback import callback
from stackdeploy.commands import stackctl
from stackdeploy.runinfo import STARTED, actor


@dataclass(frozen=True)
class Run:
    """One deploy or rollback on one host, as the lock and the release record see it."""

    deploy_dir: str
    action: str  # deploy or rollback
    release: str
    changed: list[str]
    keep: int  # releases kept with their images
    current: str  # the release the run read as current (a changed host refuses the lock)


_runs: dict[str, Run] = {}  # host name -> its run, for the failure callback


def _finish_args(run: Run, result: str) -> list[str]:
    return ["finish", "--release", run.release, "--action", run.action, "--result", result,
            "--changed", ",".join(run.changed), "--actor", json.dumps(actor()),
            "--started", str(STARTED), "--keep", str(run.keep)]


class FinishOnFailure(BaseStateCallback):
    """When an operation fails on a host this run locked, record the failure and unlock it."""

    @staticmethod
    def operation_host_error(state: State, host: Host, op_hash, retry_count: int = 0, max_retries: int = 0):
        run = _runs.pop(host.name, None)
        if run is None:
            return
        ok, output = host.run_shell_command(stackctl(run.deploy_dir, host.name, *_finish_args(run, "failed")))
        if not ok:
            logger.error(f"{host.print_prefix}could not record the failure and unlock: {output.stderr}")


def _register(run: Run) -> None:
    if not any(isinstance(h, FinishOnFailure) for h in host.state.callback_handlers):
        host.state.add_callback_handler(FinishOnFailure())
    _runs[host.name] = run


def _acquire(command: StringCommand) -> None:
    ok, output = host.run_shell_command(command)
    if not ok:
        raise OperationError(output.stderr.strip())
    if "took over" in output.stdout:  # taking over a dead run's lock is worth a warning
        logger.warning(f"{host.print_prefix}{output.stdout.strip()}")


@operation(is_idempotent=False)
def lock(run: Run, take_over: bool):
    """Take this host's deploy lock, or fail naming who holds it; also fail when another run
    changed the current release after this one read the host (its plan would be stale)."""
    request: contract.LockRequest = {**actor(), "action": run.action, "release": run.release}
    holder = json.dumps(request)
    command = stackctl(run.deploy_dir, host.name, "lock", "acquire", "--holder", holder,
                       "--expect-current", run.current, *(["--take-over"] if take_over else []))
    yield callback(_acquire, command)


@operation(is_idempotent=False)
def finish(run: Run):
    """Switch ``current`` to the release, record it, prune old releases, audit and unlock."""
    yield stackctl(run.deploy_dir, host.name, *_finish_args(run, "ok"))


@deploy("Deploy lock")
def take_lock(run: Run) -> None:
    _register(run)
    lock(name=f"Lock the host for this {run.action}", run=run, take_over=bool(host.data.get("take_over_lock")))


@deploy("Record the release")
def record_release(run: Run) -> None:
    finish(name="Switch to the release, record it, audit and unlock", run=run)

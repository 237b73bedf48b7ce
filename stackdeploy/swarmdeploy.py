"""The swarm engine's rollout and verification (deploy.py and rollback.py on ``engine = "swarm"``).

Images reach every node first (the same phase as the compose engine's: shipped from the
build host, or pulled from the registry under ``image_distribution = "registry"``, where a
node Swarm moves a task to can also pull the image itself). Then the first
manager deploys the stack wave by wave (files/stackswarm.py), each wave gated on its tasks
running healthy; Swarm itself rolls each changed app start-first and rolls it back when
the new tasks fail.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import click
from pyinfra import host
from pyinfra.api import OperationError, deploy, operation
from pyinfra.facts.files import FileContents

from stackdeploy import commands
from stackdeploy.callback import callback
from stackdeploy.desired import HostDecisions
from stackdeploy.facts import read_fact
from stackdeploy.facts.swarm import SwarmNode, SwarmStackHashes, SwarmStatus, SwarmTaskContainers
from stackdeploy.report import render_table, write_report
from stackdeploy.runinfo import RELEASE_ID
from stackdeploy.swarmstack import MANIFEST_FILE
from stackdeploy.verify import LAST_REPORT


@operation(is_idempotent=True)
def compose_retired(decisions: HostDecisions):
    """Switching an environment from compose to swarm: this host's compose containers are
    stopped and removed (volumes kept: Swarm's tasks mount the very same named volumes) right
    before Swarm starts the stack, so the downtime is the swarm rollout's."""
    if not decisions.state.containers:
        host.noop("no compose container of the stack")
        return
    yield commands.compose_containers_removed(decisions.plan.stack.name)


@operation(is_idempotent=True)
def rolled_out(decisions: HostDecisions):
    """``docker stack deploy`` wave by wave, each gated (first manager only)."""
    if not decisions.to_start:
        host.noop("every service runs its spec")
        return
    yield commands.stackswarm(decisions.plan.stack.deploy_dir, "deploy", "--release", decisions.release)


def _summarise(rows: dict[str, dict], report_to: Path | None, release: str, changed: list[str]) -> None:
    click.echo(render_table(f"swarm (manager {host.name})", rows), err=False)
    if report_to is not None:
        write_report(report_to, host.name, rows, run=RELEASE_ID, release=release, changed=changed, built=[])


def _verify_now(deploy_dir: str, release: str, changed: list[str], report_to: Path | None) -> None:
    ok, output = host.run_shell_command(commands.stackswarm(deploy_dir, "status", "--wait", "60", "--release", release))
    if not ok:
        raise OperationError(f"stackswarm.py status failed: {output.stderr}")
    rows = json.loads(output.stdout)
    _summarise(rows, report_to, release, changed)
    failed = [name for name, row in rows.items() if row["check"] != "ok"]
    if failed:
        _, logs = host.run_shell_command(commands.stackswarm(deploy_dir, "logs", *failed))
        raise OperationError("\n".join(f"SERVICE FAILED: '{n}' on the swarm: {rows[n]['check']}" for n in failed)
                             + "\n" + logs.stdout)


@operation(is_idempotent=True)
def verified(deploy_dir: str, release: str, changed: list[str], report_to: Path | None):
    """Every service's tasks running healthy; without changes a fact, so a no-op stays one."""
    if not changed:
        rows = read_fact(host, SwarmStatus, deploy_dir=deploy_dir)
        if rows is not None and all(row["check"] == "ok" for row in rows.values()):
            if host.state.is_executing:
                _summarise(rows, report_to, release, [])
            host.noop(f"all {len(rows)} swarm services healthy")
            return
    yield callback(_verify_now, deploy_dir, release, changed, report_to)


@deploy("Roll out the swarm stack")
def swarm_rollout(decisions: HostDecisions) -> None:
    compose_retired(name="Compose containers of the stack (switching engines)", decisions=decisions)
    if decisions.swarm_manager:
        rolled_out(name="Stack deployed in dependency waves", decisions=decisions)


@deploy("Verify the swarm stack")
def verify_swarm(decisions: HostDecisions, report_to: Path | None = LAST_REPORT) -> None:
    if decisions.swarm_manager:
        verified(name="Health of every swarm service", deploy_dir=decisions.plan.stack.deploy_dir,
                 release=decisions.release, changed=decisions.to_start, report_to=report_to)


@operation(is_idempotent=True)
def swarm_stack_removed(stack: str):
    """Switching an environment from swarm back to compose: the manager removes the stack
    (services only: volumes and the Docker secrets stay; the swarm itself stays formed)."""
    member = host.get_fact(SwarmNode)
    if not (member.manager and host.get_fact(SwarmStackHashes, stack=stack)):
        host.noop("no swarm stack to remove")
        return
    yield commands.swarm_stack_remove(stack)


@operation(is_idempotent=True)
def swarm_tasks_gone(stack: str, timeout: int = 120):
    """Wait until this host's task containers have stopped, so compose finds the ports and
    volumes free; remove those a node kept after it left the swarm (no manager will)."""
    leftovers = host.get_fact(SwarmTaskContainers, stack=stack)
    if not leftovers:
        host.noop("no swarm task of the stack here")
        return
    if host.get_fact(SwarmNode).state == "inactive":  # the node left the swarm: nobody else removes them
        yield commands.remove_containers(leftovers)
        return
    yield commands.swarm_tasks_gone(stack, timeout)


@deploy("Retire the swarm engine's stack (switching engines)")
def swarm_retired(stack: str) -> None:
    swarm_stack_removed(name="Swarm stack removed", stack=stack)
    swarm_tasks_gone(name="Swarm tasks stopped", stack=stack)


@operation(is_idempotent=True)
def rolled_back(deploy_dir: str, target: str, to_change: list[str]):
    """Back to ``target``'s stack: Swarm's own rollback where the previous spec is the target's,
    then the target's waves, gated (first manager only)."""
    if not to_change:
        host.noop(f"every service runs release {target}'s spec")
        return
    yield commands.stackswarm(deploy_dir, "deploy", "--release", target, "--rollback")


def swarm_rollback_changes(deploy_dir: str, target: str, stack: str) -> list[str]:
    """The services whose spec differs from ``target``'s (read on the first manager)."""
    lines = host.get_fact(FileContents, path=posixpath.join(deploy_dir, "releases", target, MANIFEST_FILE))
    if not lines:
        raise OperationError(f"{host.name}: release {target} has no swarm stack ({MANIFEST_FILE})")
    wanted = json.loads("\n".join(lines))["services"]
    deployed = read_fact(host, SwarmStackHashes, stack=stack)
    return sorted(name for name, spec in wanted.items() if deployed.get(name) != spec["config_hash"])

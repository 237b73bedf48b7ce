"""Phase 4: services start in dependency waves, each gated on real readiness.

Apps roll (new container beside the old one, gated, then the gateway switches and the old
one drains); infrastructure and the gateway's image are stop-then-start. A service that
fails its gate is rolled back by the helper and the run stops.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy, operation

from stackdeploy.commands import live, stackctl
from stackdeploy.desired import HostDecisions


@operation(is_idempotent=True)
def wave(deploy_dir: str, release: str, names: list[str]):
    """Roll out the given services of one wave (or reload the gateway) and wait until ready,
    each service's start and readiness shown as it happens."""
    if not names:
        host.noop("wave up to date")
        return
    yield live(stackctl(deploy_dir, host.name, "up", "--release", release, *names))


def start_services(deploy_dir: str, release: str, waves: list[list[str]], to_change: list[str],
                   replicated: frozenset[str], batch: int, label: dict[str, str]) -> None:
    """One operation per wave of the whole stack, on every host, so pyinfra's wait for all
    hosts after each operation is the barrier between waves across hosts. A wave holding a
    service placed on several hosts runs ``batch`` hosts at a time, so the others keep serving."""
    for number, names in enumerate(waves, start=1):
        title = ", ".join(label.get(n, n) for n in names)
        parallel = {"_parallel": batch} if replicated & set(names) else {}
        wave(name=f"Wave {number}: {title}", deploy_dir=deploy_dir, release=release,
             names=[n for n in names if n in to_change], **parallel)


@deploy("Start services in dependency waves")
def start_waves(decisions: HostDecisions) -> None:
    plan = decisions.plan
    label = {n: f"{n} (STAND-IN)" for n in plan.stack.services if plan.is_standin(n)}
    start_services(plan.stack.deploy_dir, decisions.release, plan.waves, decisions.changed_services,
                   plan.replicated, plan.stack.rollout_batch, label)

"""Phase 4: services start in dependency waves, each gated on real readiness."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy, operation

from stackdeploy.plan import Plan
from stackdeploy.remote import is_standin, stackctl


@operation(is_idempotent=True)
def wave(plan: Plan, to_start: list[str]):
    """(Re)create the given services and wait until each is really ready."""
    if not to_start:
        host.noop("wave up to date")
        return
    yield stackctl(plan, "up", *(f"{n}={plan.services[n].config_hash}" for n in to_start))


@deploy("Start services in dependency waves")
def start_waves(plan: Plan, to_start: list[str]) -> None:
    """One operation per wave of the whole stack, on every host, so pyinfra's wait for all
    hosts after each operation is the barrier between waves across hosts."""
    for number, names in enumerate(plan.waves, start=1):
        label = ", ".join(f"{n} (STAND-IN)" if is_standin(plan, n) else n for n in names)
        wave(name=f"Wave {number}: {label}", plan=plan, to_start=[n for n in names if n in to_start])

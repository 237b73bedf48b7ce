"""The compose engine: one ``docker compose`` project per host, rolled wave by wave by the
shipped helper (start-first for apps behind the gateway, stop-then-start for the rest)."""

from __future__ import annotations

from dataclasses import dataclass

from stackdeploy import contract
from stackdeploy.desired import HostDecisions
from stackdeploy.model import Stack
from stackdeploy.plan import Plan
from stackdeploy.rollback import RollbackDecisions
from stackdeploy.startup import start_services, start_waves
from stackdeploy.swarmdeploy import swarm_retired
from stackdeploy.verify import verify_stack


@dataclass(frozen=True)
class ComposeEngine:
    name: str = "compose"

    def describe_start(self, plan: Plan, name: str) -> str:
        """Rolling apps keep serving; the rest stop first."""
        return f"{name} (rolling)" if plan.services[name].strategy == contract.ROLLING else f"{name} (stop-then-start)"

    def prepare(self, stack: Stack) -> None:
        """Nothing: the engine itself is ensured for both engines before this."""

    def roll_out(self, decisions: HostDecisions) -> None:
        plan = decisions.plan
        swarm_retired(plan.stack.name)  # a stack switched back from swarm: its services go first
        start_waves(decisions)
        verify_stack(plan, decisions.release, decisions.to_build, decisions.changed_services, decisions.moves_images,
                     observed=decisions.state)

    def verify(self, decisions: HostDecisions) -> None:
        verify_stack(decisions.plan, decisions.state.current, built=[], started=[], base_built=False, report_to=None)

    def rollback_scope(self, decisions: HostDecisions, rollback: RollbackDecisions) -> RollbackDecisions:
        return rollback  # each host rolls back its own containers

    def roll_back(self, decisions: HostDecisions, rollback: RollbackDecisions) -> None:
        start_services(rollback.deploy_dir, rollback.target, rollback.waves, rollback.to_change,
                       decisions.plan.replicated, rollback.batch, {})
        verify_stack(decisions.plan, rollback.target, built=[], started=rollback.to_change, base_built=False)

    def check_restore(self) -> None:
        """Compose restores in place: the helper stops only what it replaces."""

"""The swarm engine: one ``docker stack`` for every host, deployed and rolled back by the first
manager in dependency waves; every other node only joins and keeps its labels."""

from __future__ import annotations

from dataclasses import dataclass, replace

from stackdeploy.desired import HostDecisions
from stackdeploy.inputfiles import StackInputError
from stackdeploy.model import Stack
from stackdeploy.plan import Plan
from stackdeploy.rollback import RollbackDecisions
from stackdeploy.swarm import form_swarm
from stackdeploy.swarmdeploy import rolled_back, swarm_rollback_changes, swarm_rollout, verified, verify_swarm
from stackdeploy.verify import LAST_REPORT


@dataclass(frozen=True)
class SwarmEngine:
    name: str = "swarm"

    def describe_start(self, plan: Plan, name: str) -> str:
        """Swarm updates it, the way swarmstack.py's update_config says."""
        return f"{name} (swarm {'start-first' if plan.stack.services[name].rolls else 'stop-first'})"

    def prepare(self, stack: Stack) -> None:
        form_swarm(stack)

    def roll_out(self, decisions: HostDecisions) -> None:
        swarm_rollout(decisions)
        verify_swarm(decisions)

    def verify(self, decisions: HostDecisions) -> None:
        if decisions.swarm_manager:  # the first manager sees the whole swarm stack
            verified(name="Health of every swarm service", deploy_dir=decisions.plan.stack.deploy_dir,
                     release=decisions.state.current, changed=[], report_to=None)

    def rollback_scope(self, decisions: HostDecisions, rollback: RollbackDecisions) -> RollbackDecisions:
        """The first manager decides (and rolls back) for the whole swarm stack; the others change nothing."""
        changes = (swarm_rollback_changes(rollback.deploy_dir, rollback.target, decisions.plan.stack.name)
                   if decisions.swarm_manager else [])
        return replace(rollback, to_change=changes)

    def roll_back(self, decisions: HostDecisions, rollback: RollbackDecisions) -> None:
        if decisions.swarm_manager:
            rolled_back(name="Swarm stack rolled back", deploy_dir=rollback.deploy_dir, target=rollback.target,
                        to_change=rollback.to_change)
            verified(name="Health of every swarm service", deploy_dir=rollback.deploy_dir, release=rollback.target,
                     changed=rollback.to_change, report_to=LAST_REPORT)

    def check_restore(self) -> None:
        # Stopping a task's container makes Swarm start another on the volume being replaced.
        raise StackInputError("restore.py: not available on the swarm engine yet (Swarm would restart a "
                              "service while its volume is replaced); switch the environment to "
                              'engine = "compose", restore, and switch back (volumes are kept both ways)')

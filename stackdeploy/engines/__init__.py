"""The engines, as peers: what the deploy files ask of whichever engine a stack runs on.

``deploy.py``, ``rollback.py``, ``restore.py`` and ``verify.py`` hold no engine branch: they
call ``engine_for(stack)`` and then the same five steps on either engine, the way Kamal's
commands ask one app object whatever runs it. Each engine keeps its own parts (compose's waves
and retirement, swarm's stack file and manager) behind these methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from stackdeploy.desired import HostDecisions
    from stackdeploy.model import Stack
    from stackdeploy.plan import Plan
    from stackdeploy.rollback import RollbackDecisions


class Engine(Protocol):
    """One engine's answer to each step of a run."""

    name: str

    def describe_start(self, plan: Plan, name: str) -> str:
        """A service to (re)start, and how, for the announcement."""

    def prepare(self, stack: Stack) -> None:
        """What the engine needs before the helpers ship (swarm: the swarm formed and labelled)."""

    def roll_out(self, decisions: HostDecisions) -> None:
        """Start or update what changed, gated on health, then verify and report."""

    def verify(self, decisions: HostDecisions) -> None:
        """Check the current release and print the summary; change and write nothing."""

    def rollback_scope(self, decisions: HostDecisions, rollback: RollbackDecisions) -> RollbackDecisions:
        """``rollback`` with the services this host changes going back (swarm: the manager decides all)."""

    def roll_back(self, decisions: HostDecisions, rollback: RollbackDecisions) -> None:
        """Take the services of ``rollback`` back to its target release, gated, then verify."""

    def check_restore(self) -> None:
        """Refuse a restore the engine cannot do safely (raises StackInputError)."""


def engine_for(stack: Stack) -> Engine:
    """The engine ``stack`` runs on (its ``engine`` setting)."""
    if stack.engine == "swarm":
        from stackdeploy.engines.swarm import SwarmEngine
        return SwarmEngine()
    from stackdeploy.engines.compose import ComposeEngine
    return ComposeEngine()

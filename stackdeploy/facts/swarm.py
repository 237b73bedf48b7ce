"""The swarm as a host's engine sees it: its own membership, the nodes, the stack's services and tasks."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from pyinfra.api import FactBase, QuoteString, StringCommand

from stackdeploy import commands, contract
from stackdeploy.facts import NO_VALUE, json_output, unexpected_output

CONTAINER_ID = re.compile(r"[0-9a-f]{12}([0-9a-f]{52})?")  # `docker ps -q` (short) or full ids


@dataclass(frozen=True)
class SwarmMembership:
    """This engine's place in a swarm (``docker info``'s Swarm section)."""

    state: str = "inactive"  # inactive, pending, active, error, locked
    node_id: str = ""
    manager: bool = False
    address: str = ""
    live_restore: bool = False  # incompatible with swarm mode: provision.py turns it off on swarm hosts


@dataclass(frozen=True)
class SwarmNodeInfo:
    """One node, as a manager sees it."""

    id: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    availability: str = "active"


class SwarmNode(FactBase[SwarmMembership]):
    requires_command = "docker"

    def command(self) -> StringCommand:
        return StringCommand("docker", "info", "--format",
                             QuoteString('{"swarm": {{json .Swarm}}, "live_restore": {{json .LiveRestoreEnabled}}}'))

    @staticmethod
    def default() -> SwarmMembership:
        return SwarmMembership()

    def process(self, output: list[str]) -> SwarmMembership:
        found = json_output("SwarmNode", output)
        data = found["swarm"]
        return SwarmMembership(state=data.get("LocalNodeState", "inactive"), node_id=data.get("NodeID", ""),
                               manager=bool(data.get("ControlAvailable")), address=data.get("NodeAddr", ""),
                               live_restore=bool(found["live_restore"]))


def parse_nodes(data: list[dict]) -> list[SwarmNodeInfo]:
    return [SwarmNodeInfo(id=node["ID"], address=node["Status"].get("Addr", ""),
                          labels=node["Spec"].get("Labels") or {}, availability=node["Spec"].get("Availability", ""))
            for node in data]


class SwarmNodes(FactBase[list[SwarmNodeInfo]]):
    """Every node of the swarm, read on a manager."""

    requires_command = "docker"

    def command(self) -> StringCommand:
        return commands.swarm_nodes()

    def process(self, output: list[str]) -> list[SwarmNodeInfo]:
        return parse_nodes(json_output("SwarmNodes", output))


class SwarmStackHashes(FactBase[dict[str, str]]):
    """Service (short name) -> the config hash its spec carries, for one stack, on a manager."""

    requires_command = "docker"

    def command(self, stack: str) -> StringCommand:
        label = f"label={contract.STACK_NAMESPACE_LABEL}={stack}"
        listing = commands.argv("docker", "service", "ls", "-q", "--filter", label)
        template = f'{{{{.Spec.Name}}}} {{{{index .Spec.Labels "{contract.CONFIG_HASH_LABEL}"}}}}'
        # ``&&``: a listing that fails fails the read (an empty one is an answer: no service yet).
        return StringCommand("ids=$(", listing, ") &&", "if [ -n \"$ids\" ];", "then", "docker", "service",
                             "inspect", "--format", QuoteString(template), "$ids;", "fi")

    @staticmethod
    def default() -> dict[str, str]:
        return {}  # no service of the stack yet

    def process(self, output: list[str]) -> dict[str, str]:
        found = {}
        for line in output:
            name, _, config_hash = line.strip().partition(" ")
            if not name:
                continue
            label = config_hash.strip()
            if "_" not in name or (" " in label and label != NO_VALUE):  # <stack>_<service> <hash or NO_VALUE>
                raise unexpected_output("SwarmStackHashes", output)
            found[name.split("_", 1)[-1]] = "" if label == NO_VALUE else label
        return found


class SwarmStatus(FactBase[dict[str, dict] | None]):
    """``stackswarm.py status``: every service's tasks against what the current release wants
    (None before the first swarm release)."""

    requires_command = "python3"

    def command(self, deploy_dir: str) -> StringCommand:
        helper = posixpath.join(deploy_dir, "stackswarm.py")
        current = posixpath.join(deploy_dir, "current", "swarm.json")
        return StringCommand("if [ -f", commands.QuoteString(current), "]; then",
                             commands.argv("python3", helper, "status"), "; fi")

    @staticmethod
    def default() -> None:
        return None  # no swarm release on this host yet

    def process(self, output: list[str]) -> dict[str, dict] | None:
        return json_output("SwarmStatus", output)


class SwarmTaskContainers(FactBase[list[str]]):
    """Ids of this host's containers that are Swarm tasks of the stack (none off the swarm engine)."""

    requires_command = "docker"

    def command(self, stack: str) -> StringCommand:
        return commands.swarm_task_containers(stack)

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        ids = [line.strip() for line in output if line.strip()]
        if not all(CONTAINER_ID.fullmatch(found) for found in ids):
            raise unexpected_output("SwarmTaskContainers", output)
        return ids

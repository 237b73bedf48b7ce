"""The swarm engine on the pyinfra side: forming the swarm, node labels, the rollout.

    init (first manager) -> join (the others) -> node labels (from inventory groups)
    -> [prune nodes that left the inventory, only with ``--data prune_nodes=True``]

Each step reads the swarm first (facts) and changes only what differs, so a second run
reports no changes. provision.py and deploy.py both run it: one command still takes bare
hosts to a running stack. A joining node needs a token only a manager has, and the first
manager may be formed in this very run, so joining and labelling read the manager live
(over SSH from the control machine, like image shipping) when they execute.
"""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import Host, OperationError, StringCommand, operation

from stackdeploy import commands
from stackdeploy.callback import callback
from stackdeploy.control import run_on_control_machine
from stackdeploy.facts.swarm import SwarmMembership, SwarmNode, SwarmNodeInfo, SwarmNodes, parse_nodes
from stackdeploy.model import Stack
from stackdeploy.swarmstack import node_labels


def managers(stack: Stack, inventory_hosts: list[Host]) -> list[Host]:
    """The hosts of the managers group; the first host of the inventory when there is none."""
    return [h for h in inventory_hosts if stack.swarm.managers_group in h.groups] or inventory_hosts[:1]


def first_manager(stack: Stack, inventory_hosts: list[Host]) -> Host:
    """The host that inits the swarm and deploys the stack."""
    return managers(stack, inventory_hosts)[0]


def advertise_address(target: Host) -> str:
    return str(target.data.get("private_address") or "127.0.0.1")


def _on(target: Host, command: StringCommand, what: str) -> str:
    result = run_on_control_machine(commands.run_over_ssh(commands.ssh_to(target), command), timeout=120)
    if result.returncode != 0:
        if "not a swarm manager" in result.stderr:  # pyinfra --serial ran this host before the manager
            raise OperationError(f"{what} on {target.name} failed: it is not a swarm manager yet. The first "
                                 "manager inits the swarm in this same run: run without --serial, or with "
                                 f"--limit {target.name} first")
        raise OperationError(f"{what} on {target.name} failed: {result.stderr.strip()[-1000:]}")
    return result.stdout


def _join(manager: Host, role: str, address: str) -> None:
    token = _on(manager, commands.swarm_join_token(role), "reading the join token").strip()
    ok, output = host.run_shell_command(commands.swarm_join(token, address, f"{advertise_address(manager)}:2377"))
    if not ok:
        raise OperationError(f"joining the swarm of {manager.name} failed: {output.stderr}")


def _joinable(state: SwarmMembership) -> bool:
    """True for an engine outside any swarm; a state needing hands (error, locked) raises."""
    if state.state == "active":
        host.noop(f"in the swarm as a {'manager' if state.manager else 'worker'}")
        return False
    if state.state != "inactive":
        raise OperationError(f"{host.name}: swarm state is '{state.state}'; fix it by hand (docker info)")
    if state.live_restore:
        raise OperationError(f"{host.name}: the engine has live-restore on, which swarm mode refuses: "
                             "run provision.py (it turns it off on swarm hosts) and deploy again")
    return True


@operation(is_idempotent=True)
def initialised():
    """The first manager inits the swarm (an operation of its own: every join comes after it)."""
    if _joinable(host.get_fact(SwarmNode)):
        yield commands.swarm_init(advertise_address(host))


@operation(is_idempotent=True)
def joined(stack: Stack, inventory_hosts: list[Host]):
    """The other hosts join: managers as managers, the rest as workers."""
    if _joinable(host.get_fact(SwarmNode)):
        role = "manager" if host in managers(stack, inventory_hosts) else "worker"
        manager = first_manager(stack, inventory_hosts)
        yield callback(_join, manager, role, advertise_address(host))


def wanted_labels(stack: Stack, inventory_hosts: list[Host]) -> dict[str, dict[str, str]]:
    """Advertise address -> the node labels of the inventory host there."""
    return {advertise_address(h): node_labels(set(h.groups), stack) for h in inventory_hosts}


def label_updates(nodes: list[SwarmNodeInfo], wanted: dict[str, dict[str, str]]) -> list[list[str]]:
    """``docker node update`` argv for every node whose group labels differ from the inventory's.
    A single-node swarm (``@local``) is matched whatever address it advertises."""
    updates = []
    for node in nodes:
        labels = wanted.get(node.address)
        if labels is None and len(nodes) == 1 and len(wanted) == 1:
            labels = next(iter(wanted.values()))
        if labels is None:
            continue
        ours = {k: v for k, v in node.labels.items() if k.startswith("group.")}
        if ours == labels:
            continue
        args = ["docker", "node", "update"]
        args += [w for k in sorted(set(ours) - set(labels)) for w in ("--label-rm", k)]
        args += [w for k, v in sorted(labels.items()) for w in ("--label-add", f"{k}={v}")]
        updates.append([*args, node.id])
    return updates


def _label_nodes(wanted: dict[str, dict[str, str]]) -> None:
    ok, output = host.run_shell_command(commands.swarm_nodes())
    if not ok:
        raise OperationError(f"listing the swarm's nodes failed: {output.stderr}")
    for args in label_updates(parse_nodes(json.loads(output.stdout)), wanted):
        ok, output = host.run_shell_command(commands.argv(*args))
        if not ok:
            raise OperationError(f"labelling node {args[-1]} failed: {output.stderr}")


@operation(is_idempotent=True)
def labels(stack: Stack, inventory_hosts: list[Host]):
    """Node labels ``group.<name>=true`` from the inventory groups: the placement map's
    constraints. Read live when a node joined in this run (the fact could not see it)."""
    wanted = wanted_labels(stack, inventory_hosts)
    state = host.get_fact(SwarmNode)
    if state.state == "active" and state.manager:
        nodes = host.get_fact(SwarmNodes)
        known = {n.address for n in nodes}
        if (known >= set(wanted) or len(nodes) == len(wanted) == 1) and not label_updates(nodes, wanted):
            host.noop("node labels match the inventory groups")
            return
    yield callback(_label_nodes, wanted)


@operation(is_idempotent=True)
def pruned_nodes(stack: Stack, inventory_hosts: list[Host]):
    """Drain, then remove, nodes whose address is no longer in the inventory (asked for
    explicitly: a node missing from one run's inventory is not lost by accident)."""
    wanted = wanted_labels(stack, inventory_hosts)
    state = host.get_fact(SwarmNode)
    gone = [n for n in host.get_fact(SwarmNodes) if n.address not in wanted] if state.manager else []
    if not gone:
        host.noop("every node is in the inventory")
        return
    for node in gone:
        yield from commands.node_removed(node.id)


def form_swarm(stack: Stack, prune: bool = False) -> None:
    """Every inventory host in one swarm, labelled by its groups (provision.py and deploy.py)."""
    inventory_hosts = list(host.inventory)
    manager = first_manager(stack, inventory_hosts)
    if host == manager:
        initialised(name="Swarm initialised (first manager)")
    else:
        joined(name="Swarm joined", stack=stack, inventory_hosts=inventory_hosts)
    if host == manager:
        labels(name="Swarm node labels (placement groups)", stack=stack, inventory_hosts=inventory_hosts)
        if prune:
            pruned_nodes(name="Swarm nodes that left the inventory", stack=stack, inventory_hosts=inventory_hosts)

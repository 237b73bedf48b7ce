"""Production host provisioning, as pyinfra ``@deploy`` functions (see provision.py).

    engine -> deploy user -> daemon settings -> firewall (and the same rules again at boot)

Each step reads the host first and changes only what differs, so a second run reports
no changes. Debian and Ubuntu hosts; with or without systemd.
"""

from __future__ import annotations

import json
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import deploy, operation
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server, systemd

from stackdeploy import commands, logstore
from stackdeploy.docker import ensure_engine
from stackdeploy.facts.docker import ENGINE_UP, DockerEngineStatus
from stackdeploy.facts.firewall import FilterRules, chain_rules, jumps_to
from stackdeploy.facts.swarm import SwarmNode
from stackdeploy.model import RegistrySettings
from stackdeploy.placement import Placement
from stackdeploy.swarm import form_swarm

DAEMON_JSON = "/etc/docker/daemon.json"
# daemon.json keys dockerd applies on SIGHUP, without a restart (moby's daemon/reload.go, 20.10
# too); a change of any other key (the log options) waits for dockerd's next start.
RELOADABLE = frozenset({"live-restore", "insecure-registries"})
CHAIN = "STACKDEPLOY"
SWARM_CHAIN = "STACKDEPLOY-SWARM"
# What swarm nodes say to each other: cluster management, gossip, overlay traffic (VXLAN).
SWARM_PORTS = (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789))
# iptables rules live in the kernel only: this script puts the chains back, and the unit runs
# it at every boot before dockerd starts any container (it makes DOCKER-USER, which dockerd
# keeps as it finds it), so no published port is ever open to everyone. Under /opt, as an add-on's
# own files (and so private to each simulated host, whose /opt is its own).
FIREWALL_SCRIPT = "/opt/stackdeploy/firewall"
FIREWALL_UNIT = "stackdeploy-firewall.service"
FIREWALL_UNIT_TEXT = f"""\
# Written by stackdeploy's provision.py.
[Unit]
Description=stackdeploy firewall: the stack's internal ports for its own hosts only
Before=docker.service
After=network-pre.target

[Service]
Type=oneshot
ExecStart={FIREWALL_SCRIPT}
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""


def daemon_settings(engine: str, registry: RegistrySettings | None = None, in_swarm: bool = False) -> dict:
    """daemon.json: log rotation, and live-restore (containers survive an engine restart),
    which swarm mode refuses, so a swarm host does without it, and so does a compose host that
    is still a swarm node (``in_swarm``: dockerd would not start again); an insecure registry
    (image_distribution "registry") is listed in insecure-registries, so the engine pulls and
    pushes over plain HTTP there. no-new-privileges is every container's default: Swarm takes no
    security_opt, so on a swarm node this is what gives its tasks that setting."""
    settings: dict = {
        "live-restore": engine != "swarm" and not in_swarm,
        "no-new-privileges": True,
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
    }
    if registry is not None and registry.insecure:
        settings["insecure-registries"] = [registry.host]
    return settings


def needs_restart(current: list[str] | None, wanted: dict) -> bool:
    """Whether dockerd must restart to take ``wanted`` over the daemon.json it has (``current``:
    its lines, None without one): only when a key outside RELOADABLE changes. A file that is
    not a JSON object counts as nothing read."""
    try:
        found = json.loads("\n".join(current)) if current else {}
    except ValueError:
        found = {}
    found = found if isinstance(found, dict) else {}
    changed = {key for key in found.keys() | wanted.keys() if found.get(key) != wanted.get(key)}
    return bool(changed - RELOADABLE)


def restarts_here(restart: bool, swarm_member: bool) -> bool:
    """Whether provision.py restarts this host's dockerd for a ``restart``-worthy change: not on
    a host already in a swarm, where live-restore is off and a restart stops its tasks; pyinfra
    runs the hosts at once, and every node restarting together stops the whole stack."""
    return restart and not swarm_member


def firewall_rules(where: Placement, host_name: str) -> list[str]:
    """The rules (``-A`` form) of our chain: only the stack's own hosts reach the ports this
    host publishes for other hosts; the gateway's public port is left alone. On the swarm
    engine that is the log store, which Swarm publishes in host mode on its node (and Docker
    forwards through DOCKER-USER like any published port)."""
    address = where.hosts[host_name].address
    peers = sorted({h.address for h in where.hosts.values() if h.address})
    swarm = where.stack.engine == "swarm"
    rules = []
    for name in where.services_on[host_name]:
        service = where.stack.services[name]
        published = where.is_published(host_name, name) or (swarm and service.role == "logstore")
        # Without an address (one host), the log store is published on 127.0.0.1 alone.
        if service.role == "gateway" or not published or not address:
            continue
        # Only the original direction: replies (from the container) must pass. Written the
        # way `iptables -S` prints it, so the fact compares equal when in place.
        protocol = logstore.PROTOCOL if service.role == "logstore" else "tcp"
        match = f"-p {protocol} -m conntrack --ctorigdst {address} --ctorigdstport {service.port} --ctdir ORIGINAL"
        rules += [f"-A {CHAIN} -s {peer}/32 {match} -j RETURN" for peer in peers]
        rules.append(f"-A {CHAIN} {match} -j DROP")
    return rules


def swarm_rules(where: Placement, host_name: str) -> list[str]:
    """Rules of the swarm chain (hooked into INPUT): the swarm's ports answer the stack's own
    hosts and nobody else."""
    peers = sorted({h.address for name, h in where.hosts.items() if h.address and name != host_name})
    rules = []
    for protocol, port in SWARM_PORTS:
        match = f"-p {protocol} -m {protocol} --dport {port}"
        rules += [f"-A {SWARM_CHAIN} -s {peer}/32 {match} -j RETURN" for peer in peers]
        rules.append(f"-A {SWARM_CHAIN} {match} -j DROP")
    return rules


def restore_input(rules: list[str] | None, hook: bool, name: str = CHAIN, parent: str = "DOCKER-USER") -> str:
    """``iptables-restore --noflush`` input that sets our chain to ``rules`` (None: leave it)
    and, with ``hook``, jumps to it first thing in DOCKER-USER.

    With --noflush only what the input names changes: declaring our chain creates it, or
    empties it when it exists, and the rules follow. The table is committed at once, so
    traffic never meets the chain empty or half-filled, as it did between a flush and the
    re-adds; other chains, Docker's included, keep their rules.
    """
    lines = ["*filter"]
    if rules is not None:
        lines += [f":{name} - [0:0]", *rules]
    if hook:
        lines.append(f"-I {parent} 1 -j {name}")
    return "\n".join([*lines, "COMMIT", ""])


@operation(is_idempotent=True)
def chain(rules: list[str], chain_name: str = CHAIN, parent: str = "DOCKER-USER"):
    """Make our chain hold exactly ``rules`` and hook it into ``parent``, in one atomic commit."""
    table = host.get_fact(FilterRules)
    rewrite = chain_rules(table, chain_name) != [f"-N {chain_name}", *rules]
    hook = not jumps_to(table, parent, chain_name)
    if not (rewrite or hook):
        host.noop("firewall rules up to date")
        return
    text = restore_input(rules if rewrite else None, hook, chain_name, parent)
    yield commands.iptables_restore(text)


def firewall_script(chains: list[tuple[str, str, list[str]]]) -> str:
    """A shell script that makes each (chain, parent, rules) of ``chains`` what ``chain`` makes
    it: the same atomic iptables-restore, and the jump added only where it is missing."""
    lines = ["#!/bin/sh", "# Written by stackdeploy's provision.py: the firewall again after a boot.", "set -e"]
    for name, parent, rules in chains:
        if parent == "DOCKER-USER":  # at boot dockerd has not made it yet
            lines.append(commands.ensure_chain(parent).get_raw_value())
        text = restore_input(rules, hook=False, name=name, parent=parent)
        lines.append(commands.iptables_restore(text).get_raw_value())
        lines.append(commands.ensure_jump(parent, name).get_raw_value())
    return "\n".join(lines) + "\n"


@deploy("Firewall")
def firewall(where: Placement, on_systemd: bool) -> None:
    """The chains now, and the script and unit that apply them at every boot. Without systemd
    nothing runs the script at boot: the run says so, and provision.py applies them again."""
    chains = [(CHAIN, "DOCKER-USER", firewall_rules(where, host.name))]
    chain(name="Firewall: published stack ports only for stack hosts", rules=chains[0][2])
    if where.stack.engine == "swarm":
        chains.append((SWARM_CHAIN, "INPUT", swarm_rules(where, host.name)))
        chain(name="Firewall: swarm ports only between stack hosts", rules=chains[1][2], chain_name=SWARM_CHAIN,
              parent="INPUT")
    files.put(name="Firewall: the script that applies it again", src=StringIO(firewall_script(chains)),
              dest=FIREWALL_SCRIPT, mode="755")
    if not on_systemd:
        logger.warning(f"{host.print_prefix}no systemd: the firewall rules last until the next boot; run "
                       f"provision.py (or {FIREWALL_SCRIPT}) again after one")
        return
    unit = files.put(name="Firewall: applied at every boot (systemd unit)", src=StringIO(FIREWALL_UNIT_TEXT),
                     dest=f"/etc/systemd/system/{FIREWALL_UNIT}", mode="644")
    systemd.service(name="Firewall: unit enabled", service=FIREWALL_UNIT, running=None, enabled=True,
                    daemon_reload=unit.did_change)


@operation(is_idempotent=True)
def reload_dockerd(systemd: bool, restart: bool = True):
    """Apply daemon.json. Under systemd a restart when a key dockerd reads only at start changed
    (live-restore keeps containers running), else a reload (SIGHUP), which applies live-restore
    and insecure-registries without touching a container: a swarm host has no live-restore,
    and a restart would stop its tasks. Without systemd always SIGHUP; log options then apply
    from dockerd's next start."""
    if systemd:
        yield "systemctl restart docker" if restart else "systemctl reload docker"
    else:
        yield "kill -HUP $(pidof dockerd)"


@deploy("Provision Docker host")
def provision_host(where: Placement, deploy_user: str, public_key: str | None, needs_debootstrap: bool,
                   prune_nodes: bool = False) -> None:
    ensure_engine(needs_debootstrap=needs_debootstrap)
    server.group(name="docker group", group="docker")
    server.user(name=f"Deploy user {deploy_user} (docker group)", user=deploy_user, groups=["docker"],
                shell="/bin/bash", ensure_home=True, public_keys=[public_key] if public_key else None)
    swarm = where.stack.engine == "swarm"
    engine_up = host.get_fact(DockerEngineStatus)["engine"] == ENGINE_UP  # a stopped engine is in no swarm
    in_swarm = not swarm and engine_up and host.get_fact(SwarmNode).state != "inactive"
    if in_swarm:
        logger.warning(f"{host.print_prefix}still a swarm node, so live-restore stays off (dockerd refuses it in "
                       "swarm mode); to have it: docker swarm leave --force, then provision.py again")
    settings = daemon_settings(where.stack.engine, where.stack.registry, in_swarm)
    restart = needs_restart(host.get_fact(FileContents, path=DAEMON_JSON), settings)  # read before the put
    daemon = files.put(name="Daemon settings (log rotation, live-restore off on swarm hosts, insecure registry)",
                       src=StringIO(json.dumps(settings, indent=2, sort_keys=True) + "\n"),
                       dest=DAEMON_JSON, mode="644")
    on_systemd = host.get_fact(DockerEngineStatus)["systemd"]
    swarm_member = engine_up and host.get_fact(SwarmNode).state != "inactive"
    if restart and not (on_systemd and restarts_here(restart, swarm_member)):
        why = "it is a swarm node (restart one node at a time, drained)" if swarm_member else "no systemd"
        logger.warning(f"{host.print_prefix}dockerd is only reloaded, as {why}: it reads the log options and "
                       "no-new-privileges at its next start, so restart it to apply them")
    reload_dockerd(name="Apply daemon settings", systemd=on_systemd, restart=restarts_here(restart, swarm_member),
                   _if=daemon.did_change)
    firewall(where, on_systemd)
    if swarm:
        form_swarm(where.stack, prune=prune_nodes)

"""Small helpers shared by the phases: the host helper's command line, stand-in labels,
and what a run announces before it changes anything."""

from __future__ import annotations

import shlex

from pyinfra import host, logger
from pyinfra.api import Host

from stackdeploy.plan import Plan

STRICT_HOST_KEY = {"off": "no", "no": "no", "accept-new": "accept-new", "yes": "yes", "on": "yes"}


def ssh_command(target: Host) -> list[str]:
    """The ``ssh ...`` prefix that runs a command on ``target`` with its inventory data
    (empty for @local, where commands run right here)."""
    if target.name.startswith("@local"):
        return []
    data = target.data
    command = ["ssh", "-o", "BatchMode=yes"]
    if data.get("ssh_key"):
        command += ["-i", str(data.get("ssh_key"))]
    if data.get("ssh_port"):
        command += ["-p", str(data.get("ssh_port"))]
    if data.get("ssh_known_hosts_file"):
        command += ["-o", f"UserKnownHostsFile={data.get('ssh_known_hosts_file')}"]
    if data.get("ssh_strict_host_key_checking"):
        value = STRICT_HOST_KEY.get(str(data.get("ssh_strict_host_key_checking")), "yes")
        command += ["-o", f"StrictHostKeyChecking={value}"]
    address = data.get("ssh_hostname") or target.name
    user = data.get("ssh_user")
    return [*command, f"{user}@{address}" if user else str(address)]


def stackctl(plan: Plan, *args: str) -> str:
    """Command line of the host helper (files/stackctl.py) on the current host."""
    quoted = " ".join(shlex.quote(a) for a in args)
    return f"python3 {plan.stack.deploy_dir}/stackctl.py --host {shlex.quote(host.name)} {quoted}"


def is_standin(plan: Plan, name: str) -> bool:
    service = plan.stack.services.get(name)
    return plan.image_source == "local" and service is not None and service.image.get("local") == "ollama-standin"


def announce(plan: Plan, to_build: list[str], to_start: list[str], base_build: bool, to_ship: list[str]) -> None:
    """Say, while preparing, exactly what this run will change on this host (--dry too)."""
    builds = (["base image"] if base_build else []) + to_build
    shipped = f"; ship: {', '.join(to_ship)}" if to_ship else ""
    logger.info(f"{host.print_prefix}image source: {plan.image_source}; "
                f"build: {', '.join(builds) or 'nothing'}{shipped}; (re)start: {', '.join(to_start) or 'nothing'}")
    for name in plan.services:
        if is_standin(plan, name):
            logger.warning(f"{host.print_prefix}{name}: Ollama-API STAND-IN (offline mode, not Ollama)")

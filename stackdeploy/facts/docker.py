"""The engine and its tools on a host: what provision.py and the deploy's "ensure engine" phase read
before they install or start anything, and which registries the running engine trusts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TypedDict

from pyinfra.api import FactBase, QuoteString, StringCommand

from stackdeploy import commands
from stackdeploy.facts import json_output, unexpected_output

ENGINE_ABSENT, ENGINE_DOWN, ENGINE_UP = "absent", "down", "up"


class EngineStatus(TypedDict):
    """What a host has of the engine and the tools the deploy installs (a dict, as provision.py reads it)."""

    cli: bool  # the docker CLI
    dockerd: bool
    systemd: bool  # systemctl, and systemd running as init
    debootstrap: bool
    python3: bool
    engine: str  # ENGINE_ABSENT, ENGINE_DOWN or ENGINE_UP
    compose: str | None  # Compose v2's version, None when ``docker compose`` does not answer


ENGINE_KEYS = set(EngineStatus.__annotations__)


class DockerEngineStatus(FactBase[EngineStatus]):
    """Whether the docker CLI, dockerd, the engine API and Compose v2 are there."""

    requires_command = "sh"  # only the shell: this fact is how a host's missing tools are found

    def command(self) -> StringCommand:
        return commands.engine_status()

    def process(self, output: list[str]) -> EngineStatus:
        values = dict(line.split("=", 1) for line in output if "=" in line)
        if not values.keys() >= ENGINE_KEYS or values["engine"] not in (ENGINE_ABSENT, ENGINE_DOWN, ENGINE_UP):
            raise unexpected_output("DockerEngineStatus", output)
        return {
            "cli": values["cli"] == "yes",
            "dockerd": values["dockerd"] == "yes",
            "systemd": values["systemd"] == "yes",
            "debootstrap": values["debootstrap"] == "yes",
            "python3": values["python3"] == "yes",
            "engine": values["engine"],
            "compose": values["compose"].strip() or None,
        }


@dataclass(frozen=True)
class InsecureRegistries:
    """The registries an engine talks to without verified TLS: daemon.json's insecure-registries,
    by name, and networks (127.0.0.0/8 by default)."""

    names: frozenset[str] = frozenset()  # host[:port]
    networks: tuple[str, ...] = ()  # CIDRs

    def allow(self, host: str) -> bool:
        """Whether the engine talks to ``host`` (host[:port]) without verified TLS."""
        if host in self.names:
            return True
        address = host[1:host.find("]")] if host.startswith("[") else host.split(":", 1)[0]
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False  # a host name: the engine would resolve it; only its listed name counts here
        return any(ip in ipaddress.ip_network(network, strict=False) for network in self.networks)


class EngineInsecureRegistries(FactBase[InsecureRegistries]):
    """The insecure registries of the running engine (``docker info``), so a deploy that needs
    one the engine does not trust yet is refused before it changes anything."""

    requires_command = "docker"

    @staticmethod
    def default() -> InsecureRegistries:
        return InsecureRegistries()  # no engine yet: it trusts none

    def command(self) -> StringCommand:
        return commands.registry_config()

    def process(self, output: list[str]) -> InsecureRegistries:
        config = json_output("EngineInsecureRegistries", output)
        if not isinstance(config, dict):
            raise unexpected_output("EngineInsecureRegistries", output)
        names = [name for name, index in (config.get("IndexConfigs") or {}).items() if not index.get("Secure", True)]
        return InsecureRegistries(frozenset(names), tuple(config.get("InsecureRegistryCIDRs") or ()))


class VenvSitePackages(FactBase[str | None]):
    """The site-packages directory of a venv, as its own python reports it (None without the venv).

    Its path names the python minor version (``lib/python3.X``), which differs between
    distributions, so it is asked for rather than guessed or globbed.
    """

    def requires_command(self, venv: str) -> str:
        return f"{venv}/bin/python"

    def command(self, venv: str) -> StringCommand:
        return StringCommand(QuoteString(f"{venv}/bin/python"), "-c",
                             QuoteString("import sysconfig; print(sysconfig.get_path('purelib'))"))

    @staticmethod
    def default() -> None:
        return None

    def process(self, output: list[str]) -> str:
        path = output[-1].strip()
        if not (path.startswith("/") and path.endswith("-packages")):  # .../site-packages (dist-packages)
            raise unexpected_output("VenvSitePackages", output)
        return path

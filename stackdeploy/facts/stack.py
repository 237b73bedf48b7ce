"""The stack on one host: its containers, images, secrets and releases, and the deployed files' hashes."""

from __future__ import annotations

import json
from collections.abc import KeysView, Mapping
from dataclasses import dataclass, field

from pyinfra.api import FactBase, StringCommand

from stackdeploy import commands, contract
from stackdeploy.commands import ABSENT, SECTION
from stackdeploy.facts import NO_VALUE, json_output, unexpected_output
from stackdeploy.facts.docker import ENGINE_ABSENT, ENGINE_DOWN, ENGINE_UP

# The files of a deploy directory outside the releases that the deploy owns.
TOP_FILES = contract.TOP_FILES


@dataclass(frozen=True)
class ContainerState:
    """One container of the stack, as ``docker inspect`` describes it."""

    id: str
    state: str  # Docker's State.Status: running, exited, restarting, ...
    config_hash: str  # its CONFIG_HASH_LABEL: the release config it runs ("" when it has none)
    image_id: str = ""
    health: str = "none"  # Docker's healthcheck status: starting, healthy, unhealthy; none without one
    aliases: frozenset[str] = frozenset()  # its names on the stack's routes network (commands.container_format)

    @property
    def healthy(self) -> bool:
        """Running, and healthy by its own healthcheck where it has one."""
        return self.state == "running" and self.health in ("healthy", "none")


@dataclass(frozen=True)
class HostState:
    """The engine, the stack's containers and images, and the deploy directory's state."""

    engine: str = ENGINE_ABSENT  # ENGINE_ABSENT (no dockerd: a fresh host), ENGINE_DOWN or ENGINE_UP
    containers: Mapping[str, tuple[ContainerState, ...]] = field(default_factory=dict)  # service -> containers
    image_ids: Mapping[str, str] = field(default_factory=dict)  # tag -> image id
    secrets_json: str = ""  # the host's copy of the secrets ("" when it has none yet)
    tls_json: str = ""  # the host's copy of the gateway's certificate (stackdeploy.tls; "" when none)
    image_source: str = ""  # what a deploy's ``auto`` resolved to here ("" when none did)
    current: str = ""  # the release ``current`` points at ("" before the first release)

    @property
    def images(self) -> KeysView[str]:
        """The tags present on the host."""
        return self.image_ids.keys()

    def is_live(self, service: str) -> bool:
        """A running container of ``service`` answers to its live alias: the gateway finds it."""
        alias = contract.live_alias(service)
        return any(c.state == "running" and alias in c.aliases for c in self.containers.get(service, ()))

    def up_to_date(self, service: str, config_hash: str) -> bool:
        """Exactly one container, running what the release asks for (its label says so)."""
        found = self.containers.get(service, ())
        return len(found) == 1 and found[0].state == "running" and found[0].config_hash == config_hash


@dataclass(frozen=True)
class HostReleases:
    """``stackctl.py releases``: the current release, the release directories kept, the recorded
    history (oldest first) and the manifest of every kept release."""

    current: str = ""
    present: tuple[str, ...] = ()
    releases: tuple[contract.ReleaseRecord, ...] = ()
    manifests: Mapping[str, contract.ReleaseManifest] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployedFiles:
    """SHA-256 of the current release's files and of the deploy directory's own files."""

    release: Mapping[str, str] = field(default_factory=dict)  # path in the release -> hash
    top: Mapping[str, str] = field(default_factory=dict)  # path in the deploy dir -> hash


def _file(parts: dict[str, list[str]], name: str) -> str:
    """A section holding a file (or a link): its content, "" when the host has none."""
    return "" if parts[name] == [ABSENT] else "\n".join(parts[name])


def _sections(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        if line.startswith(SECTION):
            current = line[len(SECTION):]
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def parse_image_ids(lines: list[str]) -> dict[str, str]:
    """``docker images --format '{{.Repository}}:{{.Tag}} {{.ID}}'`` lines as tag -> id."""
    found = {}
    for line in lines:
        tag, _, image_id = line.strip().partition(" ")
        if tag and not tag.endswith(":<none>"):
            found[tag] = image_id.strip()
    return found


HOST_SECTIONS = {"containers", "images", "secrets", "tls", "image-source", "current"}  # after the engine, when it is up


class StackHostState(FactBase[HostState]):
    """Engine state, the stack's containers (with their config-hash label), present images,
    secrets, the remembered image source and the current release."""

    requires_command = "docker"

    def command(self, deploy_dir: str, project: str) -> StringCommand:
        return commands.host_state(deploy_dir, project)

    @staticmethod
    def default() -> HostState:
        return HostState()  # no docker CLI: a fresh host, nothing of the stack on it

    def process(self, output: list[str]) -> HostState:
        parts = _sections(output)
        engine = "".join(parts.get("engine", [])).strip()
        if engine in (ENGINE_ABSENT, ENGINE_DOWN):
            return HostState(engine=engine)  # nothing else to read (a stopped engine is started, then read)
        if engine != ENGINE_UP or not parts.keys() >= HOST_SECTIONS:
            raise unexpected_output("StackHostState", output)
        containers: dict[str, list[ContainerState]] = {}
        for line in parts["containers"]:
            fields = line.split(maxsplit=6)  # a missing label prints as "<no value>": two words
            if len(fields) == 7 and not line.startswith(NO_VALUE):
                service, container_id, status, image_id, health, aliases, label = fields
                names = frozenset() if aliases == commands.NO_ALIASES else frozenset(filter(None, aliases.split(",")))
                found = ContainerState(container_id, status, "" if label == NO_VALUE else label, image_id, health,
                                       names)
                containers.setdefault(service, []).append(found)
        return HostState(
            engine=engine,
            containers={service: tuple(found) for service, found in containers.items()},
            image_ids=parse_image_ids(parts["images"]),
            secrets_json=_file(parts, "secrets"),
            tls_json=_file(parts, "tls"),
            image_source=_file(parts, "image-source").strip(),
            current=_file(parts, "current").strip().rsplit("/", 1)[-1],
        )


class StackStatus(FactBase[dict[str, contract.ServiceStatus] | None]):
    """One probe of every service of the current release (``stackctl.py status``); None where
    there is no python3 to run the helper with (pyinfra's default), so nothing reads as healthy."""

    requires_command = "python3"

    def command(self, deploy_dir: str, remote_only: bool = False) -> StringCommand:
        return commands.stack_status(deploy_dir, remote_only)

    def process(self, output: list[str]) -> dict[str, contract.ServiceStatus]:
        return json_output("StackStatus", output)


def parse_status(text: str) -> dict[str, contract.ServiceStatus]:
    """``stackctl.py status`` output (also with ``--wait``, run as an operation): service -> row."""
    return json.loads(text)


class ReleaseHistory(FactBase[HostReleases]):
    """``stackctl.py releases``: the current release, the release directories present and the
    recorded history; empty on a host never deployed with releases."""

    requires_command = "python3"

    def command(self, deploy_dir: str) -> StringCommand:
        return commands.release_history(deploy_dir)

    @staticmethod
    def default() -> HostReleases:
        return HostReleases()

    def process(self, output: list[str]) -> HostReleases:
        if output == [ABSENT]:
            return HostReleases()  # no helper: never deployed with releases
        found: contract.ReleaseListing = json_output("ReleaseHistory", output)
        if not isinstance(found, dict) or not found.keys() >= {"current", "present", "releases", "manifests"}:
            raise unexpected_output("ReleaseHistory", output)
        return HostReleases(current=found["current"], present=tuple(found["present"]),
                            releases=tuple(found["releases"]), manifests=found["manifests"])


class FileHashes(FactBase[DeployedFiles]):
    """One hash listing of the current release and the top-level files, in one command."""

    requires_command = "sha256sum"

    def command(self, root: str) -> StringCommand:
        return commands.file_hashes(root, TOP_FILES)

    @staticmethod
    def default() -> DeployedFiles:
        return DeployedFiles()  # pyinfra's answer when the command printed nothing: no file deployed

    def process(self, output: list[str]) -> DeployedFiles:
        if output == [ABSENT]:
            return DeployedFiles()  # no deploy directory yet
        release, top = {}, {}
        prefix = f"{contract.CURRENT_LINK}/"
        for line in output:
            digest, _, path = line.partition("  ")
            if not path:
                raise unexpected_output("FileHashes", output)
            if path.startswith(prefix):
                release[path.removeprefix(prefix)] = digest
            else:
                top[path] = digest
        return DeployedFiles(release, top)

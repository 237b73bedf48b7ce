"""pyinfra facts: what a Docker host holds now, read in one command each.

Facts run while pyinfra prepares (before any change), so every decision made from them
is known up front and ``--dry`` reports exactly what the real run will do. A fact that
cannot read the host fails the run: an engine that does not answer or a permission error
must never read as "nothing there" (that once rebuilt every image of a stopped engine).

So a fact's command exits non-zero when a read fails, and prints an explicit ABSENT where
"there is none" is a real answer (a fresh host has no deploy directory yet); ``process``
refuses output it does not recognise; and callers read facts with ``read_fact``, which
raises when the read failed (pyinfra itself would go on with the fact's empty default).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import KeysView, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

from pyinfra.api import FactBase, Host, StringCommand
from pyinfra.api.exceptions import FactProcessError

from stackdeploy import commands, contract
from stackdeploy.commands import ABSENT, SECTION
from stackdeploy.inputfiles import StackInputError

T = TypeVar("T")

ENGINE_ABSENT, ENGINE_DOWN, ENGINE_UP = "absent", "down", "up"
NO_VALUE = "<no value>"  # what docker inspect --format prints for a label a container does not have
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

    def up_to_date(self, service: str, config_hash: str) -> bool:
        """Exactly one container, running what the release asks for (its label says so)."""
        found = self.containers.get(service, ())
        return len(found) == 1 and found[0].state == "running" and found[0].config_hash == config_hash


class EngineStatus(TypedDict):
    """What a host has of the engine and the tools the deploy installs (a dict, as provision.py reads it)."""

    cli: bool  # the docker CLI
    dockerd: bool
    systemd: bool  # systemctl, and systemd running as init
    debootstrap: bool
    python3: bool
    engine: str  # ENGINE_ABSENT, ENGINE_DOWN or ENGINE_UP
    compose: str | None  # Compose v2's version, None when ``docker compose`` does not answer


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


class HostReadError(StackInputError):
    """A fact could not read a host: shown like a refusal, one line after pyinfra's own report."""


def read_fact(host: Host, fact: type[FactBase[T]], **arguments: Any) -> T:
    """``host.get_fact``, but a read that failed raises. pyinfra reports the failure and marks
    the host failed, then returns the fact's default, which reads as "nothing there": no
    containers, no secrets (so new ones would be generated and saved)."""
    value = host.get_fact(fact, **arguments)
    if host in host.state.failed_hosts:
        raise HostReadError(f"{host.name}: could not read the host ({fact.__name__}): see the error above")
    return value


def _unexpected(fact: str, output: list[str]) -> FactProcessError:
    return FactProcessError(f"{fact}: unexpected output: {' | '.join(output)[-500:]!r}")


def json_output(fact: str, output: list[str]) -> Any:
    """A fact's output read as JSON; anything else fails the read, naming the fact."""
    try:
        return json.loads("\n".join(output))
    except ValueError:
        raise _unexpected(fact, output) from None


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
            raise _unexpected("StackHostState", output)
        containers: dict[str, list[ContainerState]] = {}
        for line in parts["containers"]:
            fields = line.split(maxsplit=5)  # a missing label prints as "<no value>": two words
            if len(fields) == 6 and not line.startswith(NO_VALUE):
                service, container_id, status, image_id, health, label = fields
                found = ContainerState(container_id, status, "" if label == NO_VALUE else label, image_id, health)
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


ENGINE_KEYS = set(EngineStatus.__annotations__)


class DockerEngineStatus(FactBase[EngineStatus]):
    """Whether the docker CLI, dockerd, the engine API and Compose v2 are there."""

    requires_command = "sh"  # only the shell: this fact is how a host's missing tools are found

    def command(self) -> StringCommand:
        return commands.engine_status()

    def process(self, output: list[str]) -> EngineStatus:
        values = dict(line.split("=", 1) for line in output if "=" in line)
        if not values.keys() >= ENGINE_KEYS or values["engine"] not in (ENGINE_ABSENT, ENGINE_DOWN, ENGINE_UP):
            raise _unexpected("DockerEngineStatus", output)
        return {
            "cli": values["cli"] == "yes",
            "dockerd": values["dockerd"] == "yes",
            "systemd": values["systemd"] == "yes",
            "debootstrap": values["debootstrap"] == "yes",
            "python3": values["python3"] == "yes",
            "engine": values["engine"],
            "compose": values["compose"].strip() or None,
        }


class RegistryReachable(FactBase[bool]):
    """True when every image is present on the host or its registry answers for it."""

    requires_command = "docker"

    @staticmethod
    def default() -> bool:
        return False  # no docker CLI: no image here, and nothing to ask a registry with

    def command(self, images: list[str]) -> StringCommand:
        return commands.registry_reachable(images)

    def process(self, output: list[str]) -> bool:
        answer = "".join(output).strip()
        if answer not in ("yes", "no"):
            raise _unexpected("RegistryReachable", output)
        return answer == "yes"


class RegistryImages(FactBase[frozenset[str]]):
    """The images (registry names) their registry holds, as it answers itself. A registry that
    does not answer fails the read (see ``commands.registry_images``)."""

    requires_command = "docker"

    @staticmethod
    def default() -> frozenset[str]:
        return frozenset()  # no docker CLI to ask with: nothing known to be there

    def command(self, images: list[str], insecure: bool) -> StringCommand:
        return commands.registry_images(images, insecure)

    def process(self, output: list[str]) -> frozenset[str]:
        answers = [line.strip().partition(" ") for line in output if line.strip()]
        if not answers or any(answer not in ("present", "absent") or not image for answer, _, image in answers):
            raise _unexpected("RegistryImages", output)
        return frozenset(image for answer, _, image in answers if answer == "present")


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
            raise _unexpected("EngineInsecureRegistries", output)
        names = [name for name, index in (config.get("IndexConfigs") or {}).items() if not index.get("Secure", True)]
        return InsecureRegistries(frozenset(names), tuple(config.get("InsecureRegistryCIDRs") or ()))


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
                raise _unexpected("FileHashes", output)
            if path.startswith(prefix):
                release[path.removeprefix(prefix)] = digest
            else:
                top[path] = digest
        return DeployedFiles(release, top)

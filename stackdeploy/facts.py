"""pyinfra facts: what a Docker host holds now, read in one command each.

Facts run while pyinfra prepares (before any change), so every decision made from them
is known up front and ``--dry`` reports exactly what the real run will do. A fact that
cannot read the host fails the run: an engine that does not answer or a permission error
must never read as "nothing there" (that once rebuilt every image of a stopped engine).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pyinfra.api import FactBase, StringCommand

from stackdeploy import commands, contract
from stackdeploy.commands import SECTION

ENGINE_ABSENT, ENGINE_DOWN, ENGINE_UP = "absent", "down", "up"
# The files of a deploy directory outside the releases that the deploy owns.
TOP_FILES = ("stackctl.py", "stackcontract.py", ".secrets.json", "state/image-source",
             f"{contract.GATEWAY_DIR}/nginx.conf")


@dataclass(frozen=True)
class ContainerState:
    id: str
    state: str
    config_hash: str
    image_id: str = ""


@dataclass
class HostState:
    """The engine, the stack's containers and images, and the deploy directory's state."""

    engine: str = ENGINE_ABSENT  # ENGINE_ABSENT (no dockerd: a fresh host), ENGINE_DOWN or ENGINE_UP
    containers: dict[str, list[ContainerState]] = field(default_factory=dict)  # service -> containers
    images: set[str] = field(default_factory=set)
    image_ids: dict[str, str] = field(default_factory=dict)  # tag -> image id
    secrets_json: str = ""
    image_source: str = ""
    current: str = ""  # the release ``current`` points at

    def up_to_date(self, service: str, config_hash: str) -> bool:
        """Exactly one container, running what the release asks for (its label says so)."""
        found = self.containers.get(service, [])
        return len(found) == 1 and found[0].state == "running" and found[0].config_hash == config_hash


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


class StackHostState(FactBase[HostState]):
    """Engine state, the stack's containers (with their config-hash label), present images,
    secrets, the remembered image source and the current release."""

    requires_command = "sh"

    def command(self, deploy_dir: str, project: str) -> StringCommand:
        return commands.host_state(deploy_dir, project)

    def process(self, output: list[str]) -> HostState:
        parts = _sections(list(output))
        state = HostState(engine="".join(parts.get("engine", [])).strip() or ENGINE_ABSENT)
        for line in parts.get("containers", []):
            fields = line.split()
            if len(fields) == 5 and fields[0]:
                config_hash = "" if fields[4] == "<no value>" else fields[4]
                found = ContainerState(fields[1], fields[2], config_hash, fields[3])
                state.containers.setdefault(fields[0], []).append(found)
        state.image_ids = parse_image_ids(parts.get("images", []))
        state.images = set(state.image_ids)
        state.secrets_json = "\n".join(parts.get("secrets", []))
        state.image_source = "".join(parts.get("image-source", [])).strip()
        state.current = "".join(parts.get("current", [])).strip().rsplit("/", 1)[-1]
        return state


class DockerEngineStatus(FactBase[dict]):
    """Whether the docker CLI, dockerd, the engine API and Compose v2 are there."""

    def command(self) -> StringCommand:
        return commands.engine_status()

    def process(self, output: list[str]) -> dict:
        values = dict(line.split("=", 1) for line in output if "=" in line)
        return {
            "cli": values.get("cli") == "yes",
            "dockerd": values.get("dockerd") == "yes",
            "systemd": values.get("systemd") == "yes",
            "debootstrap": values.get("debootstrap") == "yes",
            "python3": values.get("python3") == "yes",
            "server": values.get("server", "").strip() or None,
            "compose": values.get("compose", "").strip() or None,
        }


class RegistryReachable(FactBase[bool]):
    """True when every image is present on the host or its registry answers for it."""

    def command(self, images: list[str]) -> StringCommand:
        return commands.registry_reachable(images)

    def process(self, output: list[str]) -> bool:
        return "".join(output).strip() == "yes"


class StackStatus(FactBase[dict]):
    """One probe of every service of the current release (``stackctl.py status``), as a dict."""

    requires_command = "python3"

    def command(self, deploy_dir: str) -> StringCommand:
        return commands.stack_status(deploy_dir)

    def process(self, output: list[str]) -> dict:
        return json.loads("\n".join(output))


class ReleaseHistory(FactBase[dict]):
    """``stackctl.py releases``: the current release, the release directories present and the
    recorded history; empty on a host never deployed with releases."""

    requires_command = "python3"

    def command(self, deploy_dir: str) -> StringCommand:
        return commands.release_history(deploy_dir)

    @staticmethod
    def default() -> dict:
        return {"current": "", "present": [], "releases": [], "manifests": {}}

    def process(self, output: list[str]) -> dict:
        return json.loads("\n".join(output))


@dataclass
class DeployedFiles:
    """SHA-256 of the current release's files and of the deploy directory's own files."""

    release: dict[str, str] = field(default_factory=dict)  # path in the release -> hash
    top: dict[str, str] = field(default_factory=dict)  # path in the deploy dir -> hash


class FileHashes(FactBase[DeployedFiles]):
    """One hash listing of the current release and the top-level files, in one command."""

    requires_command = "sha256sum"

    def command(self, root: str) -> StringCommand:
        return commands.file_hashes(root, TOP_FILES)

    @staticmethod
    def default() -> DeployedFiles:
        return DeployedFiles()  # pyinfra's answer when the command printed nothing (nothing deployed)

    def process(self, output: list[str]) -> DeployedFiles:
        found = DeployedFiles()
        prefix = f"{contract.CURRENT_LINK}/"
        for line in output:
            digest, _, path = line.partition("  ")
            if path.startswith(prefix):
                found.release[path.removeprefix(prefix)] = digest
            elif path:
                found.top[path] = digest
        return found

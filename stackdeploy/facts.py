"""pyinfra facts: what a Docker host holds now, read in one command each.

Facts run while pyinfra prepares (before any change), so every decision made from them
is known up front and ``--dry`` reports exactly what the real run will do. A fact that
cannot read the host fails the run: an engine that does not answer or a permission error
must never read as "nothing there" (that once rebuilt every image of a stopped engine).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from pyinfra.api import FactBase

from stackdeploy import contract

SECTION = "--stackdeploy:"
ENGINE_ABSENT, ENGINE_DOWN, ENGINE_UP = "absent", "down", "up"
# The files of a deploy directory outside the releases that the deploy owns.
TOP_FILES = ("stackctl.py", "stackcontract.py", "stackbackup.py", ".secrets.json", "state/image-source",
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


def _cat_if_present(path: str) -> str:
    quoted = shlex.quote(path)
    return f"if [ -f {quoted} ]; then cat {quoted}; fi"


class StackHostState(FactBase[HostState]):
    """Engine state, the stack's containers (with their config-hash label), present images,
    secrets, the remembered image source and the current release."""

    requires_command = "sh"

    def command(self, deploy_dir: str, project: str) -> str:
        d, p = shlex.quote(deploy_dir), shlex.quote(project)
        fmt = shlex.quote('{{index .Config.Labels "com.docker.compose.service"}} {{.Id}} {{.State.Status}} '
                          f'{{{{.Image}}}} {{{{index .Config.Labels "{contract.CONFIG_HASH_LABEL}"}}}}')
        engine = (
            f"echo {SECTION}engine; "
            "if ! command -v docker >/dev/null; then echo absent; exit 0; fi; "
            "if ! out=$(docker version --format '{{.Server.Version}}' 2>&1); then "
            '  case "$out" in *"Cannot connect to the Docker daemon"*) '
            "    if command -v dockerd >/dev/null; then echo down; else echo absent; fi; exit 0;; esac; "
            '  echo "docker engine unreadable: $out" >&2; exit 1; '
            "fi; echo up"
        )
        return "; ".join([
            "set -e",
            engine,
            f"echo {SECTION}containers",
            f"ids=$(docker ps -aq --filter label=com.docker.compose.project={p})",
            f'if [ -n "$ids" ]; then docker inspect --format {fmt} $ids; fi',
            f"echo {SECTION}images",
            "docker images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'",
            f"echo {SECTION}secrets",
            _cat_if_present(f"{deploy_dir}/.secrets.json"),
            f"echo {SECTION}image-source",
            _cat_if_present(f"{deploy_dir}/state/image-source"),
            f"echo {SECTION}current",
            f"if [ -L {d}/{contract.CURRENT_LINK} ]; then readlink {d}/{contract.CURRENT_LINK}; fi",
        ])

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

    def command(self) -> str:
        return "; ".join([
            "command -v docker >/dev/null && echo cli=yes",
            "command -v dockerd >/dev/null && echo dockerd=yes",
            "command -v systemctl >/dev/null && [ -d /run/systemd/system ] && echo systemd=yes",
            "command -v debootstrap >/dev/null && echo debootstrap=yes",
            "command -v python3 >/dev/null && echo python3=yes",
            "echo server=$(timeout 10 docker version --format '{{.Server.Version}}' 2>/dev/null)",
            "echo compose=$(timeout 10 docker compose version --short 2>/dev/null)",
            "true",
        ])

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

    def command(self, images: list[str]) -> str:
        checks = " && ".join(
            f"(docker image inspect {shlex.quote(i)} >/dev/null 2>&1 || "
            f"timeout 20 docker manifest inspect {shlex.quote(i)} >/dev/null 2>&1)"
            for i in images
        )
        return f"if {checks}; then echo yes; else echo no; fi"

    def process(self, output: list[str]) -> bool:
        return "".join(output).strip() == "yes"


class StackStatus(FactBase[dict]):
    """One probe of every service of the current release (``stackctl.py status``), as a dict."""

    requires_command = "python3"

    def command(self, deploy_dir: str) -> str:
        return f"python3 {shlex.quote(deploy_dir)}/stackctl.py status"

    def process(self, output: list[str]) -> dict:
        return json.loads("\n".join(output))


class ReleaseHistory(FactBase[dict]):
    """``stackctl.py releases``: the current release, the release directories present and the
    recorded history; empty on a host never deployed with releases."""

    requires_command = "python3"

    def command(self, deploy_dir: str) -> str:
        d = shlex.quote(deploy_dir)
        return f"if [ -f {d}/stackctl.py ]; then python3 {d}/stackctl.py releases; fi"

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

    def command(self, root: str) -> str:
        r = shlex.quote(root)
        top = " ".join(shlex.quote(f) for f in TOP_FILES)
        return (f"if [ -d {r} ]; then cd {r} && {{ "
                f"if [ -d {contract.CURRENT_LINK}/ ]; then find -L {contract.CURRENT_LINK}/ -type f -print0; fi; "
                f"for f in {top}; do if [ -f \"$f\" ]; then printf '%s\\0' \"$f\"; fi; done; "
                f"}} | xargs -0r sha256sum; fi")

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

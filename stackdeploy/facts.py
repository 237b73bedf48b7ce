"""pyinfra facts: what a Docker host holds now, read in one command each.

Facts run while pyinfra prepares (before any change), so every decision made from them
is known up front and ``--dry`` reports exactly what the real run will do.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from pyinfra.api import FactBase

SECTION = "--stackdeploy:"


@dataclass
class HostState:
    """Containers, images and applied config hashes of one stack on one host."""

    containers: dict[str, dict[str, str]] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    applied: dict[str, str] = field(default_factory=dict)
    secrets_json: str = ""
    image_source: str = ""


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


class StackHostState(FactBase[HostState]):
    """The stack's containers (service, id, state), present images and applied hashes."""

    def command(self, deploy_dir: str, project: str) -> str:
        d, p = shlex.quote(deploy_dir), shlex.quote(project)
        fmt = shlex.quote('{{.Label "com.docker.compose.service"}} {{.ID}} {{.State}}')
        return "; ".join([
            f"echo {SECTION}containers",
            f"docker ps -a --no-trunc --filter label=com.docker.compose.project={p} --format {fmt} 2>/dev/null",
            f"echo {SECTION}images",
            "docker images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null",
            f"echo {SECTION}applied",
            f"for f in {d}/state/applied/*; do [ -f \"$f\" ] && echo \"$(basename \"$f\") $(cat \"$f\")\"; done",
            f"echo {SECTION}secrets",
            f"cat {d}/.secrets.json 2>/dev/null",
            f"echo {SECTION}image-source",
            f"cat {d}/state/image-source 2>/dev/null",
            "true",
        ])

    def process(self, output: list[str]) -> HostState:
        parts = _sections(list(output))
        state = HostState()
        for line in parts.get("containers", []):
            fields = line.split()
            if len(fields) == 3 and fields[0]:
                state.containers[fields[0]] = {"id": fields[1], "state": fields[2]}
        state.images = {line.strip() for line in parts.get("images", []) if line.strip()}
        for line in parts.get("applied", []):
            name, _, value = line.partition(" ")
            state.applied[name] = value.strip()
        state.secrets_json = "\n".join(parts.get("secrets", []))
        state.image_source = "".join(parts.get("image-source", [])).strip()
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
    """One probe of every service (``stackctl.py status``), as a dict."""

    def command(self, deploy_dir: str) -> str:
        return f"python3 {shlex.quote(deploy_dir)}/stackctl.py status"

    def process(self, output: list[str]) -> dict:
        return json.loads("\n".join(output))


class FileHashes(FactBase[dict]):
    """SHA-256 of every file under a directory (relative path -> hash), in one command."""

    def command(self, root: str) -> str:
        r = shlex.quote(root)
        return (f"cd {r} 2>/dev/null && find . -type f ! -path './logs/*' ! -path './state/applied/*' "
                f"-exec sha256sum {{}} + || true")

    @staticmethod
    def default() -> dict:
        return {}  # pyinfra's answer when the command printed nothing (empty directory)

    def process(self, output: list[str]) -> dict:
        hashes = {}
        for line in output:
            digest, _, path = line.partition("  ")
            if path:
                hashes[path.removeprefix("./")] = digest
        return hashes

"""Content fingerprints: an image tag or a container changes only when its inputs do.

A fingerprint is a SHA-256 over named parts (file paths and their bytes, rendered
texts), so renaming, adding or deleting a file changes it too, while timestamps,
bytecode caches and the order files are listed in do not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "tests"}
IGNORED_SUFFIXES = {".pyc", ".pyo", ".log"}


def context_files(root: Path) -> list[Path]:
    """Files of a source folder that belong in a build context, sorted."""
    return sorted(
        path for path in root.rglob("*")
        if path.is_file()
        and not IGNORED_PARTS.intersection(path.relative_to(root).parts)
        and path.suffix not in IGNORED_SUFFIXES
    )


def digest(parts: Mapping[str, str | bytes]) -> str:
    """SHA-256 over name/content pairs, independent of the mapping's order."""
    hasher = hashlib.sha256()
    for name in sorted(parts):
        content = parts[name]
        data = content.encode() if isinstance(content, str) else content
        hasher.update(f"{name}\0{len(data)}\0".encode())
        hasher.update(data)
    return hasher.hexdigest()


def tree_parts(root: Path, prefix: str) -> dict[str, bytes]:
    """Name/content parts for every context file under ``root``, named ``prefix/relpath``."""
    return {f"{prefix}/{p.relative_to(root).as_posix()}": p.read_bytes() for p in context_files(root)}


def data_digest(value: Any) -> str:
    """SHA-256 of JSON-serialisable data, with sorted keys."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def config_hash(container_settings: Mapping[str, Any], env_file: str, secrets: Mapping[str, str]) -> str:
    """A service's config hash: over the compose settings its container is created from, its
    env file and the values of its secrets (read from their files when it starts). It becomes
    the container's label, so drift is read from what really runs; the values enter it only
    as their digests."""
    digests = {name: hashlib.sha256(value.encode()).hexdigest() for name, value in sorted(secrets.items())}
    return data_digest([container_settings, env_file, digests])


def short(fingerprint: str) -> str:
    """The part of a fingerprint used in image tags."""
    return fingerprint[:12]

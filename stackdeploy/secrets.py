"""Stack secrets: generated once, then reused by every deploy, from any control machine.

The source of truth is the copy on the hosts (``<deploy_dir>/.secrets.json``, 0600):
that is what the running databases were initialised with. The control machine keeps a
copy in ``.deploy/secrets/`` so a new host gets the same values. A value is generated
only when neither side has it, so a redeploy never rotates a secret by accident.
"""

from __future__ import annotations

import json
import os
import secrets as random_source
from collections.abc import Mapping, Sequence
from pathlib import Path

from stackdeploy.model import StackError

SECRET_BYTES = 24


def _read(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


def _write(path: Path, values: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(sorted(values.items())), handle, indent=2)
    os.replace(tmp, path)


def resolve(names: Sequence[str], store: Path, on_host: Mapping[str, str] | None) -> dict[str, str]:
    """Return a value for every secret name: host copy, else local copy, else new.

    Raises StackError when the host and the local copy disagree on a value: one of them
    belongs to another environment, and silently picking one could lock a service out.
    """
    local = _read(store)
    on_host = dict(on_host or {})
    for name in names:
        if name in on_host and name in local and on_host[name] != local[name]:
            raise StackError("", f"secret '{name}' differs between the host and {store}; "
                                 "remove the stale copy (the host's is what its data was created with)")
    resolved = {**local, **on_host}
    for name in names:
        resolved.setdefault(name, random_source.token_hex(SECRET_BYTES))
    if resolved != local:
        _write(store, resolved)
    return {name: resolved[name] for name in names}


def parse_host_copy(text: str | None) -> dict[str, str] | None:
    """Parse the host's secrets file as read by a fact (None when it does not exist)."""
    if not text or not text.strip():
        return None
    try:
        return dict(json.loads(text))
    except ValueError as exc:
        raise StackError("", f"the host's secrets file is not valid JSON: {exc}") from None

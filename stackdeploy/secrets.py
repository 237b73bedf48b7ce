"""Stack secrets: generated once, then reused by every deploy, from any control machine.

The source of truth is the copy on the hosts (``<deploy_dir>/.secrets.json``, 0600):
that is what the running databases were initialised with. The control machine keeps a
copy in ``.deploy/secrets/`` so a new host gets the same values. A value is generated
only when neither side has it, so a redeploy never rotates a secret by accident.

Preparing a run only decides the values; the control machine's copy is written by the
``kept`` operation, so only a run that executes writes it: ``--dry``, a run declined at
pyinfra's prompt and ``verify.py`` leave ``.deploy/`` as it was.
"""

from __future__ import annotations

import json
import os
import secrets as random_source
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyinfra import host
from pyinfra.api import operation

from stackdeploy.callback import callback
from stackdeploy.model import StackError

SECRET_BYTES = 24
# The value of a secret nobody has yet, in a run that may not generate one (--dry, verify.py).
PLACEHOLDER = "new-secret-generated-by-the-first-real-deploy"

# store -> every value this run resolved for it (from the store, the hosts, or new): all
# hosts of a run share one view, as they shared the file when preparing wrote it.
_this_run: dict[Path, dict[str, str]] = {}


@dataclass(frozen=True)
class Resolved:
    values: dict[str, str]  # secret name -> value, for every name asked for
    new: list[str]  # the names no copy had: generated now, or PLACEHOLDER when not generating


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


def resolve(names: Sequence[str], store: Path, on_host: Mapping[str, str] | None, *,
            generate: bool = True) -> Resolved:
    """A value for every secret name: host copy, else local copy, else new (or a
    placeholder when ``generate`` is off). Writes nothing.

    Raises StackError when the host and the local copy disagree on a value: one of them
    belongs to another environment, and silently picking one could lock a service out.
    """
    local = {**_read(store), **_this_run.get(store, {})}
    on_host = dict(on_host or {})
    for name in names:
        if name in on_host and name in local and on_host[name] != local[name]:
            raise StackError("", f"secret '{name}' differs between the host and {store}; "
                                 "remove the stale copy (the host's is what its data was created with)")
    resolved = {**local, **on_host}
    new = [name for name in names if name not in resolved]
    for name in new:
        resolved[name] = random_source.token_hex(SECRET_BYTES) if generate else PLACEHOLDER
    _this_run[store] = resolved
    return Resolved({name: resolved[name] for name in names}, new)


@operation(is_idempotent=True)
def kept(store: Path):
    """Keep what this run resolved in the control machine's copy (``store``) when that
    lacks any of it: values adopted from a host, or generated."""
    wanted = _this_run.get(store, {})
    if _read(store) == wanted:
        host.noop(f"secrets already kept in {store}")
        return
    yield callback(_write, store, wanted)


def parse_host_copy(text: str | None) -> dict[str, str] | None:
    """Parse the host's secrets file as read by a fact (None when it does not exist)."""
    if not text or not text.strip():
        return None
    try:
        return dict(json.loads(text))
    except ValueError as exc:
        raise StackError("", f"the host's secrets file is not valid JSON: {exc}") from None

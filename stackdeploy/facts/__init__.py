"""pyinfra facts: what a Docker host holds now, read in one command each; one module per
topic (stack, docker, registry, swarm, firewall, backups, logs), the way pyinfra keeps its own.

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

import json
from typing import Any, TypeVar

from pyinfra.api import FactBase, Host
from pyinfra.api.exceptions import FactProcessError

from stackdeploy.inputfiles import StackInputError

T = TypeVar("T")
NO_VALUE = "<no value>"  # what docker inspect --format prints for a label a container or service does not have


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


def unexpected_output(fact: str, output: list[str]) -> FactProcessError:
    """The error for output a fact does not recognise: its name and the output's tail."""
    return FactProcessError(f"{fact}: unexpected output: {' | '.join(output)[-500:]!r}")


def json_output(fact: str, output: list[str]) -> Any:
    """A fact's output read as JSON; anything else fails the read, naming the fact."""
    try:
        return json.loads("\n".join(output))
    except ValueError:
        raise unexpected_output(fact, output) from None

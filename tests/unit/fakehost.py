"""A pyinfra host whose facts a test gives: deploys and operations are prepared against it
without connecting anywhere, so a test sees which commands a host in that state would get.

Like pyinfra's own operation fixtures: given these facts, expect these commands (or a noop).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from pyinfra.api import Config, Host, Inventory, State
from pyinfra.context import ctx_host, ctx_state


@contextmanager
def fake_host(facts: Mapping[type, Any], data: dict | None = None, name: str = "somehost", *,
              hosts: Sequence[str] = (), groups: Mapping[str, Sequence[str]] | None = None,
              limit: Collection[str] | None = None) -> Iterator[Host]:
    """A host in pyinfra's context (operations called now are prepared for it).

    ``facts`` maps a fact class to its value, or to a function of the fact's arguments; a
    fact not given has its default value (pyinfra's answer for "nothing there"). Noop
    messages are collected in ``host.noops``. ``data`` is every host's (group_data/all.py).

    The inventory is ``hosts`` in order (default: this host alone), with ``groups`` (group ->
    host names); ``limit`` names the hosts a ``--limit`` keeps in the run (default: all).
    Only the host named ``name`` answers facts.
    """
    names = list(hosts or [name])
    inventory = Inventory((names, data or {}), **{group: (list(members), {}) for group, members in
                                                  (groups or {}).items()})
    state = State(inventory, Config())
    for member in inventory:
        if limit is None or member.name in limit:
            state.activate_host(member)
    host = inventory.get_host(name)

    def get_fact(cls: type, *args: Any, **kwargs: Any) -> Any:
        if cls not in facts:
            return cls.default()
        value = facts[cls]
        return value(**kwargs) if callable(value) else value

    host.get_fact = get_fact  # type: ignore[method-assign]
    host.noops = []  # type: ignore[attr-defined]
    host.noop = host.noops.append  # type: ignore[method-assign, attr-defined]
    with ctx_state.use(state), ctx_host.use(host):
        yield host


def commands(generator: Iterable[Any]) -> list[str]:
    """An operation body's commands as shell text (call it inside ``fake_host``)."""
    return [str(command) for command in generator]


def planned(host: Host) -> dict[str, list[str]]:
    """Every operation prepared for ``host``, in order, by its name (without the deploy's),
    with the commands it would run against the facts as they are now."""
    state = host.state
    ops: dict[str, list[str]] = {}
    for op_hash in state.get_op_order():
        name = next(iter(state.op_meta[op_hash].names)).rsplit(" | ", 1)[-1]
        ops[name] = commands(state.get_op_data_for_host(host, op_hash).command_generator())
    return ops


"""Dependency graph: cycle detection and start-up waves, by the standard library's graphlib.

A wave is a set of services whose dependencies all live in earlier waves, so every
service in a wave can start at once and the deploy only waits between waves.
Unknown names are ignored here; the model reports them separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter


def _known(deps: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    return {name: [dep for dep in ds if dep in deps] for name, ds in deps.items()}


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return one dependency cycle as a path (first name repeated at the end), or None.

    graphlib reports a cycle along its edges, from a node to the ones it leads to. The
    edges here go from a service to its dependencies, so the path reads as depends_on
    does (``a -> b``: a depends on b); it starts where a walk through the services in
    name order first enters the cycle, so the same stack always names the same cycle.
    """
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for name in sorted(deps):
        sorter.add(name)
    for name, known in sorted(_known(deps).items()):
        for dep in known:
            sorter.add(dep, name)
    try:
        sorter.prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return None


def waves(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Group services into start-up waves (each sorted by name for stable output).

    Raises ValueError on a cycle; callers validate first, so that is a programming error.
    """
    sorter = TopologicalSorter(_known(deps))
    try:
        sorter.prepare()
    except CycleError:
        raise ValueError(f"dependency cycle: {' -> '.join(find_cycle(deps) or [])}") from None
    result: list[list[str]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        result.append(ready)
        sorter.done(*ready)
    return result

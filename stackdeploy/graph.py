"""Dependency graph: cycle detection and start-up waves.

A wave is a set of services whose dependencies all live in earlier waves, so every
service in a wave can start at once and the deploy only waits between waves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return one dependency cycle as a path (first name repeated at the end), or None.

    Unknown names are ignored here; the model reports them separately.
    """
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in done:
            return None
        if name in visiting:
            return visiting[visiting.index(name):] + [name]
        visiting.append(name)
        for dep in deps.get(name, ()):
            if dep in deps and (cycle := visit(dep)):
                return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in sorted(deps):
        if cycle := visit(name):
            return cycle
    return None


def waves(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Group services into start-up waves (each sorted by name for stable output).

    Raises ValueError on a cycle; callers validate first, so that is a programming error.
    """
    remaining = {name: set(d for d in ds if d in deps) for name, ds in deps.items()}
    result: list[list[str]] = []
    placed: set[str] = set()
    while remaining:
        ready = sorted(name for name, ds in remaining.items() if ds <= placed)
        if not ready:
            raise ValueError(f"dependency cycle: {' -> '.join(find_cycle(deps) or [])}")
        result.append(ready)
        placed.update(ready)
        for name in ready:
            del remaining[name]
    return result

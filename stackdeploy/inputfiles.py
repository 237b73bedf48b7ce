"""The user's input files (the inventory and group_data/*.py), so that a refusal names them.

pyinfra's CLI reads these files itself, before any deploy code runs; only config.py runs
earlier. ``stackdeploy.preflight`` (called from config.py) notes where they are with
``remember``, and ``setting_source`` later tells which of them gives a host a setting.
"""

from __future__ import annotations

import symtable
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from pyinfra import logger
from pyinfra.api import Host
from pyinfra.api.exceptions import PyinfraError


def _cli_error() -> tuple[type[Exception], ...]:
    """pyinfra's CliError when its CLI runs (and so has imported it already). Importing it
    ourselves would monkey-patch the interpreter with gevent (pyinfra_cli/__init__.py), which
    unit tests that only call the model must not pay for."""
    module = sys.modules.get("pyinfra_cli.exceptions")
    return (module.CliError,) if module else ()


class StackInputError(PyinfraError, *_cli_error()):  # type: ignore[misc]
    """Bad input: one line, non-zero exit, no traceback.

    A PyinfraError, so pyinfra lets it out of a deploy file as it is. Also a CliError under
    pyinfra's CLI, which then prints it with ``show`` below instead of as "pyinfra error in
    <the line of our code that raised it>", which would send the user into this tool's code
    rather than to their own file.
    """

    def show(self, file: object = None) -> None:
        logger.warning(f"--> {click.style(str(self), 'red', bold=True)}")


@dataclass(frozen=True)
class InputFiles:
    """Where this run's inventory and group data come from (pyinfra's CLI rules)."""

    cwd: Path
    inventory: Path | None  # None when the inventory is not a file (hosts or a connector given inline)
    group_data_dirs: tuple[Path, ...]  # in pyinfra's order: a later folder's file wins

    @classmethod
    def of_cli(cls, cwd: Path, inventory: str, extra_group_data: tuple[str, ...]) -> InputFiles:
        """The folders pyinfra_cli.inventory.make_inventory_from_files reads group data from:
        <cwd>/group_data, then the inventory's own folder's group_data, then --group-data."""
        inventory_dir = Path(inventory).parent.resolve()
        dirs = [cwd / "group_data", *([inventory_dir / "group_data"] if inventory_dir != cwd else [])]
        return cls(cwd, Path(inventory) if Path(inventory).is_file() else None,
                   tuple(dirs) + tuple(Path(d) for d in extra_group_data))

    def shown(self, path: Path | str) -> str:
        """``path`` as the user knows it: relative to where pyinfra runs when it is inside."""
        path = (self.cwd / path).resolve()
        return str(path.relative_to(self.cwd.resolve())) if path.is_relative_to(self.cwd.resolve()) else str(path)

    def group_file(self, group: str, setting: str) -> str | None:
        """The file that gives ``group`` its ``setting``: group_data/<group>.py when it assigns
        it, else the group's data in the inventory file."""
        for folder in reversed(self.group_data_dirs):
            path = folder / f"{group}.py"
            if path.is_file() and _assigns(path, setting):
                return self.shown(path)
        return self.shown(self.inventory) if self.inventory else None


def _assigns(path: Path, name: str) -> bool:
    """True when the module at ``path`` binds ``name`` at its top level (how a group_data
    file defines a setting); symtable sees conditional and annotated assignments too."""
    try:
        return symtable.symtable(path.read_text(encoding="utf-8"), str(path), "exec").lookup(name).is_assigned()
    except (OSError, SyntaxError, KeyError):
        return False


_files: InputFiles | None = None  # set once, by the preflight that config.py runs


def remember(files: InputFiles) -> None:
    global _files
    _files = files


def setting_source(host: Host, setting: str) -> str | None:
    """The file (or ``--data``) that gives ``host`` its value of ``setting``.

    Follows pyinfra's precedence: --data, the host's own data in the inventory, its groups
    (the last one wins), then the ``all`` group. None when pyinfra runs as a library (no
    files) or nothing defines the setting.
    """
    if _files is None or not setting:
        return None
    inventory = host.inventory
    if setting in inventory.get_override_data():
        return "--data"
    if setting in inventory.get_host_data(host.name):
        return _files.shown(_files.inventory) if _files.inventory else None
    for group in reversed(host.groups):
        if setting in inventory.get_group_data(group):
            return _files.group_file(group, setting)
    if setting in inventory.get_data():
        return _files.group_file("all", setting)
    return None

"""Note this run's inventory and group_data files before pyinfra reads them.

config.py, the one project file pyinfra runs before it reads them, calls ``check_input_files``,
so that a refusal later in the run can name the file that gives a host the bad setting.

Only config.py imports this module: importing pyinfra_cli patches the interpreter with gevent,
which the CLI has done already.
"""

from __future__ import annotations

from pathlib import Path

import click
from pyinfra import state

from stackdeploy.inputfiles import InputFiles, remember


def check_input_files() -> None:
    """Remember where this run's inventory and group_data are (pyinfra's command line)."""
    context = click.get_current_context(silent=True)
    if context is None or not state.cwd:  # not pyinfra's CLI
        return
    inventory, group_data = context.params["inventory"], context.params["group_data"]
    remember(InputFiles.of_cli(Path(state.cwd), inventory, group_data))

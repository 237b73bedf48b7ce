"""Load the inventory and group_data before pyinfra does, to report their mistakes as the user's.

pyinfra's CLI prints a syntax error in one of these files as "An internal exception occurred"
with an invitation to file a bug report, and any other exception as a traceback. config.py,
the one project file pyinfra runs before it reads them, calls ``check_input_files``: it loads
them with pyinfra's own loader (so the same files, in the same order and context) and turns a
failure into one line with the file and the line. The price: the files run twice, so an
inventory that asks a connector for its hosts (@terraform, @vagrant) asks twice.

Only config.py imports this module: importing pyinfra_cli patches the interpreter with gevent,
which the CLI has done already.
"""

from __future__ import annotations

from pathlib import Path
from traceback import walk_tb

import click
from pyinfra import state
from pyinfra.api.exceptions import PyinfraError
from pyinfra_cli.exceptions import UnexpectedExternalError
from pyinfra_cli.inventory import make_inventory_from_files

from stackdeploy.inputfiles import InputFiles, StackInputError, remember


def _at_line(files: InputFiles, filename: str, error: BaseException) -> str:
    """``group_data/all.py line 12``: the file, and its line that was running when ``error`` was
    raised (the innermost, when the file called code that raised)."""
    lines = [line for frame, line in walk_tb(error.__traceback__) if frame.f_code.co_filename == filename]
    return f"{files.shown(filename)} line {lines[-1]}" if lines else files.shown(filename)


def check_input_files() -> None:
    """Read this run's inventory and group_data like pyinfra is about to; refuse the run with one
    line naming the file and line that fails, and remember where the files are."""
    context = click.get_current_context(silent=True)
    if context is None or not state.cwd:  # not pyinfra's CLI
        return
    inventory, group_data = context.params["inventory"], context.params["group_data"]
    files = InputFiles.of_cli(Path(state.cwd), inventory, group_data)
    remember(files)
    try:
        make_inventory_from_files(inventory, cwd=state.cwd, group_data_directories=group_data)
    except SyntaxError as exc:  # pyinfra compiles a file outside its own error handling
        raise StackInputError(f"{files.shown(str(exc.filename))} line {exc.lineno}: {exc.msg}") from None
    except UnexpectedExternalError as exc:  # pyinfra's wrapper for an exception while a file runs
        error = exc.exception
        raise StackInputError(f"{_at_line(files, exc.filename, error)}: {type(error).__name__}: {error}") from None
    except PyinfraError:
        return  # pyinfra's own refusal (an unknown connector): it gives it again when it reads the files

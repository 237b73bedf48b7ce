"""Python callbacks as operation commands that fail the way a shell command does.

pyinfra expects anything from a ``FunctionCommand`` and prints a Python traceback before any
exception it raises. A refusal (the lock is held, a service failed its gate) is one line for
the person running the deploy, so a callback built here reports an ``OperationError`` as the
host's error line alone and fails the operation; anything else still shows its traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyinfra import logger
from pyinfra.api import FunctionCommand, Host, OperationError, State
from pyinfra.context import ctx_config, ctx_host


def callback(function: Callable[..., Any], *args: Any, **kwargs: Any) -> FunctionCommand:
    """``function(*args, **kwargs)`` as an operation's command, run with ``pyinfra.host`` set to
    the host it runs for."""

    # pyinfra passes state and host to a callback that names them, and takes its return value
    # as the command's status (False: failed); other callbacks can fail only by raising.
    def run(state: State, host: Host) -> bool:
        with ctx_config.use(state.config.copy()), ctx_host.use(host):
            try:
                function(*args, **kwargs)
            except OperationError as exc:
                host.log_styled(str(exc), fg="red", log_func=logger.error)
                return False
        return True

    run.__name__ = getattr(function, "__name__", "callback")
    return FunctionCommand(run, (), {})

"""The central log store's lines that match a query, read on the log store's host."""

from __future__ import annotations

import json

from pyinfra.api import FactBase, StringCommand

from stackdeploy import commands
from stackdeploy.facts import unexpected_output


class LogSearch(FactBase[list[str]]):
    """The log store's lines that match a query (JSON, as stored), read on its host."""

    requires_command = "python3"

    def command(self, deploy_dir: str, project: str, store: str, options: dict[str, str]) -> StringCommand:
        return commands.log_search(deploy_dir, project, store, options)

    @staticmethod
    def default() -> list[str]:
        return []  # nothing matched

    def process(self, output: list[str]) -> list[str]:
        for line in output:  # each a stored line: a JSON object, never a helper's traceback
            try:
                if not isinstance(json.loads(line), dict):
                    raise ValueError(line)
            except ValueError:
                raise unexpected_output("LogSearch", output) from None
        return output

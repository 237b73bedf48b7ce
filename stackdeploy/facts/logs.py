"""The central log store's lines that match a query, read on the log store's host."""

from __future__ import annotations

from pyinfra.api import FactBase, StringCommand

from stackdeploy import commands


class LogSearch(FactBase[list[str]]):
    """The log store's lines that match a query (JSON, as stored), read on its host."""

    requires_command = "python3"

    def command(self, deploy_dir: str, project: str, store: str, options: dict[str, str]) -> StringCommand:
        return commands.log_search(deploy_dir, project, store, options)

    @staticmethod
    def default() -> list[str]:
        return []  # nothing matched

    def process(self, output: list[str]) -> list[str]:
        return output

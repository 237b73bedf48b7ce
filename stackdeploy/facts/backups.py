"""What restoring a backup would do on its host, asked of the shipped helper before anything stops."""

from __future__ import annotations

from pyinfra.api import FactBase, StringCommand

from stackdeploy import commands, contract
from stackdeploy.facts import json_output


class BackupCheck(FactBase[contract.BackupCheckResult]):
    """``stackbackup.py check``: what restoring a backup would do on this host, or why it cannot."""

    requires_command = "python3"

    def command(self, deploy_dir: str, backup_id: str, service: str | None) -> StringCommand:
        return commands.backup_check(deploy_dir, backup_id, service)

    def process(self, output: list[str]) -> contract.BackupCheckResult:
        return json_output("BackupCheck", output)

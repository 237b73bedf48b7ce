"""backup.py and restore.py: the operations around the host helper files/stackbackup.py.

Which services are backed up, and how, is the stack's data (``backup`` of a service); the
files a backup holds follow from it (contract.backup_files), so copying them to the control
machine is known before anything runs. A restore is checked on every host (checksums,
archives, free space) while pyinfra prepares, so a bad backup id or a corrupt file stops the
run before any host stops or overwrites anything.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import operation
from pyinfra.operations import files

from stackdeploy import PROJECT_ROOT, commands, contract
from stackdeploy.callback import callback
from stackdeploy.inputfiles import StackInputError
from stackdeploy.plan import Plan


def stateful_services(plan: Plan, only: str | None = None) -> list[str]:
    """This host's services that have a backup, or only ``only`` (refused when unknown)."""
    backed_up = [name for name, service in plan.stack.services.items() if service.backup]
    if only and only not in backed_up:
        raise StackInputError(f"--data service: '{only}' is not a service with a backup "
                              f"(those are: {', '.join(backed_up)})")
    return [name for name in plan.services if plan.stack.services[name].backup and only in (None, name)]


@operation(is_idempotent=False)
def take_backup(deploy_dir: str, backup_id: str, keep: int):
    """Back up every stateful service of this host into backups/<id>/, keeping the last ``keep``."""
    yield commands.stackbackup(deploy_dir, "backup", "--id", backup_id, "--keep", str(keep))


@operation(is_idempotent=False)
def restore_backup(deploy_dir: str, backup_id: str, service: str | None):
    yield commands.stackbackup(deploy_dir, "restore", "--id", backup_id, *(["--service", service] if service else []))


LOCAL_BACKUPS = PROJECT_ROOT / ".deploy" / "backups"


def _private(top: Path, target: Path) -> None:
    """``target`` and every directory from ``top`` down to it exist and are 0700, and every file
    in ``target`` is 0600: a backup holds the whole database, the sessions and every upload."""
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for directory in (target, *(p for p in target.parents if p.is_relative_to(top))):
        directory.chmod(0o700)
    for path in target.iterdir():
        if path.is_file():
            path.chmod(0o600)


@operation(is_idempotent=False)
def private_copy(local: Path):
    """The control machine's copy of a backup, readable by its owner only (before and after the copy)."""
    yield callback(_private, LOCAL_BACKUPS, local)


def fetch_backup(plan: Plan, services: list[str], backup_id: str) -> None:
    """Copy this host's part of a backup to .deploy/backups/<stack>-<environment>/<host>/<id>/
    here, so losing the host does not lose its backups."""
    stack = plan.stack
    local = LOCAL_BACKUPS / f"{stack.name}-{stack.environment}" / host.name / backup_id
    remote = f"{stack.deploy_dir}/{contract.BACKUPS_DIR}/{backup_id}"
    names = [contract.BACKUP_MANIFEST] + [f for name in services for f in contract.backup_files(
        name, stack.services[name].backup or "", sorted(stack.services[name].volumes))]
    private_copy(name=f"Private directory for backup {backup_id} here", local=local)
    for name in names:
        files.get(name=f"Copy {name} of backup {backup_id} here", src=f"{remote}/{name}", dest=str(local / name),
                  create_local_dir=True)
    private_copy(name=f"Backup {backup_id} here readable by its owner only", local=local)

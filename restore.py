"""Restore from a backup: pyinfra INVENTORY restore.py --data backup=<id> [--data service=<name>]

Every stateful service (or only ``service``) is restored on the host it lives on. Every host
checks its part first (the backup exists, every sha256 matches its manifest, archives read,
enough free disk) while pyinfra prepares, so bad input stops the run before anything is
stopped or overwritten. Only what must stop stops: Redis and the services whose volumes are
replaced; PostgreSQL is restored in place (pg_restore --clean). The run ends with the smoke
test through every gateway.
"""

from pyinfra import host

from stackdeploy.backups import restore_backup, stateful_services
from stackdeploy.desired import decide
from stackdeploy.engines import engine_for
from stackdeploy.facts.backups import BackupCheck
from stackdeploy.inputfiles import StackInputError
from stackdeploy.release import Run, record_release, take_lock
from stackdeploy.smoke import smoke_test

backup_id = host.data.get("backup")
service = host.data.get("service")
if not backup_id:
    raise StackInputError("restore.py needs the backup to restore: --data backup=<id> "
                          "(backup ids: ls <deploy_dir>/backups/ on a host)")
decisions = decide(host)
plan = decisions.plan
engine_for(plan.stack).check_restore()
services = stateful_services(plan, service)
if services:
    check = host.get_fact(BackupCheck, deploy_dir=plan.stack.deploy_dir, backup_id=backup_id, service=service)
    if not check["ok"]:
        raise StackInputError(f"{host.name}: {check['error']}")
    missing = sorted(set(services) - {entry["service"] for entry in check["files"]})
    if missing:
        raise StackInputError(f"{host.name}: backup {backup_id} holds nothing of {', '.join(missing)}, "
                              "which runs here (was it taken with another placement?)")
    if not decisions.state.current:
        raise StackInputError(f"{host.name}: nothing deployed here yet; deploy first, then restore into it")
    run = Run(deploy_dir=plan.stack.deploy_dir, action="restore", release=decisions.state.current,
              changed=services, keep=plan.stack.keep_releases, current=decisions.state.current)
    take_lock(run)
    restore_backup(name=f"Restore {', '.join(services)} from backup {backup_id}", deploy_dir=plan.stack.deploy_dir,
                   backup_id=backup_id, service=service)
    record_release(run)
smoke_test(plan.stack, list(plan.services))

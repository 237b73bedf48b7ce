"""Back up every stateful service, on whichever host it lives: pyinfra INVENTORY backup.py

PostgreSQL with pg_dump (custom format), Redis as a BGSAVE snapshot, ChromaDB's data and the
uploads as archives (see ``backup`` in group_data/all.py). Each host keeps its backups under
<deploy_dir>/backups/<id>/ with a manifest (sizes, sha256, the running release, the time),
the last ``keep_backups`` of them; with ``backup_copy = "control"`` they are also copied here.
Every host of one run uses the same id. Runs under the deploy lock: no deploy, and no
monitor restart, meanwhile.
"""

from pyinfra import host

from stackdeploy.backups import fetch_backup, stateful_services, take_backup
from stackdeploy.desired import decide
from stackdeploy.inputfiles import StackInputError
from stackdeploy.release import Run, record_release, take_lock
from stackdeploy.runinfo import RELEASE_ID
from stackdeploy.upload import put_helper

decisions = decide(host)
plan = decisions.plan
services = stateful_services(plan)
if services:
    if not decisions.state.current:
        raise StackInputError(f"{host.name}: nothing deployed yet, so nothing to back up")
    run = Run(deploy_dir=plan.stack.deploy_dir, action="backup", release=decisions.state.current,
              changed=services, keep=plan.stack.keep_releases, current=decisions.state.current)
    put_helper(decisions)
    take_lock(run)
    take_backup(name=f"Back up {', '.join(services)} as {RELEASE_ID}", deploy_dir=plan.stack.deploy_dir,
                backup_id=RELEASE_ID, keep=plan.stack.keep_backups)
    if plan.stack.backup_copy == "control":
        fetch_backup(plan, services, RELEASE_ID)
    record_release(run)
else:
    host.noop("no stateful service on this host")

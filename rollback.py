"""Return to the previous release, or to a given one: pyinfra INVENTORY rollback.py [--data release=<id>]

Each host goes back to the release before its current one (or to ``release``: the newest
release kept on that host at or before that id). Like a deploy it takes the lock, rolls
apps without downtime, gates every service on readiness, records the release and audits.
On the swarm engine the first manager takes the swarm stack back to the release's stack
file, with Swarm's own ``docker service rollback`` where the previous spec is the target's.
"""

from dataclasses import replace

from pyinfra import host

from stackdeploy import secrets
from stackdeploy.desired import decide
from stackdeploy.facts import read_fact
from stackdeploy.facts.stack import ReleaseHistory
from stackdeploy.release import Run, record_release, take_lock
from stackdeploy.rollback import decide_rollback
from stackdeploy.startup import start_services
from stackdeploy.swarmdeploy import rolled_back, swarm_rollback_changes, verified
from stackdeploy.verify import LAST_REPORT, verify_stack

decisions = decide(host)
plan = decisions.plan
rollback = decide_rollback(host, read_fact(host, ReleaseHistory, deploy_dir=plan.stack.deploy_dir))
swarm = plan.stack.engine == "swarm"
if swarm:  # the first manager decides (and rolls back) for the whole swarm stack
    rollback = replace(rollback, to_change=swarm_rollback_changes(rollback.deploy_dir, rollback.target,
                                                                  plan.stack.name) if decisions.swarm_manager else [])
host.noop(f"rollback from {rollback.current} to {rollback.target}: {', '.join(rollback.to_change)}")
run = Run(deploy_dir=rollback.deploy_dir, action="rollback", release=rollback.target, changed=rollback.to_change,
          keep=rollback.keep, current=rollback.current)

secrets.kept(name="Secrets kept on the control machine", store=decisions.secrets_store)
take_lock(run)
if swarm:
    if decisions.swarm_manager:
        rolled_back(name="Swarm stack rolled back", deploy_dir=rollback.deploy_dir, target=rollback.target,
                    to_change=rollback.to_change)
        verified(name="Health of every swarm service", deploy_dir=rollback.deploy_dir, release=rollback.target,
                 changed=rollback.to_change, report_to=LAST_REPORT)
else:
    start_services(rollback.deploy_dir, rollback.target, rollback.waves, rollback.to_change, plan.replicated,
                   rollback.batch, {})
    verify_stack(plan, rollback.target, built=[], started=rollback.to_change, base_built=False)
record_release(run)

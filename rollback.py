"""Return to the previous release, or to a given one: pyinfra INVENTORY rollback.py [--data release=<id>]

Each host goes back to the release before its current one (or to ``release``: the newest
release kept on that host at or before that id). Like a deploy it takes the lock, rolls
apps without downtime, gates every service on readiness, records the release and audits.
On the swarm engine the first manager takes the swarm stack back to the release's stack
file, with Swarm's own ``docker service rollback`` where the previous spec is the target's.
"""

from pyinfra import host

from stackdeploy import secrets
from stackdeploy.desired import decide
from stackdeploy.engines import engine_for
from stackdeploy.facts import read_fact
from stackdeploy.facts.stack import ReleaseHistory
from stackdeploy.release import Run, record_release, take_lock
from stackdeploy.rollback import decide_rollback

decisions = decide(host)
plan = decisions.plan
engine = engine_for(plan.stack)
rollback = engine.rollback_scope(decisions, decide_rollback(host, read_fact(host, ReleaseHistory,
                                                                          deploy_dir=plan.stack.deploy_dir)))
host.noop(f"rollback from {rollback.current} to {rollback.target}: {', '.join(rollback.to_change)}")
run = Run(deploy_dir=rollback.deploy_dir, action="rollback", release=rollback.target, changed=rollback.to_change,
          keep=rollback.keep, current=rollback.current)

secrets.kept(name="Secrets kept on the control machine", store=decisions.secrets_store)
take_lock(run)
engine.roll_back(decisions, rollback)
record_release(run)

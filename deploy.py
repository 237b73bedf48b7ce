"""Deploy the whole stack: pyinfra INVENTORY deploy.py

Phases, in order (one module each in stackdeploy/):
    keep the secrets and the gateway's certificate (the control machine's copy) -> ensure engine [-> form the swarm]
    -> lock -> stage the release -> build images -> roll out in dependency waves -> verify
    -> record the release (switch ``current``, prune, audit, unlock)

``engine = "swarm"`` swaps the rollout and the verification for the swarm engine's
(stackdeploy/swarmdeploy.py): one stack, deployed by the first manager.

The stack itself is data (group_data/all.py). Everything below is decided per host
before anything runs, so bad input stops here with one line and no host is changed. A run
with nothing to change takes no lock and reports no changes.
"""

from pyinfra import host

from stackdeploy import secrets, tls
from stackdeploy.announce import announce
from stackdeploy.desired import decide
from stackdeploy.engine import ensure_engine
from stackdeploy.images import build_images
from stackdeploy.release import Run, record_release, take_lock
from stackdeploy.startup import start_waves
from stackdeploy.swarm import form_swarm
from stackdeploy.swarmdeploy import swarm_retired, swarm_rollout, verify_swarm
from stackdeploy.upload import put_helper, render_stack
from stackdeploy.verify import verify_stack

decisions = decide(host, deploying=True)
plan = decisions.plan
announce(decisions)
run = Run(deploy_dir=plan.stack.deploy_dir, action="deploy", release=decisions.release,
          changed=decisions.changed_services, keep=plan.stack.keep_releases, current=decisions.state.current)

secrets.kept(name="Secrets kept on the control machine", store=decisions.secrets_store)
if plan.stack.tls.source != "files":
    tls.kept(name="Stack CA and gateway certificate kept on the control machine", store=decisions.tls_store)
ensure_engine(needs_debootstrap=plan.image_source == "local")
swarm = plan.stack.engine == "swarm"
if swarm:
    form_swarm(plan.stack)
put_helper(decisions)
if decisions.changes_anything:
    take_lock(run)
render_stack(decisions)
build_images(decisions)
if swarm:
    swarm_rollout(decisions)
    verify_swarm(decisions)
else:
    swarm_retired(plan.stack.name)
    start_waves(decisions)
    verify_stack(plan, decisions.release, decisions.to_build, decisions.changed_services, decisions.moves_images,
                 observed=decisions.state)
if decisions.changes_anything:
    record_release(run)

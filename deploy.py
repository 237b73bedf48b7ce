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
from stackdeploy.docker import ensure_engine
from stackdeploy.engines import engine_for
from stackdeploy.images import build_images
from stackdeploy.release import Run, record_release, take_lock
from stackdeploy.upload import put_helper, render_stack

decisions = decide(host, deploying=True)
plan = decisions.plan
engine = engine_for(plan.stack)
announce(decisions)
run = Run(deploy_dir=plan.stack.deploy_dir, action="deploy", release=decisions.release,
          changed=decisions.changed_services, keep=plan.stack.keep_releases, current=decisions.state.current)

secrets.kept(name="Secrets kept on the control machine", store=decisions.secrets_store)
if plan.stack.tls.source != "files":
    tls.kept(name="Stack CA and gateway certificate kept on the control machine", store=decisions.tls_store)
ensure_engine(needs_debootstrap=plan.image_source == "local")
engine.prepare(plan.stack)
put_helper(decisions)
if decisions.changes_anything:
    take_lock(run)
render_stack(decisions)
build_images(decisions)
engine.roll_out(decisions)
if decisions.changes_anything:
    record_release(run)

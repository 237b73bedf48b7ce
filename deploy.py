"""Deploy the whole stack: pyinfra INVENTORY deploy.py

Phases, in order (one module each in stackdeploy/: engine, upload, images, startup, verify):
    ensure engine -> render files -> build images -> start in dependency waves -> verify

The stack itself is data (group_data/all.py). Everything below is decided per host
before anything runs, so bad input stops here with one line and no host is changed.
"""

from pyinfra import host

from stackdeploy.desired import decide
from stackdeploy.engine import ensure_engine
from stackdeploy.images import build_images
from stackdeploy.remote import announce
from stackdeploy.startup import start_waves
from stackdeploy.upload import render_stack
from stackdeploy.verify import verify_stack

decisions = decide(host)
plan = decisions.plan
announce(plan, decisions.to_build, decisions.to_start, decisions.base_to_build, decisions.to_ship)

ensure_engine(needs_debootstrap=plan.image_source == "local")
render_stack(plan, decisions.secrets_json)
build_images(plan, decisions.base_to_build, decisions.to_build, decisions.to_ship, decisions.builder)
start_waves(plan, decisions.to_start)
verify_stack(plan, decisions.to_build, decisions.to_start, decisions.base_to_build or bool(decisions.to_ship))

"""Check a deployed stack without changing anything: pyinfra INVENTORY verify.py

Probes every service of the current release on every host (and, from each host, the
dependencies it uses on other hosts), prints the summary table and exits non-zero naming
whatever is unhealthy. It writes nothing: .deploy/last-report.json stays the last deploy's.
On the swarm engine the first manager reports every service's healthy tasks.
"""

from pyinfra import host

from stackdeploy.desired import decide
from stackdeploy.swarmdeploy import verified
from stackdeploy.verify import verify_stack

decisions = decide(host, check_only=True)
if decisions.plan.stack.engine == "swarm":  # the first manager sees the whole swarm stack
    if decisions.swarm_manager:
        verified(name="Health of every swarm service", deploy_dir=decisions.plan.stack.deploy_dir,
                 release=decisions.state.current, changed=[], report_to=None)
else:
    verify_stack(decisions.plan, decisions.state.current, built=[], started=[], base_built=False, report_to=None)

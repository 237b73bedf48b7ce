"""Check a deployed stack without changing anything: pyinfra INVENTORY verify.py

Probes every service of the current release on every host (and, from each host, the
dependencies it uses on other hosts), prints the summary table and exits non-zero naming
whatever is unhealthy. It writes nothing: .deploy/last-report.json stays the last deploy's.
On the swarm engine the first manager reports every service's healthy tasks.
"""

from pyinfra import host

from stackdeploy.desired import decide
from stackdeploy.engines import engine_for

decisions = decide(host, check_only=True)
engine_for(decisions.plan.stack).verify(decisions)

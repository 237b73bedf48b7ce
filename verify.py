"""Check a deployed stack without changing anything: pyinfra INVENTORY verify.py

Probes every service of the current release on every host (and, from each host, the
dependencies it uses on other hosts), prints the summary table and exits non-zero naming
whatever is unhealthy. It writes nothing: .deploy/last-report.json stays the last deploy's.
"""

from pyinfra import host

from stackdeploy.desired import decide
from stackdeploy.verify import verify_stack

decisions = decide(host, check_only=True)
verify_stack(decisions.plan, decisions.state.current, built=[], started=[], base_built=False, report_to=None)

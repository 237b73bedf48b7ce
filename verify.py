"""Check a deployed stack without changing anything: pyinfra INVENTORY verify.py

Probes every service on every host (and, from each host, the dependencies it uses on
other hosts), prints the summary table and exits non-zero naming whatever is unhealthy.
"""

from pyinfra import host

from stackdeploy.desired import decide
from stackdeploy.verify import verify_stack

verify_stack(decide(host).plan, built=[], started=[], base_built=False)

"""The operator's end-to-end check of a deployed stack: pyinfra INVENTORY smoke.py

Runs the real user journey (stackdeploy/smoke.py) from this machine through the gateway
of every host that runs one, and leaves nothing behind: what it creates it deletes again.
Run it after a deploy or a rollback. Each step prints its latency; the first failure stops
the run non-zero, naming the step and the service.
"""

from pyinfra import host

from stackdeploy.desired import inventory_placement, load_stack
from stackdeploy.smoke import smoke_test

stack = load_stack(host)
smoke_test(stack, list(inventory_placement(stack, host).services_on[host.name]))

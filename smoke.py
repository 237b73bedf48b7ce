"""The operator's end-to-end check of a deployed stack: pyinfra INVENTORY smoke.py

Runs the real user journey (stackdeploy/smoke.py) from this machine through the gateway
of every host that runs one, and changes nothing it does not clean up again. Run it after
a deploy or a rollback. Each step prints its latency; the first failure stops the run
non-zero, naming the step and the service.
"""

from pyinfra import host, logger
from pyinfra.operations import python

from stackdeploy.desired import inventory_placement, load_stack
from stackdeploy.smoke import Journey


def gateway_url(bind: str, port: int) -> str:
    """Where this machine reaches the gateway of ``host``: loopback for @local, the bind
    address when it is one routable address, else the host's private address or name."""
    if host.name == "@local":
        address = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    elif bind not in ("0.0.0.0", "::", "127.0.0.1", "::1"):
        address = bind
    else:
        address = host.data.get("private_address") or host.name
    return f"http://{address}:{port}"


def run_journey(url: str) -> None:
    logger.info(f"[{host.name}] smoke test through {url}")
    Journey(url, report=lambda line: logger.info(f"    [{host.name}] {line}")).run()


stack = load_stack(host)
placement = inventory_placement(stack, host)
if any(stack.services[name].kind == "gateway" for name in placement.services_on[host.name]):
    python.call(name="Smoke test: the user journey through the gateway", function=run_journey,
                url=gateway_url(stack.gateway_bind, stack.gateway_port))

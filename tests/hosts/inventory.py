"""pyinfra inventory for the simulated hosts (tests/hosts/simhosts.py up --count 3).

h1 runs the data group, h2 the AI group and monitoring (Prometheus, Alertmanager), h3 the apps
and the gateway; all over real SSH. Every host runs a node exporter and the monitor.
"""

import json
import os
from pathlib import Path

_state = json.loads(Path("/var/lib/stackdeploy-simhosts/hosts.json").read_text())
_ssh = {
    "ssh_user": "root",
    "ssh_key": _state["ssh_key"],
    "ssh_known_hosts_file": "/dev/null",
    "ssh_strict_host_key_checking": "off",
    "environment": "simhosts",
}
# Tests add host data (e.g. service_overrides) to every host through this variable.
_extra = json.loads(os.environ.get("SIMHOSTS_EXTRA_DATA", "{}"))


def _host(index: int, **data: object) -> tuple[str, dict]:
    """Host ``index`` of the simulated hosts with its SSH settings (and ``data`` for all hosts
    of an inventory, such as ``engine``); the tests' extra data wins."""
    info = _state["hosts"][index]
    return info["address"], {**_ssh, **data, **_extra, "private_address": info["address"]}


data = [_host(0)]
ai = [_host(1)]
apps = [_host(2)]
edge = [_host(2)]
monitoring = [_host(1)]

"""pyinfra inventory for the swarm engine on the simulated hosts (simhosts.py up --count 3).

h1 is the manager and holds the data; h2 runs the AI group and apps; h3 runs apps and the
gateway. Apps on two nodes let Swarm reschedule one when a node dies.
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
    "engine": "swarm",
    **json.loads(os.environ.get("SIMHOSTS_EXTRA_DATA", "{}")),
}


def _host(index: int) -> tuple[str, dict]:
    info = _state["hosts"][index]
    return info["address"], {**_ssh, "private_address": info["address"]}


managers = [_host(0)]
data = [_host(0)]
ai = [_host(1)]
apps = [_host(1), _host(2)]
edge = [_host(2)]

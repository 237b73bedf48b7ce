"""Staging: the stack over three hosts, reached over SSH.

Groups are placement (see ``placement`` in group_data/all.py): data, ai, apps, edge, monitoring. One
host may be in several groups. ``private_address`` is where other hosts reach the
services this host publishes for them (and the only address they bind to).

    pyinfra inventory/staging.py provision.py   # once per new host
    pyinfra inventory/staging.py deploy.py
"""

_ssh = {"ssh_user": "root"}

data = [("staging-data-1.internal", {**_ssh, "private_address": "10.20.0.11"})]
ai = [("staging-ai-1.internal", {**_ssh, "private_address": "10.20.0.12"})]
apps = [("staging-apps-1.internal", {**_ssh, "private_address": "10.20.0.13"})]
edge = [("staging-apps-1.internal", {**_ssh, "private_address": "10.20.0.13"})]
monitoring = [("staging-ai-1.internal", {**_ssh, "private_address": "10.20.0.12"})]

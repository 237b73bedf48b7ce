"""Production: data, AI and edge hosts, and the apps on two hosts behind the gateway.

Every app runs on both apps hosts; the gateway balances over them (an nginx upstream
per route). Infrastructure services run on exactly one host each.

    pyinfra inventory/production.py provision.py   # new hosts: engine, deploy user, firewall
    pyinfra inventory/production.py deploy.py
"""

_ssh = {"ssh_user": "root"}

data = [("db-1.prod.internal", {**_ssh, "private_address": "10.30.0.11"})]
ai = [("ai-1.prod.internal", {**_ssh, "private_address": "10.30.0.21"})]
apps = [
    ("app-1.prod.internal", {**_ssh, "private_address": "10.30.0.31"}),
    ("app-2.prod.internal", {**_ssh, "private_address": "10.30.0.32"}),
]
edge = [("edge-1.prod.internal", {**_ssh, "private_address": "10.30.0.41"})]
monitoring = [("mon-1.prod.internal", {**_ssh, "private_address": "10.30.0.51"})]

"""Overrides for inventory/production.py (the group named after the inventory file).

Replicas come from the inventory (two hosts in ``apps``); workers and limits from here.
"""

environment = "production"
image_source = "registry"
gateway_port = 80
# Your certificate (or source "acme" with acme_email): a stack CA is for the stack's own clients.
tls = {"source": "self-signed", "port": 443, "server_names": ["api.creatorstack.example"]}
deploy_user = "deploy"

service_overrides = {
    "postgres": {"limits": {"cpus": "4", "memory": "8g"}},
    "redis": {"limits": {"cpus": "1", "memory": "1g"}},
    "chromadb": {"limits": {"cpus": "2", "memory": "4g"}},
    "auth-service": {"workers": 4, "limits": {"cpus": "2", "memory": "1g"}},
    "creator-hub": {"workers": 4, "limits": {"cpus": "2", "memory": "1g"}},
    "ai-engine": {"workers": 2, "limits": {"cpus": "2", "memory": "2g"}},
    "channel-service": {"workers": 2, "limits": {"cpus": "2", "memory": "1g"}},
}

"""Overrides for inventory/staging.py (the group named after the inventory file)."""

environment = "staging"
image_source = "auto"
gateway_port = 8080

service_overrides = {
    "auth-service": {"workers": 2, "limits": {"cpus": "1", "memory": "512m"}},
    "creator-hub": {"workers": 2, "limits": {"cpus": "1", "memory": "512m"}},
    "ai-engine": {"workers": 1, "limits": {"cpus": "1", "memory": "768m"}},
    "channel-service": {"workers": 1, "limits": {"cpus": "1", "memory": "512m"}},
}

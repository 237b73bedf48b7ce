"""pyinfra inventory for the swarm engine on the simulated hosts (simhosts.py up --count 3).

h1 is the manager and holds the data; h2 runs the AI group and apps; h3 runs apps and the
gateway. Apps on two nodes let Swarm reschedule one when a node dies; creator-hub, which
keeps uploads in a volume, moves to the one-node "ai" group (a service with volumes stays on
one node on the swarm engine).
"""

from tests.hosts.inventory import _host

_PLACEMENT = {
    "data": ["postgres", "redis", "log-store", "postgres-exporter", "redis-exporter"],
    "ai": ["ollama", "chromadb", "ai-engine", "creator-hub"],
    "apps": ["auth-service", "channel-service"],
    "edge": ["api-gateway", "nginx-exporter"],
    "monitoring": ["alertmanager", "prometheus", "grafana"],
}
_h1, _h2, _h3 = (_host(index, engine="swarm", placement=_PLACEMENT) for index in range(3))

managers = [_h1]
data = [_h1]
ai = [_h2]
apps = [_h2, _h3]
edge = [_h3]
monitoring = [_h2]

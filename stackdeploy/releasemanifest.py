"""release.json: what the host helper (stackctl.py) needs to run one release on a host.

Its shape is ``contract.ReleaseManifest``, shared with the helper: the waves, how to judge
and replace each service, the dependencies on other hosts to check, the gateway's routes.
"""

from __future__ import annotations

import json

from stackdeploy import contract
from stackdeploy.composefile import GATEWAY_LISTEN_PORT, GATEWAY_TLS_LISTEN_PORT
from stackdeploy.model import Service, Stack
from stackdeploy.placement import Placement


def service_spec(service: Service, *, image: str, config_hash: str, strategy: str) -> contract.ServiceSpec:
    """How the host helper judges ``service`` ready, and how it replaces it."""
    return {"port": service.port, "tcp": service.health.tcp, "http": service.health.http,
            "command": list(service.health.command), "timeout": service.wait_timeout,
            "strategy": strategy, "stop_grace": service.stop_grace, "config_hash": config_hash,
            "image": image, "role": service.role, "restarts_with": list(service.restarts_with),
            "backup": service.backup, "volumes": sorted(service.volumes)}


def _remote_checks(where: Placement, host: str, names: list[str]) -> dict[str, dict]:
    """Dependencies of this host's services that run elsewhere, as seen from this host."""
    remote: dict[str, dict] = {}
    for name in names:
        svc = where.stack.services[name]
        for dep in (*svc.depends_on, *svc.routes.values()):
            for end in where.used_endpoints(host, name, dep):
                if not end.local:
                    health = where.stack.services[dep].health
                    remote[f"{dep}@{end.host}"] = {
                        "service": dep, "host": end.host, "address": end.address, "port": end.port,
                        "http": health.http, "consumers": sorted({*remote.get(f"{dep}@{end.host}", {})
                                                                  .get("consumers", []), name}),
                    }
    return remote


def gateway_tls(stack: Stack) -> contract.GatewayTls:
    """Where the helper puts the release's certificate and key under gateway/: where nginx.conf
    reads them, or, for tls source "acme", certbot's files, filled only while certbot has none."""
    acme = stack.tls.source == "acme"
    cert, key = (contract.ACME_CERT, contract.ACME_KEY) if acme else (contract.TLS_CERT, contract.TLS_KEY)
    return {"files": {cert: f"nginx/{contract.TLS_CERT}", key: f"nginx/{contract.TLS_KEY}"}, "keys": [key],
            "seed_only": acme}


def release_json(where: Placement, host: str, services: dict[str, contract.ServiceSpec],
                 stack_waves: list[list[str]], builds: list[str]) -> str:
    """release.json for ``host``: ``services`` are its services' specs (see ``service_spec``),
    ``stack_waves`` the whole stack's waves and ``builds`` the images it builds (with the
    names it tags them with for the registry)."""
    stack = where.stack
    names = list(where.services_on[host])
    gateway = next((stack.services[n] for n in names if stack.services[n].role == "gateway"), None)
    release: contract.ReleaseManifest = {
        "project": stack.name,
        "waves": [[n for n in wave if n in services] for wave in stack_waves],
        "services": services,
        "remote": _remote_checks(where, host, names),
        "gateway": {"service": gateway.name,
                    "routed": sorted({t for t in gateway.routes.values() if where.endpoint(host, t).local}),
                    "targeted": sorted({t for t in gateway.routes.values()
                                        if where.endpoint(host, t).local and len(where.endpoints(host, t)) > 1}),
                    "port": GATEWAY_LISTEN_PORT,
                    "https_port": GATEWAY_TLS_LISTEN_PORT,
                    "routes": {p: stack.services[t].health.http or "/" for p, t in sorted(gateway.routes.items())},
                    "tls": gateway_tls(stack)}
        if gateway else None,
        "builds": builds,
        "namespace": stack.image_namespace,
    }
    if stack.registry:
        release["registry"] = stack.registry.address
    return json.dumps(release, indent=2, sort_keys=True) + "\n"

"""What compose and nginx read on a host: compose.yaml, compose.build.yaml, the env files
and the gateway's nginx.conf, rendered from templates/ for one host of a placement."""

from __future__ import annotations

import math

import yaml

from stackdeploy import contract, logstore
from stackdeploy.imagespec import ImageSpec
from stackdeploy.model import Service, Stack
from stackdeploy.placement import Placement
from stackdeploy.templating import compose_escaped, render

GATEWAY_LISTEN_PORT = 8080  # plain HTTP inside the container: /health and the redirect to HTTPS
GATEWAY_TLS_LISTEN_PORT = 8443  # HTTPS inside the container (above 1024: the offline image's nginx is not root)
# Mozilla's "intermediate" cipher list (server-side TLS guidelines, version 5.7), for TLS 1.2;
# TLS 1.3's suites are all strong and not configured. The DHE suites stay unused without dhparams.
INTERMEDIATE_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])
HSTS_SECONDS = 63072000  # two years, as Mozilla recommends
STUB_STATUS_PORT = 8081  # nginx's stub_status for the nginx exporter: internal, never published
# Errors the gateway answers itself (not the apps'), as JSON.
GATEWAY_ERRORS = [(400, "bad request"), (401, "missing, invalid or revoked bearer token"), (404, "no such route"),
                  (405, "method not allowed"), (413, "request body too large"),
                  (429, "too many requests from this address"), (500, "gateway error"),
                  (502, "upstream unavailable"), (504, "upstream timed out")]
LOGIN_PER_SECOND, LOGIN_BURST = 10, 20  # per client address, on the gateway's login_paths
DOCKER_DNS = "127.0.0.11"
DOCKER_SOCKET = "/var/run/docker.sock"


def dependency_env(service: Service, stack: Stack, reach: dict[str, tuple[str, int]]) -> dict[str, str]:
    """How ``service`` reaches each dependency (``reach``: name -> address, port) and what
    wait-for-services.py waits for before it starts: the same variables on both engines."""
    env, waits = {}, []
    for dep_name, (address, port) in reach.items():
        dep = stack.services[dep_name]
        env[f"{dep.env_prefix}_HOST"] = address
        env[f"{dep.env_prefix}_PORT"] = str(port)
        if dep.health.http:
            env[f"{dep.env_prefix}_URL"] = f"http://{address}:{port}"
        waits.append(f"{dep.name}:http://{address}:{port}{dep.health.http}" if dep.health.http
                     else f"{dep.name}:tcp://{address}:{port}")
    if waits:
        env["WAIT_FOR"] = ",".join(waits)
        env["WAIT_TIMEOUT"] = str(int(service.wait_timeout))
    return env


def _env(service: Service, where: Placement, host: str) -> dict[str, str]:
    """Plain settings only: each secret is a file the service reads through ``<NAME>_FILE``."""
    stack = where.stack
    env = dict(stack.shared_env)
    if service.role == "monitor" and stack.backup_every_hours:
        env["MONITOR_BACKUP_EVERY_HOURS"] = str(stack.backup_every_hours)
    env.update(service.env)
    ends = {dep: where.endpoint(host, dep) for dep in service.depends_on}
    env.update(dependency_env(service, stack, {dep: (end.address, end.port) for dep, end in ends.items()}))
    for name in service.secrets:
        env[f"{name}_FILE"] = f"{contract.SECRETS_MOUNT}/{name}"
    return env


def _has_docker_health(service: Service, image_source: str) -> bool:
    """Whether compose can wait for ``service`` to be healthy: it has a healthcheck, from the
    template's Dockerfile, an offline recipe's or its health command. A user's own image may
    have none; the deploy's own gate still waits for it before the next wave."""
    recipe_offline = image_source == "local" and service.build is None
    return service.built_from_source or bool(service.health.command) or recipe_offline


def compose_entry(service: Service, image: str, build_dir: str | None, image_source: str,
                   where: Placement, host: str, configs: list[tuple[str, str, str]] = ()) -> dict:
    """The per-service context for compose.yaml.j2 on ``host``; ``configs``: (name, path in the
    container, content) of its rendered config files (``metricsconfig.config_files``)."""
    stack = where.stack
    healthcheck = ["CMD", *service.health.command] if service.health.command else None
    deps = [(dep, "service_healthy" if _has_docker_health(stack.services[dep], image_source)
             else "service_started") for dep in service.depends_on if where.endpoint(host, dep).local]
    ports = []
    config_mounts = []
    monitor = service.role == "monitor"
    address = where.hosts[host].address
    command = list(service.command)
    if monitor:
        # The engine API (root on this host, the documented trade-off), the releases to read,
        # and a directory of its own for the event log.
        config_mounts += [(f"${{STACK_DOCKER_SOCKET:-{DOCKER_SOCKET}}}", DOCKER_SOCKET, "rw"),
                          (stack.deploy_dir, "/stack", "ro"),
                          (f"{stack.deploy_dir}/{contract.MONITOR_DIR}", "/monitor", "rw")]
    if service.role == "gateway":
        ports.append(f"{stack.gateway_bind}:{stack.gateway_port}:{GATEWAY_LISTEN_PORT}")
        ports.append(f"{stack.gateway_bind}:{stack.tls.port}:{GATEWAY_TLS_LISTEN_PORT}")
        # A stable directory outside the releases: the helper keeps nginx.conf and the route
        # targets there and reloads nginx gracefully when they change.
        config_mounts.append((f"{stack.deploy_dir}/{contract.GATEWAY_DIR}", contract.GATEWAY_CONF_MOUNT, "ro"))
        command = ["nginx", "-c", f"{contract.GATEWAY_CONF_MOUNT}/nginx.conf", "-g", "daemon off;"]
    else:
        if service.publish:
            ports.append(f"{service.publish_bind}:{service.publish}:{service.port}")
        if service.role == "logstore":
            target = logstore.log_target(where)
            assert target is not None
            ports.append(f"{target.address}:{service.port}:{service.port}/{logstore.PROTOCOL}")
            command = logstore.command(stack, service)
        elif where.is_published(host, service.name):
            ports.append(f"{address}:{service.port}:{service.port}")
    config_mounts += [(source, target, "ro") for source, target in sorted(service.host_paths.items())]
    edge = bool(ports) or where.has_remote_dependency(host, service.name)
    networks = ["backend", "edge"] if edge else ["backend"]
    if service.role == "gateway":  # where it looks up the apps it routes to (their live alias)
        networks.append(contract.ROUTES_NETWORK)
    return {
        "name": service.name,
        "image": image,
        "build": build_dir,
        "command": command or None,
        "entrypoint": list(service.entrypoint) or None,
        "configs": list(configs),
        "stop_grace": int(service.stop_grace),
        "healthcheck": healthcheck,
        "wait_timeout": int(service.wait_timeout),
        "depends_on": deps,
        "volumes": sorted(service.volumes.items()),
        "config_mounts": config_mounts,
        "ports": ports,
        "networks": networks,
        "limits": dict(service.limits),
        "logging": logstore.logging_options(service.name, logstore.log_target(where)),
        # The socket belongs to root: the monitor runs as root (with no capabilities).
        "user": "0:0" if monitor else service.user,
        "cap_add": list(service.cap_add),
        "read_only": service.read_only,
        "secrets": list(service.secrets),
    }


def _as_read(text: str) -> object:
    """``text`` as a YAML reader (compose) takes it where compose.yaml.j2 writes it unquoted:
    a cpus of 1.5 is a number, a mem_limit of 512m a string."""
    return yaml.safe_load(text)


def container_settings(entry: dict, stack: Stack) -> dict:
    """The settings compose reads for the container of ``entry`` (see ``compose_entry``) from
    compose.yaml, with the template's shared defaults (``x-service``) merged in: what the
    container is created from, and so what its config hash covers. Neither the build section
    (who builds does not change the container) nor the config hash label is part of it. This
    follows compose.yaml.j2 line by line; tests/unit/test_plan.py reads the rendered file back
    to check that the two agree."""
    settings: dict = {
        "restart": "unless-stopped",
        "logging": entry["logging"],
        "init": True,
        "image": _as_read(entry["image"]),
        "environment": {"TZ": "UTC", "STACK_NAME": _as_read(stack.name)},
        "env_file": [f"env/{entry['name']}.env"],
        "stop_grace_period": f"{entry['stop_grace']}s",
        "networks": entry["networks"],
    }
    if "cpus" in entry["limits"]:
        settings["cpus"] = _as_read(entry["limits"]["cpus"])
    if "memory" in entry["limits"]:
        settings["mem_limit"] = _as_read(entry["limits"]["memory"])
    if "pids" in entry["limits"]:
        settings["pids_limit"] = int(entry["limits"]["pids"])
    if entry["entrypoint"]:
        settings["entrypoint"] = compose_escaped(entry["entrypoint"])
    if entry["command"]:
        settings["command"] = compose_escaped(entry["command"])
    if entry["configs"]:  # a config's name carries the hash of its content
        settings["configs"] = [{"source": name, "target": target} for name, target, _ in entry["configs"]]
    if entry["user"]:
        settings["user"] = entry["user"]
    settings.update({"cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]})
    if entry["cap_add"]:
        settings["cap_add"] = list(entry["cap_add"])
    if entry["read_only"]:
        settings.update({"read_only": True, "tmpfs": ["/tmp"]})
    if entry["healthcheck"]:
        settings["healthcheck"] = {"test": compose_escaped(entry["healthcheck"]), "interval": "10s", "timeout": "3s",
                                   "retries": 3, "start_period": f"{entry['wait_timeout']}s"}
    if entry["depends_on"]:
        settings["depends_on"] = {dep: {"condition": condition} for dep, condition in entry["depends_on"]}
    mounts = [f"{volume}:{path}" for volume, path in entry["volumes"]]
    mounts += [f"{source}:{target}:{mode}" for source, target, mode in entry["config_mounts"]]
    if mounts:
        settings["volumes"] = [_as_read(mount) for mount in mounts]
    if entry["ports"]:
        settings["ports"] = list(entry["ports"])
    if entry["secrets"]:
        settings["secrets"] = list(entry["secrets"])
    return settings


def tls_settings(stack: Stack, summary: str, cert: str, key: str) -> dict:
    """The HTTPS server's part of nginx.conf: ``cert`` and ``key`` are paths in the container,
    ``summary`` names the certificate (a renewed one changes nginx.conf, so the gateway reloads)."""
    acme = stack.tls.source == "acme"
    return {"listen_port": GATEWAY_TLS_LISTEN_PORT,
            "port_suffix": "" if stack.tls.port == 443 else f":{stack.tls.port}",
            "cert": f"{contract.GATEWAY_CONF_MOUNT}/{contract.ACME_CERT}" if acme else cert,
            "key": f"{contract.GATEWAY_CONF_MOUNT}/{contract.ACME_KEY}" if acme else key,
            "summary": f"{summary}, renewed by certbot on the host" if acme else summary,
            "ciphers": INTERMEDIATE_CIPHERS, "hsts_seconds": HSTS_SECONDS,
            "acme_webroot": f"{contract.GATEWAY_CONF_MOUNT}/{contract.ACME_WEBROOT}" if acme else None}


def nginx_conf(gateway: Service, where: Placement, host: str, monitor: Service | None, certificate: str) -> str:
    """Routes: one target by name, resolved per request; several replicas as an upstream.
    ``certificate``: the summary of the certificate in gateway/tls/."""
    routes: list[dict] = []
    for prefix, target in sorted(gateway.routes.items()):
        ends = where.endpoints(host, target)
        routes.append({
            "prefix": prefix,
            "upstream": target.replace("-", "_") if len(ends) > 1 else None,
            # A local target is the container the helper has gated: alone, the one with its live
            # alias (looked up per request); balanced with other hosts, targets/<service>.servers.
            "local": target if ends[0].local else None,
            "live": f"{contract.live_alias(target)}:{ends[0].port}",
            "servers": [f"{e.address}:{e.port}" for e in ends if not e.local],
            "websocket": prefix in gateway.websocket_routes,
            "auth": prefix in gateway.auth_routes,
        })
    tls = tls_settings(where.stack, certificate, f"{contract.GATEWAY_CONF_MOUNT}/{contract.TLS_CERT}",
                       f"{contract.GATEWAY_CONF_MOUNT}/{contract.TLS_KEY}")
    return gateway_conf(gateway, routes, monitor, tls)


def gateway_conf(gateway: Service, routes: list[dict], monitor: Service | None, tls: dict,
                 resolver_valid: str = f"{contract.RESOLVER_VALID_SECONDS}s") -> str:
    """nginx.conf from the routes' targets (both engines); ``tls``: see ``tls_settings``;
    ``resolver_valid``: how long a looked-up address is trusted."""
    auth = None
    if gateway.auth_verify:  # the route it is under, and the path the gateway asks there
        route = _route_of(gateway.auth_verify, routes)
        auth = {"route": route, "path": "/" + gateway.auth_verify[len(route["prefix"]):]}
    return render("nginx.conf.j2", routes=routes, resolver=DOCKER_DNS, resolver_valid=resolver_valid,
                  listen_port=GATEWAY_LISTEN_PORT, stub_status_port=STUB_STATUS_PORT, tls=tls,
                  targets=f"{contract.GATEWAY_CONF_MOUNT}/targets", errors=GATEWAY_ERRORS, auth=auth,
                  readiness=f"{monitor.name}:{monitor.port}" if monitor else None,
                  login=_login_locations(gateway, routes))


def _route_of(path: str, routes: list[dict]) -> dict:
    """The route a gateway path is under: the longest prefix (the model checked there is one)."""
    return max((r for r in routes if path.startswith(r["prefix"])), key=lambda r: len(r["prefix"]))


def _login_locations(gateway: Service, routes: list[dict]) -> dict | None:
    """Each of the gateway's ``login_paths`` as an exact location of its own: the route it is
    under (longest prefix), and the path that route passes on."""
    if not gateway.login_paths:
        return None
    paths = [{"path": path, "route": _route_of(path, routes)} for path in gateway.login_paths]
    return {"rate": f"{LOGIN_PER_SECOND}r/s", "burst": LOGIN_BURST, "paths": paths,
            "retry_after": math.ceil(1 / LOGIN_PER_SECOND)}  # whole seconds until one more is let in


def env_file(service: Service, where: Placement, host: str) -> str:
    """env/<service>.env: the stack's shared settings, the service's own, where each of its
    dependencies answers from ``host``, and the paths of its secrets' files."""
    return render("service.env.j2", service=service, env=_env(service, where, host))


def compose_yaml(stack: Stack, entries: list[dict], image_source: str, hashes: dict[str, str]) -> str:
    """compose.yaml for the services of ``entries`` (see ``compose_entry``), each labelled with
    its config hash from ``hashes``."""
    volumes = sorted({volume for entry in entries for volume, _ in entry["volumes"]})
    secrets = sorted({name for entry in entries for name in entry["secrets"]})
    configs = sorted({(name, content) for entry in entries for name, _, content in entry["configs"]})
    routed = any(contract.ROUTES_NETWORK in entry["networks"] for entry in entries)
    return render("compose.yaml.j2", stack=stack, services=entries, volumes=volumes, configs=configs,
                  secrets=secrets, secrets_dir=f"{stack.deploy_dir}/{contract.SECRETS_DIR}",
                  routes_network_key=contract.ROUTES_NETWORK,
                  routes_network=contract.routes_network(stack.name) if routed else None,
                  image_source=image_source, hashes=hashes, hash_label=contract.CONFIG_HASH_LABEL)


def compose_build_yaml(stack: Stack, builds: list[tuple[str, ImageSpec]]) -> str:
    """compose.build.yaml: the images this host builds (``stackctl.py build`` reads it)."""
    return render("compose.build.yaml.j2", stack=stack, builds=builds)

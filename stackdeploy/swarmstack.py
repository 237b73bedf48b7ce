"""The swarm engine's release: one stack file for the whole inventory, from the same model.

Where the compose engine renders one project per host and wires hosts together itself,
Swarm schedules the tasks, so the release is one stack file (``docker stack deploy``)
rendered once, for the first manager:

- every service on one overlay network, found by name (``endpoint_mode: dnsrr`` by
  default: this kernel, like many, has no IPVS for VIPs and the routing mesh);
- the placement map as constraints on node labels (``group.<inventory group>``), which
  provision.py / deploy.py set from the inventory;
- apps update ``start-first`` and roll back by themselves (``failure_action: rollback``);
- the generated secrets as Docker secrets (created once by the helper from the host copy
  of the secrets, never rotated), mounted as files: services read ``<NAME>_FILE``;
- the gateway's nginx.conf and certificate as Docker configs and its private key as a Docker
  secret, each named after its content (configs and secrets are immutable), the gateway
  published in host mode on the edge nodes (plain HTTP and HTTPS);
- every task's output sent by its node's dockerd to the log store (syslog log driver), the
  log store itself published in host mode on its node (UDP);
- Prometheus's and Alertmanager's rendered config files as Docker configs (``configs/``),
  the per-host exporters in ``mode: global``;
- under ``image_distribution = "registry"``, the built images by their registry names, so
  a node Swarm moves a task to pulls the image itself.

Swarm ignores ``depends_on``, so the release also holds one cumulative stack file per
dependency wave (``stack.wave-N.yaml``): the helper deploys them in turn and gates each
on the tasks being healthy.
"""

from __future__ import annotations

import json
from dataclasses import replace

import yaml

from stackdeploy import contract, logstore
from stackdeploy.composefile import (
    GATEWAY_LISTEN_PORT,
    GATEWAY_TLS_LISTEN_PORT,
    dependency_env,
    gateway_conf,
    tls_settings,
)
from stackdeploy.fingerprint import data_digest, short
from stackdeploy.graph import waves
from stackdeploy.imagespec import image_tags
from stackdeploy.metricsconfig import config_files
from stackdeploy.model import Service, Stack, StackError
from stackdeploy.placement import HostSpec, Placement
from stackdeploy.plan import GATEWAY_KEY_FILE, Plan
from stackdeploy.tls import Certificate

STACK_FILE = "stack.yaml"
CONFIG_DIR = "configs"  # rendered config files (Prometheus, Alertmanager), one Docker config each
MANIFEST_FILE = "swarm.json"
NETWORK = "mesh"  # overlay; not "backend", which the compose engine's bridge network is called
EDGE_NETWORK = "mesh-edge"  # the gateway's way out (host-mode publishing needs a non-internal network)
HEALTH_INTERVAL = "5s"  # a new task is judged after this: it bounds how fast a wave or an update moves
# Swarm replaces a task after `retries` failed checks in a row, and a check that outlives its
# timeout fails. The images' checks start a Python process, which on a busy two-core host (a
# rollout under load) took over 3 s: Swarm then killed a healthy gateway. A hung task is still
# replaced within retries x (interval + timeout), 45 s.
HEALTH_TIMEOUT = "10s"
GROUP_LABEL = "group."  # node label prefix: group.<inventory group>=true
GATEWAY_CERT_FILE = f"nginx/{contract.TLS_CERT}"
GATEWAY_KEY_SECRET = "gateway_tls_key"  # the key's file name in the gateway's /run/secrets/
# Shared by every service: one object, which the YAML dump writes once as an anchor (&id...)
# and then as aliases, like the compose file's x- anchors.
RESTART_POLICY = {"condition": "any", "delay": "2s"}


def wave_file(number: int) -> str:
    return f"stack.wave-{number}.yaml"


def node_labels(groups: frozenset[str] | set[str], stack: Stack) -> dict[str, str]:
    """The labels a node gets: one per placement group it is in."""
    return {f"{GROUP_LABEL}{group}": "true" for group in sorted(groups) if group in stack.placement}


def swarm_services(stack: Stack) -> list[str]:
    """The services Swarm runs: all but the health monitor (Swarm restarts unhealthy tasks itself)."""
    return [name for name, svc in stack.services.items() if svc.role != "monitor"]


def constraints(stack: Stack, name: str) -> list[str]:
    groups = [group for group, names in stack.placement.items() if name in names]
    if not groups:
        return []  # a stack with no placement map: any node
    if len(groups) > 1:  # constraints are ANDed: a service in two groups would need nodes in both
        raise StackError("placement", f"service '{name}' is in groups {', '.join(groups)}; on the swarm "
                                      "engine a service is placed by one group")
    return [f"node.labels.{GROUP_LABEL}{groups[0]} == true"]


def _env(service: Service, stack: Stack) -> dict[str, str]:
    """Plain settings only: every dependency by its service name, secrets as ``*_FILE`` paths."""
    env = {"TZ": "UTC", "STACK_NAME": stack.name, **stack.shared_env, **service.env}
    env.update(dependency_env(service, stack, {dep: (dep, stack.services[dep].port) for dep in service.depends_on}))
    for secret in service.secrets:
        env[f"{secret}_FILE"] = f"{contract.SECRETS_MOUNT}/{secret}"
    return dict(sorted(env.items()))


def _entry(service: Service, stack: Stack, image: str, gateway_files: dict[str, str],
           log_target: logstore.LogTarget | None, configs: list[tuple[str, str, str]] = ()) -> dict:
    """One service of the stack file, as data: hashed as it is and rendered by yaml.
    ``gateway_files``: the gateway's config and secret names ("conf", "cert", "key");
    ``configs``: (name, path in the container, content) of its rendered config files."""
    app = service.rolls
    order = "start-first" if app else "stop-first"  # a volume or a host port can be held by one task
    entry: dict = {
        "image": image,
        "init": True,
        "environment": _literal(_env(service, stack)),
        "stop_grace_period": f"{int(service.stop_grace)}s",
        "logging": logstore.logging_options(service.name, log_target),
        "networks": [NETWORK, EDGE_NETWORK] if service.role == "gateway" else [NETWORK],
        "healthcheck": {"interval": HEALTH_INTERVAL, "timeout": HEALTH_TIMEOUT, "retries": 3,
                        "start_period": f"{int(service.wait_timeout)}s"},
        "deploy": {
            "mode": "global" if service.role == "gateway" or service.every_host else "replicated",
            "endpoint_mode": stack.swarm.endpoint_mode,
            "placement": {"constraints": constraints(stack, service.name)},
            "restart_policy": RESTART_POLICY,
            "update_config": {"order": order, "parallelism": 1, "failure_action": "rollback", "monitor": "10s"},
            "rollback_config": {"order": order, "parallelism": 1},
        },
    }
    if service.role != "gateway" and not service.every_host:
        entry["deploy"]["replicas"] = service.replicas
    if configs:
        entry["configs"] = [{"source": name, "target": target} for name, target, _ in configs]
    if service.entrypoint:
        entry["entrypoint"] = _literal(list(service.entrypoint))
    if service.user:
        entry["user"] = service.user
    if service.health.command:
        entry["healthcheck"]["test"] = _literal(["CMD", *service.health.command])
    command = list(service.command)
    ports = [service.publish] if service.publish else []
    if service.role == "gateway":
        command = ["nginx", "-c", f"{contract.GATEWAY_CONF_MOUNT}/nginx.conf", "-g", "daemon off;"]
        entry["configs"] = [
            {"source": gateway_files["conf"], "target": f"{contract.GATEWAY_CONF_MOUNT}/nginx.conf"},
            {"source": gateway_files["cert"], "target": f"{contract.GATEWAY_CONF_MOUNT}/{contract.TLS_CERT}"}]
        # 0600 and owned by the offline image's nginx user (the registry image's master is root).
        entry["secrets"] = [{"source": gateway_files["key"], "target": GATEWAY_KEY_SECRET,
                             "uid": str(contract.GATEWAY_UID), "gid": str(contract.GATEWAY_UID), "mode": 0o600}]
    if service.role == "logstore":
        # Every node's dockerd sends to it (not over the overlay): published on its node.
        command = logstore.command(stack, service)
        entry["ports"] = [{"target": service.port, "published": service.port, "protocol": logstore.PROTOCOL,
                           "mode": "host"}]
    if command:
        entry["command"] = _literal(command)
    if ports and service.role != "gateway" and service.publish_bind == "127.0.0.1":
        ports = []  # Swarm publishes on every address of a node: reached through the overlay instead
    targets = [(port, service.port) for port in ports]
    if service.role == "gateway":
        targets = [(stack.gateway_port, GATEWAY_LISTEN_PORT), (stack.tls.port, GATEWAY_TLS_LISTEN_PORT)]
    if targets:
        entry["ports"] = [{"target": target, "published": port, "protocol": "tcp", "mode": stack.swarm.publish_mode}
                          for port, target in targets]
    if service.volumes or service.host_paths:
        entry["volumes"] = [f"{volume}:{path}" for volume, path in sorted(service.volumes.items())]
        entry["volumes"] += [f"{source}:{target}:ro" for source, target in sorted(service.host_paths.items())]
    if service.secrets:
        entry["secrets"] = [*entry.get("secrets", []), *sorted(service.secrets)]
    if service.limits:
        limits: dict = {"cpus": service.limits["cpus"]} if "cpus" in service.limits else {}
        if "memory" in service.limits:
            limits["memory"] = service.limits["memory"].upper()
        if "pids" in service.limits:
            limits["pids"] = int(service.limits["pids"])
        entry["deploy"]["resources"] = {"limits": limits}
    # As on compose; Swarm takes no security_opt, so no-new-privileges is the daemon's
    # default on swarm nodes instead (provision.py).
    entry["cap_drop"] = ["ALL"]
    if service.cap_add:
        entry["cap_add"] = list(service.cap_add)
    if service.read_only:  # Swarm takes no ``tmpfs`` key: a tmpfs mount, in the long syntax
        entry["read_only"] = True
        entry["volumes"] = [*entry.get("volumes", []), {"type": "tmpfs", "target": "/tmp"}]
    return entry



def _whole_swarm(stack: Stack) -> Placement:
    """Every service on one pseudo host: what Prometheus's config needs on Swarm, where it
    finds each service by name (tasks.<service>), whatever node it runs on."""
    return Placement(stack, {"swarm": HostSpec("swarm", frozenset())},
                     {"swarm": tuple(swarm_services(stack))})


def _literal(value: object) -> object:
    """Every ``$`` doubled: `docker stack deploy` interpolates ``${VAR}`` from the control
    machine's environment, and a shell command meant for the container must reach it as written."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_literal(item) for item in value]
    return value


def _nginx_routes(gateway: Service, stack: Stack) -> list[dict]:
    """Every route to its service by name: Docker's DNS answers the task addresses (dnsrr),
    re-resolved every few seconds, so nginx balances over the tasks and finds a moved one."""
    return [{"prefix": prefix, "upstream": None, "local": None,
             "servers": [f"{target}:{stack.services[target].port}"],
             "websocket": prefix in gateway.websocket_routes, "auth": prefix in gateway.auth_routes}
            for prefix, target in sorted(gateway.routes.items())]


def render_stack(stack: Stack, images: dict[str, str], nginx_conf: str | None,
                 certificate: Certificate, *,
                 log_target: logstore.LogTarget | None = None) -> tuple[dict[str, str], dict]:
    """(release files, manifest) of the swarm engine: the stack file, one per wave, nginx.conf
    with the certificate and key it names, and ``swarm.json`` for the helper. ``images`` maps
    each service to its image tag; ``log_target``: where every node's dockerd sends container
    logs (None: json-file)."""
    names = swarm_services(stack)
    gateway = next((stack.services[n] for n in names if stack.services[n].role == "gateway"), None)
    # Named after their content; the key after its certificate's (public) fingerprint.
    gateway_files = {"conf": f"gateway-conf-{short(data_digest([nginx_conf]))}",
                     "cert": f"gateway-cert-{certificate.fingerprint[:12]}",
                     "key": f"gateway-key-{certificate.fingerprint[:12]}"} if nginx_conf else {}
    # One placement for the whole swarm: its config files name services, not hosts.
    rendered = {name: config_files(stack.services[name], _whole_swarm(stack), "swarm") for name in names}
    entries = {name: _entry(stack.services[name], stack, images[name], gateway_files, log_target, rendered[name])
               for name in names}
    hashes = {name: short(data_digest([entry])) for name, entry in entries.items()}
    for name, entry in entries.items():
        entry["deploy"]["labels"] = {contract.CONFIG_HASH_LABEL: hashes[name]}
    all_waves = [[n for n in wave if n in entries]
                 for wave in waves({n: stack.services[n].depends_on for n in names})]
    volumes = sorted({v for n in names for v in stack.services[n].volumes})
    secret_names = sorted({s for n in names for s in stack.services[n].secrets})

    def document(services: list[str]) -> str:
        doc: dict = {
            "version": "3.9",  # the first stack file format with deploy.resources.limits.pids
            "services": {n: entries[n] for n in services},
            "networks": {NETWORK: {"driver": "overlay", "internal": True},
                         EDGE_NETWORK: {"driver": "overlay"}},
        }
        used_volumes = [v for v in volumes if any(v in stack.services[n].volumes for n in services)]
        if used_volumes:
            doc["volumes"] = {v: {} for v in used_volumes}
        used_secrets = [s for s in secret_names if any(s in stack.services[n].secrets for n in services)]
        if used_secrets:  # created by the helper from the host copy: never rotated by a deploy
            doc["secrets"] = {s: {"external": True, "name": f"{stack.name}_{s}"} for s in used_secrets}
        configs = {}
        if gateway_files and gateway and gateway.name in services:
            configs = {gateway_files["conf"]: {"file": "./nginx/nginx.conf"},
                       gateway_files["cert"]: {"file": f"./{GATEWAY_CERT_FILE}"}}
            doc.setdefault("secrets", {})[gateway_files["key"]] = {"file": f"./{GATEWAY_KEY_FILE}"}
        configs.update({name: {"file": f"./{CONFIG_DIR}/{name}"} for n in services for name, _, _ in rendered[n]})
        if configs:
            doc["configs"] = configs
        header = (f"# {stack.name}: rendered by stackdeploy (stackdeploy/swarmstack.py) for "
                  "`docker stack deploy`. Do not edit on the host.\n")
        return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)

    files = {STACK_FILE: document(names)}
    done: list[str] = []
    for number, wave in enumerate(all_waves, 1):
        done += wave
        files[wave_file(number)] = document(list(done))
    if nginx_conf:
        files["nginx/nginx.conf"] = nginx_conf
        files[GATEWAY_CERT_FILE] = certificate.chain_pem.decode()
        files[GATEWAY_KEY_FILE] = certificate.key_pem.decode()
    files.update({f"{CONFIG_DIR}/{name}": content for n in names for name, _, content in rendered[n]})
    manifest = {
        "stack": stack.name,
        "waves": all_waves,
        "secrets": secret_names,
        "services": {n: {"config_hash": hashes[n], "image": images[n], "timeout": stack.services[n].wait_timeout,
                         "replicas": None if stack.services[n].role == "gateway" else stack.services[n].replicas}
                     for n in names},
    }
    if stack.registry:  # the helper deploys with --with-registry-auth: the manager's login reaches every node
        manifest["registry"] = stack.registry.address
    files[MANIFEST_FILE] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return files, manifest


# Files of the compose engine's release that the swarm engine does not use.
COMPOSE_ONLY = ("compose.yaml", "env/", "nginx/")


def swarm_release(plan: Plan, manager: bool, certificate: Certificate, *,
                  log_target: logstore.LogTarget | None = None) -> Plan:
    """The compose plan of one host, turned into the swarm engine's release on that host: the
    build contexts it builds stay; the first manager also gets the stack files. Every host
    keeps a release.json (images and config hashes of its services) for the release record
    and image pruning (stackctl.py finish)."""
    stack = plan.stack
    files = {rel: text for rel, text in plan.files.items() if not rel.startswith(COMPOSE_ONLY)}
    gateway = next((s for s in stack.services.values() if s.role == "gateway"), None)
    tls = tls_settings(stack, certificate.summary(), f"{contract.GATEWAY_CONF_MOUNT}/{contract.TLS_CERT}",
                       f"{contract.SECRETS_MOUNT}/{GATEWAY_KEY_SECRET}")
    nginx = gateway_conf(gateway, _nginx_routes(gateway, stack), None, tls) if gateway else None
    swarm_files, manifest = render_stack(stack, image_tags(stack, plan.image_source), nginx, certificate,
                                         log_target=log_target)
    hashes = {name: spec["config_hash"] for name, spec in manifest["services"].items()}
    if manager:
        files.update(swarm_files)
    services = {n: replace(sp, config_hash=hashes[n]) for n, sp in plan.services.items() if n in hashes}
    release = json.loads(plan.files[contract.RELEASE_FILE])
    release.update(engine="swarm", waves=[], remote={}, gateway=None,
                   services={n: {**spec, "config_hash": hashes[n]} for n, spec in release["services"].items()
                             if n in hashes})
    files[contract.RELEASE_FILE] = json.dumps(release, indent=2, sort_keys=True) + "\n"
    return replace(plan, files=files, services=services, secret_files=frozenset({GATEWAY_KEY_FILE} & set(files)),
                   waves=manifest["waves"], replicated=frozenset())

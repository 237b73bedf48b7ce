"""The desired state of one host: every file to put there, every image, every hash.

``build_plan`` is pure: the same stack, image source and secrets always give the same
plan, byte for byte. That is what makes change detection exact: image tags carry the
fingerprint of their build context, and each service's ``config_hash`` covers everything
its container is created from (compose settings, env file, mounted config, image).

The pieces come from one module each: ``imagespec`` (images and build contexts),
``composefile`` (compose files, env files, nginx.conf), ``releasemanifest`` (release.json)
and ``fingerprint`` (the hashes); this module decides what goes on which host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stackdeploy import composefile, contract, imagespec, metricsconfig, releasemanifest
from stackdeploy.fingerprint import config_hash
from stackdeploy.graph import waves
from stackdeploy.imagespec import ImageSpec
from stackdeploy.model import Service, Stack, stack_for_image_source
from stackdeploy.placement import HostSpec, Placement, place

if TYPE_CHECKING:
    from stackdeploy.tls import Certificate

GATEWAY_KEY_FILE = f"nginx/{contract.TLS_KEY}"  # the gateway's private key in a release (0600)


@dataclass(frozen=True)
class ServicePlan:
    """What one service needs on the host."""

    name: str
    image: str  # what its container runs: under image_distribution "registry", a built image's registry name
    build_dir: str | None  # relative to the deploy dir; None for pulled images
    source_dir: Path | None  # local folder synced to <build_dir>/src
    config_hash: str  # see fingerprint.config_hash
    strategy: str  # how a change reaches it: contract.ROLLING or contract.RECREATE


@dataclass(frozen=True)
class Plan:
    """The complete desired state of a host."""

    stack: Stack
    image_source: str
    base_image: str | None
    services: dict[str, ServicePlan]
    files: dict[str, str]  # path relative to a release directory -> content
    secret_files: frozenset[str]  # paths in ``files`` that hold secrets (mode 0600)
    waves: list[list[str]]  # waves of the whole stack (all hosts), by dependency
    builds: dict[str, ImageSpec] = field(default_factory=dict)  # images this host builds
    replicated: frozenset[str] = frozenset()  # services placed on several hosts (rolled host by host)

    @property
    def own_built_images(self) -> dict[str, str]:
        """Service -> image, for the images of this host's services that are built, not pulled."""
        return {name: svc.image for name, svc in self.services.items() if svc.build_dir}

    def is_standin(self, name: str) -> bool:
        """Whether ``name`` runs the offline Ollama-API stand-in rather than Ollama (labelled so everywhere)."""
        service = self.stack.services.get(name)
        return self.image_source == "local" and service is not None and service.image.get("local") == "ollama-standin"


def _strategy(service: Service, entry: dict) -> str:
    """Apps roll (a second container beside the first); a published port can be held by one
    container only, and infrastructure and the gateway's image are stop-then-start by nature."""
    return contract.ROLLING if service.rolls and not entry["ports"] else contract.RECREATE


def built_names(builds: list[ImageSpec]) -> list[str]:
    """Every name the images a host builds have there: their tags, and under the registry
    distribution their registry names, which the build host tags them with to push them."""
    return sorted({name for spec in builds for name in (spec.image, spec.registry_image) if name})


def single_host(stack: Stack, host: str = "@local") -> Placement:
    """The placement of a one-host deploy: everything on ``host``."""
    return place(stack, [HostSpec(host, frozenset())])


def build_plan(stack: Stack, image_source: str, secrets: dict[str, str],
               where: Placement | None = None, host: str = "@local", builder: str | None = None, *,
               certificate: Certificate) -> Plan:
    """Compute every file, image tag and config hash for the part of ``stack`` on ``host``.

    ``certificate`` is what the gateway serves (see ``stackdeploy.tls``); its chain and key go
    into the release beside nginx.conf, the key as a secret file (0600).

    ``builder`` names the host that can build every image (build-once distribution); None
    means each host builds the images of its own services (build-everywhere).

    Offline, the registry-only services are left out (``model.stack_for_image_source``), and
    ``where`` is placed again without them: the plan is the one of a stack that never had them.
    """
    assert image_source in ("registry", "local"), image_source
    runnable = stack_for_image_source(stack, image_source)
    if runnable is not stack and where is not None:
        where = place(runnable, where.hosts.values())
    stack = runnable
    where = where or single_host(stack, host)
    base_image = imagespec.base_image(stack, image_source)
    names = list(where.services_on[host])
    here = [stack.services[n] for n in names]
    specs = {name: imagespec.image_spec(svc, stack, image_source, base_image) for name, svc in stack.services.items()}
    # Every host can build its own images (it does under build-everywhere, and under
    # build-once when the build host is not part of the run); the build host can build all.
    # The files therefore never depend on which hosts a run includes.
    # The build host builds every image some host runs (the swarm engine runs no monitor).
    placed = [n for n in stack.services if where.hosts_of(n)]
    builds_here = [n for n in (placed if builder == host else names) if specs[n].build_dir]

    files: dict[str, str] = {}
    for name in builds_here:
        files.update({f"{specs[name].build_dir}/{rel}": text for rel, text in specs[name].context.items()})
    files["compose.build.yaml"] = composefile.compose_build_yaml(stack, [(n, specs[n]) for n in builds_here])
    service_plans: dict[str, ServicePlan] = {}
    service_specs: dict[str, contract.ServiceSpec] = {}
    entries: dict[str, dict] = {}
    for service in here:
        name, spec = service.name, specs[service.name]
        entries[name] = entry = composefile.compose_entry(
            service, spec.run_image, spec.build_dir if name in builds_here else None, image_source, where, host,
            metricsconfig.config_files(service, where, host))
        files[f"env/{name}.env"] = env_file = composefile.env_file(service, where, host)
        # The config hash covers what the container is created from (its compose settings, env
        # file and image), not the gateway's nginx.conf: that is reloaded, not recreated.
        service_plans[name] = planned = ServicePlan(
            name=name, image=spec.run_image, build_dir=spec.build_dir, source_dir=spec.source_dir,
            config_hash=config_hash(composefile.container_settings(entry, stack), env_file,
                                    {secret: secrets[secret] for secret in service.secrets}),
            strategy=_strategy(service, entry))
        service_specs[name] = releasemanifest.service_spec(service, image=planned.image,
                                                           config_hash=planned.config_hash, strategy=planned.strategy)

    gateway = next((s for s in here if s.role == "gateway"), None)
    if gateway:
        monitor = next((s for s in here if s.role == "monitor"), None)
        files["nginx/nginx.conf"] = composefile.nginx_conf(gateway, where, host, monitor, certificate.summary())
        files[f"nginx/{contract.TLS_CERT}"] = certificate.chain_pem.decode()
        files[f"nginx/{contract.TLS_KEY}"] = certificate.key_pem.decode()
    files["images/build-base.sh"] = imagespec.base_script()
    files["compose.yaml"] = composefile.compose_yaml(stack, list(entries.values()), image_source,
                                                     {n: p.config_hash for n, p in service_plans.items()})

    all_waves = waves({n: s.depends_on for n, s in stack.services.items()})
    files[contract.RELEASE_FILE] = releasemanifest.release_json(where, host, service_specs, all_waves,
                                                                built_names([specs[n] for n in builds_here]))

    return Plan(
        stack=stack,
        image_source=image_source,
        base_image=base_image if builds_here else None,
        services=service_plans,
        files=files,
        secret_files=frozenset([*(f"env/{name}.env" for name in names), *([GATEWAY_KEY_FILE] if gateway else [])]),
        waves=all_waves,
        builds={n: specs[n] for n in builds_here},
        replicated=frozenset(n for n in stack.services if len(where.hosts_of(n)) > 1),
    )

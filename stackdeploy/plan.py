"""The desired state of one host: every file to put there, every image, every hash.

``build_plan`` is pure: the same stack, image source and secrets always give the same
plan, byte for byte. That is what makes change detection exact: image tags carry the
fingerprint of their build context, and each service's ``config_hash`` covers everything
its container is created from (compose settings, env file, mounted config, image).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from stackdeploy import composefile, contract, imagespec, releasemanifest
from stackdeploy.fingerprint import data_digest
from stackdeploy.graph import waves
from stackdeploy.imagespec import ImageSpec
from stackdeploy.model import Service, Stack
from stackdeploy.placement import HostSpec, Placement, place


@dataclass(frozen=True)
class ServicePlan:
    """What one service needs on the host."""

    name: str
    image: str
    build_dir: str | None  # relative to the deploy dir; None for pulled images
    source_dir: Path | None  # local folder synced to <build_dir>/src
    config_hash: str = ""
    strategy: str = contract.RECREATE  # how a change reaches it: contract.ROLLING or contract.RECREATE


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


def _strategy(service: Service, entry: dict) -> str:
    """Apps roll (a second container beside the first); a published port can be held by one
    container only, and infrastructure and the gateway's image are stop-then-start by nature."""
    return contract.ROLLING if service.kind == "python" and not entry["ports"] else contract.RECREATE


def single_host(stack: Stack, host: str = "@local") -> Placement:
    """The placement of a one-host deploy: everything on ``host``."""
    return place(stack, [HostSpec(host, frozenset())])


def build_plan(stack: Stack, image_source: str, secrets: dict[str, str],
               where: Placement | None = None, host: str = "@local", builder: str | None = None) -> Plan:
    """Compute every file, image tag and config hash for the part of ``stack`` on ``host``.

    ``builder`` names the host that can build every image (build-once distribution); None
    means each host builds the images of its own services (build-everywhere).
    """
    assert image_source in ("registry", "local"), image_source
    where = where or single_host(stack, host)
    base_image = imagespec.base_image(stack, image_source)
    names = list(where.services_on[host])
    here = [stack.services[n] for n in names]
    specs = {name: imagespec.image_spec(svc, stack, image_source, base_image) for name, svc in stack.services.items()}
    # Every host can build its own images (it does under build-everywhere, and under
    # build-once when the build host is not part of the run); the build host can build all.
    # The files therefore never depend on which hosts a run includes.
    builds_here = [n for n in (stack.services if builder == host else names) if specs[n].build_dir]

    files: dict[str, str] = {}
    for name in builds_here:
        files.update({f"{specs[name].build_dir}/{rel}": text for rel, text in specs[name].context.items()})
    files["compose.build.yaml"] = composefile.compose_build_yaml(stack, [(n, specs[n]) for n in builds_here])
    service_plans: dict[str, ServicePlan] = {}
    entries: dict[str, dict] = {}
    for service in here:
        spec = specs[service.name]
        service_plans[service.name] = ServicePlan(service.name, spec.image, spec.build_dir, spec.source_dir)
        entries[service.name] = composefile.compose_entry(
            service, spec.image, spec.build_dir if service.name in builds_here else None, image_source, where, host)
        files[f"env/{service.name}.env"] = composefile.env_file(service, where, host, secrets)

    def compose_file(hashes: dict[str, str]) -> str:
        return composefile.compose_yaml(stack, list(entries.values()), image_source, hashes)

    gateway = next((s for s in here if s.kind == "gateway"), None)
    if gateway:
        monitor = next((s for s in here if s.kind == "monitor"), None)
        files["nginx/nginx.conf"] = composefile.nginx_conf(gateway, where, host, monitor)
    files["images/build-base.sh"] = imagespec.base_script()

    # Each service's config hash covers what its container is created from (its compose
    # entry, env file and image) and becomes the container's label, so drift is read from
    # what really runs. The gateway's nginx.conf is not part of it: it is reloaded, not
    # recreated. The entry's build section depends on who builds; the container does not.
    compose = yaml.safe_load(compose_file({}))
    for service in here:
        name = service.name
        compose["services"][name].pop("build", None)
        config_hash = data_digest([compose["services"][name], files[f"env/{name}.env"]])
        service_plans[name] = replace(service_plans[name], config_hash=config_hash,
                                      strategy=_strategy(service, entries[name]))
    files["compose.yaml"] = compose_file({n: p.config_hash for n, p in service_plans.items()})

    all_waves = waves({n: s.depends_on for n, s in stack.services.items()})
    service_specs = {s.name: releasemanifest.service_spec(s, service_plans[s.name].image,
                                                          service_plans[s.name].config_hash,
                                                          service_plans[s.name].strategy) for s in here}
    files[contract.RELEASE_FILE] = releasemanifest.release_json(where, host, service_specs, all_waves,
                                                                sorted(specs[n].image for n in builds_here))

    return Plan(
        stack=stack,
        image_source=image_source,
        base_image=base_image if builds_here else None,
        services=service_plans,
        files=files,
        secret_files=frozenset(f"env/{name}.env" for name in names),
        waves=all_waves,
        builds={n: specs[n] for n in builds_here},
        replicated=frozenset(n for n in stack.services if len(where.hosts_of(n)) > 1),
    )

"""Per-host preparation: validate, read the host once, decide every change up front.

This is the only place deploy.py gets its decisions from. It reads the host with one
fact, so a redeploy with nothing to do costs a handful of commands, and everything it
decides is visible to ``--dry``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pyinfra.api import Host
from pyinfra.api.exceptions import PyinfraError

from stackdeploy import SERVICES_DIR, STATE_DIR, model, secrets
from stackdeploy.facts import HostState, RegistryReachable, StackHostState
from stackdeploy.placement import HostSpec, Placement, place
from stackdeploy.plan import REGISTRY_PYTHON_BASE, Plan, build_plan


class StackInputError(PyinfraError):
    """Bad stack input: pyinfra prints it as one line and exits non-zero, no traceback."""


@dataclass(frozen=True)
class HostDecisions:
    """What this deploy will change on one host, decided before anything runs."""

    plan: Plan
    state: HostState
    secrets_json: str
    to_build: list[str]
    to_start: list[str]
    to_ship: list[str]  # images to copy from the build host (build-once distribution)
    builder: Host | None

    @property
    def base_to_build(self) -> bool:
        """The offline base is needed only where something is built."""
        return bool(self.to_build and self.plan.base_image and self.plan.base_image not in self.state.images)


def load_stack(data: dict[str, Any]) -> model.Stack:
    try:
        return model.load(data, SERVICES_DIR)
    except model.StackError as exc:
        raise StackInputError(f"invalid stack definition: {exc}") from None


def inventory_placement(stack: model.Stack, host: Host) -> Placement:
    """Placement over the whole inventory (also hosts left out by --limit)."""
    specs = [HostSpec(h.name, frozenset(h.groups), h.data.get("private_address")) for h in host.inventory]
    try:
        return place(stack, specs)
    except model.StackError as exc:
        raise StackInputError(f"invalid stack definition: {exc}") from None


def resolve_image_source(stack: model.Stack, host: Host, state: HostState) -> str:
    """Explicit choice wins; ``auto`` keeps what the host used before, else probes."""
    if stack.image_source != "auto":
        return stack.image_source
    if state.image_source in ("registry", "local"):
        return state.image_source
    images = [REGISTRY_PYTHON_BASE] + [s.image["registry"] for s in stack.services.values() if s.kind != "python"]
    return "registry" if host.get_fact(RegistryReachable, images=images) else "local"


def build_host(stack: model.Stack, host: Host) -> Host | None:
    """The host that builds every image under build-once (the one with ``build_host``
    data, else the first in the inventory); None under build-everywhere."""
    if stack.image_distribution != "build-once":
        return None
    hosts = list(host.inventory)
    return next((h for h in hosts if h.data.get("build_host")), hosts[0])


def images_to_get(plan: Plan, state: HostState, host: Host, builder: Host | None) -> tuple[list[str], list[str]]:
    """(services to build here, images to ship here from the build host).

    Build-once ships from the build host when it takes part in this run; when it does not
    (``--limit apps``), each host builds what it lacks itself, so a limited run never
    depends on a host it does not touch.
    """
    missing = [n for n, spec in plan.builds.items() if spec.image not in state.images]
    if builder is None or builder.name == host.name:
        return missing, []
    if builder in list(host.inventory.iter_activated_hosts()):
        return [], sorted({image for image in plan.own_built_images.values() if image not in state.images})
    return [n for n in missing if n in plan.own_built_images], []


def decide(host: Host) -> HostDecisions:
    """Validate the stack for ``host``, read the host once and decide every change."""
    stack = load_stack(host.data.dict())
    where = inventory_placement(stack, host)
    state = host.get_fact(StackHostState, deploy_dir=stack.deploy_dir, project=stack.name)
    image_source = resolve_image_source(stack, host, state)
    try:
        values = secrets.resolve(
            stack.secret_names,
            STATE_DIR / "secrets" / f"{stack.name}-{stack.environment}.json",
            secrets.parse_host_copy(state.secrets_json),
        )
    except model.StackError as exc:
        raise StackInputError(f"{host.name}: {exc}") from None
    builder = build_host(stack, host)
    plan = build_plan(stack, image_source, values, where, host.name, builder.name if builder else None)
    to_build, to_ship = images_to_get(plan, state, host, builder)
    to_start = [
        name for name, svc in plan.services.items()
        if state.containers.get(name, {}).get("state") != "running"
        or state.applied.get(name) != svc.config_hash
    ]
    return HostDecisions(plan, state, json.dumps(values, indent=2, sort_keys=True) + "\n", to_build, to_start,
                         to_ship, builder)

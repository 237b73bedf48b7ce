"""Per-host preparation: validate, read the host once, decide every change up front.

This is the only place deploy.py gets its decisions from. It reads the host with one
fact, so a redeploy with nothing to do costs a handful of commands, and everything it
decides is visible to ``--dry``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pyinfra import logger
from pyinfra.api import Host
from pyinfra.api.exceptions import PyinfraError

from stackdeploy import FILES_DIR, SERVICES_DIR, STATE_DIR, commands, contract, model, secrets
from stackdeploy.engine import START_ENGINE_HINT
from stackdeploy.facts import (
    ENGINE_DOWN,
    DockerEngineStatus,
    FileHashes,
    HostState,
    RegistryReachable,
    StackHostState,
    parse_image_ids,
    read_fact,
)
from stackdeploy.fingerprint import context_files
from stackdeploy.inputfiles import StackInputError, setting_source
from stackdeploy.placement import HostSpec, Placement, place
from stackdeploy.plan import REGISTRY_PYTHON_BASE, Plan, build_plan
from stackdeploy.remote import run_on_control_machine
from stackdeploy.runinfo import RELEASE_ID


@dataclass(frozen=True)
class HostDecisions:
    """What this deploy will change on one host, decided before anything runs. The phases
    take this one object and read what they need by name."""

    plan: Plan
    state: HostState
    secrets_json: str
    release: str  # the release the host will run: the current one, or a new id
    release_files: dict[str, bytes]  # every file of the release, with its exact bytes
    changed_files: list[str]  # release files that differ from the current release's
    current_files: list[str]  # files of the current release on the host
    top_files: dict[str, bytes]  # deploy-directory files outside the releases that differ
    to_build: list[str]
    to_start: list[str]
    to_ship: list[str]  # images to copy from the build host (build-once) or from images_from
    gateway_conf_changed: bool  # the gateway's nginx.conf changes: a graceful reload, no restart
    builder: Host | None
    ship_from: list[str] | None = None  # ssh prefix of images_from (promotion), else the builder

    @property
    def base_to_build(self) -> bool:
        """The offline base is needed only where something is built."""
        return bool(self.to_build and self.plan.base_image and self.plan.base_image not in self.state.images)

    @property
    def new_release(self) -> bool:
        return self.release != self.state.current

    @property
    def changes_anything(self) -> bool:
        return bool(self.new_release or self.top_files or self.to_build or self.to_ship or self.to_start
                    or self.gateway_conf_changed)

    @property
    def changed_services(self) -> list[str]:
        gateway = [n for n in self.plan.services if self.plan.stack.services[n].kind == "gateway"]
        return sorted({*self.to_start, *(gateway if self.gateway_conf_changed else [])})


def _refusal(exc: model.StackError, host: Host) -> StackInputError:
    """``exc`` as the user's error, led by the file that gives ``host`` the setting it is about:
    ``group_data/all.py: services.creator-hub.kind: must be one of ...``."""
    source = setting_source(host, exc.setting)
    return StackInputError(f"{source}: {exc}" if source else str(exc))


def load_stack(host: Host) -> model.Stack:
    try:
        return model.load(host.data.dict(), SERVICES_DIR)
    except model.StackError as exc:
        raise _refusal(exc, host) from None


def inventory_placement(stack: model.Stack, host: Host) -> Placement:
    """Placement over the whole inventory (also hosts left out by --limit)."""
    specs = [HostSpec(h.name, frozenset(h.groups), h.data.get("private_address")) for h in host.inventory]
    try:
        return place(stack, specs)
    except model.StackError as exc:
        raise _refusal(exc, host) from None


def resolve_image_source(stack: model.Stack, host: Host, state: HostState) -> str:
    """Explicit choice wins; ``auto`` keeps what the host used before, else probes."""
    if stack.image_source != "auto":
        return stack.image_source
    if state.image_source in ("registry", "local"):
        return state.image_source
    images = [REGISTRY_PYTHON_BASE] + [s.image["registry"] for s in stack.services.values() if s.kind != "python"]
    return "registry" if read_fact(host, RegistryReachable, images=images) else "local"


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


def read_host(host: Host, stack: model.Stack) -> HostState:
    """The host's state; an installed engine that does not answer is started first (a real
    run) or refused (``--dry``), so the plan is always made from what is really there."""
    state = read_fact(host, StackHostState, deploy_dir=stack.deploy_dir, project=stack.name)
    if state.engine != ENGINE_DOWN:
        return state
    if "--dry" in sys.argv:
        raise StackInputError(f"{host.name}: the Docker engine is installed but not answering, so a dry run "
                              f"cannot tell what is on the host. Start it ({START_ENGINE_HINT}) and run again.")
    logger.warning(f"{host.print_prefix}Docker engine not answering: starting it before reading the host")
    systemd = read_fact(host, DockerEngineStatus)["systemd"]
    ok, output = host.run_shell_command(commands.script(*commands.start_engine(systemd)))
    if not ok:
        raise PyinfraError(f"{host.name}: could not start the Docker engine: {output.stderr}")
    return read_fact(host, StackHostState, deploy_dir=stack.deploy_dir, project=stack.name)


def release_files(plan: Plan) -> dict[str, bytes]:
    """Every file of a release, with its exact bytes: rendered files and build sources."""
    files = {rel: content.encode() for rel, content in plan.files.items()}
    for spec in plan.builds.values():
        if spec.source_dir is not None:
            for path in context_files(spec.source_dir):
                files[f"{spec.build_dir}/src/{path.relative_to(spec.source_dir).as_posix()}"] = path.read_bytes()
    return files


def top_files(plan: Plan, secrets_json: str) -> dict[str, bytes]:
    return {
        "stackctl.py": (FILES_DIR / "stackctl.py").read_bytes(),
        "stackcontract.py": Path(contract.__file__).read_bytes(),
        ".secrets.json": secrets_json.encode(),
        "state/image-source": f"{plan.image_source}\n".encode(),  # what `auto` resolved to, kept
    }


def differs(wanted: dict[str, bytes], remote: Mapping[str, str]) -> list[str]:
    return [rel for rel in sorted(wanted) if remote.get(rel) != hashlib.sha256(wanted[rel]).hexdigest()]


@cache
def source_image_ids(source: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Tag -> image id on the ``images_from`` host (read once per run, over SSH)."""
    data = dict(source)
    ssh = commands.ssh_prefix(data["ssh_hostname"], data)
    result = run_on_control_machine(commands.run_over_ssh(ssh, commands.image_ids()), timeout=120)
    if result.returncode != 0:
        raise StackInputError(f"images_from: cannot list the images on {data['ssh_hostname']}: "
                              f"{result.stderr.strip()[-500:]}")
    return parse_image_ids(result.stdout.splitlines())


def promoted_images(stack: model.Stack, plan: Plan, host: Host) -> dict[str, str]:
    """The ids ``images_from`` holds for every image this host runs; refuses what it lacks."""
    assert stack.images_from is not None
    ids = source_image_ids(tuple(sorted(stack.images_from.items())))
    needed = sorted(set(plan.own_built_images.values()))
    missing = [image for image in needed if image not in ids]
    if missing:
        raise StackInputError(f"{host.name}: images_from {stack.images_from['ssh_hostname']} does not have "
                              f"{', '.join(missing)}: deploy this commit there first")
    return {image: ids[image] for image in needed}


def decide(host: Host) -> HostDecisions:
    """Validate the stack for ``host``, read the host once and decide every change."""
    stack = load_stack(host)
    where = inventory_placement(stack, host)
    state = read_host(host, stack)
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
    ship_from, pinned = None, {}
    if stack.images_from:  # promotion: the source's very images, by id, never a build here
        pinned = promoted_images(stack, plan, host)
        to_build, to_ship = [], [image for image, image_id in pinned.items() if state.image_ids.get(image) != image_id]
        ship_from = commands.ssh_prefix(stack.images_from["ssh_hostname"], stack.images_from)
    else:
        to_build, to_ship = images_to_get(plan, state, host, builder)
    deployed = read_fact(host, FileHashes, root=stack.deploy_dir)
    files = release_files(plan)
    changed = differs(files, deployed.release)
    stale = [rel for rel in deployed.release if rel not in files]
    secrets_json = json.dumps(values, indent=2, sort_keys=True) + "\n"
    top = top_files(plan, secrets_json)
    conf = files.get("nginx/nginx.conf")
    return HostDecisions(
        plan=plan, state=state, secrets_json=secrets_json,
        release=RELEASE_ID if (changed or stale or not state.current) else state.current,
        release_files=files, changed_files=changed, current_files=sorted(deployed.release),
        top_files={rel: top[rel] for rel in differs(top, deployed.top)},
        to_build=to_build,
        # A promoted image replaces a container still running another build of the same tag.
        to_start=[name for name, svc in plan.services.items() if not state.up_to_date(name, svc.config_hash)
                  or (svc.image in pinned and state.containers[name][0].image_id != pinned[svc.image])],
        to_ship=to_ship,
        gateway_conf_changed=conf is not None and bool(differs({"gateway/nginx.conf": conf}, deployed.top)),
        builder=builder,
        ship_from=ship_from,
    )

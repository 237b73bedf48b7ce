"""Phase 3: images on the host: built where their fingerprint tag is missing, or shipped
from the build host (build-once distribution). No registry is ever needed."""

from __future__ import annotations

import shlex
import subprocess

from pyinfra import host
from pyinfra.api import FunctionCommand, Host, OperationError, deploy, operation

from stackdeploy.plan import Plan
from stackdeploy.remote import ssh_command, stackctl


@operation(is_idempotent=True)
def base_image(plan: Plan, needed: bool):
    """Build the offline base image (debootstrap) when this host builds and lacks it."""
    if not needed or plan.base_image is None:
        host.noop("no base image needed")
        return
    yield (f"sh {plan.stack.deploy_dir}/images/build-base.sh {shlex.quote(plan.base_image)} "
           f"{shlex.quote(plan.stack.debian_mirror)}")


@operation(is_idempotent=True)
def service_images(plan: Plan, to_build: list[str]):
    """Build the images whose fingerprint tag is missing, all at once."""
    if not to_build:
        host.noop("every image matches its build-context fingerprint")
        return
    yield stackctl(plan, "build", *to_build)


def _ship(images: list[str], source: Host, target: Host) -> None:
    save = shlex.join([*ssh_command(source), "docker", "save", *images])
    load = shlex.join([*ssh_command(target), "docker", "load", "-q"])
    result = subprocess.run(["bash", "-o", "pipefail", "-c", f"{save} | {load}"], capture_output=True,
                            text=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise OperationError(f"shipping {', '.join(images)} from {source.name} to {target.name} failed: "
                             f"{result.stderr.strip()[-2000:]}")


@operation(is_idempotent=True)
def shipped_images(images: list[str], source: Host | None):
    """Copy images this host runs but does not build from the build host, through this
    control machine (docker save | docker load over SSH): no registry involved."""
    if not images or source is None:
        host.noop("no image to ship")
        return
    yield FunctionCommand(_ship, (images, source, host), {})


@deploy("Build images")
def build_images(plan: Plan, base_needed: bool, to_build: list[str], to_ship: list[str],
                 builder: Host | None) -> None:
    base_image(name="Offline base image (debootstrap, Python 3.11)", plan=plan, needed=base_needed)
    service_images(name="Images of changed build contexts", plan=plan, to_build=to_build)
    shipped_images(name="Images shipped from the build host", images=to_ship, source=builder)

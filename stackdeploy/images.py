"""Phase 3: images on the host: built where their fingerprint tag is missing, or shipped
from the build host (build-once distribution). No registry is ever needed."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FunctionCommand, Host, OperationError, deploy, operation

from stackdeploy import commands
from stackdeploy.desired import HostDecisions
from stackdeploy.remote import run_on_control_machine


@operation(is_idempotent=True)
def base_image(decisions: HostDecisions):
    """Build the offline base image (debootstrap) when this host builds and lacks it."""
    plan = decisions.plan
    if not decisions.base_to_build or plan.base_image is None:
        host.noop("no base image needed")
        return
    yield commands.build_base_image(plan.stack.deploy_dir, decisions.release, plan.base_image,
                                    plan.stack.debian_mirror)


@operation(is_idempotent=True)
def service_images(decisions: HostDecisions):
    """Build the images whose fingerprint tag is missing, all at once, each build's start and
    end shown as it happens (a cold build takes minutes)."""
    if not decisions.to_build:
        host.noop("every image matches its build-context fingerprint")
        return
    yield commands.live(commands.stackctl(decisions.plan.stack.deploy_dir, host.name, "build", "--release",
                                          decisions.release, *decisions.to_build))


def _ship(images: list[str], source: list[str], target: Host) -> None:
    result = run_on_control_machine(commands.ship_images(images, source, commands.ssh_to(target)), timeout=3600)
    if result.returncode != 0:
        raise OperationError(f"shipping {', '.join(images)} from {source[-1] if source else 'here'} to "
                             f"{target.name} failed: "
                             f"{result.stderr.strip()[-2000:]}")


@operation(is_idempotent=True)
def shipped_images(images: list[str], source: list[str] | None):
    """Copy images this host runs but does not build from the build host (or, promoting, from
    ``images_from``), through this control machine (docker save | docker load over SSH): no
    registry involved. ``source`` is the ssh prefix of the host that has them."""
    if not images or source is None:
        host.noop("no image to ship")
        return
    yield FunctionCommand(_ship, (images, source, host), {})


@deploy("Build images")
def build_images(decisions: HostDecisions) -> None:
    base_image(name="Offline base image (debootstrap, Python 3.11)", decisions=decisions)
    service_images(name="Images of changed build contexts", decisions=decisions)
    source = decisions.ship_from
    if source is None and decisions.builder is not None:
        source = commands.ssh_to(decisions.builder)
    shipped_images(name="Images shipped from the build host", images=decisions.to_ship, source=source)

"""Phase 3: images on the host: built where their fingerprint tag is missing, then shipped
from the build host (build-once distribution: no registry needed), or pushed to the
registry by the build host and pulled by the others (image_distribution "registry")."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import Host, OperationError, deploy, operation

from stackdeploy import commands
from stackdeploy.callback import callback
from stackdeploy.control import run_on_control_machine
from stackdeploy.desired import HostDecisions


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
    yield callback(_ship, images, source, host)


def _load(archives: dict[str, str], target: Host) -> None:
    for image, archive in sorted(archives.items()):
        result = run_on_control_machine(commands.load_archive(archive, commands.ssh_to(target)), timeout=3600)
        if result.returncode != 0:
            raise OperationError(f"loading {image} from {archive} into {target.name} failed: "
                                 f"{result.stderr.strip()[-2000:]}")


@operation(is_idempotent=True)
def loaded_images(archives: dict[str, str]):
    """Offline, the prebuilt images this host lacks, from their `docker save` archives on this
    control machine (piped over SSH into ``docker load``)."""
    if not archives:
        host.noop("no prebuilt image to load")
        return
    yield callback(_load, archives, host)


@operation(is_idempotent=True)
def pushed_images(decisions: HostDecisions):
    """On the build host: each image it built under its registry name (``docker tag``) where
    that name is missing or names another build, and pushed where the registry lacks it."""
    names = sorted({*decisions.to_tag, *decisions.to_push})
    if not names:
        host.noop("the registry has every image under its name")
        return
    built = {spec.registry_image: spec.image for spec in decisions.plan.builds.values()}
    for name in names:
        if name in decisions.to_tag:
            yield commands.tag_image(built[name], name)
        if name in decisions.to_push:
            yield commands.push_image(name)


@operation(is_idempotent=True)
def pulled_images(images: list[str]):
    """The images this host runs and lacks, from the registry (the build host pushed them in
    the operation before: pyinfra runs an operation on every host before the next one)."""
    if not images:
        host.noop("every image this host runs is here")
        return
    for image in images:
        yield commands.pull_image(image)


@deploy("Build images")
def build_images(decisions: HostDecisions) -> None:
    base_image(name="Offline base image (debootstrap, Python 3.11)", decisions=decisions)
    service_images(name="Images of changed build contexts", decisions=decisions)
    loaded_images(name="Prebuilt images loaded from their archives", archives=decisions.to_load)
    if decisions.plan.stack.registry is not None:  # image_distribution "registry": nothing is shipped
        pushed_images(name="Images pushed to the registry", decisions=decisions)
        pulled_images(name="Images pulled from the registry", images=decisions.to_pull)
        return
    source = decisions.ship_from
    if source is None and decisions.builder is not None:
        source = commands.ssh_to(decisions.builder)
    shipped_images(name="Images shipped from the build host", images=decisions.to_ship, source=source)

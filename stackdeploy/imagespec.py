"""Which image each service runs and, for the images the stack builds, their build contexts.

An image that is built is tagged with the fingerprint of its build context (the rendered
Dockerfile and helper files, and the service's source for python services), so its tag
moves exactly when something that goes into it does. Under ``image_distribution =
"registry"`` it also has a name in the registry, with the same tag, and that is the name
every host runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stackdeploy import FILES_DIR, SERVICES_DIR, contract
from stackdeploy.fingerprint import digest, short, tree_parts
from stackdeploy.model import Service, Stack, build_context
from stackdeploy.templating import render

REGISTRY_PYTHON_BASE = "python:3.11-slim"
# What a user's own Dockerfile builds FROM (its build argument BASE_IMAGE) when images come from
# a registry: a public image of the offline base's Debian release (the offline base otherwise).
REGISTRY_DEBIAN_BASE = "debian:bookworm-slim"
BASE_IMAGE_ARG = "BASE_IMAGE"
CHROMADB_VERSION = "1.5.9"
# Offline base and infrastructure images are content-addressed and not specific to one
# stack, so every stack on a host (and the test stack) shares them.
SHARED_IMAGE_NAMESPACE = "stackdeploy"
BASE_SCRIPT = FILES_DIR / "images" / "build-base.sh"
WAIT_SCRIPT = FILES_DIR / "wait-for-services.py"
PROBE_MODULE = FILES_DIR / "stackprobe.py"  # wait-for-services.py imports it: copied beside it
COMMON_DIR = FILES_DIR / "common"


@dataclass(frozen=True)
class ImageSpec:
    """One image of the stack: its tag and, when it is built, its build context."""

    image: str  # the tag it is built as (a public image: the name it is pulled by)
    build_dir: str | None  # relative to a release directory; None for pulled images
    context: dict[str, str]  # build context files (relative to build_dir) -> content
    source_dir: Path | None  # local folder synced to <build_dir>/src
    # Its name in the stack's registry, <address>/<image> (image_distribution "registry", built
    # images only): the build host pushes it, the other hosts pull it. None otherwise.
    registry_image: str | None = None
    # A user's own Dockerfile: its path in the context (``src/`` of build_dir), and the build
    # arguments it gets (BASE_IMAGE). None: the context's own rendered Dockerfile.
    dockerfile: str | None = None
    build_args: dict[str, str] | None = None

    @property
    def run_image(self) -> str:
        """The name containers run it by: its registry name where it has one, so that every
        host, the build host too, runs the same name (and Swarm's nodes can pull it)."""
        return self.registry_image or self.image


def base_script() -> str:
    """build-base.sh, which builds the offline base image (debootstrap) on the host."""
    return BASE_SCRIPT.read_text()


def base_image(stack: Stack, image_source: str) -> str | None:
    """The offline base image (tagged by its script and mirror); None when images are pulled."""
    if image_source != "local":
        return None
    fingerprint = digest({"build-base.sh": base_script(), "mirror": stack.debian_mirror})
    return f"{SHARED_IMAGE_NAMESPACE}/base:{short(fingerprint)}"


def _python_files(service: Service, base_image: str, install_venv: bool) -> dict[str, str]:
    src = SERVICES_DIR / service.name
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in src.iterdir()
                     if p.name not in {"__pycache__", "tests"})
    files = {
        "Dockerfile": render("Dockerfile.python.j2", service=service, base_image=base_image,
                             install_venv=install_venv),
        ".dockerignore": render("dockerignore.j2", entries=entries),
        "wait-for-services.py": WAIT_SCRIPT.read_text(),
        "stackprobe.py": PROBE_MODULE.read_text(),
    }
    if service.role == "monitor":  # it reads release.json and writes event lines through the contract
        files["common/stackcontract.py"] = Path(contract.__file__).read_text()
    files.update({f"common/{p.name}": p.read_text() for p in sorted(COMMON_DIR.glob("*.py"))})
    return files


def _infra_files(recipe: str, base_image: str) -> dict[str, str]:
    files = {
        "Dockerfile": render(f"images/{recipe}.Dockerfile.j2", base_image=base_image,
                             chromadb_version=CHROMADB_VERSION),
    }
    extra = FILES_DIR / "images" / recipe
    if extra.is_dir():
        files.update({p.name: p.read_text() for p in sorted(extra.iterdir()) if p.is_file()})
    return files


def _built(stack: Stack, image: str, build_dir: str, context: dict[str, str], source_dir: Path | None,
           dockerfile: str | None = None, build_args: dict[str, str] | None = None) -> ImageSpec:
    """An image the stack builds, with its registry name when the stack distributes through one."""
    registry_image = f"{stack.registry.address}/{image}" if stack.registry else None
    return ImageSpec(image, build_dir, context, source_dir, registry_image, dockerfile, build_args)


def _own_dockerfile(service: Service, stack: Stack, base_image: str | None) -> ImageSpec:
    """The user's Dockerfile, built in its context (synced to ``src/``) with BASE_IMAGE: the
    offline base, or a public Debian image of the same release in registry mode. Its tag moves
    with the context's files and the base."""
    assert service.build is not None and service.build.dockerfile is not None
    source_dir = build_context(service, SERVICES_DIR)
    args = {BASE_IMAGE_ARG: base_image or REGISTRY_DEBIAN_BASE}
    fingerprint = digest({**tree_parts(source_dir, "src"), "dockerfile": service.build.dockerfile,
                          "args": repr(sorted(args.items()))})
    return _built(stack, f"{stack.image_namespace}/{service.name}:{short(fingerprint)}", f"services/{service.name}",
                  {}, source_dir, dockerfile=service.build.dockerfile, build_args=args)


def image_spec(service: Service, stack: Stack, image_source: str, base_image: str | None) -> ImageSpec:
    """The image ``service`` runs: built from its source (python services), built from an
    offline recipe (``image_source`` local), or pulled from the registry."""
    if service.own_dockerfile:
        return _own_dockerfile(service, stack, base_image)
    if service.build is not None and service.build.image is not None:
        return ImageSpec(service.build.image, None, {}, None)  # pulled, or loaded from its archive offline
    if service.built_from_source:
        context = _python_files(service, base_image or REGISTRY_PYTHON_BASE, install_venv=image_source == "local")
        source_dir = SERVICES_DIR / service.name
        fingerprint = digest({**context, **tree_parts(source_dir, "src")})
        return _built(stack, f"{stack.image_namespace}/{service.name}:{short(fingerprint)}", f"services/{service.name}",
                      context, source_dir)
    if image_source == "local":
        recipe = service.image["local"]
        context = _infra_files(recipe, base_image or "")
        return _built(stack, f"{SHARED_IMAGE_NAMESPACE}/{recipe}:{short(digest(context))}", f"images/{recipe}",
                      context, None)
    return ImageSpec(service.image["registry"], None, {}, None)


def image_tags(stack: Stack, image_source: str) -> dict[str, str]:
    """Service -> the image it runs, for the whole stack (the swarm engine deploys all at once)."""
    base = base_image(stack, image_source)
    return {name: image_spec(svc, stack, image_source, base).run_image for name, svc in stack.services.items()}

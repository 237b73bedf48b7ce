"""A user's own service: ``role`` and ``build`` validated before any host is touched, one line
each naming the key (docs/adding-a-service.md), and the image built from the user's Dockerfile
with BASE_IMAGE."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from stackdeploy import PROJECT_ROOT, SERVICES_DIR
from stackdeploy.imagespec import REGISTRY_DEBIAN_BASE, image_spec
from stackdeploy.model import StackError, load
from tests.conftest import group_data

HELLO = {"role": "app", "build": {"dockerfile": "Dockerfile", "context": "examples/node-hello"}, "port": 8080,
         "health": {"http": "/health"}}


def stack_with(**services: dict) -> dict:
    data = group_data()
    data["services"] = {**data["services"], **services}
    return data


def error_of(data: dict) -> str:
    with pytest.raises(StackError) as info:
        load(data, SERVICES_DIR)
    assert "\n" not in str(info.value)
    return str(info.value)


def save_archive(path: Path, tags: list[str]) -> Path:
    """A file shaped like `docker save` output: manifest.json naming ``tags``."""
    manifest = json.dumps([{"Config": "c.json", "RepoTags": tags, "Layers": []}]).encode()
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
    return path


def test_an_app_from_its_own_dockerfile_is_built_in_its_context_with_base_image():
    stack = load(stack_with(**{"hello-node": HELLO}), SERVICES_DIR)
    service = stack.services["hello-node"]
    assert service.own_dockerfile and service.rolls and not service.built_from_source
    offline = image_spec(service, stack, "local", "stackdeploy/base:abc")
    assert offline.source_dir == PROJECT_ROOT / "examples" / "node-hello"
    assert offline.dockerfile == "Dockerfile" and offline.build_args == {"BASE_IMAGE": "stackdeploy/base:abc"}
    assert offline.image.startswith("creatorstack/hello-node:")
    online = image_spec(service, stack, "registry", None)
    assert online.build_args == {"BASE_IMAGE": REGISTRY_DEBIAN_BASE} and online.image != offline.image


@pytest.mark.parametrize(("change", "expected"), [
    ({"build": {"dockerfile": "Dockerfile.prod", "context": "examples/node-hello"}},
     "services.hello-node.build.dockerfile: no Dockerfile Dockerfile.prod in "),
    ({"build": {"dockerfile": "Dockerfile", "context": "examples/no-such"}},
     "services.hello-node.build.context: the build context "),
    ({"build": {"dockerfile": "Dockerfile", "context": "../outside"}},
     "services.hello-node.build.context: ../outside is outside the project"),
    ({"build": {"dockerfile": "Dockerfile"}},
     "services.hello-node.build: the build context "),  # files/services/hello-node does not exist
    ({"build": {"template": "java"}},
     "services.hello-node.build.template: must be one of python, got 'java'"),
    ({"build": {"dockerfile": "Dockerfile", "image": "x:1"}},
     "services.hello-node.build: must name exactly one of 'template', 'dockerfile' or 'image', "
     "not 'dockerfile' and 'image'"),
    ({"health": {"tcp": True}},
     "services.hello-node.health: an app needs a readiness check: an 'http' path or a 'command'"),
    ({"build": {"image": "vendor/app"}},
     "services.hello-node.build.image: vendor/app needs a tag of its own, not latest or none"),
    ({"build": {"image": "vendor/app:latest"}},
     "services.hello-node.build.image: vendor/app:latest needs a tag of its own, not latest or none"),
    ({"build": {"image": "vendor/app:1.2", "archive": "no/such.tar"}},
     "services.hello-node.build.archive: "),
    ({"kind": "python"},
     "services.hello-node.kind: is now two settings, 'role' and 'build': write \"role\": \"app\""),
], ids=["dockerfile", "context", "outside", "default-context", "template", "two-sources", "readiness", "untagged",
        "latest", "archive", "old-kind"])
def test_bad_input_is_one_line_naming_the_key(change, expected):
    assert error_of(stack_with(**{"hello-node": {**HELLO, **change}})).startswith(expected)


def test_an_archive_must_hold_the_image_it_is_named_for(tmp_path):
    archive = save_archive(tmp_path / "vendor.tar", ["vendor/other:1.0"])
    service = {**HELLO, "build": {"image": "vendor/app:1.2", "archive": str(archive)}}
    assert error_of(stack_with(**{"hello-node": service})) == (
        f"services.hello-node.build.archive: {archive} does not hold vendor/app:1.2 (it holds vendor/other:1.0)")
    save_archive(archive, ["vendor/app:1.2"])
    assert load(stack_with(**{"hello-node": service}), SERVICES_DIR).services["hello-node"].build.image == \
        "vendor/app:1.2"


def test_the_gateway_routes_to_no_worker():
    data = stack_with(**{"hello-node": {**HELLO, "role": "worker"}})
    data["services"]["api-gateway"]["routes"]["/api/hello/"] = "hello-node"
    assert error_of(data) == ("services.api-gateway.routes./api/hello/: routes to hello-node, whose role is "
                              "'worker': the gateway routes to apps only")


WORKER = {"role": "worker", "build": {"dockerfile": "Dockerfile", "context": "examples/queue-worker"},
          "depends_on": ["redis"], "secrets": ["REDIS_PASSWORD"],
          "health": {"command": ["python3", "/app/worker.py", "--check"]}}


def test_a_worker_needs_no_port_and_rolls():
    worker = load(stack_with(**{"queue-worker": WORKER}), SERVICES_DIR).services["queue-worker"]
    assert worker.port is None and worker.rolls and worker.read_only


@pytest.mark.parametrize(("name", "service", "expected"), [
    ("hello-node", {**HELLO, "port": None},
     "services.hello-node: port is required (only a worker built from its own Dockerfile or image may have none)"),
    ("queue-worker", {**WORKER, "health": {"tcp": True}},
     "services.queue-worker.health: a worker without a port is ready when its check passes"),
    ("queue-worker", {**WORKER, "publish": 9999}, "services.queue-worker.publish: has no port to publish"),
], ids=["app-without-port", "worker-tcp-check", "worker-publish"])
def test_only_a_worker_may_have_no_port(name, service, expected):
    if service.get("port", 0) is None:
        service = {key: value for key, value in service.items() if key != "port"}
    assert error_of(stack_with(**{name: service})).startswith(expected)


def test_nothing_depends_on_a_service_with_no_port():
    data = stack_with(**{"queue-worker": WORKER, "hello-node": {**HELLO, "depends_on": ["queue-worker"]}})
    assert error_of(data) == ("services.hello-node.depends_on: names queue-worker, which has no port: "
                              "nothing can connect to it")

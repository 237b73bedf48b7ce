"""The registry distribution (``image_distribution = "registry"``): the names images are run by.

Two hosts: h1 builds and holds the data group, h2 runs the rest.
"""

from __future__ import annotations

import importlib.util
import json

import yaml

from stackdeploy import FILES_DIR, SERVICES_DIR
from stackdeploy.model import load
from stackdeploy.placement import HostSpec, place
from stackdeploy.plan import build_plan
from stackdeploy.swarmstack import MANIFEST_FILE, STACK_FILE, swarm_release
from tests.conftest import group_data

REGISTRY = "10.77.0.1:5000"
SETTINGS = {"image_source": "local", "image_distribution": "registry",
            "registry": {"address": REGISTRY, "insecure": True}}
SECRETS = {"POSTGRES_PASSWORD": "p", "REDIS_PASSWORD": "r", "JWT_SECRET": "j"}


def plan_of(host: str, settings: dict, image_source: str = "local"):
    """The compose engine's plan of ``host`` (h1 builds everything)."""
    stack = load({**group_data(), **settings}, SERVICES_DIR)
    where = place(stack, [HostSpec("h1", frozenset({"data"}), "10.0.0.1"),
                          HostSpec("h2", frozenset({"ai", "apps", "edge"}), "10.0.0.2")])
    return build_plan(stack, image_source, SECRETS, where, host, "h1")


# ------------------------------------------------------------- the names images run by


def test_every_host_runs_the_registry_names_with_the_build_tags():
    for host in ("h1", "h2"):
        plain, registry = plan_of(host, {"image_source": "local"}), plan_of(host, SETTINGS)
        compose = yaml.safe_load(registry.files["compose.yaml"])["services"]
        for name, service in plain.services.items():
            assert registry.services[name].image == f"{REGISTRY}/{service.image}"  # the same fingerprint tag
            assert compose[name]["image"] == f"{REGISTRY}/{service.image}"


def test_the_build_host_builds_under_the_plain_tags_and_keeps_both_names():
    plan = plan_of("h1", SETTINGS)
    builds = yaml.safe_load(plan.files["compose.build.yaml"])["services"]
    assert builds["auth-service"]["image"] == plan.builds["auth-service"].image  # built as under build-once
    assert not builds["auth-service"]["image"].startswith(REGISTRY)
    release = json.loads(plan.files["release.json"])
    assert release["registry"] == REGISTRY  # stackctl.py prunes <registry>/<namespace>/* too
    for spec in plan.builds.values():
        assert {spec.image, spec.registry_image} <= set(release["builds"])  # kept while a release needs them


def test_public_images_are_pulled_from_where_they_are_not_through_the_registry():
    plan = plan_of("h1", {**SETTINGS, "image_source": "registry"}, image_source="registry")
    assert plan.services["postgres"].image == "postgres:15"
    assert plan.services["postgres"].image == group_data()["services"]["postgres"]["image"]["registry"]


def test_without_a_registry_nothing_changes_in_the_files():
    plain = plan_of("h1", {"image_source": "local"})
    assert "registry" not in json.loads(plain.files["release.json"])
    assert not any(REGISTRY in text for text in plain.files.values())


def swarm_files(settings: dict) -> dict[str, str]:
    swarm = {"engine": "swarm", "placement": {"data": ["postgres", "redis"], "ai": ["ollama", "chromadb", "ai-engine"],
                                              "apps": ["auth-service", "creator-hub", "channel-service"],
                                              "edge": ["api-gateway"]}}
    stack = load({**group_data(), **swarm, **settings}, SERVICES_DIR)
    where = place(stack, [HostSpec("h1", frozenset({"data"}), "10.0.0.1"),
                          HostSpec("h2", frozenset({"ai", "apps", "edge"}), "10.0.0.2")])
    return swarm_release(build_plan(stack, "local", SECRETS, where, "h1", "h1"), manager=True).files


def stackswarm():
    """files/stackswarm.py, the module the first manager runs."""
    spec = importlib.util.spec_from_file_location("stackswarm", FILES_DIR / "stackswarm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_swarm_stack_names_registry_images_and_deploys_with_registry_auth():
    files = swarm_files(SETTINGS)
    services = yaml.safe_load(files[STACK_FILE])["services"]
    assert all(service["image"].startswith(f"{REGISTRY}/") for service in services.values())
    manifest = json.loads(files[MANIFEST_FILE])
    assert manifest["registry"] == REGISTRY
    assert manifest["services"]["auth-service"]["image"] == services["auth-service"]["image"]  # what the gate compares
    options = stackswarm().stack_deploy_options(manifest, last=True)
    assert options == ["--detach=true", "--resolve-image", "never", "--with-registry-auth", "--prune"]


def test_the_swarm_stack_without_a_registry_is_deployed_as_before():
    manifest = json.loads(swarm_files({"image_source": "local"})[MANIFEST_FILE])
    assert "registry" not in manifest
    assert stackswarm().stack_deploy_options(manifest, last=False) == ["--detach=true", "--resolve-image", "never"]

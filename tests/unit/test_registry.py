"""The registry distribution (``image_distribution = "registry"``): the names images are run
by, and what the build host and the other hosts get, decided from given facts without a host.

Two hosts: h1 builds and holds the data group, h2 runs the rest and pulls.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stackdeploy import FILES_DIR, SERVICES_DIR, commands, desired
from stackdeploy.announce import announce
from stackdeploy.facts.docker import EngineInsecureRegistries, InsecureRegistries
from stackdeploy.facts.registry import RegistryImages
from stackdeploy.facts.stack import HostState, StackHostState
from stackdeploy.facts.swarm import SwarmMembership, SwarmNode, SwarmStackHashes
from stackdeploy.images import build_images
from stackdeploy.inputfiles import StackInputError
from stackdeploy.model import load
from stackdeploy.placement import HostSpec, place
from stackdeploy.plan import build_plan
from stackdeploy.swarmstack import MANIFEST_FILE, STACK_FILE, swarm_release
from tests.certs import certificate
from tests.conftest import group_data, shipped_helper
from tests.unit.fakehost import fake_host, planned

REGISTRY = "10.77.0.1:5000"
SETTINGS = {"image_source": "local", "image_distribution": "registry",
            "registry": {"address": REGISTRY, "insecure": True}}
SECRETS = {"POSTGRES_PASSWORD": "p", "REDIS_PASSWORD": "r", "JWT_SECRET": "j", "GRAFANA_ADMIN_PASSWORD": "g"}
HOSTS = [("h1", {"private_address": "10.0.0.1"}), ("h2", {"private_address": "10.0.0.2"})]
GROUPS = {"data": ["h1"], "ai": ["h2"], "apps": ["h2"], "edge": ["h2"], "monitoring": ["h2"]}
# On the swarm engine every service but the per-host exporter is placed in one group.
SWARM_PLACEMENT = {"data": ["postgres", "redis", "log-store", "postgres-exporter", "redis-exporter"],
                   "ai": ["ollama", "chromadb", "ai-engine"],
                   "apps": ["auth-service", "creator-hub", "channel-service"],
                   "edge": ["api-gateway", "nginx-exporter"], "monitoring": ["alertmanager", "prometheus", "grafana"]}
TRUSTED = InsecureRegistries(frozenset({REGISTRY}))


def plan_of(host: str, settings: dict, image_source: str = "local"):
    """The compose engine's plan of ``host`` (h1 builds everything)."""
    stack = load({**group_data(), **settings}, SERVICES_DIR)
    where = place(stack, [HostSpec("h1", frozenset({"data"}), "10.0.0.1"),
                          HostSpec("h2", frozenset({"ai", "apps", "edge", "monitoring"}), "10.0.0.2")])
    return build_plan(stack, image_source, SECRETS, where, host, "h1", certificate=certificate())


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
    swarm = {"engine": "swarm", "placement": SWARM_PLACEMENT}
    stack = load({**group_data(), **swarm, **settings}, SERVICES_DIR)
    where = place(stack, [HostSpec("h1", frozenset({"data"}), "10.0.0.1"),
                          HostSpec("h2", frozenset({"ai", "apps", "edge", "monitoring"}), "10.0.0.2")])
    plan = build_plan(stack, "local", SECRETS, where, "h1", "h1", certificate=certificate())
    return swarm_release(plan, manager=True, certificate=certificate()).files


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


# ------------------------------------------------------------- what each host gets, given facts


def ids(images: list[str]) -> dict[str, str]:
    return {image: f"sha256:{index:064x}" for index, image in enumerate(images, 1)}


@pytest.fixture
def names() -> dict[str, str]:
    """Registry name -> plain tag of every image the build host builds."""
    return {spec.registry_image: spec.image for spec in plan_of("h1", SETTINGS).builds.values()}


def decide(monkeypatch, tmp_path, name: str, facts: dict, *, limit=None, deploying=True, **settings):
    """``desired.decide`` for host ``name`` of the two hosts, given ``facts``, then the image
    phase prepared against them: (decisions, operation name -> commands, noop messages)."""
    monkeypatch.setattr(desired, "STATE_DIR", tmp_path / ".deploy")
    monkeypatch.setattr(sys, "argv", ["pyinfra", "inventory.py", "deploy.py"])
    data = {**group_data(), **SETTINGS, **settings}
    with fake_host(facts, data, name, hosts=HOSTS, groups=GROUPS, limit=limit) as host:
        decisions = desired.decide(host, deploying=deploying)
        announce(decisions)
        build_images(decisions)
        return decisions, planned(host), host.noops


def registry_holding(held: set[str]):
    def answer(images: list[str], insecure: bool) -> frozenset[str]:
        assert insecure  # plain HTTP: docker manifest inspect --insecure
        return frozenset(image for image in images if image in held)
    return answer


def test_a_fresh_build_host_builds_tags_and_pushes_everything_and_ships_nothing(monkeypatch, tmp_path, names):
    facts = {StackHostState: HostState(engine="up"), RegistryImages: registry_holding(set()),
             EngineInsecureRegistries: TRUSTED}
    decisions, ops, _ = decide(monkeypatch, tmp_path, "h1", facts)
    assert sorted(decisions.plan.builds[n].image for n in decisions.to_build) == sorted(set(names.values()))
    assert decisions.to_tag == decisions.to_push == sorted(names)
    assert decisions.to_ship == decisions.to_pull == []
    name = f"{REGISTRY}/{decisions.plan.builds['auth-service'].image}"
    pushes = ops["Images pushed to the registry"]
    assert f"docker tag {names[name]} {name}" in pushes and f"docker push {name}" in pushes
    assert pushes.index(f"docker tag {names[name]} {name}") + 1 == pushes.index(f"docker push {name}")
    assert ops["Images pulled from the registry"] == []
    assert "Images shipped from the build host" not in ops


def test_what_a_run_and_its_dry_run_announce(monkeypatch, tmp_path, names, caplog):
    facts = {StackHostState: HostState(engine="up"), RegistryImages: registry_holding(set()),
             EngineInsecureRegistries: TRUSTED}
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        decide(monkeypatch, tmp_path, "h1", facts)
        decide(monkeypatch, tmp_path, "h2", {**facts, StackHostState: HostState(engine="up")})
    builder, other = (record.getMessage() for record in caplog.records if "image source:" in record.getMessage())
    assert f"; push: {', '.join(sorted(names))};" in builder and "pull:" not in builder
    assert "; pull: " in other and "push:" not in other
    assert "ship:" not in builder + other


def test_a_build_host_with_everything_pushed_before_does_nothing(monkeypatch, tmp_path, names):
    images = ids(sorted(set(names.values())))
    present = {**images, **{name: images[image] for name, image in names.items()}}
    facts = {StackHostState: HostState(engine="up", image_ids=present), RegistryImages: registry_holding(set(names)),
             EngineInsecureRegistries: TRUSTED}
    decisions, ops, noops = decide(monkeypatch, tmp_path, "h1", facts)
    assert (decisions.to_build, decisions.to_tag, decisions.to_push, decisions.moves_images) == ([], [], [], False)
    assert ops["Images pushed to the registry"] == [] and ops["Images of changed build contexts"] == []
    assert "the registry has every image under its name" in noops


def test_the_build_host_pushes_only_what_the_registry_lacks(monkeypatch, tmp_path, names):
    images = ids(sorted(set(names.values())))
    present = {**images, **{name: images[image] for name, image in names.items()}}
    lost = sorted(names)[0]  # e.g. a registry wiped and refilled: asked, not assumed from this host
    facts = {StackHostState: HostState(engine="up", image_ids=present),
             RegistryImages: registry_holding(set(names) - {lost}), EngineInsecureRegistries: TRUSTED}
    decisions, ops, _ = decide(monkeypatch, tmp_path, "h1", facts)
    assert (decisions.to_tag, decisions.to_push) == ([], [lost])
    assert ops["Images pushed to the registry"] == [f"docker push {lost}"]


def test_a_registry_name_left_on_another_build_is_tagged_again(monkeypatch, tmp_path, names):
    images = ids(sorted(set(names.values())))
    moved = sorted(names)[0]  # the plain tag was built again (same fingerprint, another id)
    present = {**images, **{name: images[image] for name, image in names.items()}, moved: "sha256:old"}
    facts = {StackHostState: HostState(engine="up", image_ids=present), RegistryImages: registry_holding(set(names)),
             EngineInsecureRegistries: TRUSTED}
    decisions, ops, _ = decide(monkeypatch, tmp_path, "h1", facts)
    assert (decisions.to_tag, decisions.to_push) == ([moved], [])
    assert ops["Images pushed to the registry"] == [f"docker tag {names[moved]} {moved}"]


def own_images(decisions: desired.HostDecisions) -> list[str]:
    return sorted(set(decisions.plan.own_built_images.values()))


def test_another_host_pulls_what_it_runs_and_lacks(monkeypatch, tmp_path, names):
    def never_asked(**_: object) -> frozenset[str]:
        raise AssertionError("a host that is not the build host never asks the registry in a full run")
    facts = {StackHostState: HostState(engine="up"), RegistryImages: never_asked, EngineInsecureRegistries: TRUSTED}
    decisions, ops, _ = decide(monkeypatch, tmp_path, "h2", facts)
    wanted = own_images(decisions)
    assert wanted and all(image.startswith(f"{REGISTRY}/") for image in wanted)
    assert (decisions.to_build, decisions.to_ship, decisions.to_push, decisions.to_pull) == ([], [], [], wanted)
    assert ops["Images pulled from the registry"] == [f"docker pull {image}" for image in wanted]
    assert ops["Images pushed to the registry"] == []
    assert "Images shipped from the build host" not in ops


def test_another_host_with_every_image_pulls_nothing(monkeypatch, tmp_path, names):
    facts = {StackHostState: HostState(engine="up", image_ids=ids(sorted(names))), EngineInsecureRegistries: TRUSTED}
    decisions, ops, noops = decide(monkeypatch, tmp_path, "h2", facts)
    assert decisions.to_pull == [] and not decisions.moves_images
    assert ops["Images pulled from the registry"] == [] and "every image this host runs is here" in noops


def test_a_run_without_the_build_host_pulls_what_the_registry_has(monkeypatch, tmp_path, names):
    facts = {StackHostState: HostState(engine="up"), RegistryImages: registry_holding(set(names)),
             EngineInsecureRegistries: TRUSTED}
    decisions, _, _ = decide(monkeypatch, tmp_path, "h2", facts, limit={"h2"})
    assert decisions.to_build == [] and decisions.to_pull == own_images(decisions)


def test_a_run_without_the_build_host_is_refused_when_the_registry_lacks_an_image(monkeypatch, tmp_path, names):
    facts = {StackHostState: HostState(engine="up"), RegistryImages: registry_holding(set()),
             EngineInsecureRegistries: TRUSTED}
    with pytest.raises(StackInputError, match=rf"h2: the registry {REGISTRY} does not have .* yet, and the build "
                                              "host h1 is not part of this run: include it"):
        decide(monkeypatch, tmp_path, "h2", facts, limit={"h2"})


def test_an_engine_that_does_not_trust_the_insecure_registry_is_refused_with_the_way_out(monkeypatch, tmp_path):
    facts = {StackHostState: HostState(engine="up"), RegistryImages: registry_holding(set()),
             EngineInsecureRegistries: InsecureRegistries(networks=("127.0.0.0/8",))}
    with pytest.raises(StackInputError, match=f"h1: its Docker engine does not list the insecure registry {REGISTRY} "
                                              "in insecure-registries yet: run provision.py first"):
        decide(monkeypatch, tmp_path, "h1", facts)


def test_only_a_deploy_asks_the_registry(monkeypatch, tmp_path):
    """A rollback, a backup or verify.py works while the registry is down: they never ask it."""
    def down(**_: object) -> frozenset[str]:
        raise AssertionError("the registry was asked")
    facts = {StackHostState: HostState(engine="up"), RegistryImages: down, EngineInsecureRegistries: down}
    decisions, ops, _ = decide(monkeypatch, tmp_path, "h1", facts, deploying=False)
    assert (decisions.to_tag, decisions.to_push, decisions.to_pull) == ([], [], [])


def test_the_swarm_manager_pushes_and_the_other_node_pulls(monkeypatch, tmp_path, names):
    swarm = {"engine": "swarm", "placement": SWARM_PLACEMENT}
    base = {StackHostState: HostState(engine="up"), EngineInsecureRegistries: TRUSTED,
            SwarmNode: SwarmMembership(state="active", manager=True), SwarmStackHashes: {}}
    manager, ops, _ = decide(monkeypatch, tmp_path, "h1", {**base, RegistryImages: registry_holding(set())}, **swarm)
    assert manager.to_push and all(name.startswith(f"{REGISTRY}/") for name in manager.to_push)
    assert "stack-monitor" not in " ".join(manager.to_push)  # Swarm runs no monitor: not built, not pushed
    node, node_ops, _ = decide(monkeypatch, tmp_path, "h2", base, **swarm)
    assert node.to_pull == own_images(node) and set(node.to_pull) <= set(manager.to_push)
    assert "Images shipped from the build host" not in ops and "Images shipped from the build host" not in node_ops


# ------------------------------------------------------------- the facts, from the commands' output

FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$@" >> "$FAKE/args"
if [ -e "$FAKE/down" ]; then echo 'failed to configure transport: error pinging v2 registry: connection refused' >&2
  exit 1; fi
for last; do :; done
if grep -qx "$last" "$FAKE/held"; then echo '{"schemaVersion": 2}'; exit 0; fi
echo "no such manifest: $last" >&2; exit 1
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """A stand-in ``docker`` that answers ``manifest inspect`` from the file ``held``."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "bin" / "docker").chmod(0o755)
    (tmp_path / "held").write_text(f"{REGISTRY}/app/a:1\n")
    return tmp_path


def run(command, fake: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FAKE": str(fake), "PATH": f"{fake / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, text=True, env=env, timeout=30,
                          check=False)


def test_the_registry_answers_which_images_it_holds(fake: Path):
    images = [f"{REGISTRY}/app/a:1", f"{REGISTRY}/app/b 'odd':2"]
    result = run(commands.registry_images(images, insecure=True), fake)
    assert result.returncode == 0, result.stderr
    assert RegistryImages().process(result.stdout.splitlines()) == {f"{REGISTRY}/app/a:1"}
    asked = (fake / "args").read_text().splitlines()
    assert asked[:5] == ["manifest", "inspect", "--insecure", f"{REGISTRY}/app/a:1", "manifest"]


def test_a_registry_that_does_not_answer_fails_the_read(fake: Path):
    (fake / "down").write_text("")
    result = run(commands.registry_images([f"{REGISTRY}/app/a:1"], insecure=False), fake)
    assert result.returncode != 0 and result.stdout == ""
    assert "the registry did not answer for" in result.stderr and "connection refused" in result.stderr
    assert "--insecure" not in (fake / "args").read_text()


def test_the_registry_fact_refuses_output_it_does_not_know():
    with pytest.raises(Exception, match="RegistryImages: unexpected output"):
        RegistryImages().process(["maybe 10.77.0.1:5000/app/a:1"])


def test_the_engines_insecure_registries_by_name_and_network():
    info = {"IndexConfigs": {"docker.io": {"Name": "docker.io", "Secure": True},
                             REGISTRY: {"Name": REGISTRY, "Secure": False}},
            "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []}
    registries = EngineInsecureRegistries().process([json.dumps(info)])
    assert registries.allow(REGISTRY) and registries.allow("127.0.0.1:5000") and registries.allow("localhost") is False
    assert not registries.allow("10.77.0.1:5001") and not registries.allow("docker.io")
    assert InsecureRegistries(networks=("::1/128",)).allow("[::1]:5000")


# ------------------------------------------------------------- pruning, by the host helper

PRUNE_DOCKER = """#!/bin/sh
echo "$*" >> "$FAKE/calls"
if [ "$1" = images ]; then cat "$FAKE/images"; fi
"""


def test_the_host_helper_prunes_the_registry_names_of_old_builds_too(helpers_dir, monkeypatch):
    """stackctl.py lists the stack's images by namespace and by registry name, and removes those
    no kept release uses: the old build under both names, never the current one."""
    release = {"project": "creatorstack", "namespace": "creatorstack", "registry": REGISTRY, "waves": [],
               "remote": {}, "gateway": None, "services": {"auth-service": {"image": f"{REGISTRY}/creatorstack/a:new"}},
               "builds": ["creatorstack/a:new", f"{REGISTRY}/creatorstack/a:new"]}
    (helpers_dir / "releases" / "R1").mkdir(parents=True)
    (helpers_dir / "releases" / "R1" / "release.json").write_text(json.dumps(release))
    (helpers_dir / "current").symlink_to("releases/R1")
    (helpers_dir / "state").mkdir()
    (helpers_dir / "state" / "releases.json").write_text(json.dumps([{"id": "R1", "result": "ok"}]))
    fake = helpers_dir / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "docker").write_text(PRUNE_DOCKER)
    (fake / "bin" / "docker").chmod(0o755)
    listed = [f"{prefix}creatorstack/a:{tag}" for prefix in ("", f"{REGISTRY}/") for tag in ("old", "new")]
    (fake / "images").write_text("\n".join(listed) + "\n")
    monkeypatch.setenv("FAKE", str(fake))
    monkeypatch.setenv("PATH", f"{fake / 'bin'}:{os.environ['PATH']}")
    with shipped_helper(helpers_dir, "stackctl") as stackctl:
        removed = stackctl.prune("creatorstack", keep=5)
    calls = (fake / "calls").read_text().splitlines()
    assert (f"images --format {{{{.Repository}}}}:{{{{.Tag}}}} --filter reference=creatorstack/* "
            f"--filter reference={REGISTRY}/creatorstack/*") in calls
    assert removed == ["creatorstack/a:old", f"{REGISTRY}/creatorstack/a:old"]
    assert calls[-1] == f"image rm creatorstack/a:old {REGISTRY}/creatorstack/a:old"

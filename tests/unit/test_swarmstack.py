"""The swarm engine's stack files, node labels and firewall rules, from the stack model alone."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from pyinfra.api import OperationError

from stackdeploy import SERVICES_DIR
from stackdeploy.facts.swarm import SwarmMembership, SwarmNode, SwarmNodeInfo, SwarmNodes
from stackdeploy.model import StackError, load
from stackdeploy.placement import HostSpec, place
from stackdeploy.provision import swarm_rules
from stackdeploy.swarm import initialised, label_updates, labels, pruned_nodes
from stackdeploy.swarmstack import MANIFEST_FILE, STACK_FILE, node_labels, render_stack, wave_file
from tests.certs import certificate
from tests.conftest import BIN, write_out
from tests.unit.fakehost import commands, fake_host

SECRET_VALUE = "s3cr3t-value-never-in-a-file"


def swarm_stack(data, **changes):
    stack = load({**data, "engine": "swarm", **changes}, SERVICES_DIR)
    images = {name: f"img/{name}:1" for name in stack.services}
    files, manifest = render_stack(stack, images, "events {}\n", certificate())
    return stack, files, manifest


def test_stack_file_places_updates_and_finds_services_by_name(data):
    stack, files, manifest = swarm_stack(data)
    doc = yaml.safe_load(files[STACK_FILE])
    services = doc["services"]
    assert "stack-monitor" not in services  # Swarm replaces unhealthy tasks itself
    auth = services["auth-service"]
    assert auth["deploy"]["placement"]["constraints"] == ["node.labels.group.apps == true"]
    assert auth["deploy"]["endpoint_mode"] == "dnsrr"
    assert auth["deploy"]["update_config"]["order"] == "start-first"
    assert auth["deploy"]["update_config"]["failure_action"] == "rollback"
    assert services["postgres"]["deploy"]["update_config"]["order"] == "stop-first"
    assert auth["environment"]["POSTGRES_HOST"] == "postgres"
    assert auth["environment"]["JWT_SECRET_FILE"] == "/run/secrets/JWT_SECRET"
    assert "JWT_SECRET" not in auth["environment"]
    assert doc["secrets"]["JWT_SECRET"] == {"external": True, "name": "creatorstack_JWT_SECRET"}
    gateway = services["api-gateway"]
    assert gateway["deploy"]["mode"] == "global"
    assert gateway["ports"] == [{"target": 8080, "published": 8080, "protocol": "tcp", "mode": "host"},
                                {"target": 8443, "published": 8443, "protocol": "tcp", "mode": "host"}]
    assert manifest["services"]["auth-service"]["config_hash"] == auth["deploy"]["labels"]["stackdeploy.config-hash"]
    # A check slowed past the images' own 3 s on a busy host does not get a healthy task killed.
    assert {s["healthcheck"]["timeout"] for s in services.values()} == {"10s"}
    assert files[STACK_FILE].count("&id") == 1 and "*id" in files[STACK_FILE]  # the restart policy


def test_waves_are_cumulative_stack_files(data):
    _, files, manifest = swarm_stack(data)
    seen: set[str] = set()
    for number, wave in enumerate(manifest["waves"], 1):
        seen |= set(wave)
        assert set(yaml.safe_load(files[wave_file(number)])["services"]) == seen
    assert yaml.safe_load(files[wave_file(len(manifest["waves"]))]) == yaml.safe_load(files[STACK_FILE])
    assert manifest["waves"][0] == ["alertmanager", "chromadb", "log-store", "node-exporter", "ollama", "postgres",
                                    "redis"]


def test_a_change_touches_only_its_services_hash(data):
    _, _, before = swarm_stack(data)
    _, _, after = swarm_stack(data, service_overrides={"creator-hub": {"env": {"FLAG": "1"}}})
    changed = {n for n in before["services"] if before["services"][n] != after["services"][n]}
    assert changed == {"creator-hub"}


def test_replicas_and_ipvs_settings(data):
    stack, files, _ = swarm_stack(data, service_overrides={"auth-service": {"replicas": 3}},
                                  swarm={"endpoint_mode": "vip", "publish_mode": "ingress"})
    doc = yaml.safe_load(files[STACK_FILE])
    assert doc["services"]["auth-service"]["deploy"]["replicas"] == 3
    assert doc["services"]["auth-service"]["deploy"]["endpoint_mode"] == "vip"
    assert doc["services"]["api-gateway"]["ports"][0]["mode"] == "ingress"
    assert json.loads(files[MANIFEST_FILE])["services"]["auth-service"]["replicas"] == 3


def test_stack_file_passes_compose_config(data, tmp_path):
    """The docker compose CLI (the loader `docker stack deploy` shares) accepts every file."""
    _, files, _ = swarm_stack(data)
    root = write_out(type("P", (), {"files": files})(), tmp_path)
    for name in files:
        if name.startswith("stack"):
            result = subprocess.run([str(BIN / "docker-compose"), "-f", str(root / name), "config", "-q"],
                                    capture_output=True, text=True, cwd=root, check=False)
            assert result.returncode == 0, (name, result.stderr)


def test_shell_commands_reach_the_container_as_written(data, tmp_path):
    """`docker stack deploy` interpolates ${VAR} from the control machine's environment (the
    compose loader does the same): the redis command must come out as group_data wrote it."""
    stack, files, _ = swarm_stack(data)
    (tmp_path / "stack.yaml").write_text(files[STACK_FILE])
    result = subprocess.run([str(BIN / "docker-compose"), "-f", str(tmp_path / "stack.yaml"), "config"],
                            capture_output=True, text=True, cwd=tmp_path, check=True,
                            env={"REDIS_PASSWORD": "from-the-control-machine", "PATH": "/usr/bin:/bin"})
    redis = yaml.safe_load(result.stdout.replace("$$", "$"))["services"]["redis"]  # its output escapes again
    assert redis["command"] == list(stack.services["redis"].command)
    assert "from-the-control-machine" not in result.stdout


def test_node_labels_follow_the_inventory_groups(data):
    stack = load({**data, "engine": "swarm"}, SERVICES_DIR)
    assert node_labels({"apps", "edge", "managers"}, stack) == {"group.apps": "true", "group.edge": "true"}
    nodes = [SwarmNodeInfo("n1", "10.0.0.1", {"group.data": "true", "zone": "a"}),
             SwarmNodeInfo("n2", "10.0.0.2", {"group.apps": "true"})]
    wanted = {"10.0.0.1": {"group.data": "true"}, "10.0.0.2": {"group.ai": "true"}}
    assert label_updates(nodes, wanted) == [
        ["docker", "node", "update", "--label-rm", "group.apps", "--label-add", "group.ai=true", "n2"]]


def test_swarm_ports_are_open_to_stack_hosts_only(data):
    stack = load({**data, "engine": "swarm"}, SERVICES_DIR)
    where = place(stack, [HostSpec("a", frozenset({"data"}), "10.0.0.1"),
                          HostSpec("b", frozenset({"ai", "apps", "edge", "monitoring"}), "10.0.0.2")])
    rules = swarm_rules(where, "a")
    assert "-A STACKDEPLOY-SWARM -s 10.0.0.2/32 -p udp -m udp --dport 4789 -j RETURN" in rules
    assert "-A STACKDEPLOY-SWARM -p tcp -m tcp --dport 2377 -j DROP" in rules
    assert not [rule for rule in rules if "10.0.0.1/32" in rule]  # its own address needs no rule


def test_a_service_with_volumes_stays_on_one_node(data):
    stack = load({**data, "engine": "swarm"}, SERVICES_DIR)
    hosts = [HostSpec("a", frozenset({"data", "ai", "edge", "monitoring"}), "10.0.0.1"),
             HostSpec("b", frozenset({"apps"}), "10.0.0.2"), HostSpec("c", frozenset({"apps"}), "10.0.0.3")]
    with pytest.raises(StackError, match="creator-hub' keeps data in volumes .creator-uploads. and is placed on 2"):
        place(stack, hosts)
    compose = load(data, SERVICES_DIR)
    assert place(compose, hosts).hosts_of("creator-hub") == ["b", "c"]  # the compose engine's own choice


# ------------------------------------------------------------- swarm operations, given facts

def test_first_manager_inits_once():
    with fake_host({SwarmNode: SwarmMembership()}, {"private_address": "10.0.0.1"}):
        assert commands(initialised._inner()) == ["docker swarm init --advertise-addr 10.0.0.1"]
    with fake_host({SwarmNode: SwarmMembership(state="active", manager=True)}) as host:
        assert commands(initialised._inner()) == []
        assert host.noops == ["in the swarm as a manager"]


def test_live_restore_stops_forming_the_swarm_with_the_way_out():
    with fake_host({SwarmNode: SwarmMembership(live_restore=True)}), \
            pytest.raises(OperationError, match="run provision.py"):
        commands(initialised._inner())


def test_nodes_that_left_the_inventory_are_drained_then_removed(data):
    stack = load({**data, "engine": "swarm"}, SERVICES_DIR)
    nodes = [SwarmNodeInfo("keep", "10.0.0.1"), SwarmNodeInfo("gone", "10.0.0.9")]
    facts = {SwarmNode: SwarmMembership(state="active", manager=True), SwarmNodes: nodes}
    with fake_host(facts, {"private_address": "10.0.0.1"}) as host:
        assert commands(pruned_nodes._inner(stack=stack, inventory_hosts=[host])) == [
            "docker node update --availability drain gone", "docker node rm --force gone"]


def test_labels_are_left_alone_when_they_match(data):
    stack = load({**data, "engine": "swarm"}, SERVICES_DIR)
    nodes = [SwarmNodeInfo("n1", "10.0.0.1", {"group.data": "true"})]
    facts = {SwarmNode: SwarmMembership(state="active", manager=True), SwarmNodes: nodes}
    with fake_host(facts, {"private_address": "10.0.0.1"}, name="h1") as host:
        host.groups = ["data", "managers"]
        assert commands(labels._inner(stack=stack, inventory_hosts=[host])) == []
        assert host.noops == ["node labels match the inventory groups"]


def test_every_swarm_task_drops_its_capabilities_and_has_limits(data):
    _, files, _ = swarm_stack(data)
    services = yaml.safe_load(files[STACK_FILE])["services"]
    for name, service in services.items():
        limits = service["deploy"]["resources"]["limits"]
        assert service["cap_drop"] == ["ALL"] and limits["pids"] > 0 and limits["memory"], name
        assert "security_opt" not in service  # Swarm ignores it: the daemon's default (provision.py)
    assert services["postgres"]["cap_add"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
    assert services["creator-hub"]["read_only"] is True
    assert {"type": "tmpfs", "target": "/tmp"} in services["creator-hub"]["volumes"]
    assert "read_only" not in services["postgres"]

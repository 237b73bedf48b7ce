"""Firewall: the chain is set in one atomic iptables-restore commit, and only when it differs.
Daemon settings: an insecure registry is listed, and applied without a restart."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
from pyinfra.facts.files import FileContents
from pyinfra.operations import files

from stackdeploy import SERVICES_DIR
from stackdeploy.facts.docker import DockerEngineStatus
from stackdeploy.facts.firewall import FilterRules
from stackdeploy.facts.swarm import SwarmMembership, SwarmNode
from stackdeploy.model import RegistrySettings, load
from stackdeploy.placement import HostSpec, place
from stackdeploy.provision import (
    chain,
    daemon_settings,
    firewall_rules,
    firewall_script,
    needs_restart,
    provision_host,
    reload_dockerd,
    restarts_here,
    restore_input,
)
from tests.unit.fakehost import commands, fake_host

MATCH = "-p tcp -m conntrack --ctorigdst 10.0.0.1 --ctorigdstport {port} --ctdir ORIGINAL"
RULES = ["-A STACKDEPLOY -s 10.0.0.1/32 -p tcp --dport 1 -j RETURN", "-A STACKDEPLOY -p tcp --dport 1 -j DROP"]


def test_rules_let_only_stack_hosts_reach_what_the_data_host_publishes(data):
    hosts = [HostSpec("db", frozenset({"data"}), "10.0.0.1"),
             HostSpec("rest", frozenset({"ai", "apps", "edge", "monitoring"}), "10.0.0.2")]
    rules = firewall_rules(place(load(data, SERVICES_DIR), hosts), "db")
    expected = []
    # postgres, redis, the log store (UDP), the monitor, the node exporter, postgres's and redis's exporters
    for port, protocol in ((5432, "tcp"), (6379, "tcp"), (6514, "udp"), (8010, "tcp"), (9100, "tcp"), (9187, "tcp"),
                           (9121, "tcp")):
        match = MATCH.format(port=port).replace("-p tcp", f"-p {protocol}")
        expected += [f"-A STACKDEPLOY -s {peer}/32 {match} -j RETURN" for peer in ("10.0.0.1", "10.0.0.2")]
        expected.append(f"-A STACKDEPLOY {match} -j DROP")
    assert rules == expected


def test_restore_input_declares_the_chain_then_fills_and_hooks_it():
    assert restore_input(RULES, hook=True) == (
        "*filter\n"
        ":STACKDEPLOY - [0:0]\n"  # with --noflush: created, or emptied when it exists
        "-A STACKDEPLOY -s 10.0.0.1/32 -p tcp --dport 1 -j RETURN\n"
        "-A STACKDEPLOY -p tcp --dport 1 -j DROP\n"
        "-I DOCKER-USER 1 -j STACKDEPLOY\n"
        "COMMIT\n"
    )


def test_restore_input_touches_only_what_differs():
    assert restore_input(RULES, hook=False) == "*filter\n:STACKDEPLOY - [0:0]\n" + "\n".join(RULES) + "\nCOMMIT\n"
    assert restore_input(None, hook=True) == "*filter\n-I DOCKER-USER 1 -j STACKDEPLOY\nCOMMIT\n"
    assert restore_input([], hook=False) == "*filter\n:STACKDEPLOY - [0:0]\nCOMMIT\n"  # no port to guard


def test_a_new_chain_is_one_restore_on_stdin():
    with fake_host({FilterRules: ["-P INPUT ACCEPT", "-N DOCKER-USER", "-A DOCKER-USER -j RETURN"]}):
        [command] = commands(chain._inner(rules=RULES))
    assert shlex.split(command) == ["printf", "%s", restore_input(RULES, hook=True), "|",
                                    "iptables-restore", "--noflush"]


def test_a_chain_that_differs_is_rewritten_and_the_jump_left_alone():
    with fake_host({FilterRules: ["-N DOCKER-USER", "-N STACKDEPLOY", "-A DOCKER-USER -j STACKDEPLOY", RULES[1]]}):
        [command] = commands(chain._inner(rules=RULES))
    assert shlex.split(command)[2] == restore_input(RULES, hook=False)


def test_a_second_run_changes_nothing():
    """The table as `iptables -S` prints it after the restore: the jump in place, the chain's rules."""
    table = ["-P INPUT ACCEPT", "-N DOCKER-USER", "-N STACKDEPLOY", "-A DOCKER-USER -j STACKDEPLOY",
             "-A DOCKER-USER -j RETURN", *RULES]
    with fake_host({FilterRules: table}) as host:
        assert commands(chain._inner(rules=RULES)) == []
        assert host.noops == ["firewall rules up to date"]


def test_on_swarm_only_the_stack_hosts_reach_the_log_store_its_node_publishes(data):
    hosts = [HostSpec("db", frozenset({"data", "managers"}), "10.0.0.1"),
             HostSpec("rest", frozenset({"ai", "apps", "edge", "monitoring"}), "10.0.0.2")]
    where = place(load({**data, "engine": "swarm"}, SERVICES_DIR), hosts)
    match = MATCH.format(port=6514).replace("-p tcp", "-p udp")
    assert firewall_rules(where, "db") == [*(f"-A STACKDEPLOY -s {peer}/32 {match} -j RETURN"
                                             for peer in ("10.0.0.1", "10.0.0.2")), f"-A STACKDEPLOY {match} -j DROP"]
    assert firewall_rules(where, "rest") == []


def in_a_new_network_namespace(script: str) -> str:
    """Run ``script`` (after it, ``iptables -S``) in a network namespace of its own, as at boot
    before dockerd starts: this machine's own rules stay untouched."""
    result = subprocess.run(["unshare", "--net", "sh", "-c", f"{script}\niptables -S"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_boot_script_puts_back_exactly_the_chains_provision_sets():
    swarm = ["-A STACKDEPLOY-SWARM -s 10.0.0.2/32 -p tcp -m tcp --dport 2377 -j RETURN",
             "-A STACKDEPLOY-SWARM -p tcp -m tcp --dport 2377 -j DROP"]
    script = firewall_script([("STACKDEPLOY", "DOCKER-USER", RULES), ("STACKDEPLOY-SWARM", "INPUT", swarm)])
    once, twice = in_a_new_network_namespace(script), in_a_new_network_namespace(f"{script}\n{script}")
    assert once == twice  # run again (a second boot, a manual run): nothing doubles
    listed = once.splitlines()
    assert [line for line in listed if line.startswith(("-A STACKDEPLOY", "-A DOCKER-USER", "-A INPUT"))] == [
        "-A INPUT -j STACKDEPLOY-SWARM", "-A DOCKER-USER -j STACKDEPLOY",
        "-A STACKDEPLOY -s 10.0.0.1/32 -p tcp -m tcp --dport 1 -j RETURN",
        "-A STACKDEPLOY -p tcp -m tcp --dport 1 -j DROP", *swarm]


INSECURE = RegistrySettings("10.77.0.1:5000/team", insecure=True)


def lines(settings: dict) -> list[str]:
    """daemon.json as provision.py writes it, as pyinfra's FileContents reads it back."""
    return json.dumps(settings, indent=2, sort_keys=True).splitlines()


def test_an_insecure_registry_is_listed_by_host_and_port_and_a_secure_one_not_at_all():
    assert daemon_settings("swarm", INSECURE)["insecure-registries"] == ["10.77.0.1:5000"]
    assert "insecure-registries" not in daemon_settings("swarm", RegistrySettings("registry.example.com"))
    assert "insecure-registries" not in daemon_settings("compose")


@pytest.mark.parametrize(("before", "after", "restart"), [
    (None, daemon_settings("compose"), True),  # a fresh host: the log options need a start
    (lines(daemon_settings("swarm")), daemon_settings("swarm", INSECURE), False),  # a registry added: reload
    (lines(daemon_settings("compose")), daemon_settings("swarm"), False),  # live-restore off: reload
    (lines(daemon_settings("swarm", INSECURE)), daemon_settings("swarm"), False),  # the registry removed
    (lines({**daemon_settings("swarm"), "log-opts": {"max-size": "1m"}}), daemon_settings("swarm"), True),
    (["not json"], daemon_settings("swarm"), True),
])
def test_only_keys_dockerd_cannot_reload_restart_it(before, after, restart):
    assert needs_restart(before, after) is restart


@pytest.mark.parametrize(("systemd", "restart", "command"), [
    (True, True, "systemctl restart docker"), (True, False, "systemctl reload docker"),
    (False, True, "kill -HUP $(pidof dockerd)"), (False, False, "kill -HUP $(pidof dockerd)"),
])
def test_daemon_settings_are_applied_by_restart_or_reload(systemd, restart, command):
    with fake_host({}):
        assert commands(reload_dockerd._inner(systemd=systemd, restart=restart)) == [command]


ENGINE = {"cli": True, "dockerd": True, "systemd": False, "debootstrap": True, "python3": True, "engine": "up",
          "compose": "2.40.0"}


def provisioned_daemon_json(data, monkeypatch, swarm_state: str) -> dict:
    """daemon.json as provision.py would write it to a compose host whose engine is in ``swarm_state``."""
    written: list[str] = []
    real_put = files.put

    def put(**kwargs):
        if kwargs["dest"] == "/etc/docker/daemon.json":
            written.append(kwargs["src"].getvalue())
        return real_put(**kwargs)

    facts = {DockerEngineStatus: ENGINE, SwarmNode: SwarmMembership(state=swarm_state), FileContents: None}
    stack = load(data, SERVICES_DIR)
    monkeypatch.setattr(files, "put", put)
    with fake_host(facts, data=data) as host:
        provision_host(where=place(stack, [HostSpec(host.name, frozenset(), None)]), deploy_user="deploy",
                       public_key=None, needs_debootstrap=True)
    return json.loads(written[0])


def test_a_compose_host_still_in_a_swarm_keeps_live_restore_off(data, monkeypatch):
    """dockerd refuses to start with live-restore in swarm mode: a host switched back from swarm
    to compose, before its ``docker swarm leave``, must not get it."""
    assert provisioned_daemon_json(data, monkeypatch, "active")["live-restore"] is False
    assert provisioned_daemon_json(data, monkeypatch, "inactive")["live-restore"] is True


def test_a_swarm_node_is_never_restarted_with_the_others():
    assert restarts_here(True, swarm_member=False) is True  # a fresh host: restarted
    assert restarts_here(True, swarm_member=True) is False  # a node of a running swarm: reloaded, and told
    assert restarts_here(False, swarm_member=False) is False

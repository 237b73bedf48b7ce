"""Firewall: the chain is set in one atomic iptables-restore commit, and only when it differs."""

from __future__ import annotations

import shlex

from stackdeploy import SERVICES_DIR
from stackdeploy.model import load
from stackdeploy.placement import HostSpec, place
from stackdeploy.provision import DockerUserJumps, IptablesChain, chain, firewall_rules, restore_input
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
    with fake_host({IptablesChain: [], DockerUserJumps: False}):
        [command] = commands(chain._inner(rules=RULES))
    assert shlex.split(command) == ["printf", "%s", restore_input(RULES, hook=True), "|",
                                    "iptables-restore", "--noflush"]


def test_a_chain_that_differs_is_rewritten_and_the_jump_left_alone():
    with fake_host({IptablesChain: ["-N STACKDEPLOY", RULES[1]], DockerUserJumps: True}):
        [command] = commands(chain._inner(rules=RULES))
    assert shlex.split(command)[2] == restore_input(RULES, hook=False)


def test_a_second_run_changes_nothing():
    """The chain as `iptables -S STACKDEPLOY` prints it after the restore, and the jump in place."""
    with fake_host({IptablesChain: ["-N STACKDEPLOY", *RULES], DockerUserJumps: True}) as host:
        assert commands(chain._inner(rules=RULES)) == []
        assert host.noops == ["firewall rules up to date"]

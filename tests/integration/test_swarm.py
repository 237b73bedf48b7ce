"""The swarm engine on three simulated hosts, over real SSH (tests/hosts/inventory_swarm.py).

The module starts from the compose engine on the same hosts, with data in it, and switches
to swarm; it ends by switching back. Between, it forms the swarm, deploys, redeploys with
nothing changed, rolls an app under load, rolls a broken update back, and loses a node.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.loadgen import HttpLoad
from stackdeploy.provision import FIREWALL_SCRIPT

from .conftest import ROOT, SIMHOSTS, DeployResult, Https, changed_ops, run_report, stack_ca
from .swarmhosts import COMPOSE_INVENTORY, SWARM_INVENTORY, docker, run_pyinfra, swarm_hosts, versions

pytestmark = pytest.mark.simhosts

SECRETS = ROOT / ".deploy" / "secrets" / "creatorstack-simhosts.json"
# Two auth-service tasks, on the two app nodes: one survives the loss of the other's node.
TWO_AUTH = {"service_overrides": {"auth-service": {"replicas": 2}}}


STACK_CA = str(stack_ca("creatorstack", "simhosts"))
https = Https(STACK_CA)


def gateway(hosts: dict) -> str:
    """HTTPS on h3, the edge node (plain HTTP on 8080 redirects, apart from /health)."""
    return f"https://{hosts['hosts'][2]['address']}:8443"


def login(base: str, username: str, password: str) -> httpx.Response:
    return https.post(f"{base}/api/auth/login", json={"username": username, "password": password}, timeout=10)


def tasks_of(hosts: dict, service: str) -> list[dict]:
    out = docker(hosts, 0, "service", "ps", "--filter", "desired-state=running", "--format", "{{json .}}",
                 f"creatorstack_{service}")
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def hosts(simulated_hosts) -> Iterator[dict]:
    with swarm_hosts(simulated_hosts) as state:
        yield state


@pytest.fixture(scope="module")
def compose_user(hosts) -> tuple[str, str]:
    """The compose engine on the same hosts, with a user in its database: the data to keep."""
    result = run_pyinfra(COMPOSE_INVENTORY, "provision.py")
    assert result.returncode == 0, result.output[-3000:]
    result = run_pyinfra(COMPOSE_INVENTORY, "deploy.py")
    assert result.returncode == 0, result.output[-3000:]
    username, password = f"sw{uuid.uuid4().hex[:10]}", "pw-" + uuid.uuid4().hex
    response = https.post(f"{gateway(hosts)}/api/auth/register", json={"username": username, "password": password},
                          timeout=10)
    assert response.status_code in (200, 201), response.text
    return username, password


@pytest.fixture(scope="module")
def provisioned(hosts, compose_user) -> DeployResult:
    result = run_pyinfra(SWARM_INVENTORY, "provision.py")
    assert result.returncode == 0, result.output[-3000:]
    # The simulated hosts have no systemd: provision.py reloads dockerd and says that what it
    # reads only at start (no-new-privileges, which Swarm's tasks get only from the daemon)
    # waits for a restart. Each engine without it is restarted here, as systemd would.
    options = [docker(hosts, index, "info", "--format", "{{json .SecurityOptions}}") for index in range(3)]
    restarted = [info["name"] for info, found in zip(hosts["hosts"], options, strict=True)
                 if "name=no-new-privileges" not in found]
    for name in restarted:
        subprocess.run([*SIMHOSTS, "stop", "--host", name], capture_output=True, timeout=300, check=True)
    if restarted:
        subprocess.run([*SIMHOSTS, "up", "--count", "3"], capture_output=True, timeout=300, check=True)
        for info in (info for info in hosts["hosts"] if info["name"] in restarted):  # as its boot unit would
            subprocess.run(["ssh", "-i", hosts["ssh_key"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", f"root@{info['address']}", FIREWALL_SCRIPT],
                           capture_output=True, timeout=60, check=True)
        deadline = time.monotonic() + 120
        while docker(hosts, 0, "node", "ls", "--format", "{{.Status}}").split().count("Ready") < 3:
            assert time.monotonic() < deadline, "the swarm's nodes did not come back Ready"
            time.sleep(1)  # pacing of a bounded poll
    return result


@pytest.fixture(scope="module")
def swarm(hosts, provisioned) -> DeployResult:
    result = run_pyinfra(SWARM_INVENTORY, "deploy.py", TWO_AUTH)
    assert result.returncode == 0, result.output[-5000:]
    return result


def test_provision_forms_the_swarm_with_group_labels(hosts, provisioned):
    nodes = docker(hosts, 0, "node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}").splitlines()
    assert sorted(nodes) == ["Ready ", "Ready ", "Ready Leader"]
    ids = docker(hosts, 0, "node", "ls", "-q").split()
    labels = dict(line.split(" ", 1) for line in docker(hosts, 0, "node", "inspect", "--format",
                                                         "{{.Status.Addr}} {{json .Spec.Labels}}", *ids).splitlines())
    address = [h["address"] for h in hosts["hosts"]]
    assert json.loads(labels[address[0]]) == {"group.data": "true"}
    assert json.loads(labels[address[1]]) == {"group.ai": "true", "group.apps": "true", "group.monitoring": "true"}
    assert json.loads(labels[address[2]]) == {"group.apps": "true", "group.edge": "true"}
    for index in range(3):  # swarm mode refuses live-restore: provision turned it off
        assert docker(hosts, index, "info", "--format", "{{.LiveRestoreEnabled}}").strip() == "false"
    again = run_pyinfra(SWARM_INVENTORY, "provision.py")
    assert again.returncode == 0 and changed_ops(again.output) == [], again.output[-3000:]


def test_swarm_ports_answer_only_stack_hosts(hosts, provisioned):
    rules = subprocess.run(["ip", "netns", "exec", hosts["hosts"][0]["netns"], "iptables", "-S", "STACKDEPLOY-SWARM"],
                           capture_output=True, text=True, check=True).stdout
    for peer in (hosts["hosts"][1]["address"], hosts["hosts"][2]["address"]):
        assert f"-A STACKDEPLOY-SWARM -s {peer}/32 -p tcp -m tcp --dport 2377 -j RETURN" in rules
    assert "-A STACKDEPLOY-SWARM -p tcp -m tcp --dport 2377 -j DROP" in rules
    assert "-A STACKDEPLOY-SWARM -p udp -m udp --dport 4789 -j DROP" in rules
    # The log store, published in host mode on its node (h1, group data): the stack's hosts only.
    guarded = subprocess.run(["ip", "netns", "exec", hosts["hosts"][0]["netns"], "iptables", "-S", "STACKDEPLOY"],
                             capture_output=True, text=True, check=True).stdout
    address = hosts["hosts"][0]["address"]
    match = f"-p udp -m conntrack --ctorigdst {address} --ctorigdstport 6514 --ctdir ORIGINAL"
    assert f"-A STACKDEPLOY {match} -j DROP" in guarded
    assert f"-A STACKDEPLOY -s {hosts['hosts'][1]['address']}/32 {match} -j RETURN" in guarded


def test_switching_from_compose_keeps_the_data(hosts, compose_user, swarm):
    for index in range(3):  # the compose engine's containers are gone, Swarm's tasks run
        assert docker(hosts, index, "ps", "-aq", "--filter", "is-task=false",
                      "--filter", "label=com.docker.compose.project=creatorstack").split() == []
    assert login(gateway(hosts), *compose_user).status_code == 200  # the same postgres volume


def test_every_service_runs_healthy_where_its_group_is(hosts, swarm):
    for service, allowed in {"postgres": {0}, "redis": {0}, "ollama": {1}, "auth-service": {1, 2},
                             "api-gateway": {2}}.items():
        found = tasks_of(hosts, service)
        assert found and all(t["CurrentState"].startswith("Running") for t in found), found
        on = {i for i in range(3) if any(name.startswith(f"creatorstack_{service}.")
                                          for name in docker(hosts, i, "ps", "--format", "{{.Names}}").split())}
        assert on and on <= allowed, (service, on)
    assert len(tasks_of(hosts, "auth-service")) == 2
    assert https.get(f"{gateway(hosts)}/api/auth/health", timeout=10).status_code == 200


def test_second_deploy_changes_nothing(hosts, swarm):
    before = versions(hosts)
    result = run_pyinfra(SWARM_INVENTORY, "deploy.py", TWO_AUTH)
    assert result.returncode == 0, result.output[-3000:]
    assert run_report(result)["changed"] == []  # this run's report, not an earlier one
    assert versions(hosts) == before  # Swarm was not asked to update anything


def test_secrets_are_files_not_environment(hosts, swarm):
    values = [v for v in json.loads(SECRETS.read_text()).values() if len(v) >= 8]
    assert values
    names = docker(hosts, 0, "secret", "ls", "--format", "{{.Name}}").split()
    assert {"creatorstack_JWT_SECRET", "creatorstack_POSTGRES_PASSWORD", "creatorstack_REDIS_PASSWORD"} <= set(names)
    services = docker(hosts, 0, "service", "ls", "-q").split()
    inspected = docker(hosts, 0, "service", "inspect", *services)
    for index in range(3):
        containers = docker(hosts, index, "ps", "-q").split()
        inspected += docker(hosts, index, "inspect", *containers)
        for container in containers:
            inspected += docker(hosts, index, "exec", container, "env", check=False)
    assert not [v for v in values if v in inspected]
    auth = next(c for c in docker(hosts, 2, "ps", "--format", "{{.ID}} {{.Names}}").splitlines() if "auth" in c)
    env = docker(hosts, 2, "exec", auth.split()[0], "env")
    assert "JWT_SECRET_FILE=/run/secrets/JWT_SECRET" in env


def test_every_task_drops_its_capabilities_gains_none_and_has_limits(hosts, swarm):
    checked = 0
    for index in range(len(hosts["hosts"])):
        ids = docker(hosts, index, "ps", "-q", "--filter", "label=com.docker.stack.namespace=creatorstack").split()
        for info in json.loads(docker(hosts, index, "inspect", *ids)) if ids else []:
            name, settings = info["Config"]["Labels"]["com.docker.swarm.service.name"], info["HostConfig"]
            assert settings["CapDrop"] == ["ALL"] and settings["PidsLimit"] > 0 and settings["Memory"] > 0, name
            status = Path(f"/proc/{info['State']['Pid']}/status").read_text()
            assert "NoNewPrivs:\t1" in status, name  # the daemon's default: Swarm takes no security_opt
            checked += 1
    assert checked >= 12


def test_rolling_update_under_load_fails_no_request(hosts, swarm):
    before = {t["ID"] for t in tasks_of(hosts, "auth-service")}
    gateway_tasks = {t["ID"] for t in tasks_of(hosts, "api-gateway")}
    changed = {"service_overrides": {"auth-service": {"replicas": 2, "env": {"ROLL_MARK": uuid.uuid4().hex}}}}
    with HttpLoad(gateway(hosts), ["/api/auth/health", "/health"], rate=40, max_seconds=600, ca_file=STACK_CA) as load:
        result = run_pyinfra(SWARM_INVENTORY, "deploy.py", changed)
    assert result.returncode == 0, result.output[-4000:]
    after = {t["ID"] for t in tasks_of(hosts, "auth-service")}
    assert before.isdisjoint(after) and len(after) == 2  # both tasks replaced
    # Only the app rolled: Swarm did not take the busy gateway for an unhealthy one.
    assert {t["ID"] for t in tasks_of(hosts, "api-gateway")} == gateway_tasks
    outcome = load.result
    print(f"swarm rolling update: {outcome.summary()}")
    assert outcome.total > 50 and outcome.failed == 0, outcome.summary()
    TWO_AUTH["service_overrides"]["auth-service"]["env"] = changed["service_overrides"]["auth-service"]["env"]


def hash_of(hosts: dict, service: str) -> str:
    return docker(hosts, 0, "service", "inspect", "--format",
                  '{{index .Spec.Labels "stackdeploy.config-hash"}}', f"creatorstack_{service}").strip()


def test_rollback_uses_swarms_own_rollback_and_gates(hosts, swarm):
    rolled_mark = TWO_AUTH["service_overrides"]["auth-service"].pop("env", None)
    assert rolled_mark, "runs after the rolling update, which left a release to go back from"
    before = hash_of(hosts, "auth-service")
    gateway_tasks = {t["ID"] for t in tasks_of(hosts, "api-gateway")}
    with HttpLoad(gateway(hosts), ["/api/auth/health"], rate=20, max_seconds=600, ca_file=STACK_CA) as load:
        result = run_pyinfra(SWARM_INVENTORY, "rollback.py")
    assert result.returncode == 0, result.output[-4000:]
    assert {t["ID"] for t in tasks_of(hosts, "api-gateway")} == gateway_tasks, result.output[-6000:]
    # Not yet proven here that Swarm's own `docker service rollback` did it: after rollback.py the
    # service has no UpdateStatus at all (seen 2026-12-03), which neither a rollback nor an update
    # to the old spec would leave. Issue 19 holds the follow-up.
    assert hash_of(hosts, "auth-service") != before
    assert load.result.failed == 0, load.result.summary()
    # The release rolled back to is what a deploy without the change renders: nothing to do.
    again = run_pyinfra(SWARM_INVENTORY, "deploy.py", TWO_AUTH)
    assert again.returncode == 0, again.output[-3000:]
    assert run_report(again)["changed"] == []


def test_a_broken_update_rolls_back_by_itself(hosts, swarm):
    broken = {"service_overrides": {"auth-service": {**TWO_AUTH["service_overrides"]["auth-service"],
                                                     "command": ["python3", "-c", "raise SystemExit(3)"]}}}
    before = versions(hosts)["creatorstack_auth-service"]
    with HttpLoad(gateway(hosts), ["/api/auth/health"], rate=20, max_seconds=600, ca_file=STACK_CA) as load:
        result = run_pyinfra(SWARM_INVENTORY, "deploy.py", broken)
    assert result.returncode != 0
    assert "rolled the update back" in result.output, result.output[-4000:]
    inspect = json.loads(docker(hosts, 0, "service", "inspect", "creatorstack_auth-service"))[0]
    assert inspect["UpdateStatus"]["State"] == "rollback_completed"
    assert versions(hosts)["creatorstack_auth-service"] != before
    assert "SystemExit" not in json.dumps(inspect["Spec"]["TaskTemplate"]["ContainerSpec"])  # the old spec runs
    assert load.result.failed == 0, load.result.summary()  # the old tasks kept serving
    fixed = run_pyinfra(SWARM_INVENTORY, "deploy.py", TWO_AUTH)
    assert fixed.returncode == 0, fixed.output[-3000:]


def test_smoke_verify_and_releases_work_on_swarm(hosts, swarm):
    smoke = run_pyinfra(SWARM_INVENTORY, "smoke.py")
    assert smoke.returncode == 0, smoke.output[-3000:]
    verify = run_pyinfra(SWARM_INVENTORY, "verify.py")
    assert verify.returncode == 0, verify.output[-3000:]
    assert "stack on swarm (manager" in verify.output and "FAILED" not in verify.output
    releases = run_pyinfra(SWARM_INVENTORY, "releases.py")
    assert releases.returncode == 0, releases.output[-3000:]
    # The current release is marked, and it is a good one (the broken update's is not current).
    marked = [line.split() for line in releases.output.splitlines() if line.strip().startswith("* ")]
    assert marked and all(fields[3] == "ok" for fields in marked), releases.output[-3000:]


def test_an_unhealthy_task_is_replaced_by_swarm(hosts, swarm):
    [task] = tasks_of(hosts, "channel-service")
    node = next(i for i in range(3)
                if any(n.startswith("creatorstack_channel-service.") for n in docker(hosts, i, "ps", "--format",
                                                                                      "{{.Names}}").split()))
    container = docker(hosts, node, "ps", "-q", "--filter", "name=creatorstack_channel-service.").split()[0]
    # Hung, not dead: every process frozen (SIGSTOP; their host pids, the namespaces are this
    # machine's). Its healthcheck, a new process, then times out. (`docker pause` would not do:
    # Docker skips the healthcheck of a paused container.)
    pids = docker(hosts, node, "top", container, "-eo", "pid").split()[1:]
    for pid in pids:
        os.kill(int(pid), signal.SIGSTOP)
    paused_at = time.monotonic()
    replaced = None
    while time.monotonic() - paused_at < 150:
        running = [t for t in tasks_of(hosts, "channel-service") if t["CurrentState"].startswith("Running")]
        if running and all(t["ID"] != task["ID"] for t in running):
            replaced = time.monotonic() - paused_at
            break
        time.sleep(1)  # pacing of a bounded poll
    for pid in pids:  # if Swarm has not removed it yet
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGCONT)
    print(f"unhealthy task replaced by Swarm after {replaced} s")
    assert replaced is not None, "Swarm did not replace the unhealthy task within 150 s"
    deadline = time.monotonic() + 60
    while https.get(f"{gateway(hosts)}/api/channels/health", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "channel-service does not answer through the gateway again"
        time.sleep(1)  # pacing of a bounded poll


def test_losing_a_node_reschedules_its_tasks(hosts, swarm):
    h2 = hosts["hosts"][1]
    try:
        with HttpLoad(gateway(hosts), ["/api/auth/health"], rate=20, max_seconds=300, ca_file=STACK_CA) as load:
            time.sleep(2)  # pacing: some traffic before the loss
            lost_at = time.monotonic()
            subprocess.run([*SIMHOSTS, "stop", "--host", h2["name"], "--crash"], check=True, timeout=120)
            deadline = lost_at + 120
            while time.monotonic() < deadline:
                found = tasks_of(hosts, "auth-service")
                nodes = {t["Node"] for t in found if t["CurrentState"].startswith("Running")}
                if len([t for t in found if t["CurrentState"].startswith("Running")]) == 2 and len(nodes) == 1:
                    break
                time.sleep(1)  # pacing of a bounded poll
            recovered = time.monotonic() - lost_at
    finally:  # the lost node comes back whatever the outcome: the tests after this one need it
        subprocess.run([*SIMHOSTS, "up", "--count", "3"], check=True, timeout=300, capture_output=True)
    print(f"node loss: auth-service back to 2 running tasks after {recovered:.1f} s; {load.result.summary()}")
    assert recovered < 120
    assert load.result.failed <= load.result.total * 0.05, load.result.summary()


def test_switching_back_to_compose_keeps_the_data(hosts, compose_user, swarm):
    result = run_pyinfra(COMPOSE_INVENTORY, "deploy.py")
    assert result.returncode == 0, result.output[-5000:]
    assert docker(hosts, 0, "service", "ls", "-q").split() == []
    assert login(gateway(hosts), *compose_user).status_code == 200

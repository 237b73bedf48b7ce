"""The log store (stackdeploy/logstore.py): rsyslog's configuration, where every dockerd sends,
the containers' logging options on both engines, and retention."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from stackdeploy import SERVICES_DIR, logstore
from stackdeploy.model import StackError, load
from stackdeploy.placement import HostSpec, place
from stackdeploy.plan import build_plan
from stackdeploy.swarmstack import STACK_FILE, render_stack
from tests.certs import certificate

SECRETS = {"POSTGRES_PASSWORD": "p", "REDIS_PASSWORD": "r", "JWT_SECRET": "j", "GRAFANA_ADMIN_PASSWORD": "g"}
# rsyslogd to check the rendered configuration with: scripts/test.sh installs Debian's
# (RSYSLOGD=/path, RSYSLOG_MODULES=/path/to/its/modules for one unpacked from the package).
RSYSLOGD = os.environ.get("RSYSLOGD") or shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def three_hosts(data):
    return place(load(data, SERVICES_DIR), [HostSpec("h1", frozenset({"data"}), "10.0.0.1"),
                                            HostSpec("h2", frozenset({"ai", "monitoring"}), "10.0.0.2"),
                                            HostSpec("h3", frozenset({"apps", "edge"}), "10.0.0.3")])


def compose_of(data, where, host) -> dict:
    plan = build_plan(where.stack, "local", SECRETS, where, host, certificate=certificate())
    return yaml.safe_load(plan.files["compose.yaml"])


def test_every_host_sends_to_the_log_store_hosts_private_address(data):
    where = three_hosts(data)
    assert logstore.log_target(where) == logstore.LogTarget("log-store", "10.0.0.1", 6514)
    for host in ("h1", "h2", "h3"):
        for name, service in compose_of(data, where, host)["services"].items():
            if name == "log-store":
                assert service["logging"]["driver"] == "json-file"
                assert service["ports"] == ["10.0.0.1:6514:6514/udp"]  # the private address alone
                continue
            assert service["logging"] == {"driver": "syslog", "options": {
                "syslog-address": "udp://10.0.0.1:6514", "syslog-format": "rfc5424micro",
                "tag": f"{name}/{{{{.ID}}}}", "mode": "non-blocking", "max-buffer-size": "4m"}}


def test_a_log_store_host_without_an_address_is_refused_on_several_hosts(data):
    data["placement"] = {**data["placement"], "data": [s for s in data["placement"]["data"] if s != "log-store"],
                         "logs": ["log-store"]}
    stack = load(data, SERVICES_DIR)
    with pytest.raises(StackError, match="host h0: runs 'log-store', which other hosts use, but has no 'private_addr"):
        place(stack, [HostSpec("h0", frozenset({"logs"})),
                      HostSpec("h1", frozenset({"data", "ai", "apps", "edge", "monitoring"}), "10.0.0.1")])


def test_changing_the_retention_recreates_only_the_log_store(data):
    before = build_plan(load(data, SERVICES_DIR), "local", SECRETS, certificate=certificate())
    after = build_plan(load({**data, "logs": {"keep_days": 3, "max_megabytes": 100}}, SERVICES_DIR), "local", SECRETS,
                       certificate=certificate())
    changed = {n for n in before.services if before.services[n].config_hash != after.services[n].config_hash}
    assert changed == {"log-store"}
    command = yaml.safe_load(after.files["compose.yaml"])["services"]["log-store"]["command"]
    assert "-mtime +2 " in command[2] and "-gt 100 ]" in command[2]


def test_the_configuration_rides_in_the_command_on_both_engines(data):
    stack = load(data, SERVICES_DIR)
    store = logstore.log_store(stack)
    conf = logstore.rsyslog_conf(store)
    assert 'input(type="imudp" port="6514"' in conf and 'input(type="imtcp" port="6514")' in conf
    assert 'dynaFile="stackDay"' in conf and "/var/log/stack/%timegenerated:1:10:date-rfc3339%.log" in conf
    compose = yaml.safe_load(build_plan(stack, "local", SECRETS, certificate=certificate()).files["compose.yaml"])
    assert compose["services"]["log-store"]["command"][-1] == conf.replace("$", "$$")
    where = three_hosts(data)
    files, _ = render_stack(where.stack, {n: f"img/{n}" for n in stack.services}, "events {}\n", certificate(),
                            log_target=logstore.log_target(where))
    swarm = yaml.safe_load(files[STACK_FILE])["services"]
    assert swarm["log-store"]["command"] == [word.replace("$", "$$") for word in logstore.command(stack, store)]
    assert swarm["log-store"]["ports"] == [{"target": 6514, "published": 6514, "protocol": "udp", "mode": "host"}]
    assert swarm["auth-service"]["logging"]["options"]["syslog-address"] == "udp://10.0.0.1:6514"
    assert swarm["log-store"]["logging"]["driver"] == "json-file"


def test_logs_settings_are_checked(data):
    with pytest.raises(StackError, match="logs.keep_days: must be an integer of at least 1"):
        load({**data, "logs": {"keep_days": 0}}, SERVICES_DIR)
    with pytest.raises(StackError, match="logs.keep_day: unknown key"):
        load({**data, "logs": {"keep_day": 3}}, SERVICES_DIR)
    two = dict(data["services"])
    two["second-store"] = {**data["services"]["log-store"], "port": 6515}
    with pytest.raises(StackError, match="at most one service may have role 'logstore'"):
        load({**data, "services": two}, SERVICES_DIR)


def docker_line(tag: str, text: str) -> bytes:
    """What Docker's syslog driver sends with syslog-format rfc5424micro (moby's formatter)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".123456+00:00"
    return f"<14>1 {stamp} dockerhost {tag} 4242 {tag} - {text}".encode()


def test_rsyslog_writes_one_json_line_per_message_into_the_days_file(data, tmp_path: Path):
    """The rendered configuration, run by a real rsyslogd on a free port: Docker's messages
    arrive over UDP and land as JSON lines in <day>.log."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stack = load({**data, "service_overrides": {"log-store": {"port": port}}}, SERVICES_DIR)
    conf = logstore.rsyslog_conf(logstore.log_store(stack)).replace(logstore.LOG_DIR, str(tmp_path / "logs"))
    conf = conf.replace('workDirectory="/tmp"', f'workDirectory="{tmp_path}"')
    (tmp_path / "logs").mkdir()
    (tmp_path / "rsyslog.conf").write_text(conf)
    modules = os.environ.get("RSYSLOG_MODULES")
    args = [RSYSLOGD, "-n", "-f", str(tmp_path / "rsyslog.conf"), "-i", str(tmp_path / "pid"),
            *(["-M", modules] if modules else [])]
    daemon = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        app_line = json.dumps({"service": "auth-service", "request_id": "r-1", "path": "/verify"})
        day = tmp_path / "logs" / f"{time.strftime('%Y-%m-%d', time.gmtime())}.log"
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            while time.monotonic() < deadline and not (day.exists() and day.read_text().strip()):
                sender.sendto(docker_line("auth-service/0123456789ab", app_line), ("127.0.0.1", port))
                time.sleep(0.3)
        entry = json.loads(day.read_text().splitlines()[0])
        assert entry["tag"] == "auth-service/0123456789ab"
        assert entry["time"].endswith(".123456+00:00") and entry["from"] == "127.0.0.1"
        assert entry["hostname"] == "dockerhost"  # what tells the sending host (stackdeploy/logsearch.py)
        assert json.loads(entry["msg"].strip()) == json.loads(app_line)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)

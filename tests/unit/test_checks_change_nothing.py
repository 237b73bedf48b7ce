"""Checks change nothing anywhere: --dry and verify.py start no engine and write nothing on
the control machine, yet plan exactly what a real run would change."""

from __future__ import annotations

import json
import sys

import pytest

from stackdeploy import desired, secrets, tls
from stackdeploy.facts.docker import ENGINE_DOWN
from stackdeploy.facts.registry import RegistryReachable
from stackdeploy.facts.stack import HostState, StackHostState, StackStatus
from stackdeploy.inputfiles import StackInputError
from stackdeploy.verify import verified
from tests.conftest import group_data
from tests.unit.fakehost import fake_host
from tests.unit.test_secrets import keep

NAMES = ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET"]
CHECKS = pytest.mark.parametrize(("argv", "check_only"), [(["--dry"], False), ([], True)], ids=["--dry", "verify.py"])


def prepare(tmp_path, monkeypatch, *argv: str, check_only: bool = False,
            engine: str = "up") -> desired.HostDecisions:
    """Prepare a host with nothing deployed from the project's stack, with the control
    machine's state under ``tmp_path/.deploy``, as ``pyinfra inventory.py deploy.py *argv``."""
    monkeypatch.setattr(desired, "STATE_DIR", tmp_path / ".deploy")
    monkeypatch.setattr(sys, "argv", ["pyinfra", "inventory.py", "deploy.py", *argv])
    facts = {StackHostState: HostState(engine=engine), RegistryReachable: False}
    with fake_host(facts, data=group_data()) as host:
        return desired.decide(host, check_only=check_only)


@CHECKS
def test_a_check_writes_nothing_and_says_which_secrets_are_new(tmp_path, monkeypatch, argv, check_only):
    decisions = prepare(tmp_path, monkeypatch, *argv, check_only=check_only)
    assert not (tmp_path / ".deploy").exists()
    assert decisions.new_secrets == NAMES
    assert json.loads(decisions.secrets_json) == dict.fromkeys(NAMES, secrets.PLACEHOLDER)
    assert ".secrets.json" in decisions.top_files  # the plan still says the host's copy changes
    # The stack CA and the gateway's certificate: decided in memory, kept by a real run only.
    assert decisions.certificate.issued == "new" and decisions.tls_store.is_relative_to(tmp_path)


def test_a_real_run_generates_while_preparing_and_writes_when_it_executes(tmp_path, monkeypatch):
    decisions = prepare(tmp_path, monkeypatch)
    assert not (tmp_path / ".deploy").exists()
    generated = json.loads(decisions.secrets_json)
    assert decisions.new_secrets == NAMES and secrets.PLACEHOLDER not in generated.values()
    keep(decisions.secrets_store)
    assert json.loads(decisions.secrets_store.read_text()) == generated
    tls._write(decisions.tls_store, tls._this_run[decisions.tls_store])  # what tls.kept runs
    assert (decisions.tls_store / tls.SERVER_CERT).read_bytes() == decisions.certificate.chain_pem


@CHECKS
def test_a_check_does_not_start_an_engine_that_is_down(tmp_path, monkeypatch, argv, check_only):
    with pytest.raises(StackInputError, match="the Docker engine is installed but not answering"):
        prepare(tmp_path, monkeypatch, *argv, check_only=check_only, engine=ENGINE_DOWN)


@pytest.mark.parametrize("report_to", [None, "last-report.json"], ids=["verify.py", "deploy"])
def test_only_a_deploy_writes_the_report_verify_prints_the_table(tmp_path, monkeypatch, capsys, report_to):
    plan = prepare(tmp_path, monkeypatch, check_only=True).plan
    report = tmp_path / report_to if report_to else None
    with fake_host({StackStatus: {"postgres": {"check": "ok", "state": "running"}}}) as host:
        host.state.is_executing = True
        assert list(verified._inner(plan=plan, release="r1", built=[], started=[], base_built=False,
                                    report_to=report)) == []
        assert host.noops == ["all 1 services healthy"]
    assert "stack on somehost:" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ([report_to] if report_to else [])

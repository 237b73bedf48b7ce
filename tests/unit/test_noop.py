"""A host in exactly the state a deploy left it is a no-op: nothing differs, so the run takes no
lock, uploads nothing, records no release and writes no audit line (deploy.py gates all four
on ``changes_anything``)."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace

from stackdeploy import contract, desired, tls
from stackdeploy.facts.registry import RegistryReachable
from stackdeploy.facts.stack import ContainerState, DeployedFiles, FileHashes, HostState, StackHostState, StackStatus
from stackdeploy.verify import verified
from tests.conftest import group_data
from tests.unit.fakehost import commands, fake_host
from tests.unit.test_secrets import keep


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def decide(tmp_path, monkeypatch, state: HostState, deployed: DeployedFiles) -> desired.HostDecisions:
    monkeypatch.setattr(desired, "STATE_DIR", tmp_path / ".deploy")
    monkeypatch.setattr(sys, "argv", ["pyinfra", "inventory.py", "deploy.py"])
    facts = {StackHostState: state, FileHashes: deployed, RegistryReachable: False}
    with fake_host(facts, data=group_data()) as host:
        return desired.decide(host, deploying=True)


def deployed_state(first: desired.HostDecisions) -> tuple[HostState, DeployedFiles]:
    """What the host holds once the run that made ``first`` succeeded."""
    plan = first.plan
    containers = {name: (ContainerState(id=f"c-{name}", state="running", config_hash=svc.config_hash,
                                        aliases=frozenset({contract.live_alias(name)})),)
                  for name, svc in plan.services.items()}  # started by the deploy: live on the routes network
    images = {svc.image: f"sha256:{index:064x}" for index, svc in enumerate(plan.services.values(), 1)}
    if plan.base_image:
        images[plan.base_image] = "sha256:" + "f" * 64
    state = HostState(engine="up", containers=containers, image_ids=images, secrets_json=first.secrets_json,
                      tls_json=(tls.host_copy(first.certificate) or b"").decode(),
                      image_source=plan.image_source, current=first.release)
    top = {rel: sha(content) for rel, content in first.top_files.items()}
    if "nginx/nginx.conf" in first.release_files:
        top[f"{contract.GATEWAY_DIR}/nginx.conf"] = sha(first.release_files["nginx/nginx.conf"])
    return state, DeployedFiles({rel: sha(content) for rel, content in first.release_files.items()}, top)


def test_every_file_the_deploy_writes_outside_the_releases_is_hashed_when_the_host_is_read(tmp_path, monkeypatch):
    first = decide(tmp_path, monkeypatch, HostState(engine="up"), DeployedFiles())
    assert set(first.top_files) <= set(contract.TOP_FILES)


def test_a_host_left_as_the_deploy_left_it_changes_nothing(tmp_path, monkeypatch):
    first = decide(tmp_path, monkeypatch, HostState(engine="up"), DeployedFiles())
    assert first.changes_anything and ".tls.json" in first.top_files
    keep(first.secrets_store)  # what the first run's secrets.kept and tls.kept wrote here
    tls._write(first.tls_store, tls._this_run[first.tls_store])
    again = decide(tmp_path, monkeypatch, *deployed_state(first))
    assert again.top_files == {}
    assert again.release == first.release and not again.changed_files
    assert again.to_build == [] and again.to_start == [] and not again.gateway_conf_changed
    assert not again.changes_anything


def test_an_app_recreated_by_hand_gets_its_live_alias_back_and_nothing_restarts(tmp_path, monkeypatch):
    """`docker compose up` recreates a container without the live alias, so the gateway answers
    502 for it: the next deploy notices that in the host read and syncs the gateway (which gives
    the serving container its alias) instead of calling the host unchanged."""
    first = decide(tmp_path, monkeypatch, HostState(engine="up"), DeployedFiles())
    keep(first.secrets_store)
    tls._write(first.tls_store, tls._this_run[first.tls_store])
    state, deployed = deployed_state(first)
    by_hand = replace(state.containers["creator-hub"][0], id="recreated", aliases=frozenset({"recreated"}))
    state = replace(state, containers={**state.containers, "creator-hub": (by_hand,)})
    again = decide(tmp_path, monkeypatch, state, deployed)
    assert again.unrouted == ["creator-hub"] and again.to_start == []
    assert again.changes_anything and again.changed_services == ["api-gateway"]
    assert again.release == first.release  # no new release: the same one, with its gateway synced


def verify_noops(first: desired.HostDecisions, observed: HostState, status) -> tuple[list[str], list[str]]:
    """(commands, noop messages) of the verify phase of a run that changed nothing; ``status``
    is what a probe round (the StackStatus fact) would answer, and fails the test if asked for."""
    with fake_host({StackStatus: status}, data=group_data()) as host:
        ran = commands(verified._inner(plan=first.plan, release=first.release, built=[], started=[],
                                       base_built=False, report_to=None, observed=observed))
        return ran, host.noops


def no_probe(**_):
    raise AssertionError("a no-op probed the services again")


def test_a_no_op_verifies_from_the_host_read_without_probing(tmp_path, monkeypatch):
    first = decide(tmp_path, monkeypatch, HostState(engine="up"), DeployedFiles())
    state, _ = deployed_state(first)
    state = replace(state, containers={name: (replace(found[0], health="healthy"),)
                                       for name, found in state.containers.items()})
    ran, noops = verify_noops(first, state, no_probe)
    assert ran == [] and noops == [f"all {len(first.plan.services)} services healthy"]


def test_a_no_op_probes_when_the_read_shows_a_service_unhealthy(tmp_path, monkeypatch):
    first = decide(tmp_path, monkeypatch, HostState(engine="up"), DeployedFiles())
    state, _ = deployed_state(first)
    sick = {**state.containers, "redis": (replace(state.containers["redis"][0], health="unhealthy"),)}
    probed = {name: {"check": "ok" if name != "redis" else "PING failed"} for name in first.plan.services}
    ran, noops = verify_noops(first, replace(state, containers=sick), lambda **_: probed)
    assert len(ran) == 1 and noops == []  # the probe's verdict is the run's: a failure, with logs


def with_remote_dependency(plan, key: str = "postgres@h1"):
    """``plan`` as on a host whose services use a postgres that runs on host h1."""
    release = json.loads(plan.files[contract.RELEASE_FILE])
    release["remote"] = {key: {"service": "postgres", "host": "h1", "address": "10.0.0.1", "port": 5432,
                               "http": None, "consumers": ["auth-service"]}}
    return replace(plan, files={**plan.files, contract.RELEASE_FILE: json.dumps(release)})


def test_a_no_op_still_probes_the_dependencies_on_other_hosts(tmp_path, monkeypatch):
    first = decide(tmp_path, monkeypatch, HostState(engine="up"), DeployedFiles())
    first = replace(first, plan=with_remote_dependency(first.plan))
    state, _ = deployed_state(first)
    state = replace(state, containers={name: (replace(found[0], health="healthy"),)
                                       for name, found in state.containers.items()})
    asked = []

    def remote_only(**kwargs):
        asked.append(kwargs)
        assert kwargs.get("remote_only"), "a no-op probed this host's own services again"
        return {"postgres@h1": {"check": "connection refused", "state": "remote"}}

    ran, noops = verify_noops(first, state, remote_only)
    assert asked and noops == [] and len(ran) == 1  # the stopped remote database fails the run

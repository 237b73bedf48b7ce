"""The facts' ``process()``, the way pyinfra tests its own facts: given these output lines,
expect this value. The outputs are recorded from a host running the stack (Docker 20.10,
Compose 2.40, the ``creatorstack`` project in /opt/creatorstack); secret values are made up."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api import StringCommand
from pyinfra.api.exceptions import FactProcessError

from stackdeploy import commands
from stackdeploy.commands import ABSENT
from stackdeploy.desired import helper_files
from stackdeploy.facts import HostReadError, read_fact
from stackdeploy.facts.docker import DockerEngineStatus
from stackdeploy.facts.registry import RegistryReachable
from stackdeploy.facts.stack import (
    TOP_FILES,
    ContainerState,
    DeployedFiles,
    FileHashes,
    HostReleases,
    ReleaseHistory,
    StackHostState,
    StackStatus,
)

AUTH_ID = "bd7f6c279ab91993a3f429163170d0102c472b7d56b985098c9f067a4106f5cc"
AUTH_HASH = "449b2da55d3388c91f94703e0457ab9b09748f4ecea2220f8184d7a805451386"
POSTGRES_HASH = "5af5207d6c871f662ee6c72ef8dd0e2f7f637ffb9ddf3eba4482122dbaf488fb"
AUTH_IMAGE_ID = "sha256:1358121ca2a11a443354faea6603934719809515a324bd644751e01ac4b13d28"
POSTGRES_IMAGE_ID = "sha256:556b857e6be373775723b53168ad271f05c38a153ef7177171901afcad03925f"

HOST_STATE = [
    "--stackdeploy:engine",
    "up",
    "--stackdeploy:containers",
    f"auth-service {AUTH_ID} running {AUTH_IMAGE_ID} healthy auth-service-live,bd7f6c279ab9, {AUTH_HASH}",
    "postgres 45794242457d3a080741f279ffecb968b7253cea290372ba602d5ffd9436295b running "
    f"{POSTGRES_IMAGE_ID} none - {POSTGRES_HASH}",
    "--stackdeploy:images",
    "creatorstack/auth-service:3b390ae9d31c sha256:85e15c75884c14c145d44e770d689c441104cb4db6bc6e1e143dfa04eb7bb9e7",
    "stackdeploy/postgres:b67c5ceac670 sha256:73c9a858ba83d56abdc2d8020d4518b626893665ef18b02e367d871b4b8f7c7c",
    "stackdeploy/postgres:f6dc171821dc sha256:73c9a858ba83d56abdc2d8020d4518b626893665ef18b02e367d871b4b8f7c7c",
    f"<none>:<none> {AUTH_IMAGE_ID}",
    "--stackdeploy:secrets",
    "{",
    '  "JWT_SECRET": "made-up",',
    '  "POSTGRES_PASSWORD": "made-up-too"',
    "}",
    "--stackdeploy:tls",
    '{"ca.pem": "CA", "server-key.pem": "KEY", "server.pem": "CERT"}',
    "--stackdeploy:image-source",
    "local",
    "--stackdeploy:current",
    "releases/20261126T065636Z",
]


def test_host_state_reads_every_section():
    state = StackHostState().process(HOST_STATE)
    assert state.engine == "up"
    assert state.containers["auth-service"] == (ContainerState(AUTH_ID, "running", AUTH_HASH, AUTH_IMAGE_ID,
                                                                    "healthy",
                                                                    frozenset({"auth-service-live", AUTH_ID[:12]})),)
    assert state.is_live("auth-service") and not state.is_live("postgres")
    assert state.up_to_date("auth-service", AUTH_HASH) and state.up_to_date("postgres", POSTGRES_HASH)
    assert not state.up_to_date("auth-service", POSTGRES_HASH)
    assert state.containers["postgres"][0].health == "none" and state.containers["postgres"][0].healthy
    assert set(state.images) == {"creatorstack/auth-service:3b390ae9d31c", "stackdeploy/postgres:b67c5ceac670",
                                 "stackdeploy/postgres:f6dc171821dc"}  # untagged images are no tag
    assert state.image_ids["stackdeploy/postgres:f6dc171821dc"].startswith("sha256:73c9a858")
    assert json.loads(state.secrets_json) == {"JWT_SECRET": "made-up", "POSTGRES_PASSWORD": "made-up-too"}
    assert json.loads(state.tls_json)["server.pem"] == "CERT"
    assert state.image_source == "local" and state.current == "20261126T065636Z"


def test_host_state_sees_an_interrupted_rollout_and_a_container_without_the_label():
    state = StackHostState().process([
        "--stackdeploy:engine", "up",
        "--stackdeploy:containers",
        f"auth-service aaa running {AUTH_IMAGE_ID} healthy aaa, {AUTH_HASH}",  # recreated by hand: no alias
        f"auth-service bbb running {AUTH_IMAGE_ID} starting - hash2",
        f"postgres ccc exited {POSTGRES_IMAGE_ID} unhealthy - <no value>",
        f"<no value> ddd running {POSTGRES_IMAGE_ID} none - <no value>",  # the project's label, not compose's
        "--stackdeploy:images",
        "--stackdeploy:secrets", ABSENT, "--stackdeploy:tls", ABSENT, "--stackdeploy:image-source", ABSENT,
        "--stackdeploy:current", ABSENT,
    ])
    assert not state.up_to_date("auth-service", AUTH_HASH)  # two containers: a rollout was interrupted
    assert not state.is_live("auth-service")  # neither answers to auth-service-live: the gateway cannot find it
    assert state.containers["postgres"][0].config_hash == "" and not state.up_to_date("postgres", "")
    assert not state.containers["postgres"][0].healthy and not state.containers["auth-service"][1].healthy
    assert set(state.containers) == {"auth-service", "postgres"}
    assert not state.images and state.current == "" and state.secrets_json == "" and state.tls_json == ""
    no_source = [ABSENT if line == "local" else line for line in HOST_STATE]  # the image-source file absent
    assert StackHostState().process(no_source) == replace(StackHostState().process(HOST_STATE), image_source="")


def test_a_stopped_engine_reads_as_down_not_as_an_empty_host():
    assert StackHostState().process(["--stackdeploy:engine", "down"]).engine == "down"


@pytest.mark.parametrize("output", [
    [],  # pyinfra gives process() no empty output, but nothing must read as "absent"
    ["--stackdeploy:engine", "up", "--stackdeploy:containers"],  # cut short
    ["--stackdeploy:engine", "Got permission denied while trying to connect to the Docker daemon socket"],
], ids=["empty", "cut-short", "not-an-engine-state"])
def test_host_state_refuses_output_it_does_not_know(output: list[str]):
    with pytest.raises(FactProcessError):
        StackHostState().process(output)


def test_a_host_without_docker_is_a_fresh_host():
    assert StackHostState.default().engine == "absent" and not StackHostState.default().containers


def test_engine_status_of_a_host_that_answers():
    status = DockerEngineStatus().process(["engine=up", "cli=yes", "dockerd=yes", "debootstrap=yes", "python3=yes",
                                           "systemd=no", "compose=2.40.3"])
    assert status == {"cli": True, "dockerd": True, "systemd": False, "debootstrap": True, "python3": True,
                      "engine": "up", "compose": "2.40.3"}


def test_engine_status_of_a_fresh_host():
    status = DockerEngineStatus().process(["engine=absent", "cli=no", "dockerd=no", "debootstrap=no",
                                           "python3=yes", "systemd=yes", "compose="])
    assert status["engine"] == "absent" and status["compose"] is None and status["systemd"]


def test_engine_status_refuses_a_missing_key():
    with pytest.raises(FactProcessError):
        DockerEngineStatus().process(["engine=up", "cli=yes"])


def test_registry_reachable_is_a_yes_or_a_no():
    assert RegistryReachable().process(["yes"]) is True
    assert RegistryReachable().process(["no"]) is False
    assert RegistryReachable.default() is False  # no docker CLI
    with pytest.raises(FactProcessError):
        RegistryReachable().process([])


STATUS = {
    "auth-service": {"container": AUTH_ID[:12], "image": "creatorstack/auth-service:3b390ae9d31c",
                     "size": 130333319, "state": "running", "health": "healthy", "check": "ok",
                     "seconds_to_ready": 1.78, "started_at": "2026-11-26T06:56:13.266521978Z", "current": True},
    "postgres": {"container": None, "image": None, "size": None, "state": "missing", "health": None,
                 "check": "no container", "seconds_to_ready": 0.14},
    "chromadb@data": {"container": None, "image": None, "size": None, "state": "remote", "health": None,
                      "check": "ok", "seconds_to_ready": None, "host": "data", "address": "10.0.0.2:8000"},
}


def test_stack_status_is_one_row_per_service_and_remote_dependency():
    status = StackStatus().process(json.dumps(STATUS, indent=2).splitlines())
    assert status == STATUS
    assert [name for name, row in status.items() if row["check"] != "ok"] == ["postgres"]
    assert StackStatus.default() is None  # no python3: never "all healthy"
    with pytest.raises(FactProcessError):
        StackStatus().process(["Traceback (most recent call last):"])


def record(release: str, result: str = "ok", action: str = "deploy") -> dict:
    return {"action": action, "at": 1795676202.1290598, "commit": "d75634c93ab7-dirty", "control_host": "vm",
            "id": release, "result": result, "user": "root",
            "services": {"redis": {"config_hash": "e67d4a415140", "image": "stackdeploy/redis:042d4c22203c"}}}


REDIS = {"command": ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 ping | grep -q PONG'],
         "config_hash": "e67d4a415140", "http": None, "image": "stackdeploy/redis:042d4c22203c", "port": 6379,
         "stop_grace": 20.0, "strategy": "recreate", "tcp": True, "timeout": 60.0}
MANIFEST = {"builds": ["stackdeploy/redis:042d4c22203c"], "gateway": None, "namespace": "creatorstack",
            "project": "creatorstack", "remote": {}, "services": {"redis": REDIS}, "waves": [["redis"]]}
RELEASES = {
    "current": "20261126T065636Z",
    "present": ["20261126T065611Z", "20261126T065636Z"],
    "releases": [record("20261126T042112Z", "failed"), record("20261126T065611Z"), record("20261126T065636Z")],
    "manifests": {"20261126T065611Z": MANIFEST, "20261126T065636Z": MANIFEST},
}


def test_release_history_as_the_helper_prints_it():
    history = ReleaseHistory().process(json.dumps(RELEASES, indent=2).splitlines())
    assert history == HostReleases(current="20261126T065636Z", present=("20261126T065611Z", "20261126T065636Z"),
                                   releases=tuple(RELEASES["releases"]), manifests=RELEASES["manifests"])
    assert history.manifests["20261126T065611Z"]["services"]["redis"]["strategy"] == "recreate"


def test_a_host_never_deployed_has_no_release_history():
    assert ReleaseHistory().process([ABSENT]) == HostReleases()
    assert ReleaseHistory.default() == HostReleases()  # no python3: nothing was ever deployed


HASHES = [
    "05eb43c5972f947b981986ce5f9d055162ec1b7f5546d986a1366fa2189402a1  current/compose.build.yaml",
    "f1a552ebbfb1eef8685bdd86194e0db0e037793e132324bde994b052371d044a  current/services/creator-hub/.dockerignore",
    "b982cf68b4aaa6de4c444c2c5352829d00c3dda9fc4467e041fa0f67bff8bef5  current/services/creator-hub/src/app/main.py",
    "08e8baf12029768f8ed4706c64c6919acf04f1fd7676b130a3459eb4600ecfe8  stackctl.py",
    "efb83f2a277e9f49b38efd505f5cbb93885e721b6bd16b788937c9396174c006  state/image-source",
    "25c91e6d0203d540f2696f71d7394023a6b2b85b780fbca2fe79439d901eaed2  gateway/nginx.conf",
]


def test_file_hashes_split_release_and_top_level_files():
    found = FileHashes().process(HASHES)
    assert found.release == {
        "compose.build.yaml": "05eb43c5972f947b981986ce5f9d055162ec1b7f5546d986a1366fa2189402a1",
        "services/creator-hub/.dockerignore": "f1a552ebbfb1eef8685bdd86194e0db0e037793e132324bde994b052371d044a",
        "services/creator-hub/src/app/main.py": "b982cf68b4aaa6de4c444c2c5352829d00c3dda9fc4467e041fa0f67bff8bef5",
    }
    assert set(found.top) == {"stackctl.py", "state/image-source", "gateway/nginx.conf"}


def test_nothing_deployed_has_no_file_hashes():
    assert FileHashes().process([ABSENT]) == DeployedFiles()  # no deploy directory
    assert FileHashes.default() == DeployedFiles()  # a deploy directory without any of the files
    with pytest.raises(FactProcessError):
        FileHashes().process(["sha256sum: current/compose.yaml: Permission denied"])


class FakeHost:
    """What read_fact uses of a pyinfra Host: get_fact, and the state's failed hosts."""

    def __init__(self, fails: bool):
        self.name, self.fails, self.state = "web", fails, SimpleNamespace(failed_hosts=set())

    def get_fact(self, fact: type, **arguments: object) -> object:
        if self.fails:  # what pyinfra does when the command exits non-zero
            self.state.failed_hosts.add(self)
            return fact.default()
        return StackHostState().process(HOST_STATE)


def test_a_failed_read_raises_instead_of_returning_the_empty_default():
    with pytest.raises(HostReadError, match="web: could not read the host"):
        read_fact(FakeHost(fails=True), StackHostState, deploy_dir="/opt/stack", project="stack")  # type: ignore
    state = read_fact(FakeHost(fails=False), StackHostState, deploy_dir="/opt/stack", project="stack")  # type: ignore
    assert state.current == "20261126T065636Z"


# The commands themselves, run here with a stand-in ``docker`` first on PATH (it answers from
# files, never the real engine), on a deploy directory with a space and a quote in its path.

FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$@" > "$FAKE/$1.args"
case "$1" in
  version) if [ -s "$FAKE/version-error" ]; then cat "$FAKE/version-error" >&2; exit 1; fi; echo 20.10.24+dfsg1;;
  compose) echo 2.40.3;;
  ps) cat "$FAKE/ids";;
  inspect) cat "$FAKE/inspect";;
  images) cat "$FAKE/images";;
  image) grep -qx "$3" "$FAKE/present";;
  manifest) exit 1;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """A directory holding the stand-in docker (and dockerd) and the answers it gives."""
    root = tmp_path / "fake"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "docker").write_text(FAKE_DOCKER)
    (root / "bin" / "dockerd").write_text("#!/bin/sh\nexit 1\n")
    for executable in (root / "bin").iterdir():
        executable.chmod(0o755)
    (root / "ids").write_text(f"{AUTH_ID[:12]}\n")
    (root / "inspect").write_text(HOST_STATE[3] + "\n")
    (root / "images").write_text("\n".join(HOST_STATE[6:10]) + "\n")
    (root / "present").write_text("stackdeploy/postgres:b67c5ceac670\n")
    (root / "version-error").write_text("")
    return root


@pytest.fixture
def deploy_dir(tmp_path: Path) -> Path:
    path = tmp_path / "it's my stack"
    path.mkdir()
    return path


def run(command: StringCommand, fake: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FAKE": str(fake), "PATH": f"{fake / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, text=True, env=env,
                          timeout=30, check=False)


def test_host_state_command_on_a_deployed_host(fake: Path, deploy_dir: Path):
    (deploy_dir / "state").mkdir()
    (deploy_dir / ".secrets.json").write_text('{"JWT_SECRET": "made-up"}\n')
    (deploy_dir / ".tls.json").write_text('{"ca.pem": "CA"}\n')
    (deploy_dir / "state" / "image-source").write_text("local\n")
    (deploy_dir / "releases" / "R7").mkdir(parents=True)
    (deploy_dir / "current").symlink_to("releases/R7")
    result = run(commands.host_state(str(deploy_dir), "my stack"), fake)
    assert result.returncode == 0, result.stderr
    state = StackHostState().process(result.stdout.splitlines())
    assert state.engine == "up" and state.current == "R7" and state.image_source == "local"
    assert json.loads(state.secrets_json) == {"JWT_SECRET": "made-up"}
    assert json.loads(state.tls_json) == {"ca.pem": "CA"}
    assert state.up_to_date("auth-service", AUTH_HASH) and len(state.images) == 3
    assert (fake / "ps.args").read_text().splitlines() == ["ps", "-aq", "--filter",
                                                           "label=com.docker.compose.project=my stack",
                                                           "--filter", "is-task=false"]


def test_host_state_command_on_a_fresh_host(fake: Path, tmp_path: Path):
    (fake / "ids").write_text("")
    result = run(commands.host_state(str(tmp_path / "not there yet"), "my stack"), fake)
    assert result.returncode == 0, result.stderr
    state = StackHostState().process(result.stdout.splitlines())
    assert (state.engine, state.current, state.secrets_json, state.tls_json, state.image_source) == \
        ("up", "", "", "", "")
    assert not state.containers


def test_host_state_command_when_the_engine_is_installed_but_stopped(fake: Path, deploy_dir: Path):
    (fake / "version-error").write_text("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                                        "Is the docker daemon running?\n")
    result = run(commands.host_state(str(deploy_dir), "my stack"), fake)
    assert result.returncode == 0
    assert StackHostState().process(result.stdout.splitlines()).engine == "down"


def test_an_engine_that_refuses_us_fails_the_read_instead_of_reading_as_empty(fake: Path, deploy_dir: Path):
    denied = ("permission denied while trying to connect to the Docker daemon socket at "
              "unix:///var/run/docker.sock: connect: permission denied")
    (fake / "version-error").write_text(denied + "\n")
    for command in (commands.host_state(str(deploy_dir), "my stack"), commands.engine_status(),
                    commands.registry_reachable(["python:3.11-slim"])):
        result = run(command, fake)
        assert result.returncode != 0 and denied in result.stderr


def test_a_failed_read_still_fails_inside_pyinfras_requires_command_guard(fake: Path, deploy_dir: Path):
    """pyinfra 3.10 (api/facts.py) runs a fact that declares requires_command in a subshell
    behind ``if command -v ...``: the engine's refusal must still be the exit status."""
    (fake / "version-error").write_text("permission denied\n")
    guarded = StringCommand("if command -v docker >/dev/null 2>&1; then (", commands.host_state(str(deploy_dir), "p"),
                            "); else echo '##PYINFRA_NOCMD##'; fi")
    result = run(guarded, fake)
    assert result.returncode != 0 and result.stdout == ""


def test_engine_status_command_prints_every_key(fake: Path):
    result = run(commands.engine_status(), fake)
    status = DockerEngineStatus().process(result.stdout.splitlines())
    assert status["engine"] == "up" and status["cli"] and status["dockerd"] and status["compose"] == "2.40.3"


def test_registry_reachable_command_asks_the_registry_only_for_missing_images(fake: Path):
    present = run(commands.registry_reachable(["stackdeploy/postgres:b67c5ceac670"]), fake)
    assert RegistryReachable().process(present.stdout.splitlines()) is True
    missing = run(commands.registry_reachable(["stackdeploy/postgres:b67c5ceac670", "python:3.11-slim"]), fake)
    assert RegistryReachable().process(missing.stdout.splitlines()) is False  # the stand-in registry says no
    assert (fake / "manifest.args").read_text().splitlines() == ["manifest", "inspect", "python:3.11-slim"]


def test_file_hashes_command_lists_the_current_release_and_the_top_files(deploy_dir: Path, fake: Path):
    (deploy_dir / "releases" / "R1" / "env").mkdir(parents=True)
    (deploy_dir / "releases" / "R1" / "env" / "auth service.env").write_text("A=1\n")
    (deploy_dir / "current").symlink_to("releases/R1")
    (deploy_dir / "stackctl.py").write_text("")
    result = run(commands.file_hashes(str(deploy_dir), TOP_FILES), fake)
    assert result.returncode == 0, result.stderr
    found = FileHashes().process(result.stdout.splitlines())
    assert found.release == {"env/auth service.env": hashlib.sha256(b"A=1\n").hexdigest()}
    assert found.top == {"stackctl.py": hashlib.sha256(b"").hexdigest()}


def test_file_hashes_command_without_a_deploy_directory_says_so(tmp_path: Path, fake: Path):
    result = run(commands.file_hashes(str(tmp_path / "not there yet"), TOP_FILES), fake)
    assert result.returncode == 0 and result.stdout.splitlines() == [ABSENT]


def test_file_hashes_command_fails_when_the_listing_fails(deploy_dir: Path, fake: Path):
    """Before, find ran into a pipe and its failure was lost: a half listing read as "changed"."""
    (deploy_dir / "releases" / "R1").mkdir(parents=True)
    (deploy_dir / "releases" / "R1" / "loop").symlink_to(".")
    (deploy_dir / "current").symlink_to("releases/R1")
    result = run(commands.file_hashes(str(deploy_dir), TOP_FILES), fake)
    assert result.returncode != 0 and "loop" in result.stderr


def test_release_history_command_before_and_after_the_helper_is_there(deploy_dir: Path, fake: Path):
    assert run(commands.release_history(str(deploy_dir)), fake).stdout.splitlines() == [ABSENT]
    for rel, content in helper_files().items():
        (deploy_dir / rel).write_bytes(content)
    result = run(commands.release_history(str(deploy_dir)), fake)
    assert result.returncode == 0, result.stderr
    assert ReleaseHistory().process(result.stdout.splitlines()) == HostReleases()

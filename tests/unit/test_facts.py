"""The facts' ``process()``, the way pyinfra tests its own facts: given these output lines,
expect this value. The outputs are recorded from a host running the stack (Docker 20.10,
Compose 2.40, the ``creatorstack`` project in /opt/creatorstack); secret values are made up."""

from __future__ import annotations

import json

from stackdeploy.facts import (
    ContainerState,
    DeployedFiles,
    DockerEngineStatus,
    FileHashes,
    HostReleases,
    RegistryReachable,
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
    f"auth-service {AUTH_ID} running {AUTH_IMAGE_ID} {AUTH_HASH}",
    "postgres 45794242457d3a080741f279ffecb968b7253cea290372ba602d5ffd9436295b running "
    f"{POSTGRES_IMAGE_ID} {POSTGRES_HASH}",
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
    "--stackdeploy:image-source",
    "local",
    "--stackdeploy:current",
    "releases/20261126T065636Z",
]


def test_host_state_reads_every_section():
    state = StackHostState().process(HOST_STATE)
    assert state.engine == "up"
    assert state.containers["auth-service"] == (ContainerState(AUTH_ID, "running", AUTH_HASH, AUTH_IMAGE_ID),)
    assert state.up_to_date("auth-service", AUTH_HASH) and state.up_to_date("postgres", POSTGRES_HASH)
    assert not state.up_to_date("auth-service", POSTGRES_HASH)
    assert set(state.images) == {"creatorstack/auth-service:3b390ae9d31c", "stackdeploy/postgres:b67c5ceac670",
                                 "stackdeploy/postgres:f6dc171821dc"}  # untagged images are no tag
    assert state.image_ids["stackdeploy/postgres:f6dc171821dc"].startswith("sha256:73c9a858")
    assert json.loads(state.secrets_json) == {"JWT_SECRET": "made-up", "POSTGRES_PASSWORD": "made-up-too"}
    assert state.image_source == "local" and state.current == "20261126T065636Z"


def test_host_state_sees_an_interrupted_rollout_and_a_container_without_the_label():
    state = StackHostState().process([
        "--stackdeploy:engine", "up",
        "--stackdeploy:containers",
        f"auth-service aaa running {AUTH_IMAGE_ID} {AUTH_HASH}", f"auth-service bbb running {AUTH_IMAGE_ID} hash2",
        f"postgres ccc exited {POSTGRES_IMAGE_ID} <no value>",
        f"<no value> ddd running {POSTGRES_IMAGE_ID} <no value>",  # the project's label, not compose's
        "--stackdeploy:images", "--stackdeploy:secrets", "--stackdeploy:image-source", "--stackdeploy:current",
    ])
    assert not state.up_to_date("auth-service", AUTH_HASH)  # two containers: a rollout was interrupted
    assert state.containers["postgres"][0].config_hash == "" and not state.up_to_date("postgres", "")
    assert set(state.containers) == {"auth-service", "postgres"}
    assert not state.images and state.current == "" and state.secrets_json == ""


def test_a_stopped_engine_reads_as_down_not_as_an_empty_host():
    assert StackHostState().process(["--stackdeploy:engine", "down"]).engine == "down"


def test_a_host_without_docker_is_a_fresh_host():
    assert StackHostState.default().engine == "absent" and not StackHostState.default().containers


def test_engine_status_of_a_host_that_answers():
    status = DockerEngineStatus().process(["cli=yes", "dockerd=yes", "debootstrap=yes", "python3=yes",
                                           "server=20.10.24+dfsg1", "compose=2.40.3"])
    assert status == {"cli": True, "dockerd": True, "systemd": False, "debootstrap": True, "python3": True,
                      "server": "20.10.24+dfsg1", "compose": "2.40.3"}


def test_registry_reachable_is_a_yes_or_a_no():
    assert RegistryReachable().process(["yes"]) is True
    assert RegistryReachable().process(["no"]) is False
    assert RegistryReachable.default() is False  # no docker CLI


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
    assert ReleaseHistory.default() == HostReleases()


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
    assert FileHashes.default() == DeployedFiles()

"""The host commands, rendered the way pyinfra runs them (``get_raw_value``): every value stays
one word, even a deploy directory with a space or a quote in it. The file commands also run
here, on a scratch directory, since the shell is the real judge of quoting."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api import FileUploadCommand, StringCommand

from stackdeploy import commands, images, upload

DEPLOY_DIR = "/srv/my stack"
SSH = ["ssh", "-o", "BatchMode=yes", "-i", "/home/me/my keys/id", "deploy@10.0.0.2"]


def words(command: StringCommand) -> list[str]:
    return shlex.split(command.get_raw_value())


def sh(command: StringCommand, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, text=True, cwd=cwd,
                          timeout=30, check=False)


@pytest.fixture
def deploy_dir(tmp_path: Path) -> Path:
    """A deploy directory whose path has a space, a quote and a ``$`` in it."""
    path = tmp_path / "it's my $HOME stack"
    path.mkdir()
    return path


def test_the_host_helper_is_one_word_per_argument():
    command = commands.stackctl(DEPLOY_DIR, "web 1", "lock", "acquire", "--holder", '{"user": "ana"}')
    assert words(command) == ["python3", "/srv/my stack/stackctl.py", "--host", "web 1", "lock", "acquire",
                              "--holder", '{"user": "ana"}']


def test_the_base_image_script_is_the_releases_own_copy():
    command = commands.build_base_image(DEPLOY_DIR, "R1", "stackdeploy/base:1", "http://deb.debian.org/debian")
    assert words(command) == ["sh", "/srv/my stack/releases/R1/images/build-base.sh", "stackdeploy/base:1",
                              "http://deb.debian.org/debian"]


def test_a_command_over_ssh_is_one_argument_the_remote_shell_splits_again():
    inner = commands.stackctl(DEPLOY_DIR, "db", "logs", "postgres")
    *prefix, remote = words(commands.run_over_ssh(SSH, inner))
    assert prefix == SSH
    assert shlex.split(remote) == words(inner)
    assert commands.run_over_ssh([], inner) is inner  # this machine: no ssh at all


def test_shipping_pipes_save_on_the_source_into_load_on_the_target():
    rendered = commands.ship_images(["app/a:1", "app/b:2"], SSH, []).get_raw_value()
    save, load = rendered.split(" | ")
    assert shlex.split(save) == [*SSH, "docker save app/a:1 app/b:2"]
    assert load == "docker load -q"


def test_ssh_prefix_from_inventory_data():
    data = {"ssh_user": "deploy", "ssh_port": 2222, "ssh_key": "/home/me/my keys/id",
            "ssh_known_hosts_file": "/tmp/known hosts", "ssh_strict_host_key_checking": "accept-new"}
    assert commands.ssh_prefix("web", data) == [
        "ssh", "-o", "BatchMode=yes", "-i", "/home/me/my keys/id", "-p", "2222",
        "-o", "UserKnownHostsFile=/tmp/known hosts", "-o", "StrictHostKeyChecking=accept-new", "deploy@web"]


def test_engine_start_is_one_script_even_when_a_line_ends_in_a_background_ampersand():
    rendered = commands.script(*commands.start_engine(systemd=False)).get_raw_value()
    assert rendered.splitlines()[0].endswith("</dev/null &")
    assert subprocess.run(["sh", "-n", "-c", rendered], check=False).returncode == 0  # parses


def test_staging_the_first_release_makes_a_private_env_and_copies_nothing(deploy_dir: Path):
    assert sh(commands.stage_release(str(deploy_dir), "R1")).returncode == 0
    assert [p.name for p in (deploy_dir / "releases" / "R1").iterdir()] == ["env"]
    assert (deploy_dir / "releases" / "R1" / "env").stat().st_mode & 0o777 == 0o700


def test_staging_copies_the_current_release(deploy_dir: Path):
    (deploy_dir / "releases" / "R1" / "env").mkdir(parents=True, mode=0o700)
    (deploy_dir / "releases" / "R1" / "env" / "redis.env").write_text("REDIS_PASSWORD=x\n")
    (deploy_dir / "current").symlink_to("releases/R1")
    assert sh(commands.stage_release(str(deploy_dir), "R2")).returncode == 0
    assert (deploy_dir / "releases" / "R2" / "env" / "redis.env").read_text() == "REDIS_PASSWORD=x\n"
    assert (deploy_dir / "releases" / "R2" / "env").stat().st_mode & 0o777 == 0o700


def test_mkdir_chmod_and_rm_name_exactly_the_files_given(deploy_dir: Path):
    root = str(deploy_dir)
    assert sh(commands.make_dirs(f"{root}/env", f"{root}/my dir")).returncode == 0
    for name in ("env/a b.env", "my dir/c", "keep"):
        (deploy_dir / name).write_text("x")
    assert sh(commands.set_mode(root, "600", ["env/a b.env", "my dir/c"])).returncode == 0
    assert (deploy_dir / "env" / "a b.env").stat().st_mode & 0o777 == 0o600
    assert sh(commands.remove_files(root, ["env/a b.env", "my dir/c", "gone already"])).returncode == 0
    assert sorted(str(p.relative_to(deploy_dir)) for p in deploy_dir.rglob("*")) == ["env", "keep", "my dir"]


def test_a_json_file_or_an_empty_object(deploy_dir: Path):
    path = str(deploy_dir / "builds.json")
    assert json.loads(sh(commands.json_file_or_empty(path)).stdout) == {}
    (deploy_dir / "builds.json").write_text('{"auth-service": {"ok": true}}')
    assert json.loads(sh(commands.json_file_or_empty(path)).stdout) == {"auth-service": {"ok": True}}


@pytest.mark.parametrize("command", [
    commands.host_state(DEPLOY_DIR, "my stack"), commands.engine_status(),
    commands.registry_reachable(["python:3.11-slim", "ollama/ollama"]), commands.stack_status(DEPLOY_DIR),
    commands.release_history(DEPLOY_DIR), commands.file_hashes(DEPLOY_DIR, ["stackctl.py", "state/image-source"]),
], ids=["host_state", "engine_status", "registry_reachable", "stack_status", "release_history", "file_hashes"])
def test_fact_commands_parse_and_quote_the_deploy_directory(command: StringCommand):
    rendered = command.get_raw_value()
    assert subprocess.run(["sh", "-n", "-c", rendered], check=False).returncode == 0
    assert "/srv/my stack" not in re.sub("'[^']*'", "", rendered)  # only ever inside single quotes


def test_operations_yield_the_built_commands_as_they_are():
    """pyinfra wraps only a plain str (and strips it); these reach the connector as built."""
    plan = SimpleNamespace(stack=SimpleNamespace(deploy_dir=DEPLOY_DIR, debian_mirror="http://deb.debian.org/debian"),
                           secret_files=set(), base_image="stackdeploy/base:1")
    decisions = SimpleNamespace(plan=plan, release="R2", new_release=True, base_to_build=True,
                                release_files={"compose.yaml": b"services: {}\n"}, changed_files=["compose.yaml"],
                                current_files=["compose.yaml", "old file.env"])
    staged = list(upload.staged_release._inner(decisions))
    assert [type(c) for c in staged] == [StringCommand, StringCommand, FileUploadCommand, StringCommand, StringCommand]
    assert words(staged[-1]) == ["cd", "/srv/my stack/releases/R2", "&&", "rm", "-f", "old file.env"]
    assert staged[2].dest == "/srv/my stack/releases/R2/compose.yaml"
    (base,) = images.base_image._inner(decisions)
    assert words(base)[:2] == ["sh", "/srv/my stack/releases/R2/images/build-base.sh"]


def test_the_backup_check_quotes_the_deploy_dir_and_answers_absent_without_the_helper(tmp_path: Path):
    deploy_dir = tmp_path / "my deploy's dir"
    deploy_dir.mkdir()
    result = subprocess.run(["sh", "-c", commands.backup_check(str(deploy_dir), "20261126T000000Z", None)
                             .get_raw_value()], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == {"ok": False, "error": "no backups on this host", "files": []}

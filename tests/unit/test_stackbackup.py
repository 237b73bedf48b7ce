"""The host's backup helper (files/stackbackup.py) where it needs no engine: retention, the
checks a restore makes before anything stops, and ids it refuses. Run as the host runs it:
a scratch deploy directory holding the helpers (conftest.helpers_dir)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_helper, shipped_helper


def helper(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_helper(root, "stackbackup.py", *args)


def backup(root: Path, backup_id: str, time: str, content: bytes = b"dump") -> Path:
    target = root / "backups" / backup_id
    target.mkdir(parents=True)
    (target / "postgres.dump").write_bytes(content)
    entry = {"service": "postgres", "kind": "pg_dump", "file": "postgres.dump", "size": len(content),
             "sha256": hashlib.sha256(content).hexdigest()}
    (target / "manifest.json").write_text(json.dumps({"id": backup_id, "time": time, "files": [entry]}))
    return target


def test_a_restore_check_names_a_checksum_mismatch_and_an_unknown_id(helpers_dir):
    good = backup(helpers_dir, "20261126T010000Z", "2026-11-26T01:00:00Z")
    assert json.loads(helper(helpers_dir, "check", "--id", good.name).stdout)["ok"]
    (good / "postgres.dump").write_bytes(b"dumq")
    answer = json.loads(helper(helpers_dir, "check", "--id", good.name).stdout)
    assert answer == {"ok": False, "error": "postgres.dump: missing, or its sha256 does not match the manifest",
                      "files": []}
    unknown = json.loads(helper(helpers_dir, "check", "--id", "20990101T000000Z").stdout)
    assert unknown["error"] == "no backup '20990101T000000Z' on this host (backups here: 20261126T010000Z)"


def test_retention_goes_by_the_hosts_own_times_and_spares_what_is_not_a_backup(helpers_dir):
    from_clock_behind = backup(helpers_dir, "20200101T000000Z", "2026-11-26T03:00:00Z")  # newest by the host
    older = [backup(helpers_dir, f"20261126T0{h}0000Z", f"2026-11-26T0{h}:00:00Z") for h in (1, 2)]
    (helpers_dir / "backups" / "keep-me").mkdir()
    incomplete = helpers_dir / "backups" / "20261126T040000Z"
    incomplete.mkdir()
    sys.path.insert(0, str(helpers_dir))
    try:
        import stackbackup  # the shipped copy, as the host imports it

        stackbackup.prune(keep=2, just_written="20200101T000000Z")
    finally:
        sys.path.remove(str(helpers_dir))
        sys.modules.pop("stackbackup", None)
        sys.modules.pop("stackcontract", None)
    assert sorted(p.name for p in (helpers_dir / "backups").iterdir()) == [
        "20200101T000000Z", older[1].name, "keep-me"]
    assert from_clock_behind.exists() and not incomplete.exists()


@pytest.mark.parametrize("backup_id", ["../etc", "latest", "20261126T010000Z/.."])
def test_a_backup_id_that_is_not_a_run_id_is_refused_in_one_line(helpers_dir, backup_id):
    result = helper(helpers_dir, "backup", "--id", backup_id)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"BACKUP FAILED: backup id '{backup_id}' is not of the form 20261126T031500Z"]


def volume_backup(root: Path, backup_id: str, add) -> Path:
    """A volumes backup of creator-hub whose archive ``add(tar)`` fills."""
    target = root / "backups" / backup_id
    target.mkdir(parents=True)
    path = target / "creator-uploads.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        add(archive)
    data = path.read_bytes()
    entry = {"service": "creator-hub", "kind": "volumes", "volume": "creator-uploads", "file": path.name,
             "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (target / "manifest.json").write_text(json.dumps({"id": backup_id, "time": "2026-12-02T00:00:00Z",
                                                      "files": [entry]}))
    return target


def member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, linkname
    return info


@pytest.mark.parametrize(("bad", "reason"), [
    (member("./passwd", tarfile.SYMTYPE, linkname="/etc/passwd"), "a symlink to /etc/passwd, outside the volume"),
    (member("./a/up", tarfile.SYMTYPE, linkname="../../../etc"), "a symlink to ../../../etc, outside the volume"),
    (member("./shell", mode=0o4755), "a setuid or setgid file"),
    (member("./disk", tarfile.BLKTYPE), "a device node or FIFO"),
    (member("./null", tarfile.CHRTYPE), "a device node or FIFO"),
    (member("../escape"), "a path outside the volume"),
    (member("/etc/cron.d/x"), "a path outside the volume"),
    (member("./link", tarfile.LNKTYPE, linkname="/etc/shadow"), "a hard link to /etc/shadow, outside the volume"),
], ids=["absolute-symlink", "escaping-symlink", "setuid", "block-device", "char-device", "dotdot", "absolute",
        "hardlink"])
def test_a_restore_check_refuses_an_archive_that_would_reach_outside_its_volume(helpers_dir, bad, reason):
    def add(archive: tarfile.TarFile) -> None:
        archive.addfile(member(".", tarfile.DIRTYPE, 0o755))
        archive.addfile(member("./ok", tarfile.SYMTYPE, linkname="kept.bin"))  # inside: fine
        archive.addfile(bad)

    target = volume_backup(helpers_dir, "20261202T010000Z", add)
    answer = json.loads(helper(helpers_dir, "check", "--id", target.name).stdout)
    assert answer == {"ok": False, "files": [],
                      "error": f"creator-uploads.tar.gz: refused, it holds {bad.name!r}, {reason}"}


def test_a_restore_check_follows_the_archives_own_symlinks(helpers_dir):
    def add(archive: tarfile.TarFile) -> None:
        archive.addfile(member(".", tarfile.DIRTYPE, 0o755))
        archive.addfile(member("./q", tarfile.SYMTYPE, linkname="."))  # inside, alone
        archive.addfile(member("./sub", tarfile.DIRTYPE, 0o755))
        archive.addfile(member("./sub/p", tarfile.SYMTYPE, linkname="../q/.."))  # through q: out

    target = volume_backup(helpers_dir, "20261202T030000Z", add)
    answer = json.loads(helper(helpers_dir, "check", "--id", target.name).stdout)
    assert answer["ok"] is False and "'./sub/p', a symlink to ../q/.., outside the volume" in answer["error"]


def test_a_restore_check_accepts_what_a_backup_of_a_volume_holds(helpers_dir):
    def add(archive: tarfile.TarFile) -> None:
        archive.addfile(member(".", tarfile.DIRTYPE, 0o755))
        archive.addfile(member("./sub", tarfile.DIRTYPE, 0o2775))  # setgid directory: group inheritance
        archive.addfile(member("./sub/current", tarfile.SYMTYPE, linkname="../sub"))

    target = volume_backup(helpers_dir, "20261202T020000Z", add)
    assert json.loads(helper(helpers_dir, "check", "--id", target.name).stdout)["ok"]


@pytest.fixture
def shipped_stackbackup(helpers_dir):
    """The shipped copy of the helper, imported as the host imports it."""
    with shipped_helper(helpers_dir, "stackbackup") as stackbackup:
        yield stackbackup


FREEZE_FAILURE = ("Error response from daemon: Cannot pause container c1: OCI runtime pause failed: "
                  "unable to freeze: unknown")


def fake_docker(tmp_path: Path, monkeypatch, failures: int, message: str = FREEZE_FAILURE) -> Path:
    """A docker on PATH whose ``pause`` fails ``failures`` times with ``message``, then succeeds."""
    calls = tmp_path / "calls"
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir(parents=True)
    script.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n"
                      f"n=$(grep -c '^pause' {calls})\n"
                      f"if [ \"$n\" -le {failures} ]; then echo '{message}' >&2; exit 1; fi\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return calls


def test_a_pause_the_freezer_gives_up_on_is_tried_again(shipped_stackbackup, tmp_path, monkeypatch):
    calls = fake_docker(tmp_path, monkeypatch, failures=2)
    monkeypatch.setattr(shipped_stackbackup.time, "sleep", lambda _: None)
    shipped_stackbackup.pause("c1")
    assert calls.read_text().splitlines() == ["pause c1"] * 3


def test_a_pause_fails_after_its_last_attempt_and_at_once_for_another_error(shipped_stackbackup, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(shipped_stackbackup.time, "sleep", lambda _: None)
    calls = fake_docker(tmp_path, monkeypatch, failures=99)
    with pytest.raises(shipped_stackbackup.BackupError, match="unable to freeze"):
        shipped_stackbackup.pause("c1")
    assert len(calls.read_text().splitlines()) == shipped_stackbackup.PAUSE_ATTEMPTS
    calls.unlink()
    monkeypatch.setenv("PATH", os.environ["PATH"].split(":", 1)[1])
    calls = fake_docker(tmp_path / "other", monkeypatch, failures=99, message="No such container: c1")
    with pytest.raises(shipped_stackbackup.BackupError, match="No such container"):
        shipped_stackbackup.pause("c1")
    assert len(calls.read_text().splitlines()) == 1

"""backup.py and restore.py on the test stack: a real round trip, and bad input refused before
anything is stopped."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import stat
from pathlib import Path

import pytest

from benchmarks.loadgen import register_and_login

from .conftest import GATEWAY, ROOT, STACK, STACK_CA, TEST_HOST_DATA, containers, docker, https, identities, run_pyinfra

BACKUPS = Path(TEST_HOST_DATA["deploy_dir"]) / "backups"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def newest_backup() -> str:
    return sorted(p.parent.name for p in BACKUPS.glob("*/manifest.json"))[-1]


@pytest.fixture(scope="module")
def backed_up(stack, session_tmp) -> dict:
    """A user with an upload and a document, then a backup of all of it."""
    token = register_and_login(GATEWAY, ca_file=STACK_CA)
    content = secrets.token_bytes(256 * 1024)
    upload = https.post(f"{GATEWAY}/api/creators/uploads", headers=auth(token),
                        files={"file": ("kept.bin", content)}, timeout=30).json()
    doc = {"id": f"kept-{secrets.token_hex(4)}", "text": f"a document worth keeping {secrets.token_hex(4)}"}
    assert https.post(f"{GATEWAY}/api/ai/documents", json=doc, headers=auth(token), timeout=30).status_code == 201
    result = run_pyinfra(session_tmp, "backup.py", {"backup_copy": "control"})
    assert result.returncode == 0, result.output[-4000:]
    return {"token": token, "content": content, "upload": upload, "doc": doc, "id": newest_backup()}


def test_a_backup_has_a_manifest_with_checksums_of_every_stateful_service(backed_up):
    manifest = json.loads((BACKUPS / backed_up["id"] / "manifest.json").read_text())
    assert {entry["service"] for entry in manifest["files"]} == {"postgres", "redis", "chromadb", "creator-hub"}
    for entry in manifest["files"]:
        data = (BACKUPS / backed_up["id"] / entry["file"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["release"] == (Path(TEST_HOST_DATA["deploy_dir"]) / "current").resolve().name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_copy_control_keeps_a_copy_on_the_control_machine(backed_up):
    copy = ROOT / ".deploy" / "backups" / "itest-itest" / "@local" / backed_up["id"]
    original = BACKUPS / backed_up["id"]
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in original.iterdir())
    assert all((copy / p.name).read_bytes() == p.read_bytes() for p in original.iterdir())


def test_backups_are_readable_by_their_owner_only_here_and_on_the_host(backed_up):
    copy = ROOT / ".deploy" / "backups" / "itest-itest" / "@local" / backed_up["id"]
    directories = [copy, *(p for p in copy.parents if p.is_relative_to(ROOT / ".deploy" / "backups"))]
    assert {str(d): mode(d) for d in directories} == {str(d): 0o700 for d in directories}
    assert {p.name: mode(p) for p in copy.iterdir()} == {p.name: 0o600 for p in copy.iterdir()}
    assert mode(BACKUPS) == 0o700 and mode(BACKUPS / backed_up["id"]) == 0o700


def test_an_unknown_backup_is_refused_before_anything_stops(backed_up, session_tmp):
    before = identities()
    result = run_pyinfra(session_tmp, "restore.py", {"backup": "19990101T000000Z"})
    assert result.returncode != 0
    assert "no backup '19990101T000000Z' on this host (backups here: " in result.output
    assert identities() == before


def test_a_corrupt_backup_is_refused_before_anything_stops(backed_up, session_tmp):
    corrupt = BACKUPS / "19990101T000001Z"
    shutil.copytree(BACKUPS / backed_up["id"], corrupt)
    try:
        archive = corrupt / "creator-uploads.tar.gz"
        data = bytearray(archive.read_bytes())
        data[len(data) // 2] ^= 0xFF
        archive.write_bytes(bytes(data))
        before = identities()
        result = run_pyinfra(session_tmp, "restore.py", {"backup": corrupt.name})
        assert result.returncode != 0
        assert "creator-uploads.tar.gz: missing, or its sha256 does not match the manifest" in result.output
        assert identities() == before
    finally:
        shutil.rmtree(corrupt)


def test_deleted_rows_files_documents_and_sessions_come_back(backed_up, session_tmp):
    token, upload, doc = backed_up["token"], backed_up["upload"], backed_up["doc"]
    url = f"{GATEWAY}/api/creators/uploads/{upload['id']}"
    assert https.delete(url, headers=auth(token), timeout=10).status_code == 204
    assert https.delete(f"{GATEWAY}/api/ai/documents/{doc['id']}", headers=auth(token), timeout=30).status_code == 204
    assert https.delete(f"{GATEWAY}/api/auth/me", headers=auth(token), timeout=10).status_code == 204
    assert https.get(f"{GATEWAY}/api/auth/verify", headers=auth(token), timeout=10).status_code == 401

    result = run_pyinfra(session_tmp, "restore.py", {"backup": backed_up["id"]})
    assert result.returncode == 0, result.output[-4000:]
    assert "clean up: user" in result.output  # it ended with the smoke test

    assert https.get(f"{GATEWAY}/api/auth/verify", headers=auth(token), timeout=10).status_code == 200  # user, session
    assert https.get(url, headers=auth(token), timeout=10).json()["sha256"] == hashlib.sha256(
        backed_up["content"]).hexdigest()
    assert https.get(f"{url}/content", headers=auth(token), timeout=30).content == backed_up["content"]
    matches = https.post(f"{GATEWAY}/api/ai/query", json={"text": doc["text"], "n_results": 1}, headers=auth(token),
                         timeout=30).json()["matches"]
    assert matches[0]["id"] == doc["id"] and matches[0]["text"] == doc["text"]


# The services that keep state, their volumes, and whether the volume is left owned by root when
# emptied (a volume replaced by hand). PostgreSQL is restored into a running server, so its volume
# is emptied as Docker makes a new one: owned by the image's postgres user; it starts afresh.
EMPTIED = {"creator-hub": ("creator-uploads", True), "chromadb": ("chroma-data", True),
           "redis": ("redis-data", True), "postgres": ("postgres-data", False)}


def volume_root(volume: str, image: str) -> str:
    return docker("run", "--rm", "--user", "0", "--entrypoint", "stat", "-v", f"{STACK}_{volume}:/data", image,
                  "-c", "%u:%g %a", "/data").strip()


def test_a_restore_into_emptied_volumes_leaves_every_service_able_to_write(backed_up, session_tmp):
    images = {name: info["Config"]["Image"] for name, info in containers().items()}
    before = {name: volume_root(volume, images[name]) for name, (volume, _) in EMPTIED.items()}
    docker("stop", "-t", "30", containers()["postgres"]["Id"])
    for name, (volume, to_root) in EMPTIED.items():
        reset = "; chown 0:0 /data; chmod 0755 /data" if to_root else ""
        docker("run", "--rm", "--user", "0", "--entrypoint", "sh", "-v", f"{STACK}_{volume}:/data", images[name],
               "-c", f"find /data -mindepth 1 -delete{reset}")
    docker("start", containers()["postgres"]["Id"])
    assert volume_root("creator-uploads", images["creator-hub"]).startswith("0:0 ")  # root's, as a new volume is

    result = run_pyinfra(session_tmp, "restore.py", {"backup": backed_up["id"]})
    assert result.returncode == 0, result.output[-4000:]
    assert "clean up: user" in result.output  # the smoke test, an upload included, passed
    assert {name: volume_root(volume, images[name]) for name, (volume, _) in EMPTIED.items()} == before

    token, upload = backed_up["token"], backed_up["upload"]
    url = f"{GATEWAY}/api/creators/uploads/{upload['id']}"
    assert https.get(f"{url}/content", headers=auth(token), timeout=30).content == backed_up["content"]
    again = https.post(f"{GATEWAY}/api/creators/uploads", headers=auth(token),
                       files={"file": ("after-restore.bin", b"written after the restore")}, timeout=30)
    assert again.status_code == 201, again.text
    smoke = run_pyinfra(session_tmp, "smoke.py")
    assert smoke.returncode == 0, smoke.output[-4000:]

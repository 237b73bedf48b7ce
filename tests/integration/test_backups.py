"""backup.py and restore.py on the test stack: a real round trip, and bad input refused before
anything is stopped."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from pathlib import Path

import pytest

from benchmarks.loadgen import register_and_login

from .conftest import GATEWAY, ROOT, STACK_CA, TEST_HOST_DATA, https, identities, run_pyinfra

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


def test_backup_copy_control_keeps_a_copy_on_the_control_machine(backed_up):
    copy = ROOT / ".deploy" / "backups" / "itest-itest" / "@local" / backed_up["id"]
    original = BACKUPS / backed_up["id"]
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in original.iterdir())
    assert all((copy / p.name).read_bytes() == p.read_bytes() for p in original.iterdir())


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

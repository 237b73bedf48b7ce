"""The host contract (stackdeploy/contract.py): what each side really writes has the shape the
other side reads. The helpers run as the host runs them, in a scratch deploy directory."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
from pathlib import Path

from stackdeploy import FILES_DIR, SERVICES_DIR, commands, contract
from stackdeploy.desired import helper_files
from stackdeploy.model import load
from stackdeploy.plan import build_plan
from stackdeploy.upload import HELPER_FILES
from tests.certs import certificate
from tests.conftest import run_helper

SECRETS = {"POSTGRES_PASSWORD": "pg", "REDIS_PASSWORD": "redis", "JWT_SECRET": "jwt",
           "GRAFANA_ADMIN_PASSWORD": "grafana"}


def conforms(value: object, shape: type) -> None:
    """Every key the TypedDict requires, and no key it does not declare."""
    assert isinstance(value, dict), value
    keys = set(value)
    missing = shape.__required_keys__ - keys
    unknown = keys - shape.__required_keys__ - shape.__optional_keys__
    assert not missing and not unknown, f"{shape.__name__}: missing {missing}, unknown {unknown}"


def test_the_helpers_uploaded_before_the_lock_are_the_helpers_shipped():
    assert set(HELPER_FILES) == set(helper_files())


def test_release_manifest_has_the_shape_the_helpers_read(data):
    plan = build_plan(load(data, SERVICES_DIR), "local", SECRETS, certificate=certificate())
    manifest = json.loads(plan.files[contract.RELEASE_FILE])
    conforms(manifest, contract.ReleaseManifest)
    conforms(manifest["gateway"], contract.GatewaySpec)
    for spec in manifest["services"].values():
        conforms(spec, contract.ServiceSpec)


def test_lock_audit_and_release_listing_as_stackctl_writes_them(helpers_dir):
    request: contract.LockRequest = {"user": "ana", "control_host": "laptop", "commit": "", "action": "deploy",
                                     "release": "R1"}
    assert run_helper(helpers_dir, "stackctl.py", "lock", "acquire", "--holder", json.dumps(request)).returncode == 0
    conforms(json.loads((helpers_dir / contract.LOCK_FILE).read_text()), contract.LockHolder)
    finished = run_helper(helpers_dir, "stackctl.py", "finish", "--release", "R1", "--result", "failed",
                      "--actor", json.dumps({"user": "ana", "control_host": "laptop", "commit": ""}))
    assert finished.returncode == 0, finished.stderr
    conforms(json.loads((helpers_dir / contract.AUDIT_FILE).read_text()), contract.AuditEntry)
    listing = run_helper(helpers_dir, "stackctl.py", "releases")
    assert json.loads(listing.stdout) == {"current": "", "present": [], "releases": [], "manifests": {}}
    conforms(json.loads(listing.stdout), contract.ReleaseListing)


def test_backup_manifest_check_and_list_as_stackbackup_writes_them(helpers_dir):
    target = helpers_dir / contract.BACKUPS_DIR / "20261126T010000Z"
    target.mkdir(parents=True)
    (target / "postgres.dump").write_bytes(b"dump")
    entry: contract.BackupFile = {"service": "postgres", "kind": "pg_dump", "file": "postgres.dump", "size": 4,
                                  "sha256": hashlib.sha256(b"dump").hexdigest()}
    record: contract.BackupManifest = {"id": target.name, "host": "h", "stack": "s", "release": "R1",
                                       "time": "2026-11-26T01:00:00Z", "files": [entry]}
    (target / contract.BACKUP_MANIFEST).write_text(json.dumps(record))
    ok = json.loads(run_helper(helpers_dir, "stackbackup.py", "check", "--id", target.name).stdout)
    conforms(ok, contract.BackupCheckResult)
    assert ok["ok"] and ok["files"] == [entry]
    refused = json.loads(run_helper(helpers_dir, "stackbackup.py", "check", "--id", "20990101T000000Z").stdout)
    conforms(refused, contract.BackupCheckResult)
    assert json.loads(run_helper(helpers_dir, "stackbackup.py", "list").stdout) == [record]


def test_backup_check_where_the_helper_never_ran_has_the_same_shape(tmp_path):
    result = subprocess.run(["sh", "-c", str(commands.backup_check(str(tmp_path), "20261126T010000Z", None))],
                            capture_output=True, text=True, timeout=30, check=True)
    conforms(json.loads(result.stdout), contract.BackupCheckResult)


def event_details(path: Path, function: str) -> set[str]:
    """The detail keywords of every call of ``function`` in a source file."""
    tree = ast.parse(path.read_text())
    return {keyword.arg for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == function for keyword in node.keywords if keyword.arg}


def test_every_detail_an_event_line_carries_is_declared():
    """The monitor and stackbackup.py both append to the event log: every key they write is
    one MonitorEvent declares (the readers rely on those names)."""
    declared = contract.MonitorEvent.__optional_keys__
    monitor = event_details(SERVICES_DIR / "stack-monitor" / "app" / "main.py", "log_event")
    backup = event_details(FILES_DIR / "stackbackup.py", "event")
    assert monitor and backup
    assert (monitor | backup) - declared == set()
    line = contract.monitor_event("*", "backup_ok", backup="20261126T010000Z", files=2, bytes=10)
    conforms(line, contract.MonitorEvent)

#!/usr/bin/env python3
"""Host-side backups and restores of the stack's stateful services (standard library only).

Shipped beside stackctl.py; backup.py and restore.py call it under the deploy lock, so no
deploy (and no monitor restart) runs meanwhile. What a service keeps, and how it is saved,
comes from the running release's manifest (``backup`` of each service):

    pg_dump    PostgreSQL: pg_dump in custom format, restored with pg_restore --clean
    redis_rdb  Redis: an RDB snapshot taken with BGSAVE, restored in place of the AOF
    volumes    the service's named volumes as tar.gz archives (the container paused meanwhile)

    stackbackup.py backup --id ID --keep N     back up every service of this host that has one
    stackbackup.py check --id ID [--service S]     what a restore would do, or why it cannot
    stackbackup.py restore --id ID [--service S]   check, then restore
    stackbackup.py list                        the backups on this host, as JSON

Each backup is ``<deploy_dir>/backups/<id>/`` with one file per service or volume and a
``manifest.json`` (service, host, size, sha256, the running release, the time). A restore
checks every checksum, archive and the free disk space before it stops or overwrites
anything. Results also go to the monitor's event log.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from contextlib import ExitStack
from pathlib import Path

import stackcontract as contract

ROOT = Path(__file__).resolve().parent
BACKUPS = ROOT / contract.BACKUPS_DIR
CHUNK = 1024 * 1024
SAVE_TIMEOUT = 300.0
START_TIMEOUT = 180.0
PAUSE_ATTEMPTS = 5
FREEZE_FAILURE = "unable to freeze"  # runc's cgroup v1 freezer, racing a process that is forking
# A service's password, in its container's shell: from its secret file (<NAME>_FILE), or
# from its environment where a user's own setup still passes the value there.
PG_PASSWORD = '${POSTGRES_PASSWORD:-$(cat "$POSTGRES_PASSWORD_FILE")}'
REDIS_PASSWORD = '${REDIS_PASSWORD:-$(cat "$REDIS_PASSWORD_FILE")}'
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z$")  # the run's id (runinfo.RELEASE_ID)


class BackupError(Exception):
    """Why a backup or restore cannot go on, for the person running it."""


def run(args: list[str], stdin: Path | None = None, stdout: Path | None = None, timeout: float = 3600) -> str:
    """Run a command, streaming ``stdin`` from and ``stdout`` into files when given (backups can
    be large); fail with its stderr, or when it takes longer than ``timeout``."""
    with ExitStack() as files:
        source = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        sink = files.enter_context(stdout.open("wb")) if stdout else subprocess.PIPE
        try:
            result = subprocess.run(args, stdin=source, stdout=sink, stderr=subprocess.PIPE, check=False,
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BackupError(f"{' '.join(args[:4])}...: no result within {timeout:.0f}s") from None
    if result.returncode != 0:
        raise BackupError(f"{' '.join(args[:4])}...: {result.stderr.decode(errors='replace').strip()[-400:]}")
    return result.stdout.decode() if result.stdout else ""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def current_release() -> tuple[str, contract.ReleaseManifest]:
    """The running release: its id and its manifest."""
    current = ROOT / contract.CURRENT_LINK
    return current.resolve().name, json.loads((current / contract.RELEASE_FILE).read_text())


def container(project: str, service: str) -> str:
    """The running container of ``service`` (one: stateful services do not roll)."""
    ids = run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
               "--filter", f"label=com.docker.compose.service={service}"]).split()
    if len(ids) != 1:
        raise BackupError(f"{service}: expected one running container, found {len(ids)}")
    return ids[0]


def start_and_wait(container_id: str, service: str) -> None:
    """Start a container again and wait for Docker to call it healthy (or running, for an image
    without a healthcheck): the restore is over only when the service is back."""
    run(["docker", "start", container_id])
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = json.loads(run(["docker", "inspect", "--format", "{{json .State}}", container_id]))
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy" or (health is None and state.get("Running")):
            return
        time.sleep(0.5)
    raise BackupError(f"{service}: not healthy within {START_TIMEOUT:.0f}s after the restore")


def pause(container_id: str) -> None:
    """``docker pause``, tried again when the cgroup freezer gives up: runc reports "unable to
    freeze" when a process forks while it freezes, and a moment later the same pause succeeds."""
    for attempt in range(1, PAUSE_ATTEMPTS + 1):
        try:
            run(["docker", "pause", container_id])
            return
        except BackupError as exc:
            if FREEZE_FAILURE not in str(exc) or attempt == PAUSE_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)


def accepting_connections(container_id: str, service: str) -> None:
    """Wait until PostgreSQL takes connections over TCP, as pg_restore makes them: a server
    started on an emptied volume first initialises it (on a socket only), then restarts."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            run(["docker", "exec", container_id, "sh", "-c", 'pg_isready -q -h 127.0.0.1 -U "$POSTGRES_USER"'])
            return
        except BackupError:
            if time.monotonic() > deadline:
                raise BackupError(f"{service}: not accepting connections within {START_TIMEOUT:.0f}s") from None
            time.sleep(0.5)


def image_of(container_id: str) -> str:
    return run(["docker", "inspect", "--format", "{{.Config.Image}}", container_id]).strip()


def runs_as(container_id: str) -> str:
    """``uid:gid`` the container's processes run as (its user resolved in its own image, which
    may name it), read without the container running: a service whose volume it cannot write
    may be restarting."""
    user = run(["docker", "inspect", "--format", "{{.Config.User}}", container_id]).strip() or "0"
    return run(["docker", "run", "--rm", "--user", user, "--entrypoint", "sh", image_of(container_id), "-c",
                'echo "$(id -u):$(id -g)"']).strip()


def event(service: str, name: str, **details: object) -> None:
    """A line in the monitor's event log, so a failed (scheduled) backup shows there too."""
    path = ROOT / contract.EVENTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(contract.monitor_event(service, name, **details), sort_keys=True) + "\n")


# Backup, one function per kind: each writes its files into ``target`` and returns their entries.

def described(service: str, kind: str, path: Path, volume: str | None = None) -> contract.BackupFile:
    """The manifest's entry for one file of a backup, once it is complete."""
    entry: contract.BackupFile = {"service": service, "kind": kind, "file": path.name, "size": path.stat().st_size,
                                  "sha256": sha256(path)}
    if volume is not None:
        entry["volume"] = volume
    return entry


def save_postgres(project: str, service: str, target: Path) -> list[contract.BackupFile]:
    path = target / contract.backup_files(service, "pg_dump", [])[0]
    run(["docker", "exec", container(project, service), "sh", "-c",
         f'PGPASSWORD="{PG_PASSWORD}" pg_dump -Fc -h 127.0.0.1 -U "$POSTGRES_USER" "$POSTGRES_DB"'],
        stdout=path)
    return [described(service, "pg_dump", path)]


def save_redis(project: str, service: str, target: Path) -> list[contract.BackupFile]:
    """BGSAVE, wait until Redis reports it done, then copy the snapshot out."""
    cid = container(project, service)
    cli = ["docker", "exec", cid, "sh", "-c", f'REDISCLI_AUTH="{REDIS_PASSWORD}" redis-cli "$@"', "redis-cli"]
    before = run([*cli, "LASTSAVE"]).strip()
    run([*cli, "BGSAVE"])
    deadline = time.monotonic() + SAVE_TIMEOUT
    while run([*cli, "LASTSAVE"]).strip() == before:
        if time.monotonic() > deadline:
            raise BackupError(f"{service}: BGSAVE did not finish within {SAVE_TIMEOUT:.0f}s")
        time.sleep(0.2)
    if "rdb_last_bgsave_status:ok" not in run([*cli, "INFO", "persistence"]):
        raise BackupError(f"{service}: BGSAVE failed (INFO persistence)")
    path = target / contract.backup_files(service, "redis_rdb", [])[0]
    run(["docker", "exec", cid, "cat", "/data/dump.rdb"], stdout=path)
    return [described(service, "redis_rdb", path)]


def save_volumes(project: str, service: str, volumes: list[str], target: Path) -> list[contract.BackupFile]:
    """Each volume as a tar.gz, read by a one-off container of the service's own image while the
    service is paused (a consistent copy of files it may be writing)."""
    cid = container(project, service)
    image = image_of(cid)
    paths = [target / name for name in contract.backup_files(service, "volumes", volumes)]
    pause(cid)
    try:
        for volume, path in zip(volumes, paths, strict=True):
            run(["docker", "run", "--rm", "--user", "0", "--entrypoint", "tar", "-v", f"{project}_{volume}:/data:ro",
                 image, "-C", "/data", "-czf", "-", "."], stdout=path)
    finally:
        run(["docker", "unpause", cid])
    return [described(service, "volumes", path, volume) for volume, path in zip(volumes, paths, strict=True)]


def cmd_backup(args: argparse.Namespace) -> int:
    if not ID_PATTERN.match(args.id):
        raise BackupError(f"backup id '{args.id}' is not of the form 20261126T031500Z")
    release, manifest = current_release()
    project = manifest["project"]
    target = BACKUPS / args.id
    BACKUPS.mkdir(mode=0o700, exist_ok=True)
    BACKUPS.chmod(0o700)  # whole databases, sessions and uploads: root's alone, whatever it was
    try:
        target.mkdir(mode=0o700)
    except FileExistsError:
        raise BackupError(f"backup '{args.id}' exists already on this host") from None
    entries: list[contract.BackupFile] = []
    # PostgreSQL first: a file an upload row points to is then always in the later archive.
    order = {"pg_dump": 0, "redis_rdb": 1, "volumes": 2}
    stateful = sorted(((name, spec) for name, spec in manifest["services"].items() if spec.get("backup")),
                      key=lambda item: order[item[1]["backup"]])
    try:
        for name, spec in stateful:
            started = time.monotonic()
            if spec["backup"] == "pg_dump":
                saved = save_postgres(project, name, target)
            elif spec["backup"] == "redis_rdb":
                saved = save_redis(project, name, target)
            else:
                saved = save_volumes(project, name, spec.get("volumes", []), target)
            entries += saved
            print(f"backed up {name} ({spec['backup']}) in {time.monotonic() - started:.1f}s", flush=True)
    except Exception as exc:  # whatever failed, no half backup is left to look complete
        shutil.rmtree(target, ignore_errors=True)
        event("*", "backup_failed", backup=args.id, detail=f"{type(exc).__name__}: {exc}"[:400])
        raise
    record: contract.BackupManifest = {"id": args.id, "host": socket.gethostname(), "stack": project,
                                       "release": release, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                       "files": entries}
    (target / contract.BACKUP_MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    prune(args.keep, args.id)
    event("*", "backup_ok", backup=args.id, files=len(entries), bytes=sum(e["size"] for e in entries))
    print(json.dumps(record))
    return 0


def prune(keep: int, just_written: str) -> None:
    """Keep the newest ``keep`` complete backups, by the time their manifests record (written
    by this host), never the one just written; remove what dead runs left incomplete. Only
    directories named like a backup id are touched."""
    ids = [p for p in BACKUPS.iterdir() if p.is_dir() and ID_PATTERN.match(p.name) and p.name != just_written]
    complete = sorted((p for p in ids if (p / contract.BACKUP_MANIFEST).is_file()),
                      key=lambda p: read_manifest(p).get("time", ""))
    incomplete = [p for p in ids if not (p / contract.BACKUP_MANIFEST).is_file()]
    older = complete[:max(len(complete) - (keep - 1), 0)]  # the one just written counts as one kept
    for old in [*older, *incomplete]:
        shutil.rmtree(old)


# Restore: everything is checked before anything is stopped.

def read_manifest(directory: Path) -> contract.BackupManifest:
    return json.loads((directory / contract.BACKUP_MANIFEST).read_text())


MAX_LINK_HOPS = 40  # as the kernel's own limit on following symlinks (ELOOP)


def outside(path: str, links: dict[str, str]) -> bool:
    """Whether ``path`` (relative to the volume's root) leaves it once each symlink the archive
    made before (``links``: path -> target) is followed, as the kernel would: ``q -> .`` then
    ``sub/p -> ../q/..`` climbs out, though neither text does."""
    if path.startswith("/"):
        return True
    parts: list[str] = []
    pending = [part for part in path.split("/") if part not in ("", ".")]
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if not parts:
                return True
            parts.pop()
            continue
        target = links.get("/".join([*parts, part]))
        if target is None:
            parts.append(part)
            continue
        hops += 1
        if target.startswith("/") or hops > MAX_LINK_HOPS:
            return True
        pending = [p for p in target.split("/") if p not in ("", ".")] + pending  # from the link's directory
    return False


def unsafe(member: tarfile.TarInfo, links: dict[str, str]) -> str:
    """Why GNU tar, unpacking ``member`` as root into a volume, would reach outside the volume or
    hand out privileges ("" when it would not); ``links``: the archive's symlinks before it, to
    which a symlink ``member`` is added. A backup this helper took never holds one."""
    if outside(member.name, links):
        return "a path outside the volume"
    if member.isdev():
        return "a device node or FIFO"
    if member.mode & 0o4000 or (not member.isdir() and member.mode & 0o2000):  # setgid dirs only share a group
        return "a setuid or setgid file"
    if member.issym():
        if member.linkname.startswith("/") or outside(posixpath.join(posixpath.dirname(member.name),
                                                                     member.linkname), links):
            return f"a symlink to {member.linkname}, outside the volume"
        links[posixpath.normpath(member.name)] = member.linkname  # followed from its own directory
    if member.islnk() and outside(member.linkname, links):
        return f"a hard link to {member.linkname}, outside the volume"
    return ""


def checked_backup(backup_id: str, service: str | None) -> tuple[Path, list[contract.BackupFile]]:
    """The backup's directory and the entries to restore, once every one has been checked."""
    target = BACKUPS / backup_id
    if not (target / contract.BACKUP_MANIFEST).is_file():
        known = ", ".join(sorted(p.parent.name for p in BACKUPS.glob(f"*/{contract.BACKUP_MANIFEST}"))) or "none"
        raise BackupError(f"no backup '{backup_id}' on this host (backups here: {known})")
    entries = read_manifest(target)["files"]
    if service:
        entries = [e for e in entries if e["service"] == service]
    for entry in entries:
        path = target / entry["file"]
        if not path.is_file() or sha256(path) != entry["sha256"]:
            raise BackupError(f"{entry['file']}: missing, or its sha256 does not match the manifest")
        if entry["kind"] == "volumes":
            try:
                with tarfile.open(path, "r:gz") as archive:
                    links: dict[str, str] = {}
                    for member in archive:
                        reason = unsafe(member, links)
                        if reason:
                            raise BackupError(f"{entry['file']}: refused, it holds {member.name!r}, {reason}")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise BackupError(f"{entry['file']}: not a readable archive ({exc})") from None
    need = sum(e["size"] for e in entries) * 3  # unpacked archives are larger than packed ones
    free = shutil.disk_usage(ROOT).free
    if free < need:
        raise BackupError(f"not enough free disk space for the restore: {free} bytes free, about {need} needed")
    return target, entries


def cmd_check(args: argparse.Namespace) -> int:
    """Read-only: what a restore would do here, or why it cannot (JSON, for restore.py's fact)."""
    try:
        _, entries = checked_backup(args.id, args.service)
        result: contract.BackupCheckResult = {"ok": True, "error": "", "files": entries}
    except BackupError as exc:
        result = {"ok": False, "error": str(exc), "files": []}
    print(json.dumps(result))
    return 0


def restore_postgres(project: str, service: str, path: Path) -> None:
    """In place and all or nothing: one transaction, stopped at the first error."""
    cid = container(project, service)
    accepting_connections(cid, service)
    run(["docker", "exec", "-i", cid, "sh", "-c",
         f'PGPASSWORD="{PG_PASSWORD}" pg_restore --clean --if-exists --no-owner --single-transaction '
         '--exit-on-error -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"'], stdin=path)


# Redis 7 with appendonly starts from its AOF, and from an empty dataset when there is none:
# a one-off server loads the snapshot and writes a fresh AOF from it, which the service then
# loads. It runs as root, so it works in a volume the service cannot write (a replaced one,
# owned by root), and gives the whole volume to the service's user ($OWNER) once it is done.
REDIS_LOAD_SNAPSHOT = """
set -e
chown "$OWNER" /data
rm -rf /data/.before-restore && mkdir /data/.before-restore
for f in appendonlydir appendonly.aof dump.rdb; do [ ! -e /data/$f ] || mv /data/$f /data/.before-restore/; done
back() { rm -rf /data/appendonlydir /data/dump.rdb; mv /data/.before-restore/* /data/ 2>/dev/null || true; }
trap 'back; redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true' EXIT
cat > /data/dump.rdb
redis-server --dir /data --dbfilename dump.rdb --appendonly no --port 6390 --bind 127.0.0.1 --daemonize yes
n=0; until redis-cli -p 6390 ping 2>/dev/null | grep -q PONG; do n=$((n+1)); [ $n -lt 600 ]; sleep 0.1; done
redis-cli -p 6390 config set appendonly yes >/dev/null
n=0; until redis-cli -p 6390 info persistence | grep -q aof_rewrite_in_progress:0 \\
      && redis-cli -p 6390 info persistence | grep -q aof_rewrite_scheduled:0; do
  n=$((n+1)); [ $n -lt 3000 ]; sleep 0.1
done
redis-cli -p 6390 info persistence | grep -q aof_last_bgrewrite_status:ok
redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true
trap - EXIT
rm -rf /data/.before-restore
chown -R "$OWNER" /data
"""


def restore_redis(project: str, service: str, path: Path) -> None:
    cid = container(project, service)
    image, owner = image_of(cid), runs_as(cid)
    run(["docker", "stop", cid])
    try:
        run(["docker", "run", "--rm", "-i", "--user", "0", "--env", f"OWNER={owner}", "--entrypoint", "sh",
             "--volumes-from", cid, image, "-c", REDIS_LOAD_SNAPSHOT], stdin=path)
    finally:
        start_and_wait(cid, service)


# The archive is unpacked beside the old contents first; only once that succeeded are the old
# contents removed and the new ones moved in, so a failed unpack (a full disk) loses nothing.
# The archive's own root (its "./" entry) lands on .restore-incoming, whose owner and mode then
# go to the volume's root: a volume emptied or replaced (owned by root) is the service's again.
VOLUME_SWAP = """
set -e
rm -rf /data/.restore-incoming && mkdir /data/.restore-incoming
if ! tar -C /data/.restore-incoming -xzpf -; then rm -rf /data/.restore-incoming; exit 1; fi
find /data -mindepth 1 -maxdepth 1 ! -name .restore-incoming -exec rm -rf {} +
find /data/.restore-incoming -mindepth 1 -maxdepth 1 -exec mv {} /data/ \\;
chown "$(stat -c %u:%g /data/.restore-incoming)" /data
chmod "$(stat -c %a /data/.restore-incoming)" /data
rmdir /data/.restore-incoming
"""


def restore_volume(project: str, service: str, volume: str, path: Path) -> None:
    cid = container(project, service)
    image = image_of(cid)
    run(["docker", "stop", cid])
    try:
        run(["docker", "run", "--rm", "-i", "--user", "0", "--entrypoint", "sh", "-v", f"{project}_{volume}:/data",
             image, "-c", VOLUME_SWAP], stdin=path)
    finally:
        start_and_wait(cid, service)


def cmd_restore(args: argparse.Namespace) -> int:
    target, entries = checked_backup(args.id, args.service)
    project = current_release()[1]["project"]
    for entry in entries:
        started = time.monotonic()
        path = target / entry["file"]
        if entry["kind"] == "pg_dump":
            restore_postgres(project, entry["service"], path)
        elif entry["kind"] == "redis_rdb":
            restore_redis(project, entry["service"], path)
        else:
            restore_volume(project, entry["service"], entry["volume"], path)
        print(f"restored {entry['service']} ({entry['file']}) in {time.monotonic() - started:.1f}s", flush=True)
    event("*", "restore_ok", backup=args.id, files=len(entries))
    return 0


def cmd_list(_: argparse.Namespace) -> int:
    found = [read_manifest(p.parent) for p in sorted(BACKUPS.glob(f"*/{contract.BACKUP_MANIFEST}"))]
    print(json.dumps(found))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stackbackup.py")
    verbs = parser.add_subparsers(dest="verb", required=True)
    backup = verbs.add_parser("backup")
    backup.add_argument("--id", required=True)
    backup.add_argument("--keep", type=int, default=7)
    backup.set_defaults(handler=cmd_backup)
    restore = verbs.add_parser("restore")
    restore.add_argument("--id", required=True)
    restore.add_argument("--service")
    restore.set_defaults(handler=cmd_restore)
    check = verbs.add_parser("check")
    check.add_argument("--id", required=True)
    check.add_argument("--service")
    check.set_defaults(handler=cmd_check)
    verbs.add_parser("list").set_defaults(handler=cmd_list)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except BackupError as exc:
        print(f"{args.verb.upper()} FAILED: {exc}", file=sys.stderr)
    except Exception as exc:  # one line for whoever runs it, not a traceback
        print(f"{args.verb.upper()} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

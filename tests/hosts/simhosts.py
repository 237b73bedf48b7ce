#!/usr/bin/env python3
"""Simulated Docker hosts on one machine, reached over real SSH (run as root).

    python3 tests/hosts/simhosts.py up --count 3     # create h1..h3, print their JSON
    python3 tests/hosts/simhosts.py down             # tear every one of them down
    python3 tests/hosts/simhosts.py stop --host h2   # stop one (a lost node); `up` restarts it

Each host is a network namespace with its own address on a shared bridge, its own host name,
its own mount namespace (private /opt and /etc/docker, so deploy directories and daemon
settings never mix), its own dockerd (own data root and socket) and its own sshd, whose
sessions get that host's DOCKER_HOST. pyinfra reaches them like real servers. Traffic
stays between this machine and these namespaces, except NAT for package downloads.

Traps handled here (see shared/ENVIRONMENT.md): dockerd is started with nsenter, not
`ip netns exec` (which remounts /sys and kills dockerd); privileged containers are not
possible, so these are namespaces, not Docker-in-Docker.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE = Path("/var/lib/stackdeploy-simhosts")
RUN = Path("/run/stackdeploy-simhosts")
BRIDGE = "sdhbr0"
SUBNET = "10.77.0"
PREFIX = "sdh"
READY_TIMEOUT = 60.0
# dockerd's default cgroup parent, under cgroup v1 (this machine) and v2 (cgroupfs driver).
CGROUP_PARENTS = ("/sys/fs/cgroup/pids/docker", "/sys/fs/cgroup/docker")

SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {run}/ssh_host_ed25519_key
PidFile {run}/sshd.pid
PermitRootLogin prohibit-password
AuthorizedKeysFile {state}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv DOCKER_HOST=unix://{run}/docker.sock
Subsystem sftp internal-sftp
"""

LAUNCHER = """\
set -e
hostname {name}
mount --bind {data}/opt /opt
mount --bind {data}/etc-docker /etc/docker
dockerd --data-root {data}/docker --exec-root {run}/exec --pidfile {run}/docker.pid \\
    -H unix://{run}/docker.sock >{run}/dockerd.log 2>&1 &
exec /usr/sbin/sshd -D -e -f {run}/sshd_config >{run}/sshd.log 2>&1
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def host_info(index: int) -> dict[str, str]:
    name = f"h{index}"
    return {
        "name": name,
        "netns": f"{PREFIX}{index}",
        "address": f"{SUBNET}.{10 + index}",
        "docker_host": f"unix://{RUN / name}/docker.sock",
        "data": str(STATE / name),
        "run": str(RUN / name),
    }


def ensure_network() -> None:
    if sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    # Hosts download packages (debootstrap, pip) through this machine: NAT them out.
    rules = [
        ("nat", "POSTROUTING", ["-s", f"{SUBNET}.0/24", "!", "-d", f"{SUBNET}.0/24", "-j", "MASQUERADE"]),
        ("filter", "FORWARD", ["-s", f"{SUBNET}.0/24", "-j", "ACCEPT"]),
        ("filter", "FORWARD", ["-d", f"{SUBNET}.0/24", "-m", "conntrack", "--ctstate",
                               "RELATED,ESTABLISHED", "-j", "ACCEPT"]),
    ]
    for table, chain, rule in rules:
        if sh("iptables", "-t", table, "-C", chain, *rule, check=False).returncode != 0:
            sh("iptables", "-t", table, "-I", chain, "1", *rule)


def client_key() -> Path:
    key = STATE / "id_ed25519"
    if not key.exists():
        STATE.mkdir(parents=True, exist_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        (STATE / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    return key


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


class NotReady(Exception):
    """A host's daemon did not answer in time (the message carries the end of its log)."""


def wait_for(check, what: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            tail = "\n".join(read_or_empty(log).splitlines()[-15:])
            raise NotReady(f"{what} did not come up within {READY_TIMEOUT:g}s; the end of {log}:\n{tail}")
        time.sleep(0.2)


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""  # gone meanwhile


def container_root(pid: str) -> str:
    """The root mount line of a process (its overlay names the engine's data root)."""
    return read_or_empty(Path(f"/proc/{pid}/mountinfo")).split("\n", 1)[0]


def kill_container_leftovers(info: dict[str, str]) -> None:
    """SIGKILL every process still running in one of this host's containers.

    Container processes live in their own namespaces, so killing the host's network
    namespace does not reach them, and with live-restore (provision.py) dockerd leaves
    them running when it stops. Left alone, a container would run twice once the host
    comes back (two postgres on one data directory). They are found by cgroup and told
    apart from other engines' containers by their root filesystem, which lies in this
    host's data root.
    """
    marker = f"={info['data']}/docker/"
    procs = [p for parent in CGROUP_PARENTS for p in Path(parent).rglob("cgroup.procs")]
    pids = [pid for p in procs for pid in read_or_empty(p).split() if marker in container_root(pid)]
    if pids:
        sh("kill", "-KILL", *pids, check=False)


def start_host(info: dict[str, str]) -> None:
    """Start a host, and once more from scratch if its daemons do not answer: a CI run saw
    one dockerd of three never answer, which a second start is meant to get past (the
    failure names the daemon and ends with its log, to find the cause)."""
    try:
        launch_host(info)
    except NotReady as error:
        print(f"simhosts: {error}\nsimhosts: starting {info['name']} again", file=sys.stderr)
        stop_host(info, crash=True)
        try:
            launch_host(info)
        except NotReady as again:
            raise SystemExit(f"simhosts: {again}") from None


def launch_host(info: dict[str, str]) -> None:
    data, run = Path(info["data"]), Path(info["run"])
    if sh("ip", "netns", "pids", info["netns"], check=False).stdout.strip():
        return  # already running
    kill_container_leftovers(info)  # of a run that ended without `down`
    for path in (data / "opt", data / "etc-docker", data / "docker", run):
        path.mkdir(parents=True, exist_ok=True)
    Path("/etc/docker").mkdir(exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    if sh("ip", "netns", "list").stdout.split().count(info["netns"]) == 0:
        sh("ip", "netns", "add", info["netns"])
        veth = f"{info['netns']}v"
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", info["netns"])
        sh("ip", "link", "set", veth, "master", BRIDGE)
        sh("ip", "link", "set", veth, "up")
        sh("ip", "netns", "exec", info["netns"], "sh", "-c",
           f"ip addr add {info['address']}/24 dev eth0 && ip link set eth0 up && ip link set lo up"
           f" && ip route add default via {SUBNET}.1")
    key = run / "ssh_host_ed25519_key"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    (run / "sshd_config").write_text(SSHD_CONFIG.format(address=info["address"], run=run, state=STATE))
    script = LAUNCHER.format(name=info["name"], data=data, run=run)
    subprocess.Popen(
        ["setsid", "nsenter", f"--net=/var/run/netns/{info['netns']}", "unshare", "--mount", "--uts",
         "--propagation", "private", "sh", "-c", script],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    env_docker = ["docker", "-H", info["docker_host"], "version"]
    wait_for(lambda: sh(*env_docker, check=False).returncode == 0, f"dockerd of {info['name']}",
             run / "dockerd.log")
    wait_for(lambda: port_open(info["address"], 22), f"sshd of {info['name']}", run / "sshd.log")


def stop_host(info: dict[str, str], crash: bool = False) -> None:
    """Stop a host: its containers first, cleanly (Docker then knows they were stopped on
    purpose), or, with ``crash``, everything killed as a power cut or a reboot would."""
    docker = ["docker", "-H", info["docker_host"]]
    try:  # a clean shutdown first: with live-restore, containers outlive a dockerd stop
        running = [] if crash else subprocess.run([*docker, "ps", "-q"], capture_output=True, text=True,
                                                  timeout=30, check=False).stdout.split()
        if running:
            subprocess.run([*docker, "stop", "-t", "10", *running], capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        pass  # an engine that hangs is killed below, its containers with it
    pids = sh("ip", "netns", "pids", info["netns"], check=False).stdout.split()
    if pids:
        sh("kill", "-TERM", *pids, check=False)
        deadline = time.monotonic() + 15
        while sh("ip", "netns", "pids", info["netns"], check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.2)
        leftover = sh("ip", "netns", "pids", info["netns"], check=False).stdout.split()
        if leftover:
            sh("kill", "-KILL", *leftover, check=False)
    kill_container_leftovers(info)
    sh("ip", "netns", "del", info["netns"], check=False)
    sh("ip", "link", "del", f"{info['netns']}v", check=False)
    shutil.rmtree(info["run"], ignore_errors=True)


def up(count: int) -> dict:
    for tool in ("dockerd", "sshd", "ip", "ssh-keygen", "nsenter", "unshare", "iptables"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"simhosts: '{tool}' is missing (Debian packages: docker.io, openssh-server, "
                             "openssh-client, iproute2, util-linux, iptables)")
    ensure_network()
    key = client_key()
    hosts = [host_info(i) for i in range(1, count + 1)]
    for info in hosts:
        start_host(info)
    inventory = {"ssh_key": str(key), "gateway": f"{SUBNET}.1", "hosts": hosts}
    (STATE / "hosts.json").write_text(json.dumps(inventory, indent=2) + "\n")
    return inventory


def down(purge: bool, crash: bool = False) -> None:
    listed = sh("ip", "netns", "list", check=False).stdout.split()
    for netns in [n for n in listed if n.startswith(PREFIX) and n[len(PREFIX):].isdigit()]:
        stop_host(host_info(int(netns[len(PREFIX):])), crash)
    if purge:
        shutil.rmtree(STATE, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="create (or keep) N hosts and print them as JSON")
    up_parser.add_argument("--count", type=int, default=3)
    down_parser = sub.add_parser("down", help="stop every simulated host")
    down_parser.add_argument("--purge", action="store_true", help="also delete their data (images, volumes)")
    down_parser.add_argument("--crash", action="store_true",
                             help="kill everything, as a reboot would, instead of stopping containers first")
    stop_parser = sub.add_parser("stop", help="stop one host (a lost node); `up` starts it again")
    stop_parser.add_argument("--host", required=True, help="h1, h2, ...")
    stop_parser.add_argument("--crash", action="store_true", help="kill it, as a power cut would")
    args = parser.parse_args(argv)
    if args.command == "up":
        print(json.dumps(up(args.count), indent=2))
    elif args.command == "stop":
        stop_host(host_info(int(args.host.removeprefix("h"))), args.crash)
    else:
        down(args.purge, args.crash)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

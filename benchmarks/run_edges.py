#!/usr/bin/env python3
"""What the production edges cost a deploy: the stack with and without its metrics and log
services (Prometheus, Alertmanager, the four exporters and the log store), cold and no-op.

TLS is in both variants (the gateway always serves HTTPS). Each variant is its own stack on
this machine's engine ("edges", ports 38080/38443), deployed cold (its images and build
cache removed, the debootstrap base kept) and then again with nothing changed. Writes
benchmarks/results/<date>-edges.md and edges.json. One real run per number: compare runs on
the same machine, not across machines.

    .venv/bin/python benchmarks/run_edges.py
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import run_benchmarks as bench  # noqa: E402
from stackdeploy.model import read_settings  # noqa: E402

# The services the edges add (Grafana runs in registry mode only: in this offline benchmark it is
# left out either way, but it goes with Prometheus, which it depends on).
EDGES = ("prometheus", "alertmanager", "grafana", "node-exporter", "nginx-exporter", "postgres-exporter",
         "redis-exporter", "log-store")
bench.STACK, bench.DEPLOY_DIR = "edges", "/var/tmp/stackdeploy-edges"
BASE_DATA = {"stack_name": bench.STACK, "deploy_dir": bench.DEPLOY_DIR, "gateway_port": 38080,
             "gateway_bind": "127.0.0.1", "environment": "edges",
             "tls": {"source": "self-signed", "port": 38443, "server_names": ["localhost"]}}


def run_variant(name: str, host_data: dict, work: Path) -> dict[str, float | int]:
    bench.HOST_DATA.clear()
    bench.HOST_DATA.update(host_data)
    bench.reset(keep_base=True)
    cold, _ = bench.deploy(work)
    before = bench.identities(bench.STACK)  # its default names run_benchmarks' own stack
    noop, _ = bench.deploy(work)
    after = bench.identities(bench.STACK)
    restarted, containers = len(bench.changed(before, after)), len(after)
    print(f"{name}: {containers} containers, cold {cold:.1f} s, no-op {noop:.1f} s ({restarted} restarted)",
          flush=True)
    return {"containers": containers, "cold_s": round(cold, 1), "noop_s": round(noop, 1), "noop_restarted": restarted}


def main() -> None:
    settings = read_settings(ROOT / "group_data" / "all.py")
    services = settings["services"]
    edges = sorted(EDGES)
    missing = [name for name in edges if name not in services]
    if missing:
        raise SystemExit(f"group_data/all.py has no {', '.join(missing)}: nothing to compare")
    core = {name: spec for name, spec in services.items() if name not in edges}
    core_placement = {group: [s for s in names if s not in edges] for group, names in settings["placement"].items()}
    work = Path(tempfile.mkdtemp(prefix="stackedges-"))
    results = {"machine": bench.machine(), "edge_services": edges}
    results["without"] = run_variant("without edges", {**BASE_DATA, "services": core, "placement": core_placement},
                                     work)
    results["with"] = run_variant("with edges", {**BASE_DATA, "service_overrides": {
        "log-store": {"port": 38514}, "prometheus": {"publish": 39390}}}, work)
    bench.reset(keep_base=True)
    added = {key: round(results["with"][key] - results["without"][key], 1) for key in ("cold_s", "noop_s")}
    results["added"] = added
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    (bench.RESULTS / "edges.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = "\n".join(f"| {label} | {results[key]['containers']} | {results[key]['cold_s']} | {results[key]['noop_s']} "
                     f"| {results[key]['noop_restarted']} |" for label, key in (("without edges", "without"),
                                                                                 ("with edges", "with")))
    (bench.RESULTS / f"{day}-edges.md").write_text(
        f"# What metrics and logs add to a deploy ({results['machine']['date']})\n\n"
        f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['memory']}, Docker "
        f"{results['machine']['docker']}. Offline images, debootstrap base present, one run each.\n"
        f"Edge services: {', '.join(edges)}.\n\n"
        "| stack | containers | cold deploy (s) | no-op (s) | restarted by no-op |\n|---|---|---|---|---|\n"
        f"{rows}\n\nAdded by the edges: cold {added['cold_s']} s, no-op {added['noop_s']} s.\n")
    print(f"added by the edges: cold {added['cold_s']} s, no-op {added['noop_s']} s")


if __name__ == "__main__":
    main()

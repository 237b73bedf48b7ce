#!/usr/bin/env python3
"""Benchmark a service of the user's own: examples/node-hello (Node.js, its own Dockerfile).

On the rollouts benchmark's stack ("rollbench", loopback ports of its own) with node-hello and
queue-worker added: REPEATS one-line code changes of node-hello, each built and rolled end to
end under the rollouts benchmark's load (60 req/s on /api/hello/, clients that never retry):
failed requests, the longest gap, the deploy's wall time, and whether nginx reloaded. Then the
no-op: NOOPS runs with the examples, against NOOPS without them (median wall time).

    .venv/bin/python benchmarks/run_own_services.py [--repeats N]

Prints a table and writes benchmarks/results/<date>-own-services.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import runpy
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import run_rollouts as bench  # noqa: E402
from stackdeploy.model import read_settings  # noqa: E402

REPEATS = 5
NOOPS = 3
EXAMPLE = runpy.run_path(str(ROOT / "examples" / "node-hello" / "service.py"))
WORKER = runpy.run_path(str(ROOT / "examples" / "queue-worker" / "service.py"))["SERVICE"]


def with_examples() -> dict:
    services = dict(read_settings(ROOT / "group_data" / "all.py")["services"])
    services["hello-node"], services["queue-worker"] = EXAMPLE["SERVICE"], WORKER
    routes = {**services["api-gateway"]["routes"], **EXAMPLE["ROUTE"]}
    return {"services": services, "service_overrides": {"api-gateway": {"routes": routes}}}


def changed(copy: Path) -> None:
    server = copy / "examples" / "node-hello" / "server.js"
    original = (ROOT / "examples" / "node-hello" / "server.js").read_text()
    server.write_text(original + f"\n// benchmark change {uuid.uuid4().hex}\n")


def main(repeats: int) -> int:
    bench.reset()
    workdir = Path(tempfile.mkdtemp(prefix="ownbench-"))
    copy = workdir / "project"
    bench.shutil.copytree(ROOT, copy, ignore=bench.shutil.ignore_patterns(".venv", ".deploy", ".git", "__pycache__"))
    (copy / ".deploy").symlink_to(ROOT / ".deploy")  # the bench stack's CA and secrets, kept in one place
    code, cold, output = bench.pyinfra(workdir, "deploy.py", with_examples(), copy)
    if code != 0:
        raise RuntimeError(output[-4000:])
    rows = {}
    for number in range(1, repeats + 1):
        changed(copy)
        rows[f"node-hello code change {number}"] = bench.under_load(
            lambda: bench.pyinfra(workdir, "deploy.py", with_examples(), copy), paths=["/api/hello/"])
    with_ex = [bench.pyinfra(workdir, "deploy.py", with_examples(), copy)[1] for _ in range(NOOPS)]
    code, _, output = bench.pyinfra(workdir, "deploy.py", None, copy)  # the examples removed
    if code != 0:
        raise RuntimeError(output[-4000:])
    without = [bench.pyinfra(workdir, "deploy.py", None, copy)[1] for _ in range(NOOPS)]
    bench.reset()
    write(rows, cold, statistics.median(with_ex), statistics.median(without))
    return 0 if all(row["ok"] and row["failed"] == 0 for row in rows.values()) else 1


def write(rows: dict, cold: float, noop_with: float, noop_without: float) -> None:
    header = f"{'scenario':<30} {'result':<6} {'deploy s':>8} {'requests':>8} {'failed':>6} {'gap s':>6} {'reload':>6}"
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        lines.append(f"{name:<30} {'ok' if row['ok'] else 'FAILED':<6} {row['deploy_s']:>8.1f} {row['requests']:>8} "
                     f"{row['failed']:>6} {row['gap_s']:>6.2f} {'yes' if row['reloaded'] else 'no':>6}")
    lines += ["", f"cold deploy of the stack with both examples: {cold:.1f} s",
              f"no-op, median of {NOOPS}: {noop_with:.2f} s with the examples, {noop_without:.2f} s without"]
    table = "\n".join(lines)
    print(table)
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    (bench.RESULTS / f"{day}-own-services.md").write_text(
        f"# A service of your own under load, {day}\n\nexamples/node-hello (Node.js, its own Dockerfile): each "
        "change is a one-line edit of server.js, built and rolled end to end (the deploy's wall time includes the "
        "image build), under 60 req/s on /api/hello/ from clients that never retry.\n\n"
        f"```\n{table}\n```\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help="code changes of node-hello in a row")
    sys.exit(main(parser.parse_args().repeats))

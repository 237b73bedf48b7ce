"""The deploy summary: a table for people, a JSON file for scripts and benchmarks."""

from __future__ import annotations

import json
import time
from pathlib import Path

# "check" is the deploy's own probe (HTTP 200, TCP or a command), which is what gates a run;
# "container" is Docker's view (its HEALTHCHECK runs every 10 s, so right after a start it
# may still say "starting" for a service the probe already found ready).
COLUMNS = ("service", "image", "size", "check", "container", "ready s", "build")


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size / 1_000_000:.0f} MB"


def _build(build: dict | None) -> str:
    if not build:
        return "skipped"
    return f"built {build['seconds']}s, {build['cached']}/{build['steps']} cached"


def render_table(host_name: str, rows: dict[str, dict]) -> str:
    """Fixed-width table: one line per service."""
    lines = [[
        name + (" (STAND-IN)" if row.get("standin") else ""),
        row.get("image") or "-",
        _size(row.get("size")),
        "ok" if row.get("check") == "ok" else "FAILED",
        row.get("health") or row.get("state") or "-",
        "-" if row.get("seconds_to_ready") is None else f"{row['seconds_to_ready']:.1f}",
        _build(row.get("build")),
    ] for name, row in rows.items()]
    widths = [max(len(str(c)) for c in column) for column in zip(COLUMNS, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [f"stack on {host_name}:", fmt.format(*COLUMNS), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    out += [f"  {name}: {row['check']}" for name, row in rows.items() if row.get("check") != "ok"]
    return "\n".join(out)


def write_report(path: Path, host_name: str, rows: dict[str, dict], *, run: str, release: str,
                 changed: list[str], built: list[str]) -> None:
    """Merge this host's rows into the report file (one file for all hosts of a run).

    Per host: the release it runs, the services this run (re)started or reloaded (``changed``)
    and the images it built. At the top: the run that wrote it last (``run``, one id per
    control process, even when nothing changes) and ``changed``, every ``service@host`` that
    run changed, so a script tells a no-op run from the file alone. A host of an earlier run
    keeps its entry; a new run starts the top-level list afresh."""
    path.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(path.read_text()) if path.exists() else {}
    if report.get("run") != run:
        report.update(run=run, changed=[])
    report.setdefault("hosts", {})[host_name] = {"written_at": time.time(), "release": release,
                                                 "changed": sorted(changed), "built": sorted(built), "services": rows}
    report["changed"] = sorted({*report["changed"], *(f"{name}@{host_name}" for name in changed)})
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

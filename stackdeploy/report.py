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


def write_report(path: Path, host_name: str, rows: dict[str, dict]) -> None:
    """Merge this host's rows into the report file (one file for all hosts of a run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(path.read_text()) if path.exists() else {}
    report.setdefault("hosts", {})[host_name] = {"written_at": time.time(), "services": rows}
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

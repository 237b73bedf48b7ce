"""Shared test helpers: the project's own stack definition, loaded like pyinfra does."""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stackdeploy.desired import helper_files
from stackdeploy.model import read_settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def group_data() -> dict[str, Any]:
    """group_data/all.py as a plain dict (a deep copy: tests may edit it freely)."""
    return copy.deepcopy(read_settings(ROOT / "group_data" / "all.py"))


@pytest.fixture
def data() -> dict[str, Any]:
    return group_data()


def write_out(plan, root: Path) -> Path:
    """Write a plan's files (``plan.files``: relative path -> text) under ``root``."""
    for rel, content in plan.files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return root


@pytest.fixture
def helpers_dir(tmp_path: Path) -> Path:
    """A scratch deploy directory holding the host helpers as the deploy ships them."""
    for rel, content in helper_files().items():
        (tmp_path / rel).write_bytes(content)
    return tmp_path


@contextmanager
def shipped_helper(root: Path, name: str) -> Iterator[Any]:
    """The helper module ``name`` of ``root``, imported as the host imports it (beside its own
    stackcontract.py); forgotten again afterwards, so every test gets the copy it shipped."""
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(root))
        for module in ("stackctl", "stackbackup", "stackcontract", "stackprobe"):
            sys.modules.pop(module, None)


def run_helper(root: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A helper of ``root`` run as the host runs it (its own python process, bounded in time)."""
    return subprocess.run([sys.executable, str(root / script), *args], capture_output=True, text=True, timeout=30,
                          check=False)


def yamllint(root: Path) -> str:
    """yamllint's findings, warnings included, for every YAML file under ``root`` ('' when clean),
    with the project's config for rendered files (.yamllint.yaml)."""
    result = subprocess.run([str(BIN / "yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), "-f", "parsable",
                             str(root)], capture_output=True, text=True, check=False)
    return result.stdout + result.stderr if result.returncode else ""


PLANNER = """
import json, sys
from pyinfra.api import Config, Inventory, State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory
from stackdeploy.desired import inventory_placement, load_stack
from stackdeploy.plan import build_plan
from tests.certs import certificate

secrets = {"POSTGRES_PASSWORD": "p", "REDIS_PASSWORD": "r", "JWT_SECRET": "j"}
with ctx_state.use(State(Inventory(([], {})), Config())):
    inventory = make_inventory(sys.argv[1], cwd=".")
State(inventory, Config())
out = {}
for host in inventory:
    stack = load_stack(host)
    plan = build_plan(stack, "local", secrets, inventory_placement(stack, host), host.name,
                      certificate=certificate())
    out[host.name] = {"services": list(plan.services), "files": plan.files}
print(json.dumps(out))
"""


def plans(inventory_file: str, root: Path = ROOT) -> dict[str, SimpleNamespace]:
    """Plan every host of an inventory like the CLI loads it (in a subprocess: importing
    pyinfra's CLI monkey-patches the interpreter with gevent)."""
    result = subprocess.run([sys.executable, "-c", PLANNER, inventory_file], cwd=root, capture_output=True,
                            text=True, check=True, timeout=120)
    return {name: SimpleNamespace(**plan) for name, plan in json.loads(result.stdout).items()}

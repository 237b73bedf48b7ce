"""Shared test helpers: the project's own stack definition, loaded like pyinfra does."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def yamllint(root: Path) -> str:
    """yamllint's findings, warnings included, for every YAML file under ``root`` ('' when clean),
    with the project's config for rendered files (.yamllint.yaml)."""
    result = subprocess.run([str(BIN / "yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), "-f", "parsable",
                             str(root)], capture_output=True, text=True, check=False)
    return result.stdout + result.stderr if result.returncode else ""

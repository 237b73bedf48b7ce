"""Shared test helpers: the project's own stack definition, loaded like pyinfra does."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def group_data() -> dict[str, Any]:
    """group_data/all.py as a plain dict (a deep copy: tests may edit it freely)."""
    values = runpy.run_path(str(ROOT / "group_data" / "all.py"))
    return copy.deepcopy({k: v for k, v in values.items() if not k.startswith("__")})


@pytest.fixture
def data() -> dict[str, Any]:
    return group_data()

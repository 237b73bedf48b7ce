"""The real CLI on bad input: one line, non-zero exit, no traceback, nothing touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).parent / "pyinfra"


@pytest.mark.parametrize(
    ("host_data", "expected"),
    [
        ({"service_overrides": {"auth-service": {"workers": 0}}},
         "service_overrides.auth-service.workers: must be an integer of at least 1, got 0"),
        ({"service_overrides": {"creator-hub": {"depends_on": ["creator-hub"]}}},
         "service_overrides.creator-hub.depends_on: dependency cycle: creator-hub -> creator-hub"),
        ({"service_overrides": {"redis": {"publish": 8080}}},
         "host @local: services 'redis' and 'api-gateway' both publish port 8080"),
        ({"image_sorce": "local"}, "image_sorce: unknown setting (did you mean 'image_source'?)"),
        ({"service_overrides": {"ai-engine": {"secrets": ["OPENAI_KEY"]}}},
         "service_overrides.ai-engine.secrets: secret 'OPENAI_KEY' is not declared in 'secrets'"),
    ],
)
def test_bad_input_stops_before_any_operation(tmp_path, host_data, expected):
    deploy_dir = tmp_path / "must-not-exist"
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"local = [('@local', {{**{host_data!r}, 'deploy_dir': {str(deploy_dir)!r}}})]\n")
    result = subprocess.run([str(PYINFRA), "-y", str(inventory), "deploy.py"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"invalid stack definition: {expected}" in output
    assert "Traceback" not in output
    assert "Starting operation" not in output
    assert not deploy_dir.exists()

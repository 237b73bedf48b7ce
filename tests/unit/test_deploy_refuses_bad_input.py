"""The real CLI on bad input: one line naming the user's file, non-zero exit, no traceback,
nothing touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).parent / "pyinfra"


def refusal(inventory: Path, *args: str) -> str:
    """pyinfra's output for a run that must be refused (asserted here): non-zero exit, no
    traceback, no operation started, and none of pyinfra's own error prefixes. Always --dry:
    a check that let bad input through must not deploy to this machine's engine."""
    result = subprocess.run([str(PYINFRA), "-y", "--dry", *args, str(inventory), "deploy.py"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for wording in ("Traceback", "Starting operation", "pyinfra error in", "internal exception", "bug report"):
        assert wording not in output
    return output


@pytest.mark.parametrize(
    ("host_data", "expected"),
    [
        ({"service_overrides": {"auth-service": {"workers": 0}}},
         "{inventory}: service_overrides.auth-service.workers: must be an integer of at least 1, got 0"),
        ({"service_overrides": {"creator-hub": {"depends_on": ["creator-hub"]}}},
         "{inventory}: service_overrides.creator-hub.depends_on: dependency cycle: creator-hub -> creator-hub"),
        ({"service_overrides": {"redis": {"publish": 8080}}},
         "host @local: services 'redis' and 'api-gateway' both publish port 8080"),
        ({"image_sorce": "local"}, "{inventory}: image_sorce: unknown setting (did you mean 'image_source'?)"),
        ({"image_distribution": "registry"},
         '{inventory}: registry.address: required when image_distribution is "registry"'),
        ({"service_overrides": {"ai-engine": {"secrets": ["OPENAI_KEY"]}}},
         "{inventory}: service_overrides.ai-engine.secrets: secret 'OPENAI_KEY' is not declared in 'secrets'"),
        ({"service_overrides": {"redis": {"publish": 8443}}},
         "host @local: services 'redis' and 'api-gateway' both publish port 8443"),
        ({"tls": {"source": "self-signed", "port": 8080}},
         "{inventory}: tls.port: must differ from gateway_port (8080), which answers plain HTTP with a redirect "
         "to it"),
        ({"tls": {"source": "files", "cert_file": "/nonexistent/cert.pem", "key_file": "/nonexistent/key.pem"}},
         "{inventory}: tls.cert_file: cannot read /nonexistent/cert.pem: No such file or directory"),
    ],
)
def test_bad_input_stops_before_any_operation(tmp_path, host_data, expected):
    deploy_dir = tmp_path / "must-not-exist"
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"local = [('@local', {{**{host_data!r}, 'deploy_dir': {str(deploy_dir)!r}}})]\n")
    output = refusal(inventory)
    assert f"--> {expected.format(inventory=inventory)}" in output.splitlines()
    assert not deploy_dir.exists()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # A setting of the all group in the inventory's own group_data folder (pyinfra reads it after ours).
        ({"group_data/all.py": "image_source = 'locl'\n"},
         "{tmp}/group_data/all.py: image_source: must be one of registry, local, auto, got 'locl' "
         "(did you mean 'local'?)"),
        # The group named after the inventory file.
        ({"group_data/inventory.py": "service_overrides = {'creator-hub': {'role': 'ap'}}\n"},
         "{tmp}/group_data/inventory.py: service_overrides.creator-hub.role: must be one of app, worker, "
         "stateful, gateway, monitor, logstore, got 'ap' (did you mean 'app'?)"),
        # A setting from before roles: the new spelling, in the file that holds the old one.
        ({"group_data/inventory.py": "service_overrides = {'creator-hub': {'kind': 'python'}}\n"},
         "{tmp}/group_data/inventory.py: service_overrides.creator-hub.kind: is now two settings, 'role' and "
         "'build': write \"role\": \"app\", \"build\": {{\"template\": \"python\"}} instead"),
        # Host data makes a setting of the project's group_data/all.py wrong: that file is named, relatively.
        ({"inventory.py": "local = [('@local', {'secrets': ['POSTGRES_PASSWORD', 'REDIS_PASSWORD']})]\n"},
         "group_data/all.py: services.auth-service.secrets: secret 'JWT_SECRET' is not declared in 'secrets'"),
    ],
    ids=["group_data-all", "group_data-group", "old-kind", "project-group_data"],
)
def test_the_refusal_names_the_file_that_defines_the_setting(tmp_path, files, expected):
    files = {"inventory.py": "local = ['@local']\n", **files}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    output = refusal(tmp_path / "inventory.py")
    assert f"--> {expected.format(tmp=tmp_path)}" in output.splitlines()


def test_a_setting_given_with_data_names_data(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text("local = ['@local']\n")
    output = refusal(inventory, "--data", "image_distribution=build-onse")
    assert ("--> --data: image_distribution: must be one of build-everywhere, build-once, registry, got 'build-onse' "
            "(did you mean 'build-once'?)") in output.splitlines()


@pytest.mark.parametrize(
    ("rel", "text", "expected"),
    [
        ("group_data/all.py", "stack_name = 'x'\n\nservices = {'a' 1}\n",
         "{tmp}/group_data/all.py line 3: invalid syntax. Perhaps you forgot a comma?"),
        ("group_data/all.py", "stack_name = 'x'\nimage_source = sorce\n",
         "{tmp}/group_data/all.py line 2: NameError: name 'sorce' is not defined"),
        ("inventory.py", "local = ['@local'\n", "{tmp}/inventory.py line 1: '[' was never closed"),
    ],
    ids=["syntax-error", "exception", "inventory-syntax-error"],
)
def test_a_file_that_does_not_load_is_reported_with_its_line(tmp_path, rel, text, expected):
    (tmp_path / "inventory.py").write_text("local = ['@local']\n")
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(text)
    output = refusal(tmp_path / "inventory.py")
    assert f"--> {expected.format(tmp=tmp_path)}" in output.splitlines()
    assert "Connecting to hosts" not in output

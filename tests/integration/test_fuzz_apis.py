"""schemathesis against every app's OpenAPI schema, through the test stack's gateway, with a
real token: no server error, and no response the schema does not describe.

Each run is bounded (``MAX_EXAMPLES`` per operation, a fixed seed so a failure in CI
reproduces locally with the command it prints). logout and account deletion are fuzzed
apart, with a token of their own, since their first success revokes the token.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.loadgen import register_and_login

from .conftest import GATEWAY, STACK_CA

ST = Path(sys.executable).parent / "st"
MAX_EXAMPLES = 25
SEED = 20261126
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
RUNS = {
    "auth-service": ("/api/auth", ["--exclude-path-regex", "^/(logout|me)$"]),
    "auth-service session end": ("/api/auth", ["--include-path-regex", "^/(logout|me)$"]),
    "creator-hub": ("/api/creators", []),
    "ai-engine": ("/api/ai", []),
    "channel-service": ("/api/channels", []),
}


def schemathesis(prefix: str, token: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One bounded run; in ``cwd`` since schemathesis keeps a cache of past crashes there, which
    would make a run depend on the ones before it."""
    return subprocess.run(
        [str(ST), "run", f"{GATEWAY}{prefix}/openapi.json", "--url", f"{GATEWAY}{prefix}",
         "--header", f"Authorization: Bearer {token}", "--tls-verify", STACK_CA, "--checks", ",".join(CHECKS),
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "2",
         "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "30", "--no-color", *args],
        capture_output=True, text=True, timeout=600, check=False, cwd=cwd,
    )


@pytest.mark.parametrize("run", RUNS)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(stack, run, tmp_path):
    prefix, args = RUNS[run]
    result = schemathesis(prefix, register_and_login(GATEWAY, ca_file=STACK_CA), tmp_path, *args)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert " passed" in result.stdout  # it tested something

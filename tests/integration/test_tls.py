"""TLS at the gateway of the deployed test stack, checked from outside like a client would,
and by a real scanner (sslyze): no TLS 1.0 or 1.1, only Mozilla's intermediate ciphers, a
chain valid against the stack CA kept on this machine, HSTS, HTTP/2; plain HTTP only
redirects (and answers /health); a WebSocket over wss works and its token never reaches
the gateway's access log; the key is 0600 for the gateway's nginx user."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from pathlib import Path

import httpx
import pytest
import websockets
from cryptography import x509
from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)

from benchmarks.loadgen import register_and_login, tls_context
from stackdeploy import contract
from stackdeploy.composefile import INTERMEDIATE_CIPHERS

from .conftest import GATEWAY, GATEWAY_HTTP, ROOT, STACK_CA, TEST_HOST_DATA, containers, deploy, docker, https

HOST, PORT = "127.0.0.1", TEST_HOST_DATA["tls"]["port"]
STORE = Path(STACK_CA).parent
PROTOCOLS = ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3")


@pytest.fixture(scope="module")
def scan(stack):
    """One sslyze scan of the gateway's HTTPS port: every protocol's cipher suites, the
    certificate against the stack CA, the HTTP headers."""
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname="localhost", port=PORT, ip_address=HOST),
        network_configuration=ServerNetworkConfiguration(tls_server_name_indication="localhost"),
        scan_commands={ScanCommand.CERTIFICATE_INFO, ScanCommand.HTTP_HEADERS,
                       *(getattr(ScanCommand, f"{p.upper()}_CIPHER_SUITES") for p in PROTOCOLS)},
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(STACK_CA))),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    return result.scan_result


def attempt(scan, name: str):
    found = getattr(scan, name)
    assert found.status == ScanCommandAttemptStatusEnum.COMPLETED, (name, found.error_trace)
    return found.result


def test_only_tls_1_2_and_1_3_are_accepted(scan):
    accepted = {p: [c.cipher_suite.openssl_name for c in attempt(scan, f"{p}_cipher_suites").accepted_cipher_suites]
                for p in PROTOCOLS}
    assert accepted["ssl_2_0"] == accepted["ssl_3_0"] == accepted["tls_1_0"] == accepted["tls_1_1"] == []
    assert accepted["tls_1_2"] and accepted["tls_1_3"]


def test_no_weak_cipher_is_accepted(scan):
    tls12 = {c.cipher_suite.openssl_name for c in attempt(scan, "tls_1_2_cipher_suites").accepted_cipher_suites}
    assert tls12 <= set(INTERMEDIATE_CIPHERS.split(":")), tls12  # forward secret AEAD suites only
    assert all(("GCM" in name or "CHACHA20" in name) and name.startswith(("ECDHE-", "DHE-")) for name in tls12)
    tls13 = {c.cipher_suite.name for c in attempt(scan, "tls_1_3_cipher_suites").accepted_cipher_suites}
    assert tls13 <= {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


def test_the_chain_is_valid_against_the_stack_ca(scan):
    (deployment,) = attempt(scan, "certificate_info").certificate_deployments
    custom = [v for v in deployment.path_validation_results if v.trust_store.path == Path(STACK_CA)]
    assert custom and custom[0].was_validation_successful, [v.validation_error for v in custom]
    assert deployment.received_chain_has_valid_order
    served = deployment.received_certificate_chain[0]
    assert served == x509.load_pem_x509_certificate((STORE / "server.pem").read_bytes())  # the kept one


def test_hsts_is_sent(scan):
    hsts = attempt(scan, "http_headers").strict_transport_security_header
    assert hsts is not None and hsts.max_age >= 31536000


def test_http2_is_offered():
    context = tls_context(STACK_CA)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((HOST, PORT), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        assert conn.selected_alpn_protocol() == "h2"
        assert conn.version() in ("TLSv1.2", "TLSv1.3")


def test_plain_http_only_redirects_but_health_answers(stack):
    assert httpx.get(f"{GATEWAY_HTTP}/health", timeout=10).status_code == 200  # Docker's own check
    for method in ("GET", "POST"):
        moved = httpx.request(method, f"{GATEWAY_HTTP}/api/auth/health?x=1", timeout=10)
        assert moved.status_code == 308
        assert moved.headers["location"] == f"https://{HOST}:{PORT}/api/auth/health?x=1"
    assert https.get(f"{GATEWAY}/api/auth/health", timeout=10).status_code == 200


def test_a_websocket_over_wss_works_and_its_token_is_not_logged(stack):
    token = register_and_login(GATEWAY, ca_file=STACK_CA)
    channel = f"tls-{token[-8:]}"

    async def exchange() -> dict:
        url = f"{GATEWAY.replace('https://', 'wss://')}/api/channels/ws/{channel}?token={token}"
        tls = tls_context(STACK_CA)
        async with websockets.connect(url, ssl=tls) as first, websockets.connect(url, ssl=tls) as second:
            for ws in (first, second):
                await asyncio.wait_for(ws.recv(), 10)  # joined
            await first.send("over tls")
            return json.loads(await asyncio.wait_for(second.recv(), 10))

    assert asyncio.run(exchange())["text"] == "over tls"
    log = docker("logs", containers()["api-gateway"]["Id"])
    assert f"/api/channels/ws/{channel}" in log  # the request is logged ...
    assert token not in log and "token=" not in log  # ... without its query string


def test_the_key_is_0600_for_the_gateways_nginx_and_kept_out_of_reports(stack):
    key = Path(TEST_HOST_DATA["deploy_dir"]) / contract.GATEWAY_DIR / contract.TLS_KEY
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_uid == contract.GATEWAY_UID
    assert stat.S_IMODE((STORE / "server-key.pem").stat().st_mode) == 0o600
    secret = key.read_text()
    assert secret == (STORE / "server-key.pem").read_text()
    assert secret not in (ROOT / ".deploy" / "last-report.json").read_text()
    assert secret.splitlines()[1] not in stack.output  # a line of the key's base64 is not in the deploy's log
    image = containers()["api-gateway"]["Config"]["Image"]
    history = docker("image", "history", "--no-trunc", image)
    assert "PRIVATE KEY" not in history


def test_a_redeploy_reuses_the_certificate(stack, session_tmp):
    before = (STORE / "server.pem").read_bytes(), (STORE / "ca.pem").read_bytes()
    result = deploy(session_tmp)
    assert result.returncode == 0, result.output[-4000:]
    assert ((STORE / "server.pem").read_bytes(), (STORE / "ca.pem").read_bytes()) == before
    assert "gateway certificate (self-signed): kept" in result.output

"""The operator's smoke test: the real user journey through one gateway, step by step.

Runs on the control machine against a gateway's published HTTPS address, the way a client
would, verifying its certificate (against the stack CA kept on this machine, and the
system's CAs): a throwaway user registers, logs in, uploads a file and reads it back, stores and
queries a document, talks on a WebSocket channel (and asks ai-engine once), logs out, then
everything it created is deleted again. Each step prints one line with its latency; the
first failure stops the journey, names the step and the service, and cleanup still runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from pyinfra import host, logger
from pyinfra.api import Host, State, deploy
from pyinfra.operations import python

from stackdeploy import STATE_DIR, retryafter
from stackdeploy.model import Stack
from stackdeploy.tls import CA_CERT, client_context, gateway_address, store_of

TIMEOUT_SECONDS = 30.0


class SmokeFailure(Exception):
    """A step of the journey failed: which step, which service, and what was seen."""

    def __init__(self, step: str, service: str, detail: str) -> None:
        super().__init__(f"smoke test failed at step '{step}' ({service}): {detail}")
        self.step, self.service, self.detail = step, service, detail


@dataclass
class Journey:
    """One run of the journey against ``base_url`` (https://host:port of a gateway).
    ``server_name``: the name to verify the certificate for, when not the URL's host."""

    base_url: str
    report: Callable[[str], None] = print
    ca_file: str | None = None
    server_name: str | None = None
    user: dict[str, str] = field(default_factory=lambda: {
        "username": f"smoke-{secrets.token_hex(6)}", "password": secrets.token_urlsafe(18)})
    channel: str = field(default_factory=lambda: f"smoke-{secrets.token_hex(6)}")
    token: str = ""
    created: dict[str, str] = field(default_factory=dict)  # what cleanup must delete

    def step(self, name: str, service: str, action: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            result = action()
        except SmokeFailure:
            raise
        except Exception as exc:  # any error is this step failing
            raise SmokeFailure(name, service, f"{type(exc).__name__}: {exc}") from exc
        self.report(f"ok   {name:<28} {service:<16} {(time.perf_counter() - started) * 1000:7.0f} ms")
        return result

    def call(self, client: httpx.Client, step: str, service: str, method: str, path: str, expect: int,
             **kwargs: Any) -> httpx.Response:
        """One request (a 429 waited out, see ``retryafter``); anything but ``expect`` fails the
        step with the status and body."""
        extensions = {"sni_hostname": self.server_name} if self.server_name else None
        response = retryafter.request(client, method, path, extensions=extensions, **kwargs)
        if response.status_code != expect:
            raise SmokeFailure(step, service, f"{method} {path}: HTTP {response.status_code}, expected {expect}: "
                                              f"{response.text[:200]}")
        return response

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=TIMEOUT_SECONDS, trust_env=False,
                          verify=client_context(self.ca_file)) as client:
            try:
                self._journey(client)
            except SmokeFailure:
                try:  # the journey's failure is the news; a cleanup that fails too is only reported
                    self._cleanup(client)
                except SmokeFailure as exc:
                    self.report(f"FAIL {exc}")
                raise
            self._cleanup(client)

    def _journey(self, client: httpx.Client) -> None:
        self.step("register", "auth-service",
                  lambda: self.call(client, "register", "auth-service", "POST", "/api/auth/register", 201,
                                    json=self.user))
        self.created["user"] = self.user["username"]
        self._login(client)
        self.step("verify token", "auth-service",
                  lambda: self.call(client, "verify token", "auth-service", "GET", "/api/auth/verify", 200,
                                    headers=self.auth))
        content = secrets.token_bytes(64 * 1024)
        upload = self.step("upload a file", "creator-hub", lambda: self.call(
            client, "upload a file", "creator-hub", "POST", "/api/creators/uploads", 201, headers=self.auth,
            files={"file": ("smoke.bin", content)}).json())
        self.created["upload"] = upload["id"]
        self.step("read the upload back", "creator-hub", lambda: self._same_bytes(client, upload["id"], content))
        document = self.step("store a document", "ai-engine", lambda: self.call(
            client, "store a document", "ai-engine", "POST", "/api/ai/documents", 201, headers=self.auth,
            json={"id": f"smoke-{secrets.token_hex(6)}", "text": f"smoke test document {self.channel}"}).json())
        self.created["document"] = document["id"]
        self.step("query the document", "ai-engine", lambda: self._finds(client, document["id"]))
        self.step("websocket message", "channel-service", lambda: asyncio.run(self._exchange("hello from smoke")))
        self.step("/ai message", "channel-service", lambda: asyncio.run(self._exchange("/ai say hello", ai=True)))
        self.created["channel"] = self.channel
        self.step("log out", "auth-service", lambda: self._logout(client))

    def _login(self, client: httpx.Client, step: str = "log in") -> None:
        response = self.step(step, "auth-service", lambda: self.call(
            client, step, "auth-service", "POST", "/api/auth/login", 200, json=self.user))
        self.token = response.json()["access_token"]

    def _same_bytes(self, client: httpx.Client, upload_id: str, content: bytes) -> None:
        meta = self.call(client, "read the upload back", "creator-hub", "GET", f"/api/creators/uploads/{upload_id}",
                         200, headers=self.auth).json()
        body = self.call(client, "read the upload back", "creator-hub", "GET",
                         f"/api/creators/uploads/{upload_id}/content", 200, headers=self.auth).content
        if meta["sha256"] != hashlib.sha256(content).hexdigest() or body != content:
            raise SmokeFailure("read the upload back", "creator-hub", "the file came back different")

    def _finds(self, client: httpx.Client, doc_id: str) -> None:
        matches = self.call(client, "query the document", "ai-engine", "POST", "/api/ai/query", 200,
                            headers=self.auth, json={"text": f"smoke test document {self.channel}",
                                                     "n_results": 1}).json()["matches"]
        if not matches or matches[0]["id"] != doc_id:
            raise SmokeFailure("query the document", "ai-engine", f"the stored document was not found: {matches}")

    async def _exchange(self, text: str, ai: bool = False) -> None:
        """Two clients on the channel: the second receives what the first sends (and, for
        ``/ai``, ai-engine's answer after it)."""
        url = self.base_url.replace("http", "ws", 1) + f"/api/channels/ws/{self.channel}?token={self.token}"
        tls = {"ssl": client_context(self.ca_file), "server_hostname": self.server_name}
        async with websockets.connect(url, **tls) as first, websockets.connect(url, **tls) as second:
            for ws in (first, second):
                await asyncio.wait_for(ws.recv(), TIMEOUT_SECONDS)  # "joined"
            await first.send(text)
            senders = []
            for _ in range(2 if ai else 1):
                senders.append(json.loads(await asyncio.wait_for(second.recv(), TIMEOUT_SECONDS))["from"])
            expected = [self.user["username"], "ai-engine"] if ai else [self.user["username"]]
            if senders != expected:
                raise SmokeFailure("/ai message" if ai else "websocket message", "channel-service",
                                   f"expected messages from {expected}, got {senders}")

    def _logout(self, client: httpx.Client) -> None:
        self.call(client, "log out", "auth-service", "POST", "/api/auth/logout", 204, headers=self.auth)
        self.call(client, "log out", "auth-service", "GET", "/api/auth/verify", 401, headers=self.auth)

    def _cleanup(self, client: httpx.Client) -> None:
        """Delete what the journey created, whatever step it reached (a fresh login, since the
        journey ends logged out)."""
        if "user" not in self.created:
            return
        self._login(client, "clean up: log in")
        deletions = [("upload", "creator-hub", f"/api/creators/uploads/{self.created.get('upload')}", 204),
                     ("document", "ai-engine", f"/api/ai/documents/{self.created.get('document')}", 204),
                     ("channel", "channel-service", f"/api/channels/channels/{self.channel}/messages", 200),
                     ("user", "auth-service", "/api/auth/me", 204)]
        for kind, service, path, expect in deletions:
            if kind in self.created or kind == "channel":
                step = f"clean up: {kind}"
                self.step(step, service, lambda s=step, v=service, p=path, e=expect: self.call(
                    client, s, v, "DELETE", p, e, headers=self.auth))


def gateway_url(stack: Stack) -> str:
    """Where this machine reaches the gateway of the current host over HTTPS (see
    ``tls.gateway_address``)."""
    return f"https://{gateway_address(stack, host.name, host.data.get('private_address'))}:{stack.tls.port}"


def _run_journey(state: State, host: Host, url: str, ca_file: str | None, server_name: str | None) -> bool:
    """The journey as a pyinfra callback. Taking ``state`` and ``host`` makes pyinfra use the
    return value: False fails the host with the one red line below instead of a traceback."""
    logger.info(f"    [{host.name}] smoke test through {url}")
    try:
        Journey(url, report=lambda line: logger.info(f"    [{host.name}] {line}"), ca_file=ca_file,
                server_name=server_name).run()
    except SmokeFailure as exc:
        host.log_styled(f"SMOKE TEST FAILED: step '{exc.step}', service {exc.service}: {exc.detail}", fg="red",
                        log_func=logger.error)
        return False
    return True


@deploy("Smoke test")
def smoke_test(stack: Stack, services_here: list[str]) -> None:
    """The user journey through this host's gateway, when it runs one."""
    if any(stack.services[name].role == "gateway" for name in services_here):
        ca = store_of(stack, STATE_DIR) / CA_CERT
        # A stack-CA certificate covers the address; the user's or certbot's, the server names.
        server_name = None if stack.tls.source == "self-signed" else stack.tls.server_names[0]
        python.call(name="The user journey through the gateway", function=_run_journey, url=gateway_url(stack),
                    ca_file=str(ca) if ca.exists() else None, server_name=server_name)

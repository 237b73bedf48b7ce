"""Property tests of what the apps parse, through the test stack's gateway: upload filenames,
bearer tokens, channel messages. Whatever a client sends, the answer is a success or a clear
4xx, never a server error, and nothing is left half-done. Bounded in examples and time."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.loadgen import register_and_login, tls_context

from .conftest import GATEWAY, STACK_CA, containers, docker, https

WS = GATEWAY.replace("https://", "wss://")
BOUNDED = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def token(stack) -> str:
    return register_and_login(GATEWAY, ca_file=STACK_CA)


def upload_raw(token: str, filename: bytes) -> httpx.Response:
    """A multipart upload whose filename bytes go on the wire as given (httpx would escape them)."""
    boundary = "stackdeploy-property-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="'.encode() + filename
            + f'"\r\nContent-Type: text/plain\r\n\r\npayload\r\n--{boundary}--\r\n'.encode())
    return https.post(f"{GATEWAY}/api/creators/uploads", content=body, timeout=30,
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": f"multipart/form-data; boundary={boundary}"})


def test_any_filename_is_stored_as_sent_or_refused_leaving_nothing(token):
    hub = containers()["creator-hub"]["Id"]
    before = set(docker("exec", hub, "ls", "/data/uploads").split())
    stored: set[str] = set()

    @BOUNDED
    @given(name=st.text(max_size=300).map(lambda s: s.replace('"', "").encode()))
    def check(name: bytes) -> None:
        response = upload_raw(token, name)
        assert response.status_code in (201, 400, 422), response.text
        if response.status_code == 201:
            stored.add(response.json()["id"])

    check()
    after = set(docker("exec", hub, "ls", "/data/uploads").split())
    assert after - before == stored  # every file on disk is an upload that answered 201


@BOUNDED
@given(header=st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300).map(str.strip),
    st.lists(st.text(alphabet="ABCxyz012-_=", max_size=40), min_size=3, max_size=3).map(".".join)
    .map(lambda t: f"Bearer {t}"),
))
def test_any_authorization_header_is_a_401_never_a_crash(stack, header):
    response = https.get(f"{GATEWAY}/api/auth/verify", headers={"Authorization": header}, timeout=10)
    assert response.status_code == 401, response.text


def test_any_channel_message_is_posted_or_refused_to_its_sender_and_the_socket_stays_open(token):
    username = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["name"]
    async def exchange(ws, text: str) -> dict:
        await ws.send(text)
        return json.loads(await asyncio.wait_for(ws.recv(), 10))

    async def run_all(texts: list[str]) -> list[tuple[str, dict]]:
        async with websockets.connect(f"{WS}/api/channels/ws/properties?token={token}", max_size=2**22,
                                      ssl=tls_context(STACK_CA)) as ws:
            await asyncio.wait_for(ws.recv(), 10)  # joined
            return [(text, await exchange(ws, text)) for text in texts]

    @BOUNDED
    @given(texts=st.lists(st.text(max_size=12_000).filter(lambda t: not t.startswith("/ai ")), min_size=1,
                          max_size=5))
    def check(texts: list[str]) -> None:
        for text, answer in asyncio.run(run_all(texts)):
            if "error" in answer:  # refused: told to the sender, the socket still open
                assert answer["from"] == "channel-service" and (len(text) > 10_000 or "\x00" in text), answer
            else:  # posted: the channel (this socket included) receives it unchanged, from its sender
                assert answer == {"from": username, "text": text}

    check()

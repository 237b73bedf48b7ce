"""A client of the gateway waits out a 429 as its Retry-After asks, within a bound."""

from __future__ import annotations

import httpx

from stackdeploy import retryafter


def client_answering(*answers: httpx.Response) -> tuple[httpx.Client, list[str]]:
    sent: list[str] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return queue.pop(0)

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://gateway"), sent


def test_a_429_is_sent_again_after_its_retry_after(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(retryafter.time, "sleep", slept.append)
    client, sent = client_answering(httpx.Response(429, headers={"Retry-After": "1"}),
                                    httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200))
    assert retryafter.request(client, "POST", "/api/auth/login").status_code == 200
    assert sent == ["/api/auth/login"] * 3 and slept == [1.0, 2.0]


def test_a_wait_past_the_bound_or_without_a_number_is_the_callers_429(monkeypatch):
    monkeypatch.setattr(retryafter.time, "sleep", lambda _: None)
    client, sent = client_answering(httpx.Response(429, headers={"Retry-After": "300"}))
    assert retryafter.request(client, "POST", "/login").status_code == 429 and len(sent) == 1
    client, sent = client_answering(httpx.Response(429, headers={"Retry-After": "Wed, 02 Dec 2026 10:00:00 GMT"}))
    assert retryafter.request(client, "POST", "/login").status_code == 429 and len(sent) == 1
    client, sent = client_answering(*[httpx.Response(429, headers={"Retry-After": "0"})] * 200)
    assert retryafter.request(client, "POST", "/login").status_code == 429 and len(sent) <= 101  # 10 s / 0.1 s
    client, sent = client_answering(httpx.Response(429, headers={"Retry-After": "nan"}))
    assert retryafter.request(client, "POST", "/login").status_code == 429 and len(sent) == 1
    client, sent = client_answering(httpx.Response(401))
    assert retryafter.request(client, "POST", "/login").status_code == 401 and len(sent) == 1

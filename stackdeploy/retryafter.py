"""Requests to the stack's gateway that wait out a 429 for as long as its Retry-After asks.

The gateway limits logins and sign-ups per client address, and auth-service answers 429 to a
username that failed too often. The smoke test and the benchmarks log in from one address,
often right after one another: they wait as a well-behaved client would, within a bound.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

MAX_WAIT_SECONDS = 10.0
MIN_WAIT_SECONDS = 0.1  # a Retry-After of 0 still waits: the bound on the waits then bounds the sends


def seconds_to_wait(response: httpx.Response) -> float | None:
    """Retry-After of a 429, in seconds; None for any other answer, or a header that is no
    (finite) number of seconds."""
    if response.status_code != 429:
        return None
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return max(seconds, MIN_WAIT_SECONDS) if math.isfinite(seconds) else None


def request(client: httpx.Client, method: str, path: str, *, max_wait: float = MAX_WAIT_SECONDS,
            **kwargs: Any) -> httpx.Response:
    """``client.request``, sent again after each 429's Retry-After while the waits stay within
    ``max_wait`` seconds in all; the last answer otherwise (a 429 the caller reports)."""
    waited = 0.0
    while True:
        response = client.request(method, path, **kwargs)
        delay = seconds_to_wait(response)
        if delay is None or waited + delay > max_wait:
            return response
        time.sleep(delay)
        waited += delay

"""What "ready" means, and the one loop that waits for it (standard library only).

Shipped beside stackctl.py on every host, and beside wait-for-services.py in every Python
service's image (the monitor's too), so the deploy's gates, ``stackctl.py status`` and a
container waiting for its dependencies judge a service the same way:

    not_ready(address, port, http, tcp)   None when it answers, else why not (one line)
    poll(checks, deadlines, fatal)        every check every POLL_SECONDS, until ready or past its deadline
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.client import HTTPException

POLL_SECONDS = 0.2
CONNECT_TIMEOUT = 1.0  # seconds for a TCP connect
HTTP_TIMEOUT = 2.0  # seconds for an HTTP answer
BODY_SHOWN = 300  # bytes of a refusing answer's body kept in the reason


def not_ready(address: str, port: int, http: str | None, tcp: bool = True) -> str | None:
    """None when ``address:port`` answers (a TCP connect when ``tcp``, and HTTP 200 on the path
    ``http`` when given), else why not."""
    try:
        if tcp:
            with socket.create_connection((address, port), timeout=CONNECT_TIMEOUT):
                pass
        if http:
            url = f"http://{address}:{port}{http}"
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:  # http only
                if response.status != 200:
                    return f"GET {http} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"GET {http} answered {exc.code}: {exc.read(BODY_SHOWN).decode(errors='replace')}"
    except (OSError, HTTPException, ValueError) as exc:
        return f"{address}:{port} not answering: {exc or type(exc).__name__}"
    return None


def poll(checks: dict[str, Callable[[], str | None]], deadlines: dict[str, float],
         fatal: Callable[[str], str | None] = lambda _key: None) -> tuple[dict[str, float], dict[str, str]]:
    """The one readiness loop: call every check every POLL_SECONDS until each is ready (returns
    None), fatal (``fatal(key)`` says why), or past its deadline (monotonic). Returns (seconds to
    ready, why each other one failed)."""
    started = time.monotonic()
    ready: dict[str, float] = {}
    failed: dict[str, str] = {}
    while len(ready) + len(failed) < len(checks):
        for key, check in checks.items():
            if key in ready or key in failed:
                continue
            reason = check()
            if reason is None:
                ready[key] = round(time.monotonic() - started, 2)
                continue
            why = fatal(key)
            if why or time.monotonic() > deadlines[key]:
                failed[key] = why or f"not ready within {deadlines[key] - started:.0f}s: {reason}"
        if len(ready) + len(failed) < len(checks):
            time.sleep(POLL_SECONDS)
    return ready, failed

"""Bounded load clients that prove a deploy is zero-downtime, as seen from outside the gateway.

A deploy can only claim "zero downtime" if traffic that was flowing during the rollout saw
no errors. Integration tests and the rollout benchmark therefore wrap a deploy in:

- `HttpLoad`: steady GET traffic to health paths through the gateway, on kept-alive
  connections (which survive an nginx reload on old workers) and on a new TCP connection
  per request (which always reach the current workers and upstream addresses), so both
  ways a client can be broken by a rollout are covered;
- `SocketWatch`: long-lived WebSocket connections that record how the server closed them
  and reconnect at once, because a rollout that restarts channel-service drops sockets
  even when every HTTP request succeeds;
- `register_and_login`: a throwaway account whose token opens those sockets.

Over HTTPS (``https://``, ``wss://``) each verifies the gateway's certificate against the
system's CAs and ``ca_file`` (the stack CA, ``.deploy/tls/<stack>-<environment>/ca.pem``).

Every run is bounded in time and volume and may only target loopback or the simulated
hosts' subnet (10.77.0.x), so a mistyped URL can never load an outside machine.

    with HttpLoad("https://127.0.0.1:18443", ["/api/auth/health"], ca_file=STACK_CA) as load:
        deploy()
    assert load.result.failed == 0, load.result.summary()
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Generic, Self, TypeVar
from urllib.parse import urlsplit

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from stackdeploy import retryafter
from stackdeploy.tls import client_context as tls_context

ALLOWED_SUBNET = ipaddress.ip_network("10.77.0.0/24")
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_RECORDED_HTTP_FAILURES = 50
MAX_RECORDED_CONNECT_FAILURES = 20
ABNORMAL_CLOSURE = 1006  # RFC 6455: the connection dropped without a close frame
REASON_MAX_CHARS = 200

ResultT = TypeVar("ResultT")


def check_target(url: str, schemes: Sequence[str]) -> str:
    """Return `url` unchanged if it is safe to load, else raise ValueError.

    Only loopback and 10.77.0.x are allowed: load must stay on this machine or on the
    simulated test hosts. Host names other than "localhost" are refused rather than
    resolved, so the check cannot be bypassed by DNS.
    """
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(f"{url!r}: scheme must be one of {', '.join(schemes)}")
    host = parts.hostname or ""
    if host == "localhost":
        return url
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{url!r}: target must be an IP address (loopback or 10.77.0.x) or localhost") from None
    if address.is_loopback or address in ALLOWED_SUBNET:
        return url
    raise ValueError(f"{url!r}: only loopback or 10.77.0.x targets are allowed")


def describe_error(error: BaseException) -> str:
    """Class and message of an exception, short enough to keep in a result."""
    message = str(error).strip()
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text[:REASON_MAX_CHARS]


class _BoundedRun(Generic[ResultT]):
    """Worker threads that share one stop signal, one deadline and one lock.

    Both load clients need the same lifecycle: start threads, stop them when asked or
    when a bound is reached, join them, then build a result once. It lives here once.
    """

    def __init__(self, max_seconds: float) -> None:
        if max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_at = 0.0
        self._ended_at: float | None = None
        self._stopped_by = ""
        self._result: ResultT | None = None

    def _workers(self) -> list[Callable[[], None]]:
        raise NotImplementedError

    def _build_result(self, duration_seconds: float, stopped_by: str) -> ResultT:
        raise NotImplementedError

    def _join_timeout(self) -> float:
        raise NotImplementedError

    def start(self) -> Self:
        """Start the worker threads; a run can be started only once."""
        if self._threads:
            raise RuntimeError(f"{type(self).__name__} was already started")
        self._started_at = time.monotonic()
        name = type(self).__name__
        self._threads = [threading.Thread(target=work, name=f"{name}-{i}", daemon=True)
                         for i, work in enumerate(self._workers())]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> ResultT:
        """Stop the workers, wait for them and return the result (idempotent)."""
        if self._result is not None:
            return self._result
        if not self._threads:
            raise RuntimeError(f"{type(self).__name__} was never started")
        self._halt("stop")
        deadline = time.monotonic() + self._join_timeout()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        if alive:
            raise RuntimeError(f"{type(self).__name__}: threads did not stop in time: {', '.join(alive)}")
        assert self._ended_at is not None
        self._result = self._build_result(self._ended_at - self._started_at, self._stopped_by)
        return self._result

    def wait(self, timeout: float | None = None) -> ResultT:
        """Let the run go on until a bound stops it (or `timeout` passes), then stop it.

        For a fixed-length measurement: `HttpLoad(url, paths, max_seconds=15).start().wait()`.
        """
        self._stop_event.wait(timeout)
        return self.stop()

    @property
    def result(self) -> ResultT:
        """The result, available once the run was stopped (by `stop()` or by leaving `with`)."""
        if self._result is None:
            raise RuntimeError(f"{type(self).__name__} is still running: call stop() first")
        return self._result

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _elapsed(self) -> float:
        return time.monotonic() - self._started_at

    def _halt(self, reason: str) -> None:
        """Signal every worker to stop; the first reason and moment win, for the rate."""
        with self._lock:
            if self._ended_at is None:
                self._ended_at = time.monotonic()
                self._stopped_by = reason
        self._stop_event.set()

    def _out_of_time(self) -> bool:
        if self._elapsed() < self.max_seconds:
            return False
        self._halt("max_seconds")
        return True


@dataclass(frozen=True)
class RequestOutcome:
    """One request: when it was sent (seconds since start), where, and whether it worked."""

    sent_at: float
    path: str
    ok: bool


@dataclass(frozen=True)
class LoadResult:
    """What the HTTP load saw; `failed == 0` is the zero-downtime claim.

    `longest_gap_seconds` is how long a path stayed broken: from the send time of a failed
    request to the send time of the next successful request on the same path (by send
    time, since requests on several threads complete out of order). A path that never
    recovered counts until the end of the run and is listed in `unrecovered_paths`.
    """

    total: int
    failed: int
    client_errors: int
    failures: list[tuple[float, str, str]]
    longest_gap_seconds: float
    requests_per_second: float
    by_path: dict[str, int]
    failed_by_path: dict[str, int]
    unrecovered_paths: list[str]
    duration_seconds: float
    stopped_by: str
    # Requests retried once on a new connection because the server closed an idle keep-alive
    # connection as they were sent (what browsers do for GETs, RFC 9110 9.2.2). An nginx
    # reload closes its old workers' idle connections; the retried request is counted once.
    retried_on_closed_keepalive: int = 0

    def summary(self) -> str:
        """One line for logs and assertion messages."""
        paths = ", ".join(f"{path}={count}" for path, count in self.by_path.items())
        line = (f"{self.total} requests in {self.duration_seconds:.1f} s ({self.requests_per_second:.1f} req/s, "
                f"stopped by {self.stopped_by}), {self.failed} failed ({self.client_errors} 4xx), "
                f"longest gap {self.longest_gap_seconds:.2f} s; {paths}")
        if self.retried_on_closed_keepalive:
            line += f"; {self.retried_on_closed_keepalive} retried after a closed keep-alive connection"
        if self.failures:
            at, path, reason = self.failures[0]
            line += f"; first failure at {at:.2f} s {path}: {reason}"
        if self.unrecovered_paths:
            line += f"; never recovered: {', '.join(self.unrecovered_paths)}"
        return line


def longest_gap(outcomes: Sequence[RequestOutcome], run_end: float) -> tuple[float, list[str]]:
    """Longest failure-to-next-success span on any path, and the paths still failing at the end."""
    longest = 0.0
    unrecovered: list[str] = []
    broken_since: dict[str, float] = {}
    for outcome in sorted(outcomes, key=lambda o: o.sent_at):
        if not outcome.ok:
            broken_since.setdefault(outcome.path, outcome.sent_at)
        elif outcome.path in broken_since:
            longest = max(longest, outcome.sent_at - broken_since.pop(outcome.path))
    for path, since in broken_since.items():
        longest = max(longest, run_end - since)
        unrecovered.append(path)
    return longest, sorted(unrecovered)


def closed_idle(reason: str | None) -> bool:
    """Whether a request failed because the server had closed the kept-alive connection."""
    return reason is not None and reason.startswith("RemoteProtocolError: Server disconnected")


class HttpLoad(_BoundedRun[LoadResult]):
    """Round-robin GET traffic through the gateway at a steady total rate, in threads.

    `keepalive_clients` threads each reuse one persistent connection pool, and
    `fresh_clients` threads open a new TCP connection for every request (no pooled
    connection, `Connection: close`). The total `rate` is spread evenly over all threads
    and their start times are staggered so requests arrive evenly. A slow request delays
    only its own thread, which then resumes its pace without a catch-up burst.

    The run stops itself after `max_seconds` or `max_requests`; leaving the `with` block
    (or calling `stop()`) ends it early and fills `.result`. A request fails when it
    raises or answers a status >= 400 (4xx are also counted in `client_errors`: health
    paths should never answer them).

    `retry_closed_keepalive`: a keep-alive thread sends a request again, once, when the
    gateway had closed the idle connection (what an nginx reload does, and what most HTTP
    clients retry by themselves). False is a client that never retries: that close counts
    as a failed request.
    """

    def __init__(self, base_url: str, paths: Sequence[str], *, keepalive_clients: int = 2, fresh_clients: int = 2,
                 rate: float = 60.0, max_seconds: float = 600.0, max_requests: int = 100_000,
                 timeout: float = REQUEST_TIMEOUT_SECONDS, ca_file: str | None = None,
                 retry_closed_keepalive: bool = True) -> None:
        super().__init__(max_seconds)
        self._tls = tls_context(ca_file)
        self.base_url = check_target(base_url, ("http", "https")).rstrip("/")
        if not paths or not all(path.startswith("/") for path in paths):
            raise ValueError("paths must be a non-empty list of paths starting with '/'")
        if keepalive_clients < 0 or fresh_clients < 0 or keepalive_clients + fresh_clients == 0:
            raise ValueError("need at least one client thread, and no negative counts")
        if rate <= 0 or max_requests <= 0 or timeout <= 0:
            raise ValueError("rate, max_requests and timeout must be positive")
        self.paths = list(paths)
        self.keepalive_clients = keepalive_clients
        self.fresh_clients = fresh_clients
        self.rate = rate
        self.max_requests = max_requests
        self.timeout = timeout
        self.retry_closed_keepalive = retry_closed_keepalive
        self._threads_total = keepalive_clients + fresh_clients
        self._retried = 0
        self._interval = self._threads_total / rate
        self._issued = 0
        self._outcomes: list[RequestOutcome] = []
        self._failures: list[tuple[float, str, str]] = []
        self._client_errors = 0

    def _workers(self) -> list[Callable[[], None]]:
        kinds = [True] * self.keepalive_clients + [False] * self.fresh_clients
        return [partial(self._run_client, index, keepalive) for index, keepalive in enumerate(kinds)]

    def _join_timeout(self) -> float:
        # httpx applies the timeout per phase (connect, write, read), so allow a few.
        return 3 * self.timeout + 5

    def _new_client(self, keepalive: bool) -> httpx.Client:
        # trust_env=False: targets are local by construction, an HTTP(S)_PROXY must not apply.
        if keepalive:
            return httpx.Client(base_url=self.base_url, timeout=self.timeout, trust_env=False, verify=self._tls)
        return httpx.Client(base_url=self.base_url, timeout=self.timeout, trust_env=False, verify=self._tls,
                            limits=httpx.Limits(max_keepalive_connections=0), headers={"Connection": "close"})

    def _claim_path(self) -> str | None:
        """The next path in round-robin order, or None once a bound is reached."""
        if self._out_of_time():
            return None
        with self._lock:
            if self._issued < self.max_requests:
                self._issued += 1
                return self.paths[(self._issued - 1) % len(self.paths)]
        self._halt("max_requests")
        return None

    def _run_client(self, index: int, keepalive: bool) -> None:
        with self._new_client(keepalive) as client:
            next_at = time.monotonic() + index * self._interval / self._threads_total
            while not self._stop_event.is_set():
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop_event.wait(delay):
                    break
                path = self._claim_path()
                if path is None:
                    break
                sent_at = self._elapsed()
                reason = self._request(client, path)
                if keepalive and self.retry_closed_keepalive and closed_idle(reason):
                    with self._lock:
                        self._retried += 1
                    reason = self._request(client, path)
                self._record(sent_at, path, reason)
                next_at = max(next_at + self._interval, time.monotonic())

    @staticmethod
    def _request(client: httpx.Client, path: str) -> str | None:
        """None on success, else why the request failed."""
        try:
            response = client.get(path)
        except Exception as error:  # any transport failure is an observed failure
            return describe_error(error)
        return f"status {response.status_code}" if response.status_code >= 400 else None

    @property
    def answered(self) -> int:
        """Requests answered so far, while the load runs (a test waits for the load to flow)."""
        with self._lock:
            return sum(outcome.ok for outcome in self._outcomes)

    def _record(self, sent_at: float, path: str, reason: str | None) -> None:
        with self._lock:
            self._outcomes.append(RequestOutcome(sent_at, path, reason is None))
            if reason is None:
                return
            if reason.startswith("status 4"):
                self._client_errors += 1
            if len(self._failures) < MAX_RECORDED_HTTP_FAILURES:
                self._failures.append((round(sent_at, 3), path, reason))

    def _build_result(self, duration_seconds: float, stopped_by: str) -> LoadResult:
        with self._lock:
            outcomes = list(self._outcomes)
        gap, unrecovered = longest_gap(outcomes, duration_seconds)
        by_path = dict.fromkeys(self.paths, 0)
        failed_by_path = dict.fromkeys(self.paths, 0)
        for outcome in outcomes:
            by_path[outcome.path] += 1
            failed_by_path[outcome.path] += 0 if outcome.ok else 1
        return LoadResult(
            total=len(outcomes), failed=sum(failed_by_path.values()), client_errors=self._client_errors,
            failures=sorted(self._failures), longest_gap_seconds=round(gap, 3),
            requests_per_second=round(len(outcomes) / duration_seconds, 2) if duration_seconds > 0 else 0.0,
            by_path=by_path, failed_by_path=failed_by_path, unrecovered_paths=unrecovered,
            duration_seconds=round(duration_seconds, 3), stopped_by=stopped_by,
            retried_on_closed_keepalive=self._retried,
        )


@dataclass(frozen=True)
class SocketWatchResult:
    """What the WebSocket watch saw; a zero-downtime rollout leaves `close_codes` empty.

    `close_codes` holds the code of every close the server initiated (1006 when the
    connection dropped without a close frame); closes made by `stop()` are not counted.
    """

    connects: int
    failed_connects: int
    connect_failures: list[str]
    close_codes: list[int]
    reconnects: int
    messages_sent: int
    messages_failed: int
    messages_received: int
    duration_seconds: float
    stopped_by: str
    # Requests retried once on a new connection because the server closed an idle keep-alive
    # connection as they were sent (what browsers do for GETs, RFC 9110 9.2.2). An nginx
    # reload closes its old workers' idle connections; the retried request is counted once.
    retried_on_closed_keepalive: int = 0

    def summary(self) -> str:
        """One line for logs and assertion messages."""
        line = (f"{self.connects} connects, {self.failed_connects} failed connects, "
                f"{len(self.close_codes)} server closes {self.close_codes}, {self.reconnects} reconnect attempts, "
                f"{self.messages_sent} sent / {self.messages_failed} failed / {self.messages_received} received "
                f"in {self.duration_seconds:.1f} s (stopped by {self.stopped_by})")
        if self.connect_failures:
            line += f"; first connect failure: {self.connect_failures[0]}"
        return line


class SocketWatch(_BoundedRun[SocketWatchResult]):
    """Keep `sockets` WebSocket connections open and notice every time the server drops one.

    Each socket sends a short text message every `message_interval` seconds (proof the
    path through gateway and service is alive, not just the TCP connection) and reads
    whatever arrives, so the server never blocks on a full buffer. When the server closes
    a socket, its close code is recorded and the socket reconnects at once; a failed
    connect attempt is retried after `retry_delay` so an outage does not burn through the
    budget. The run stops after `max_seconds` or `max_reconnects` attempts beyond the
    first connect of each socket, whichever comes first.

    The URL usually carries a token, so it is never copied into the result.
    """

    def __init__(self, url: str, *, sockets: int = 2, max_seconds: float = 600.0, max_reconnects: int = 1000,
                 message_interval: float = 1.0, retry_delay: float = 0.2, open_timeout: float = 10.0,
                 ca_file: str | None = None) -> None:
        super().__init__(max_seconds)
        self._tls = tls_context(ca_file) if url.startswith("wss://") else None
        self._url = check_target(url, ("ws", "wss"))
        if sockets < 1 or max_reconnects < 0 or message_interval <= 0 or retry_delay < 0 or open_timeout <= 0:
            raise ValueError("need sockets >= 1, max_reconnects >= 0 and positive intervals")
        self.sockets = sockets
        self.max_reconnects = max_reconnects
        self.message_interval = message_interval
        self.retry_delay = retry_delay
        self.open_timeout = open_timeout
        self._close_timeout = 2.0
        self._counts: Counter[str] = Counter()  # connects, failed_connects, sent, send_failed, received
        self._connect_failures: list[str] = []
        self._close_codes: list[int] = []
        self._reconnects = 0

    def _workers(self) -> list[Callable[[], None]]:
        return [partial(self._run_socket, index) for index in range(self.sockets)]

    def _join_timeout(self) -> float:
        return self.open_timeout + self._close_timeout + 5

    def _claim_reconnect(self) -> bool:
        with self._lock:
            if self._reconnects < self.max_reconnects:
                self._reconnects += 1
                return True
        self._halt("max_reconnects")
        return False

    @property
    def connected(self) -> int:
        """Connections opened so far, while the watch runs (a test waits for its sockets)."""
        with self._lock:
            return self._counts["connects"]

    def _count(self, event: str) -> None:
        with self._lock:
            self._counts[event] += 1

    def _run_socket(self, index: int) -> None:
        first_attempt = True
        while not self._stop_event.is_set() and not self._out_of_time():
            if not first_attempt and not self._claim_reconnect():
                break
            first_attempt = False
            try:
                # proxy=None: targets are local by construction, an HTTP(S)_PROXY must not apply.
                connection = connect(self._url, open_timeout=self.open_timeout, close_timeout=self._close_timeout,
                                     proxy=None, ssl=self._tls)
            except Exception as error:  # refused, timed out, or rejected handshake (e.g. HTTP 403/502)
                with self._lock:
                    self._counts["failed_connects"] += 1
                    if len(self._connect_failures) < MAX_RECORDED_CONNECT_FAILURES:
                        self._connect_failures.append(f"{self._elapsed():.2f} s: {describe_error(error)}")
                self._stop_event.wait(self.retry_delay)
                continue
            self._count("connects")
            with connection:
                close_code = self._hold_open(connection, index)
            if close_code is not None:
                with self._lock:
                    self._close_codes.append(close_code)

    def _hold_open(self, connection: ClientConnection, index: int) -> int | None:
        """Send and read until the server closes (its close code) or the run stops (None)."""
        sequence = 0
        next_send = time.monotonic() + self.message_interval
        while not self._stop_event.is_set() and not self._out_of_time():
            if time.monotonic() >= next_send:
                sequence += 1
                try:
                    connection.send(f"loadgen socket {index} liveness {sequence}")
                except ConnectionClosed as closed:
                    self._count("send_failed")
                    return self._server_close_code(closed)
                self._count("sent")
                next_send = max(next_send + self.message_interval, time.monotonic())
            try:
                # Short waits keep stop() prompt; reading keeps the server's send side flowing.
                connection.recv(timeout=min(max(next_send - time.monotonic(), 0.0), 0.25))
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                return self._server_close_code(closed)
            self._count("received")
        return None

    def _server_close_code(self, closed: ConnectionClosed) -> int | None:
        if self._stop_event.is_set():
            return None  # our own shutdown, not the server's doing
        return closed.rcvd.code if closed.rcvd is not None else ABNORMAL_CLOSURE

    def _build_result(self, duration_seconds: float, stopped_by: str) -> SocketWatchResult:
        with self._lock:
            return SocketWatchResult(
                connects=self._counts["connects"], failed_connects=self._counts["failed_connects"],
                connect_failures=list(self._connect_failures), close_codes=list(self._close_codes),
                reconnects=self._reconnects, messages_sent=self._counts["sent"],
                messages_failed=self._counts["send_failed"], messages_received=self._counts["received"],
                duration_seconds=round(duration_seconds, 3),
                stopped_by=stopped_by,
            )


def register_and_login(base_url: str, *, timeout: float = REQUEST_TIMEOUT_SECONDS, ca_file: str | None = None) -> str:
    """Register a throwaway user through the gateway and return its access token.

    Channel sockets need a valid token; a fresh random account per run keeps runs
    independent of each other and of any data already in the stack.
    """
    base_url = check_target(base_url, ("http", "https")).rstrip("/")
    credentials = {"username": f"loadgen-{uuid.uuid4().hex[:12]}", "password": secrets.token_urlsafe(18)}
    with httpx.Client(base_url=base_url, timeout=timeout, trust_env=False, verify=tls_context(ca_file)) as client:
        registered = retryafter.request(client, "POST", "/api/auth/register", json=credentials)
        if registered.status_code != 201:
            raise RuntimeError(f"register failed: HTTP {registered.status_code}: {registered.text[:REASON_MAX_CHARS]}")
        logged_in = retryafter.request(client, "POST", "/api/auth/login", json=credentials)
        if logged_in.status_code != 200:
            raise RuntimeError(f"login failed: HTTP {logged_in.status_code}: {logged_in.text[:REASON_MAX_CHARS]}")
        return str(logged_in.json()["access_token"])

"""Shared runtime helpers for the stack's Python services.

Copied into every Python service's build context by the deploy (like
wait-for-services.py), so each image stays self-contained while the services share one
implementation of settings, database and Redis connections, token checks and /health.

A service gets PostgreSQL and Redis only when it declares them in ``depends_on`` (the
deploy then writes ``POSTGRES_HOST`` / ``REDIS_HOST`` into its env file): nothing else is
opened or checked, and ``asyncpg`` / ``redis`` need to be in its requirements.txt only then.

Logging and request ids live in ``stacklog`` (copied beside this file): every request is one
JSON line, and every call to another service carries the request's ``X-Request-ID``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import stacklog
from fastapi import Depends, FastAPI, Header, HTTPException, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from stackmetrics import instrument

if TYPE_CHECKING:
    import asyncpg
    import redis.asyncio as aioredis

Check = Callable[[], Awaitable[Any]]
# Each /health check gives up after this: a dependency that is down makes /health answer 503
# naming it, quickly, rather than hang past the monitor's probe timeout (which would read as
# this service being hung, and restart it for nothing).
CHECK_TIMEOUT = 2.5


@functools.lru_cache(maxsize=32)
def _secret_file(path: str) -> str:
    """A secret's value, read once: secrets never change under a running container (a new value
    recreates it), and a token check reads the signing key on every request."""
    return Path(path).read_text().rstrip("\n")


def env(name: str, default: str | None = None) -> str:
    """Read a required setting; the deploy writes them all into the service's env file, but a
    secret is a file named by ``<NAME>_FILE`` (mounted by compose, a Docker secret on swarm)."""
    value = os.environ.get(name)
    if value is None and f"{name}_FILE" in os.environ:
        value = _secret_file(os.environ[f"{name}_FILE"])
    value = default if value is None else value
    if value is None:
        raise RuntimeError(f"missing environment variable {name}")
    return value


def declared(dependency: str) -> bool:
    """Whether this service declared ``dependency`` (postgres, redis, auth-service...) in
    ``depends_on``: the deploy writes ``<DEP>_HOST`` for each dependency and nothing else."""
    return f"{dependency.upper().replace('-', '_')}_HOST" in os.environ


def postgres_dsn() -> str:
    return (
        f"postgresql://{env('POSTGRES_USER')}:{env('POSTGRES_PASSWORD')}"
        f"@{env('POSTGRES_HOST')}:{env('POSTGRES_PORT')}/{env('POSTGRES_DB')}"
    )


def http_client(**kwargs: Any) -> httpx.AsyncClient:
    """The client a service calls other services with: a dependency being replaced may refuse a
    connection for a moment, so connecting is retried (on another address of the same name,
    when it has two during a rolling update), and every call carries the current request id."""
    kwargs.setdefault("transport", httpx.AsyncHTTPTransport(retries=3))
    return httpx.AsyncClient(timeout=10.0, event_hooks={"request": [stacklog.add_request_id]}, **kwargs)


class Backends:
    """Connections a service holds for its lifetime, opened in FastAPI's lifespan."""

    def __init__(self) -> None:
        self.db: asyncpg.Pool | None = None
        self.redis: aioredis.Redis | None = None
        self.http: httpx.AsyncClient | None = None
        self.sockets: set[WebSocket] = set()  # open WebSockets, closed with 1001 on shutdown

    async def open(self, schema: str = "") -> None:
        """Connect to what the service declared; a schema without postgres is a mistake in
        the service, said at startup rather than on the first request."""
        if schema and not declared("postgres"):
            raise RuntimeError("this service has a SQL schema but does not depend on postgres")
        if declared("postgres"):
            import asyncpg

            self.db = await asyncpg.create_pool(postgres_dsn(), min_size=1, max_size=5)
            if schema:
                async with self.db.acquire() as conn:
                    # Several workers start at once: serialise schema creation.
                    await conn.execute("SELECT pg_advisory_lock(7001)")
                    try:
                        await conn.execute(schema)
                    finally:
                        await conn.execute("SELECT pg_advisory_unlock(7001)")
        if declared("redis"):
            import redis.asyncio as aioredis

            self.redis = aioredis.Redis(
                host=env("REDIS_HOST"), port=int(env("REDIS_PORT")), password=env("REDIS_PASSWORD"),
                decode_responses=True,
            )
        self.http = http_client()

    async def close(self) -> None:
        if self.http:
            await self.http.aclose()
        if self.redis:
            await self.redis.aclose()
        if self.db:
            await self.db.close()

    async def check_postgres(self) -> None:
        """SELECT 1; after a database restart every pooled connection is dead, so a lost
        connection retires the pool's connections and is retried once on a fresh one."""
        import asyncpg

        assert self.db is not None
        for attempt in (1, 2):
            try:
                async with self.db.acquire() as conn:
                    await conn.fetchval("SELECT 1")
                return
            except (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InterfaceError,
                    ConnectionError):
                if attempt == 2:
                    raise
                await self.db.expire_connections()

    async def check_redis(self) -> None:
        assert self.redis is not None
        await self.redis.ping()

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET another service. A GET is safe to repeat, so one that meets a connection the
        other side is closing (its old container draining in a rolling update) is retried."""
        assert self.http is not None
        try:
            return await self.http.get(url, **kwargs)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError):
            return await self.http.get(url, **kwargs)

    def check_http(self, url: str) -> Check:
        """A dependency's shallow /health (is it up and answering, not are *its* dependencies),
        asked twice before it counts as down: during a rolling update the name may still lead
        to the container being retired for a moment. Shallow, because a deep check chains:
        channel-service -> ai-engine -> auth-service -> postgres would fail whenever any link
        was slow, and one slow link would show as every service above it degraded."""
        # The stack's apps answer /health (and take ``shallow``); infrastructure endpoints
        # (Ollama's /api/version, ChromaDB's heartbeat) are asked as they are.
        params = {"shallow": "true"} if urlsplit(url).path == "/health" else None

        async def check() -> None:
            for attempt in (1, 2):
                try:
                    response = await self.get(url, params=params, timeout=CHECK_TIMEOUT)
                    response.raise_for_status()
                    return
                except httpx.HTTPError:
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.1)
        return check

    async def current_user(self, authorization: str | None) -> dict[str, Any]:
        """Ask auth-service who holds this bearer token; 401 when nobody does."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise HTTPException(status_code=401, detail="missing bearer token")
        response = await self.get(f"{env('AUTH_SERVICE_URL')}/verify", headers={"Authorization": authorization})
        if response.status_code != 200:
            raise HTTPException(status_code=401, detail="invalid or revoked token")
        return response.json()


def create_app(name: str, backends: Backends, http_checks: dict[str, str] | None = None,
               schema: str = "") -> FastAPI:
    """A FastAPI app whose lifespan opens the backends and whose /health checks PostgreSQL
    and Redis (when declared) and each ``http_checks`` dependency (name -> URL)."""
    checks: dict[str, Check] = {}
    if declared("postgres"):
        checks["postgres"] = backends.check_postgres
    if declared("redis"):
        checks["redis"] = backends.check_redis
    checks.update({dep: backends.check_http(url) for dep, url in (http_checks or {}).items()})
    stacklog.configure_logging(name)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await backends.open(schema)
        close_sockets_on_sigterm(backends)
        yield
        await backends.close()

    # FastAPI answers 400 itself to a body it cannot decode (invalid UTF-8): documented on
    # every route so the schema tells clients the truth (schemathesis checks it does).
    app = FastAPI(title=name, lifespan=lifespan, responses={400: {"description": "the body could not be parsed"}})
    app.add_exception_handler(RequestValidationError, trimmed_validation_error)
    app.add_exception_handler(UnicodeEncodeError, unencodable_text)
    app.add_middleware(stacklog.AccessLog, service=name)
    instrument(app, name)  # request count, latency and errors by route at /metrics (stackmetrics.py)

    @app.get("/health")
    async def health(shallow: bool = False) -> JSONResponse:
        """Ready: every dependency answers (503 naming the ones that do not). ``shallow``: only
        that this service is up, which is what a service depending on it asks."""
        if shallow:
            return JSONResponse({"service": name, "status": "ok", "checks": {}})

        async def run(check: Check) -> str:
            try:
                await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT)
                return "ok"
            except Exception as exc:  # any failure means "down"
                return f"down: {type(exc).__name__}: {exc}"[:200]

        results = dict(zip(checks, await asyncio.gather(*(run(c) for c in checks.values())), strict=True))
        healthy = all(r == "ok" for r in results.values())
        return JSONResponse(
            {"service": name, "status": "ok" if healthy else "degraded", "checks": results},
            status_code=200 if healthy else 503,
        )

    return app


ECHO_LIMIT = 100  # characters of a rejected value quoted back in a 422


def _trim(value: Any) -> Any:
    if isinstance(value, str) and len(value) > ECHO_LIMIT:
        return value[:ECHO_LIMIT] + f"... ({len(value)} characters)"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return f"({type(value).__name__})"


async def trimmed_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """A 422 that says what was wrong without echoing the whole input back (a 10 kB
    username is not returned as a 10 kB error)."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", ""),
               **({"input": _trim(e["input"])} if "input" in e else {})} for e in exc.errors()[:20]]
    return JSONResponse({"detail": errors}, status_code=422)


def unprocessable(loc: list[str], msg: str) -> HTTPException:
    """A 422 a route raises itself, shaped like FastAPI's own (the schema every route documents)."""
    return HTTPException(status_code=422, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


async def unencodable_text(_request: Request, _exc: Exception) -> JSONResponse:
    """JSON may carry lone surrogates ("\\ud800") that no database or hash can encode as
    UTF-8: the client sent text that is not Unicode, so it is their error, not a 500."""
    return JSONResponse({"detail": [{"loc": ["body"], "msg": "text must be valid Unicode (no lone surrogates)",
                                     "type": "unicode"}]}, status_code=422)


def close_sockets_on_sigterm(backends: Backends) -> None:
    """On SIGTERM (a deploy retiring this container), close open WebSockets with 1001 "going
    away" so clients reconnect to the new container, then let uvicorn shut down gracefully
    (it would otherwise close them with 1012 after the listening socket is gone)."""
    loop = asyncio.get_running_loop()
    uvicorn_handler = signal.getsignal(signal.SIGTERM)

    async def close_then_exit(signum: int, frame: Any) -> None:
        sockets = list(backends.sockets)
        await asyncio.gather(*(ws.close(code=1001, reason="server restarting") for ws in sockets),
                             return_exceptions=True)
        if callable(uvicorn_handler):
            uvicorn_handler(signum, frame)

    def on_sigterm(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(close_then_exit(signum, frame)))

    signal.signal(signal.SIGTERM, on_sigterm)


def authorization_header(authorization: str | None = Header(default=None)) -> str | None:
    """FastAPI dependency: the raw Authorization header."""
    return authorization


# The responses of a route that needs a signed-in user, for its OpenAPI entry.
NEEDS_TOKEN: dict[int | str, dict[str, Any]] = {401: {"description": "missing, invalid or revoked bearer token"}}


def user_of(backends: Backends) -> Callable[..., Awaitable[dict[str, Any]]]:
    """A FastAPI dependency for routes that need a signed-in user: ``{"user_id", "username"}``
    from auth-service, or a 401. Declare ``responses=NEEDS_TOKEN`` on the route too."""
    async def current_user(authorization: str | None = Depends(authorization_header)) -> dict[str, Any]:
        return await backends.current_user(authorization)
    return current_user

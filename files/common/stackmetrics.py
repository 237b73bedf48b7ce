"""Prometheus metrics of a stack service: request count, latency and errors by route, at /metrics.

``instrument(app, service)`` is all a service needs (stackapp's ``create_app`` calls it). Every
answer is counted by method, route *template* (``/uploads/{upload_id}``, never the raw path,
which would make one series per id) and status; its duration goes into a histogram.

A service runs several uvicorn workers, so the metrics live in prometheus_client's
multiprocess mode: each worker writes its own files under ``PROMETHEUS_MULTIPROC_DIR`` and
/metrics sums them all, whichever worker answers the scrape. Counters of a worker that exited
stay in the sum, as a counter must.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/stack-metrics")
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from fastapi import FastAPI, Request, Response  # noqa: E402 - the directory must exist first
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.routing import Match  # noqa: E402

REQUESTS = Counter("http_requests_total", "Requests answered, by route and status",
                   ["service", "method", "route", "status"])
ERRORS = Counter("http_request_errors_total", "Requests answered with a 5xx (or an exception), by route",
                 ["service", "method", "route"])
LATENCY = Histogram("http_request_duration_seconds", "Time to answer a request, by route",
                    ["service", "method", "route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
UNMATCHED = "unmatched"  # a path no route serves (one label for all of them)


def route_of(app: FastAPI, request: Request) -> str:
    """The template of the route serving ``request`` (``/items/{id}``), or ``unmatched``."""
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return getattr(route, "path", UNMATCHED)
    return UNMATCHED


def metrics_text() -> bytes:
    """Every worker's metrics, summed (prometheus_client multiprocess mode)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def instrument(app: FastAPI, service: str) -> None:
    """Count and time every HTTP request of ``app`` and serve the metrics at /metrics."""

    @app.middleware("http")
    async def measure(request: Request, call_next):  # starlette's signature
        route = route_of(app, request)
        if route == "/metrics":
            return await call_next(request)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            LATENCY.labels(service, request.method, route).observe(time.perf_counter() - started)
            REQUESTS.labels(service, request.method, route, str(status)).inc()
            if status >= 500:
                ERRORS.labels(service, request.method, route).inc()

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        # For Prometheus on the stack's network, not the public: the gateway marks what it
        # forwards (X-Forwarded-Prefix), and /api/<route>/metrics through it is not found.
        if "x-forwarded-prefix" in request.headers:
            return Response('{"detail": "Not Found"}', status_code=404, media_type="application/json")
        return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)

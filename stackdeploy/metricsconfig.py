"""The files Prometheus, Alertmanager and Grafana read, rendered from the stack for one host.

A service's ``config_files`` (path in the container -> template in templates/metrics/) are
rendered here with what the templates need: every scrape target as this host reaches it
(compose engine: a service on the same host by its name, one on another host at that host's
private address, where placement publishes it for this host alone; swarm engine: Docker's
DNS, ``tasks.<service>``), the Alertmanager to send alerts to, and the alert thresholds of
``metrics`` in group_data; for Grafana (registry mode only), the Prometheus it reads and the
stack dashboard's panels (``DASHBOARD_PANELS``, the queries README documents). Each file
becomes a config named after its content, so the container is recreated exactly when one
changes (compose copies configs into the container; Swarm mounts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from string import Template

from stackdeploy.fingerprint import data_digest, short
from stackdeploy.model import MetricsSettings, Service, Stack
from stackdeploy.placement import Placement
from stackdeploy.templating import render

METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class Panel:
    """One graph of the stack dashboard (Grafana), and a row of README's query table."""

    title: str
    query: str  # PromQL; $window is the rate window (``metrics.rate_window``)
    legend: str  # Grafana's name of each series: {{label}} is the series' label
    unit: str  # Grafana's unit of the values


DASHBOARD_PANELS = (
    Panel("Requests per second, by service and route", "sum by (job, route) (rate(http_requests_total[$window]))",
          "{{job}} {{route}}", "reqps"),
    Panel("5xx ratio per service", 'sum by (job) (rate(http_requests_total{status=~"5.."}[$window])) '
          "/ sum by (job) (rate(http_requests_total[$window]))", "{{job}}", "percentunit"),
    Panel("p95 latency per service",
          "histogram_quantile(0.95, sum by (job, le) (rate(http_request_duration_seconds_bucket[$window])))",
          "{{job}}", "s"),
    Panel("Targets up, per job", "sum by (job) (up)", "{{job}}", "short"),
    Panel("Gateway requests per second", "rate(nginx_http_requests_total[$window])", "{{host}}", "reqps"),
    Panel("Restarts by the monitor", "increase(stack_monitor_restarts_total[1h])", "{{service}} {{outcome}}",
          "short"),
    Panel("Free disk per host", 'node_filesystem_avail_bytes{fstype!~"tmpfs|overlay"} / node_filesystem_size_bytes',
          "{{host}} {{mountpoint}}", "percentunit"),
    Panel("CPU busy per host", '1 - avg by (host) (rate(node_cpu_seconds_total{mode="idle"}[$window]))',
          "{{host}}", "percentunit"),
)


def prometheus_duration(seconds: float) -> str:
    """``seconds`` as PromQL writes a duration, in its largest whole unit: 300 -> 5m."""
    whole = int(seconds)
    for unit, size in (("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def dashboard_queries(settings: MetricsSettings) -> list[tuple[Panel, str]]:
    """Each panel with its PromQL for these settings (the rate window filled in)."""
    window = prometheus_duration(settings.rate_window)
    return [(panel, Template(panel.query).substitute(window=window)) for panel in DASHBOARD_PANELS]


@dataclass(frozen=True)
class ScrapeJob:
    """One scraped service: static targets (compose) or a DNS name to resolve (swarm)."""

    name: str
    port: int
    targets: tuple[tuple[str, str], ...] = ()  # (address:port, inventory host) per instance
    dns_name: str | None = None  # swarm: tasks.<service>, every task's address
    # The same service on other hosts, through their monitor: (address:port, inventory host).
    proxied: tuple[tuple[str, str], ...] = ()
    proxy_path: str | None = None  # /scrape/<service> on that monitor


def scrape_jobs(scraper: Service, where: Placement, host: str) -> list[ScrapeJob]:
    """Every service ``scraper`` collects, each instance as ``host`` reaches it."""
    stack = where.stack
    jobs = []
    for name in scraper.scrapes:
        port = stack.services[name].port
        ends = where.endpoints(host, name)
        proxy = where.scrape_proxy(scraper.name, name)
        if stack.engine == "swarm":
            jobs.append(ScrapeJob(name, port, dns_name=f"tasks.{name}"))
        elif proxy:
            proxies = {end.host: end for end in where.endpoints(host, proxy)}
            jobs.append(ScrapeJob(name, port, tuple((f"{e.address}:{e.port}", e.host) for e in ends if e.local),
                                  proxied=tuple((f"{proxies[e.host].address}:{proxies[e.host].port}", e.host)
                                                for e in ends if not e.local),
                                  proxy_path=f"/scrape/{name}"))
        else:
            jobs.append(ScrapeJob(name, port, tuple((f"{e.address}:{e.port}", e.host) for e in ends)))
    return jobs


def serving_dependencies(consumer: Service, where: Placement, host: str, config_prefix: str) -> list[str]:
    """address:port of each dependency of ``consumer`` whose config file (a template named
    ``<config_prefix>...``) tells what it serves, as ``host`` reaches it: Alertmanager's API for
    Prometheus, Prometheus's for Grafana."""
    stack = where.stack
    found = []
    for dep in consumer.depends_on:
        if any(PurePosixPath(t).name.startswith(config_prefix) for t in stack.services[dep].config_files.values()):
            end = (dep, stack.services[dep].port) if stack.engine == "swarm" else (
                where.endpoint(host, dep).address, where.endpoint(host, dep).port)
            found.append(f"{end[0]}:{end[1]}")
    return found


def gateway_name(stack: Stack) -> str | None:
    return next((name for name, svc in stack.services.items() if svc.role == "gateway"), None)


def backed_up(stack: Stack) -> bool:
    """Whether the backup-overdue alert applies: a schedule and something to back up."""
    return bool(stack.backup_every_hours) and any(svc.backup for svc in stack.services.values())


def render_config(template: str, service: Service, where: Placement, host: str) -> str:
    stack = where.stack
    return render(f"metrics/{template}", stack=stack, service=service, settings=stack.metrics,
                  jobs=scrape_jobs(service, where, host),
                  alertmanagers=serving_dependencies(service, where, host, "alertmanager"),
                  prometheuses=serving_dependencies(service, where, host, "prometheus"),
                  dashboard=dashboard_queries(stack.metrics),
                  apps=[n for n, s in stack.services.items() if s.built_from_source and s.rolls
                        and n in service.scrapes],
                  backup_seconds=int(stack.backup_every_hours * 3600) if backed_up(stack) else 0,
                  metrics_path=METRICS_PATH)


def config_files(service: Service, where: Placement, host: str) -> list[tuple[str, str, str]]:
    """(config name, path in the container, content) of each of ``service``'s config files on
    ``host``; the name carries the content's hash (configs are immutable on Swarm)."""
    files = []
    for target, template in sorted(service.config_files.items()):
        content = render_config(template, service, where, host)
        base = PurePosixPath(target).name.replace(".", "-")
        files.append((f"{service.name}-{base}-{short(data_digest([content]))}", target, content))
    return files

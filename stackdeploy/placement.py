"""Placement: which host runs which service, and how a service reaches a dependency.

Inventory groups decide placement through the ``placement`` setting (group name ->
services). A host runs the union of the services of its groups; a host in no placement
group runs the whole stack, which is how ``inventory/local.py`` keeps working unchanged.

A dependency on the same host is reached by its compose service name. One on another
host is reached at that host's ``private_address`` and the published port, and only
services with a consumer on another host are published, bound to that address alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stackdeploy.model import Stack, StackError


@dataclass(frozen=True)
class HostSpec:
    """What placement needs to know about an inventory host."""

    name: str
    groups: frozenset[str]
    address: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """Where a consumer on some host reaches one instance of a service."""

    host: str  # inventory host name of the instance
    address: str  # compose service name (same host) or private address (other host)
    port: int
    local: bool


@dataclass(frozen=True)
class Placement:
    stack: Stack
    hosts: Mapping[str, HostSpec]
    services_on: Mapping[str, tuple[str, ...]]  # host name -> services, in stack order

    def hosts_of(self, service: str) -> list[str]:
        return [h for h, names in self.services_on.items() if service in names]

    def endpoints(self, consumer_host: str, service: str) -> list[Endpoint]:
        """Every instance of ``service`` as seen from ``consumer_host``; a local one first."""
        port = self.stack.services[service].port
        result = []
        for host in self.hosts_of(service):
            if host == consumer_host:
                result.insert(0, Endpoint(host, service, port, True))
            else:
                result.append(Endpoint(host, self.hosts[host].address or host, port, False))
        return result

    def endpoint(self, consumer_host: str, service: str) -> Endpoint:
        return self.endpoints(consumer_host, service)[0]

    def consumers(self, service: str) -> list[str]:
        return [name for name, svc in self.stack.services.items()
                if service in svc.depends_on or service in svc.routes.values() or service in svc.scrapes]

    def used_endpoints(self, consumer_host: str, consumer: str, service: str) -> list[Endpoint]:
        """The instances of ``service`` that ``consumer`` on ``consumer_host`` talks to: every one
        for a gateway route (it balances over them) and for a scraper (it collects each one's
        metrics), the nearest for a dependency."""
        svc = self.stack.services[consumer]
        if service in svc.scrapes and self.scrape_proxy(consumer, service):
            return [end for end in self.endpoints(consumer_host, service) if end.local]
        if service in svc.routes.values() or service in svc.scrapes:
            return self.endpoints(consumer_host, service)
        return [self.endpoint(consumer_host, service)]

    def scrape_proxy(self, scraper: str, service: str) -> str | None:
        """The monitor that answers for ``service``'s metrics on hosts other than the scraper's
        (``/scrape/<service>``), or None. Apps are scraped through it on the compose engine:
        publishing an app's port would cost it its rolling updates (a host port is held by one
        container, and a roll runs two)."""
        if self.stack.engine == "swarm" or not self.stack.services[service].rolls:
            return None
        return next((name for name in self.stack.services[scraper].scrapes
                     if self.stack.services[name].role == "monitor"), None)

    def is_published(self, host: str, service: str) -> bool:
        """True when a consumer on another host uses the instance of ``service`` on ``host``
        (one with its own instance nearby does not). Never on the swarm engine: services
        meet on its overlay network, and only the gateway is published."""
        if self.stack.engine == "swarm":
            return False
        if self.stack.services[service].role == "logstore":
            return True  # every host's Docker engine sends it logs, this host's own too
        return any(end.host == host
                   for consumer in self.consumers(service) for other in self.hosts_of(consumer) if other != host
                   for end in self.used_endpoints(other, consumer, service))

    def has_remote_dependency(self, host: str, service: str) -> bool:
        svc = self.stack.services[service]
        return any(not self.endpoint(host, dep).local for dep in (*svc.depends_on, *svc.routes.values()))


def _placed_services(stack: Stack, host: HostSpec) -> tuple[str, ...]:
    """The services of the host's groups; every service for a host in none; the monitor
    (which watches its own host) and the ``every_host`` services (a host's node exporter)
    everywhere; the monitor except on the swarm engine, where Swarm itself replaces
    unhealthy tasks."""
    groups = [g for g in stack.placement if g in host.groups]
    monitors = {name for name, service in stack.services.items() if service.role == "monitor"}
    per_host = {name for name, service in stack.services.items() if service.every_host}
    wanted = ({name for g in groups for name in stack.placement[g]} | monitors | per_host if groups
              else set(stack.services))
    if stack.engine == "swarm":
        wanted -= monitors
    return tuple(name for name in stack.services if name in wanted)


def _check_published_ports(placement: Placement) -> None:
    stack = placement.stack
    for host, names in placement.services_on.items():
        owners: dict[int, str] = {}
        for name in names:
            service = stack.services[name]
            ports = [stack.gateway_port, stack.tls.port] if service.role == "gateway" else []
            ports += [service.publish] if service.publish else []
            ports += [service.port] if placement.is_published(host, name) and service.role != "gateway" else []
            for port in ports:
                if port in owners and owners[port] != name:
                    raise StackError("", f"host {host}: services '{owners[port]}' and '{name}' "
                                         f"both publish port {port}")
                owners[port] = name


def place(stack: Stack, hosts: Iterable[HostSpec]) -> Placement:
    """Decide what runs where for the whole inventory; raise StackError on a bad layout."""
    specs = {h.name: h for h in hosts}
    services_on = {name: _placed_services(stack, spec) for name, spec in specs.items()}
    placement = Placement(stack, specs, services_on)
    for name, service in stack.services.items():
        where = placement.hosts_of(name)
        if not where and service.role == "monitor" and stack.engine == "swarm":
            continue
        if not where:
            raise StackError("placement", f"service '{name}' is not placed on any host (add it to a 'placement' group)")
        if len(where) > 1 and not (service.rolls or service.role == "monitor" or service.every_host):
            raise StackError("placement", f"service '{name}' is placed on {len(where)} hosts ({', '.join(where)}); "
                                          f"only apps and workers may run on several hosts")
        if len(where) > 1 and service.volumes and stack.engine == "swarm":
            raise StackError("placement", f"service '{name}' keeps data in volumes ({', '.join(service.volumes)}) "
                                          f"and is placed on {len(where)} hosts; on the swarm engine its group "
                                          "must have one host, or a task Swarm moves starts on an empty volume")
    for host in specs:
        for name in services_on[host]:
            # The log store without an address is published on 127.0.0.1 (stackdeploy.logstore).
            if (placement.is_published(host, name) and not specs[host].address
                    and not (stack.services[name].role == "logstore" and len(specs) == 1)):
                raise StackError("", f"host {host}: runs '{name}', which other hosts use, but has no "
                                     f"'private_address' in the inventory")
    _check_published_ports(placement)
    return placement

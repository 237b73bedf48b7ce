"""Print the stack's logs from every host, merged in time order: pyinfra INVENTORY logs.py

    --data service=creator-hub[,auth-service]   only these services
    --data since=15m                             from then on (15m, 2h, 3d or 2026-11-26T10:00:00Z; default 1h)
    --data grep=REGEX                            only lines whose message matches
    --data request_id=ID                         only the lines of one request, in every service
    --data lines=N                               the last N matching lines (default 500)

Changes nothing. The log store's host filters its files (stacklogs.py), so only the matching
lines come here; each is printed with its time, the host and the service that wrote it.
"""

import click
from pyinfra import host
from pyinfra.facts.server import Hostname

from stackdeploy.desired import inventory_placement, load_stack
from stackdeploy.facts import read_fact
from stackdeploy.facts.logs import LogSearch
from stackdeploy.logsearch import Senders, listing, log_query, merge, parse_stored, search_arguments, store_hosts
from stackdeploy.logstore import log_store

stack = load_stack(host)
where = inventory_placement(stack, host)
candidates = store_hosts(where)
# One host searches every store and prints once: the first that may run the log store.
if host.name == candidates[0]:
    query = log_query(host.data.dict(), stack)
    senders = Senders.of({other.name: read_fact(other, Hostname) for other in host.inventory},
                         {name: spec.address for name, spec in where.hosts.items()})
    found = []
    for other in (h for h in host.inventory if h.name in candidates):
        stored = read_fact(other, LogSearch, deploy_dir=stack.deploy_dir, project=stack.name,
                           store=log_store(stack).name, options=search_arguments(query))
        found.append(parse_stored(stored, senders, other.name))
    click.echo(listing(merge(found, query.lines)))

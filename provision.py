"""Provision production Docker hosts: pyinfra INVENTORY provision.py

Installs the Docker Engine and Compose v2, a non-root deploy user in the docker group,
daemon settings (log rotation, live-restore, an insecure registry of ``image_distribution =
"registry"``; applied with a reload when only those last two change) and firewall rules that let only the
stack's own hosts reach the ports published for other hosts, with a script and a systemd unit
that apply them again at every boot. Run it before deploy.py on new hosts; running it again
changes nothing.

On ``engine = "swarm"`` it also opens the swarm's ports between the stack's hosts only,
turns live-restore off (swarm mode refuses it) and forms the swarm: the first of the
``managers`` group inits it, the others join, and nodes are labelled with their groups.

Host data: ``deploy_user`` (default "deploy"), ``deploy_user_public_key`` (optional);
``--data prune_nodes=True`` drains and removes swarm nodes no longer in the inventory.
"""

from pyinfra import host

from stackdeploy.desired import inventory_placement, load_stack
from stackdeploy.provision import provision_host

stack = load_stack(host)
provision_host(
    where=inventory_placement(stack, host),
    deploy_user=host.data.get("deploy_user") or "deploy",
    public_key=host.data.get("deploy_user_public_key"),
    needs_debootstrap=stack.image_source != "registry",
    prune_nodes=bool(host.data.get("prune_nodes")),
)

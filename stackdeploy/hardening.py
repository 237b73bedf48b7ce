"""What every container runs with unless group_data says otherwise: limits by role, and which
roles get a read-only root. Both engines take these from the model (``model._service``).

Every container also drops every capability (adding back only its ``cap_add``), may gain no
privilege (no-new-privileges) and has a pids limit. The offline images all run as their own
user, so they need no capability; the official images of registry mode that start as root
(PostgreSQL, Redis, nginx) name theirs in group_data.
"""

from __future__ import annotations

from collections.abc import Mapping

# Role -> limits; a service's own ``limits`` override key by key. Sized from the
# reference stack on the local engine (apps 50-130 MiB, argon2 up to 64 MiB a hash) with room.
DEFAULT_LIMITS: Mapping[str, Mapping[str, str]] = {
    "app": {"cpus": "2", "memory": "768m", "pids": "512"},
    "worker": {"cpus": "2", "memory": "768m", "pids": "512"},
    "stateful": {"cpus": "2", "memory": "1g", "pids": "1024"},
    "gateway": {"cpus": "2", "memory": "256m", "pids": "256"},
    "monitor": {"cpus": "1", "memory": "256m", "pids": "256"},
    "logstore": {"cpus": "1", "memory": "256m", "pids": "256"},
}
# Roles that keep their state in volumes (or nowhere) and write only there and to /tmp (a
# tmpfs): the apps and workers, whatever their image, and the monitor. ``read_only: False``
# gives one that writes elsewhere a writable root.
READ_ONLY_ROLES = frozenset({"app", "worker", "monitor"})


def limits_of(role: str, given: Mapping[str, str]) -> dict[str, str]:
    """The role's default limits, with the service's own on top."""
    return {**DEFAULT_LIMITS[role], **given}


def read_only_by_default(role: str) -> bool:
    return role in READ_ONLY_ROLES

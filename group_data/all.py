"""The stack, as data: the single source of truth for every service.

Each entry in ``services`` is validated by ``stackdeploy.model`` before any host is
touched. Adding a service is one entry here plus, for a ``python`` service, its
source folder in ``files/services/<name>/`` (an ``app`` package with ``app.main:app``
and a ``requirements.txt``).

Keys of a service:
    kind          "python" (built from files/services/<name>), "infra", "gateway", or
                  "monitor" (the health monitor: built like python, runs on every host)
    port          the port the service listens on inside the stack network
    workers       uvicorn worker processes (python services only)
    depends_on    services that must be ready before this one starts
    wait_timeout  seconds this service waits for its dependencies (and the deploy
                  waits for it to become healthy)
    health        how readiness is checked: {"tcp": True} plus one of
                  {"http": "/path"} or {"command": [...]} run inside the container
    image         infra only: {"registry": "...", "local": "<recipe>"}; a local recipe
                  is a Dockerfile template in templates/images/
    volumes       named volumes: {"volume-name": "/path/in/container"}
    env           extra environment (plain values; secrets go in ``secrets``)
    secrets       names of generated secrets this service receives, as env variables
    restarts_with dependencies whose restart by the monitor restarts this service too
    backup        how backup.py saves it: "pg_dump", "redis_rdb" or "volumes" (its named volumes)
"""

stack_name = "creatorstack"
# Names this deployment's secrets on the control machine (.deploy/secrets/<stack>-<environment>.json).
environment = "local"
deploy_dir = "/opt/creatorstack"

# Where images come from:
#   "registry": pull the public images (python:3.11-slim, postgres:15, ...).
#   "local":    build every image on the host from Debian packages and PyPI
#               (offline mode: no container registry needed at all).
#   "auto":     registry when it answers, local otherwise; decided on the first
#               deploy and remembered on the host so a flaky registry never flips it.
image_source = "auto"

# How images reach the hosts:
#   "build-once":       one host (``build_host: True`` in its host data, else the first in
#                       the inventory) builds every image; the others receive theirs with
#                       docker save | docker load over SSH. No registry. When the build host
#                       is not part of a run (--limit), each host builds what it lacks itself.
#   "build-everywhere": each host builds the images of its own services. No registry.
#   "registry":         the build host builds as under build-once and pushes to ``registry``;
#                       the other hosts pull what they run from it. Needs ``registry``, e.g.
#                       registry = {"address": "registry.example.com:5000/team", "insecure": False}
#                       (insecure: plain HTTP; provision.py then lists it in every host's daemon.json).
# build-once is the default: measured faster (benchmarks/results/), and only one host needs
# to reach the package mirrors.
image_distribution = "build-once"

# A CA bundle on the target host for builds behind TLS interception. It is passed to
# pip as a BuildKit secret and never stored in an image layer. None disables it.
ca_bundle = "/etc/ssl/certs/ca-certificates.crt"

# Debian mirror used by offline (local) image builds.
debian_mirror = "http://deb.debian.org/debian"

# Backups (backup.py): kept per host, and how often they are scheduled (a cron line on the
# control machine, see README); the monitor logs "backup_missed" when one is overdue. 0: off.
keep_backups = 7
backup_every_hours = 0

# Placement: which inventory group runs which services. A host runs the services of all
# its groups; a host in none of these groups runs the whole stack (inventory/local.py).
# Python services may run on several hosts (the gateway balances across them); every
# other service runs on exactly one.
placement = {
    "data": ["postgres", "redis"],
    "ai": ["ollama", "chromadb", "ai-engine"],
    "apps": ["auth-service", "creator-hub", "channel-service"],
    "edge": ["api-gateway"],
}

# Secrets: generated on the first deploy, then reused forever (see stackdeploy/secrets.py).
secrets = ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET"]

# Environment every service receives.
shared_env = {"POSTGRES_USER": "stack", "POSTGRES_DB": "stack"}

# The API gateway is the only published port.
gateway_port = 8080
gateway_bind = "0.0.0.0"

services = {
    "postgres": {
        "kind": "infra",
        "port": 5432,
        "image": {"registry": "postgres:15", "local": "postgres"},
        "volumes": {"postgres-data": "/var/lib/postgresql/data"},
        "backup": "pg_dump",
        "secrets": ["POSTGRES_PASSWORD"],
        "health": {"tcp": True, "command": ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "stack", "-d", "stack"]},
    },
    "redis": {
        "kind": "infra",
        "port": 6379,
        "image": {"registry": "redis:7", "local": "redis"},
        "volumes": {"redis-data": "/data"},
        "backup": "redis_rdb",
        "secrets": ["REDIS_PASSWORD"],
        # The password from the environment, or (swarm engine) from its Docker secret file.
        "command": ["sh", "-c", "exec redis-server --bind 0.0.0.0 --protected-mode no --appendonly yes"
                    " --dir /data --requirepass \"${REDIS_PASSWORD:-$(cat \"$REDIS_PASSWORD_FILE\")}\""],
        "health": {
            "tcp": True,
            "command": ["sh", "-c", "REDISCLI_AUTH=\"${REDIS_PASSWORD:-$(cat \"$REDIS_PASSWORD_FILE\")}\""
                        " redis-cli -h 127.0.0.1 ping | grep -q PONG"],
        },
    },
    "ollama": {
        # Local mode runs an Ollama-API STAND-IN (files/images/ollama-standin.py): no
        # Ollama server can be obtained without a registry. It answers /api/version,
        # /api/tags, /api/generate and /api/embeddings deterministically.
        "kind": "infra",
        "port": 11434,
        "image": {"registry": "ollama/ollama", "local": "ollama-standin"},
        "volumes": {"ollama-models": "/data"},
        "env": {"OLLAMA_MODELS": "/data/models"},  # the real Ollama keeps its models in the volume
        "health": {"tcp": True, "http": "/api/version"},
    },
    "chromadb": {
        "kind": "infra",
        "port": 8000,
        "image": {"registry": "chromadb/chroma", "local": "chromadb"},
        "volumes": {"chroma-data": "/data"},
        "backup": "volumes",
        "health": {"tcp": True, "http": "/api/v2/heartbeat"},
    },
    "auth-service": {
        "kind": "python",
        "port": 8001,
        "workers": 2,
        "depends_on": ["postgres", "redis"],
        "wait_timeout": 60,
        "secrets": ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET"],
        "health": {"http": "/health"},
    },
    "creator-hub": {
        "kind": "python",
        "port": 8002,
        "workers": 2,
        "depends_on": ["postgres", "redis", "auth-service"],
        "wait_timeout": 120,
        "volumes": {"creator-uploads": "/data/uploads"},
        "backup": "volumes",
        "secrets": ["POSTGRES_PASSWORD", "REDIS_PASSWORD"],
        "health": {"http": "/health"},
    },
    "ai-engine": {
        "kind": "python",
        "port": 8003,
        "workers": 1,
        "depends_on": ["postgres", "redis", "auth-service", "ollama", "chromadb"],
        "wait_timeout": 180,
        "secrets": ["POSTGRES_PASSWORD", "REDIS_PASSWORD"],
        "health": {"http": "/health"},
    },
    "channel-service": {
        "kind": "python",
        "port": 8004,
        "workers": 1,
        "depends_on": ["postgres", "redis", "auth-service", "ai-engine"],
        "wait_timeout": 180,
        "secrets": ["POSTGRES_PASSWORD", "REDIS_PASSWORD"],
        "health": {"http": "/health"},
    },
    "stack-monitor": {
        # Runs on every host: restarts a hung or unhealthy service (files/services/stack-monitor).
        # It holds the Docker socket, which amounts to root on the host (see README).
        "kind": "monitor",
        "port": 8010,
        "workers": 1,
        "wait_timeout": 30,
        "health": {"http": "/health"},
    },
    "api-gateway": {
        "kind": "gateway",
        "port": 8080,
        "image": {"registry": "nginx:stable", "local": "nginx"},
        "depends_on": ["auth-service", "creator-hub", "ai-engine", "channel-service"],
        "wait_timeout": 60,
        "routes": {
            "/api/auth/": "auth-service",
            "/api/creators/": "creator-hub",
            "/api/ai/": "ai-engine",
            "/api/channels/": "channel-service",
        },
        "websocket_routes": ["/api/channels/"],
        # Requests with a body (POST, PUT, PATCH, DELETE) on these routes are refused with 401
        # at the gateway, before their body is read, unless auth_verify accepts their token.
        # The apps still check every request themselves.
        "auth_routes": ["/api/creators/", "/api/ai/"],
        "auth_verify": "/api/auth/verify",
        "health": {"tcp": True, "http": "/health"},
    },
}

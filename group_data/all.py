"""The stack, as data: the single source of truth for every service.

Each entry in ``services`` is validated by ``stackdeploy.model`` before any host is
touched. Adding a service is one entry here plus what its image is built from: your own
Dockerfile in ``files/services/<name>/`` (any language), or, for the bundled FastAPI
template, a source folder there (an ``app`` package with ``app.main:app`` and a
``requirements.txt``).

Keys of a service:
    role          how it runs: "app" (serves HTTP behind the gateway: rolling start-first
                  updates, several hosts), "worker" (no route; rolling, several hosts),
                  "stateful" (keeps volumes: stop-then-start, one host, backups), or one of
                  the platform's own "gateway", "monitor" (the health monitor, on every host)
                  and "logstore" (rsyslog, receives the logs of every container of every host)
    build         what its image comes from, one of
                  {"dockerfile": "Dockerfile"}: your own, built in files/services/<name>/ (or in
                      {"context": "<folder of this project>"}) with the build argument
                      BASE_IMAGE (``ARG BASE_IMAGE`` / ``FROM ${BASE_IMAGE}``): the offline
                      Debian base, or debian:bookworm-slim in registry mode;
                  {"template": "python"}: the bundled FastAPI template and its source folder.
                  No ``build``: the platform's own recipe named by ``image``
    port          the port the service listens on inside the stack network
    workers       uvicorn worker processes (the python template only)
    depends_on    services that must be ready before this one starts
    wait_timeout  seconds this service waits for its dependencies (and the deploy
                  waits for it to become healthy)
    health        how readiness is checked: {"tcp": True} plus one of
                  {"http": "/path"} or {"command": [...]} run inside the container
    image         no ``build`` only: {"registry": "...", "local": "<recipe>"}; a local recipe
                  is a Dockerfile template in templates/images/. No "local" key: the service
                  runs in registry mode only (Grafana), an offline deploy leaves it out, and no
                  other service may depend on it
    volumes       named volumes: {"volume-name": "/path/in/container"}
    env           extra environment (plain values; secrets go in ``secrets``)
    secrets       names of generated secrets this service receives, as env variables
    restarts_with dependencies whose restart by the monitor restarts this service too
    publish       a port published on the host (at ``publish_bind``, default 0.0.0.0)
    entrypoint    replaces the image's entrypoint (``command`` then gives its arguments)
    every_host    True: runs on every host (a host's node exporter), not listed in placement
    host_paths    host paths mounted read-only: {"/": "/host"}
    scrapes       services whose /metrics this one collects (Prometheus), on every host
    config_files  files rendered per host from templates/metrics/: {"/path/in/container": "x.yml.j2"}
    user          "uid" or "uid:gid" the container runs as (default: the image's own user)
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
    "data": ["postgres", "redis", "log-store", "postgres-exporter", "redis-exporter"],
    "ai": ["ollama", "chromadb", "ai-engine"],
    "apps": ["auth-service", "creator-hub", "channel-service"],
    "edge": ["api-gateway", "nginx-exporter"],
    "monitoring": ["alertmanager", "prometheus", "grafana"],
}

# The log store (the "log-store" service) keeps every container's logs, one file per day, and
# deletes the oldest days past either limit. Read them with logs.py (see README).
logs = {"keep_days": 14, "max_megabytes": 2048}

# Secrets: generated on the first deploy, then reused forever (see stackdeploy/secrets.py).
# GRAFANA_ADMIN_PASSWORD only in registry mode, where Grafana runs.
secrets = ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET", "GRAFANA_ADMIN_PASSWORD"]

# Prometheus (README "Metrics and alerts"): scrape interval and when alerts fire. Every key is
# optional: scrape_interval, alert_after, rate_window (seconds), error_ratio (share of 5xx),
# latency_p95 (seconds), disk_free_ratio.
metrics = {"scrape_interval": 15, "alert_after": 120}

# Environment every service receives.
shared_env = {"POSTGRES_USER": "stack", "POSTGRES_DB": "stack"}

# The API gateway is the only service published to clients: HTTPS on tls["port"], and plain
# HTTP on gateway_port, which answers /health (Docker's own check) and redirects everything
# else to HTTPS with a 308. (The log store and the exporters are published to the stack's
# other hosts only, Prometheus's UI to its host's 127.0.0.1.)
gateway_port = 8080
gateway_bind = "0.0.0.0"

# HTTPS at the gateway (TLS 1.2 and 1.3, Mozilla's "intermediate" ciphers, HSTS, HTTP/2).
#   source        where the certificate comes from:
#     "self-signed" (default): a stack CA and a server certificate, generated on the first
#                   deploy and kept in .deploy/tls/<stack_name>-<environment>/ on this machine
#                   (ca.pem is what clients verify with: curl --cacert); reissued when fewer
#                   than 30 days are left or the names change. It also covers the address
#                   each gateway is reached at from here.
#     "files":      your own certificate and key on this machine: cert_file (PEM, the chain
#                   after it) and key_file, absolute or relative to this project. A key that
#                   does not match, an expired certificate or a server name it does not cover
#                   stops the deploy before any host is touched.
#     "acme":       Let's Encrypt through Debian's certbot, HTTP-01 through the gateway
#                   (gateway_port must be port 80 from the internet); needs acme_email and
#                   public DNS names. See README "TLS at the gateway": certbot runs on the host.
#   port          the HTTPS port (default 443)
#   server_names  the DNS names (or IP addresses) clients use (default ["localhost"])
tls = {"source": "self-signed", "port": 8443, "server_names": ["localhost"]}

services = {
    "postgres": {
        "role": "stateful",
        "port": 5432,
        "image": {"registry": "postgres:15", "local": "postgres"},
        # Every container drops all capabilities (stackdeploy/hardening.py). The official
        # image (registry mode) starts as root, gives its data directory to postgres and
        # switches to it: these. The offline image runs as postgres from the start.
        "cap_add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
        "volumes": {"postgres-data": "/var/lib/postgresql/data"},
        "backup": "pg_dump",
        "secrets": ["POSTGRES_PASSWORD"],
        "health": {"tcp": True, "command": ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "stack", "-d", "stack"]},
    },
    "redis": {
        "role": "stateful",
        "port": 6379,
        "image": {"registry": "redis:7", "local": "redis"},
        "cap_add": ["CHOWN", "SETGID", "SETUID"],  # the official image's chown and switch to redis
        "volumes": {"redis-data": "/data"},
        "backup": "redis_rdb",
        "secrets": ["REDIS_PASSWORD"],
        # The password from its secret file (<NAME>_FILE), or from the environment where set.
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
        "role": "stateful",
        "port": 11434,
        "image": {"registry": "ollama/ollama", "local": "ollama-standin"},
        "volumes": {"ollama-models": "/data"},
        "env": {"OLLAMA_MODELS": "/data/models"},  # the real Ollama keeps its models in the volume
        "health": {"tcp": True, "http": "/api/version"},
    },
    "chromadb": {
        "role": "stateful",
        "port": 8000,
        "image": {"registry": "chromadb/chroma", "local": "chromadb"},
        "volumes": {"chroma-data": "/data"},
        "backup": "volumes",
        "health": {"tcp": True, "http": "/api/v2/heartbeat"},
    },
    "auth-service": {
        "role": "app",
        "build": {"template": "python"},
        "port": 8001,
        "workers": 2,
        "depends_on": ["postgres", "redis"],
        "wait_timeout": 60,
        "secrets": ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET"],
        "health": {"http": "/health"},
    },
    "creator-hub": {
        "role": "app",
        "build": {"template": "python"},
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
        "role": "app",
        "build": {"template": "python"},
        "port": 8003,
        "workers": 1,
        "depends_on": ["postgres", "redis", "auth-service", "ollama", "chromadb"],
        "wait_timeout": 180,
        "secrets": ["POSTGRES_PASSWORD", "REDIS_PASSWORD"],
        "health": {"http": "/health"},
    },
    "channel-service": {
        "role": "app",
        "build": {"template": "python"},
        "port": 8004,
        "workers": 1,
        "depends_on": ["postgres", "redis", "auth-service", "ai-engine"],
        "wait_timeout": 180,
        "secrets": ["POSTGRES_PASSWORD", "REDIS_PASSWORD"],
        "health": {"http": "/health"},
    },
    "log-store": {
        # rsyslog: every host's Docker engine sends it each container's output (syslog log
        # driver over UDP); one JSON line per message, one file per day (stackdeploy/logstore.py).
        "role": "logstore",
        "port": 6514,
        "image": {"registry": "rsyslog/syslog_appliance_alpine", "local": "rsyslog"},
        "volumes": {"stack-logs": "/var/log/stack"},
        "health": {"tcp": True},
    },
    "stack-monitor": {
        # Runs on every host: restarts a hung or unhealthy service (files/services/stack-monitor).
        # It holds the Docker socket, which amounts to root on the host (see README).
        "role": "monitor",
        "build": {"template": "python"},
        "port": 8010,
        "workers": 1,
        "wait_timeout": 30,
        "health": {"http": "/health"},
    },
    "api-gateway": {
        "role": "gateway",
        "port": 8080,
        "image": {"registry": "nginx:stable", "local": "nginx"},
        "cap_add": ["CHOWN", "SETGID", "SETUID"],  # the official image: a root master, workers as nginx
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
        # Each client address may ask these 10 times a second, in bursts of up to 20 more
        # (stackdeploy/composefile.py LOGIN_PER_SECOND); past that the gateway answers 429 with
        # Retry-After. auth-service also locks a username out after LOGIN_MAX_FAILURES attempts
        # within LOGIN_LOCKOUT_SECONDS, whatever the address.
        "login_paths": ["/api/auth/login", "/api/auth/register"],
        "health": {"tcp": True, "http": "/health"},
    },

    # Metrics and alerts (README "Metrics and alerts"). Offline, each is built from Debian's
    # package on the stack's base (templates/images/); in registry mode the official image,
    # pinned to the version Debian ships, so flags and metrics are the same.
    "alertmanager": {
        "role": "stateful",
        "port": 9093,
        "image": {"registry": "prom/alertmanager:v0.25.0", "local": "alertmanager"},
        "volumes": {"alertmanager-data": "/alertmanager"},
        "command": ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager",
                    "--web.listen-address=:9093", "--cluster.listen-address="],
        "config_files": {"/etc/alertmanager/alertmanager.yml": "alertmanager.yml.j2"},
        "health": {"tcp": True, "http": "/-/ready"},
    },
    "prometheus": {
        "role": "stateful",
        "port": 9090,
        # The UI on this host's loopback only: reach it with ssh -L 9090:127.0.0.1:9090 <host>.
        "publish": 9090,
        "publish_bind": "127.0.0.1",
        "image": {"registry": "prom/prometheus:v2.42.0", "local": "prometheus"},
        "depends_on": ["alertmanager"],
        "volumes": {"prometheus-data": "/prometheus"},
        "command": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                    "--storage.tsdb.retention.time=15d", "--web.listen-address=:9090"],
        "scrapes": ["prometheus", "alertmanager", "auth-service", "creator-hub", "ai-engine", "channel-service",
                    "stack-monitor", "node-exporter", "nginx-exporter", "postgres-exporter", "redis-exporter"],
        "config_files": {"/etc/prometheus/prometheus.yml": "prometheus.yml.j2",
                         "/etc/prometheus/alerts.yml": "alerts.yml.j2"},
        "health": {"tcp": True, "http": "/-/ready"},
    },
    "grafana": {
        # Registry mode only: Grafana has no Debian package and cannot be built offline, so its
        # image names no "local" recipe and an offline deploy leaves it out (README "Metrics and
        # alerts": the Prometheus UI and the documented queries instead). Its data source and the
        # stack dashboard are provisioned from templates/metrics/grafana-*. The UI on this host's
        # loopback only, like Prometheus's: ssh -L 3000:127.0.0.1:3000 <host>, log in as admin with
        # the generated GRAFANA_ADMIN_PASSWORD.
        "role": "stateful",
        "port": 3000,
        "publish": 3000,
        "publish_bind": "127.0.0.1",
        "image": {"registry": "grafana/grafana-oss:12.3.0"},
        "user": "472:0",  # the image's own grafana user (uid 472, group 0 owns its directories)
        "depends_on": ["prometheus"],
        "wait_timeout": 120,  # the first start migrates its database
        "volumes": {"grafana-data": "/var/lib/grafana"},
        "secrets": ["GRAFANA_ADMIN_PASSWORD"],
        "env": {"GF_SERVER_HTTP_PORT": "3000", "GF_SECURITY_ADMIN_USER": "admin",
                "GF_AUTH_ANONYMOUS_ENABLED": "false", "GF_USERS_ALLOW_SIGN_UP": "false",
                "GF_ANALYTICS_REPORTING_ENABLED": "false", "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
                "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
                "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": "/etc/grafana/dashboards/stack.json"},
        # The password from its secret file (<NAME>_FILE), or from the environment where set. Grafana
        # sets it when it first creates its database (the grafana-data volume); it is never rotated.
        "entrypoint": ["sh", "-c", "export GF_SECURITY_ADMIN_PASSWORD=\"${GRAFANA_ADMIN_PASSWORD:-$(cat"
                       " \"$GRAFANA_ADMIN_PASSWORD_FILE\")}\"; unset GRAFANA_ADMIN_PASSWORD"
                       " GRAFANA_ADMIN_PASSWORD_FILE; exec /run.sh"],
        "config_files": {"/etc/grafana/provisioning/datasources/stack.yml": "grafana-datasource.yml.j2",
                         "/etc/grafana/provisioning/dashboards/stack.yml": "grafana-dashboard-provider.yml.j2",
                         "/etc/grafana/dashboards/stack.json": "grafana-stack-dashboard.json.j2"},
        "health": {"tcp": True, "http": "/api/health"},
    },
    "node-exporter": {
        # One per host: disks, memory, CPU of the host itself (its root mounted read-only).
        "role": "stateful",
        "port": 9100,
        "every_host": True,
        "image": {"registry": "prom/node-exporter:v1.5.0", "local": "node-exporter"},
        "host_paths": {"/": "/host"},
        "command": ["--path.rootfs=/host", "--web.listen-address=:9100",
                    "--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run|var/lib/docker/.+)($|/)"],
        "health": {"tcp": True, "http": "/metrics"},
    },
    "nginx-exporter": {
        # The gateway's stub_status, on its internal port 8081 (never published): placed with it.
        "role": "stateful",
        "port": 9113,
        "image": {"registry": "nginx/nginx-prometheus-exporter:0.11.0", "local": "nginx-exporter"},
        "depends_on": ["api-gateway"],
        "command": ["--nginx.scrape-uri=http://api-gateway:8081/stub_status", "--nginx.retries=30",
                    "--nginx.retry-interval=2s", "--web.listen-address=:9113"],
        "health": {"tcp": True, "http": "/metrics"},
    },
    "postgres-exporter": {
        "role": "stateful",
        "port": 9187,
        "image": {"registry": "quay.io/prometheuscommunity/postgres-exporter:v0.11.1", "local": "postgres-exporter"},
        "depends_on": ["postgres"],
        "secrets": ["POSTGRES_PASSWORD"],
        # The password from its secret file (<NAME>_FILE), or from the environment where set.
        "entrypoint": ["sh", "-c", "DATA_SOURCE_PASS=\"${POSTGRES_PASSWORD:-$(cat \"$POSTGRES_PASSWORD_FILE\")}\""
                       " DATA_SOURCE_USER=\"$POSTGRES_USER\""
                       " DATA_SOURCE_URI=\"$POSTGRES_HOST:$POSTGRES_PORT/$POSTGRES_DB?sslmode=disable\""
                       " exec postgres_exporter --web.listen-address=:9187"],
        "health": {"tcp": True, "http": "/metrics"},
    },
    "redis-exporter": {
        "role": "stateful",
        "port": 9121,
        "image": {"registry": "oliver006/redis_exporter:v1.45.0-alpine", "local": "redis-exporter"},
        "depends_on": ["redis"],
        "secrets": ["REDIS_PASSWORD"],
        "entrypoint": ["sh", "-c", "export REDIS_PASSWORD=\"${REDIS_PASSWORD:-$(cat \"$REDIS_PASSWORD_FILE\")}\""
                       " REDIS_ADDR=\"redis://$REDIS_HOST:$REDIS_PORT\"; unset REDIS_PASSWORD_FILE;"
                       " exec /redis_exporter --web.listen-address=:9121"],
        "health": {"tcp": True, "http": "/metrics"},
    },
}

#!/bin/sh
# Fresh machine to a passing test suite: set up the venv, then run every test. The
# integration tests deploy the real stack, which installs and starts the Docker engine
# when none answers (the deploy's own "ensure engine" phase).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh --dev
# The simulated hosts of the multi-host tests (tests/hosts/simhosts.py) need these, and
# tests/integration/test_registry.py runs Debian's registry (Distribution) for them.
need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v ssh >/dev/null 2>&1 || need="$need openssh-client"
[ -x /usr/bin/docker-registry ] || need="$need docker-registry"
if [ -n "$need" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
# Where systemd runs, the package starts its own registry on port 5000 of every address; the
# test runs its own on the simulated hosts' bridge, port 5000.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry
fi
exec .venv/bin/pytest -v tests "$@"

#!/bin/sh
# Fresh machine to a passing test suite: set up the venv, then run every test. The
# integration tests deploy the real stack, which installs and starts the Docker engine
# when none answers (the deploy's own "ensure engine" phase).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh --dev
# The simulated hosts of the multi-host tests (tests/hosts/simhosts.py) need these.
need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v ssh >/dev/null 2>&1 || need="$need openssh-client"
if [ -n "$need" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
exec .venv/bin/pytest -v tests "$@"

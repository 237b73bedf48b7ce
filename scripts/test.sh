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
# The unit tests run the rendered gateway and log store configurations through real nginx
# and rsyslogd binaries (tests/unit/test_tls.py, test_logstore.py).
[ -x /usr/sbin/nginx ] || need="$need nginx-light"
[ -x /usr/sbin/rsyslogd ] || need="$need rsyslog"
if [ -n "$need" ]; then
    # Installed for their binaries only: a policy-rc.d that says no keeps their packages
    # from starting a system nginx on port 80 or a system rsyslogd.
    blocker=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
        blocker=/usr/sbin/policy-rc.d
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
    [ -z "$blocker" ] || rm -f "$blocker"
fi
# Where systemd runs, the package starts its own registry on port 5000 of every address; the
# test runs its own on the simulated hosts' bridge, port 5000.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry
fi
# The unit tests first, stopping at the first failure: a minute, before any deploy. Then the
# integration tests; --durations: where they spend their time, in every CI log. Arguments go
# to both (e.g. -m "not simhosts" leaves out the simulated hosts' modules).
.venv/bin/pytest -q -x tests/unit "$@"
exec .venv/bin/pytest -v --durations=30 tests/integration "$@"

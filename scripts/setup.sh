#!/bin/sh
# Set up the control machine: a Python venv in .venv with the deploy's dependencies
# (and, with --dev, the test tools). Idempotent; safe to run on every invocation.
# The Docker engine itself is the deploy's job (phase "ensure engine"), not this script's.
set -eu
cd "$(dirname "$0")/.."
requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt
if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
# The `stackdeploy` command (pyproject.toml's console script), on this very checkout.
if [ ! -x .venv/bin/stackdeploy ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check wheel
    .venv/bin/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
fi
# The tests check the rendered Prometheus config and alert rules with promtool, which ships in
# Debian's prometheus package: only the binary is taken (dpkg-deb), nothing is started.
if [ "${1:-}" = "--dev" ] && [ ! -x .tools/promtool ] && ! command -v promtool >/dev/null 2>&1; then
    dir=$(mktemp -d)
    (cd "$dir" && apt-get download prometheus >/dev/null 2>&1) \
        || { apt-get update -qq && (cd "$dir" && apt-get download prometheus); }
    mkdir -p .tools
    dpkg-deb --fsys-tarfile "$dir"/prometheus_*.deb | tar -x -O ./usr/bin/promtool > .tools/promtool
    chmod 0755 .tools/promtool
    rm -rf "$dir"
fi

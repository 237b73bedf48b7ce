#!/bin/sh
# Fresh machine to a passing test suite: set up the venv, then run every test. The
# integration tests deploy the real stack, which installs and starts the Docker engine
# when none answers (the deploy's own "ensure engine" phase).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh --dev
exec .venv/bin/pytest -v tests "$@"

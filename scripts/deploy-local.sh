#!/bin/sh
# Fresh machine to the full stack running on the local Docker engine, in one command.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/pyinfra -y inventory/local.py deploy.py "$@"

#!/bin/sh
# Run the portcullis integration suite against build/portcullis.
# Usage: test/run-integration.sh [-v] [--keep] [FILTER ...]
# Needs: python3 (Debian's /usr/bin/python3), openssl, redis-server.
set -eu
cd "$(dirname "$0")/.."
if [ ! -x "${PORTCULLIS_BIN:-build/portcullis}" ]; then
    echo "run-integration: ${PORTCULLIS_BIN:-build/portcullis} not built (run make)" >&2
    exit 2
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" test/integration/run.py "$@"

#!/usr/bin/env bash
# The whole test suite (the README's test command; .ci/run calls it too): installs the protocol
# peers the tests run against if they are missing — web-push-testing from npm, pinned in
# tests/peers/package-lock.json, Debian's PostgreSQL, openssl (the FCM and APNs tests make
# their throwaway keys with it), Synapse and Schemathesis (pinned, in venvs in tests/peers) — starts a
# throwaway PostgreSQL cluster on 127.0.0.1 (scripts/postgres.sh), runs `cargo test --workspace` (extra arguments are passed
# on) and stops the cluster. The tests start the other peers themselves on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "scripts/test.sh: installing Node.js (Debian packages nodejs, npm)" >&2
        apt-get install -y --no-install-recommends nodejs npm >/dev/null
    else
        echo "scripts/test.sh: Node.js 20+ and npm are needed (web-push-testing); install them" >&2
        exit 1
    fi
fi
if ! command -v openssl >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "scripts/test.sh: installing openssl (Debian package openssl)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl >/dev/null
    else
        echo "scripts/test.sh: openssl is needed (the FCM tests make RSA keys with it); install it" >&2
        exit 1
    fi
fi
if [ ! -d tests/peers/node_modules/web-push-testing ]; then
    echo "scripts/test.sh: installing web-push-testing (npm ci in tests/peers)" >&2
    (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)
fi
# Synapse (a real Matrix homeserver, the Matrix push gateway API's client), pinned.
SYNAPSE_VERSION=1.163.2
if [ ! -x tests/peers/synapse-venv/bin/python ] \
    || ! tests/peers/synapse-venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('matrix-synapse') != '$SYNAPSE_VERSION')" 2>/dev/null; then
    if ! python3 -m venv --help >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            echo "scripts/test.sh: installing python3-venv (Debian package)" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >/dev/null
        else
            echo "scripts/test.sh: Python 3 with venv is needed (Synapse); install python3-venv" >&2
            exit 1
        fi
    fi
    echo "scripts/test.sh: installing matrix-synapse $SYNAPSE_VERSION into tests/peers/synapse-venv" >&2
    rm -rf tests/peers/synapse-venv
    python3 -m venv tests/peers/synapse-venv
    tests/peers/synapse-venv/bin/pip install --quiet --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
fi
# Schemathesis (checks every answer of the API against docs/openapi.json), pinned.
SCHEMATHESIS_VERSION=4.32.5
if [ ! -x tests/peers/schemathesis-venv/bin/st ] \
    || ! tests/peers/schemathesis-venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION')" 2>/dev/null; then
    echo "scripts/test.sh: installing schemathesis $SCHEMATHESIS_VERSION into tests/peers/schemathesis-venv" >&2
    rm -rf tests/peers/schemathesis-venv
    python3 -m venv tests/peers/schemathesis-venv
    tests/peers/schemathesis-venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
trap pg_stop EXIT
pg_start
cargo test --workspace "$@"

#!/usr/bin/env bash
# The whole test suite (the README's test command; .ci/run calls it too): installs the protocol
# peers the tests run against if they are missing — web-push-testing from npm, pinned in
# tests/peers/package-lock.json, Debian's PostgreSQL, and openssl (the FCM tests make their
# throwaway service-account keys with it) — starts a throwaway PostgreSQL cluster
# on 127.0.0.1 (scripts/postgres.sh), runs `cargo test --workspace` (extra arguments are passed
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
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
trap pg_stop EXIT
pg_start
cargo test --workspace "$@"

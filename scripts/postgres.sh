#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on 127.0.0.1 only.
#   source scripts/postgres.sh; pg_start; ...; pg_stop
# pg_start installs Debian's postgresql package if its binaries are missing (as root), runs
# initdb in a fresh temporary directory owned by a non-root user (the server refuses to run as
# root: under root it runs as the `postgres` user), starts the server on a free port and exports
# PUSHGATE_TEST_DATABASE_URL (superuser `pushgate`, trust authentication, loopback only).

pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

pg_start() {
    local bin
    if ! bin=$(pg_bin); then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            echo "scripts/postgres.sh: installing PostgreSQL (Debian package postgresql)" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >/dev/null
            bin=$(pg_bin)
        else
            echo "scripts/postgres.sh: PostgreSQL is needed (Debian: apt-get install postgresql)" >&2
            return 1
        fi
    fi
    local run_as=()
    PG_TEST_DIR=$(mktemp -d /tmp/pushgate-pg.XXXXXX)
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$PG_TEST_DIR"
        run_as=(runuser -u postgres --)
    fi
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${run_as[@]}" "$bin/initdb" -D "$PG_TEST_DIR/data" -U pushgate --auth=trust -E UTF8 --no-locale >"$PG_TEST_DIR/initdb.log" 2>&1 \
        || { cat "$PG_TEST_DIR/initdb.log" >&2; return 1; }
    # How a test stops and starts the server again (tests/pg_restart.rs).
    export PUSHGATE_TEST_PG_STOP="${run_as[*]} $bin/pg_ctl -D $PG_TEST_DIR/data -m fast -w stop"
    export PUSHGATE_TEST_PG_START="${run_as[*]} $bin/pg_ctl -D $PG_TEST_DIR/data -l $PG_TEST_DIR/server.log -w -t 60 start -o '-c listen_addresses=127.0.0.1 -p $port -k $PG_TEST_DIR -c max_connections=400 -c synchronous_commit=on'"
    sh -c "$PUSHGATE_TEST_PG_START" >/dev/null || { cat "$PG_TEST_DIR/server.log" >&2; return 1; }
    PG_TEST_RUN_AS=("${run_as[@]}")
    PG_TEST_BIN=$bin
    export PUSHGATE_TEST_DATABASE_URL="postgres://pushgate@127.0.0.1:$port/postgres"
    export PUSHGATE_TEST_PSQL="$bin/psql"
    echo "scripts/postgres.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PG_TEST_DIR)" >&2
}

pg_stop() {
    if [ -n "${PG_TEST_DIR:-}" ] && [ -d "$PG_TEST_DIR/data" ]; then
        "${PG_TEST_RUN_AS[@]}" "$PG_TEST_BIN/pg_ctl" -D "$PG_TEST_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_TEST_DIR"
    fi
}

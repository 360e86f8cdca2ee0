# Sourced by scripts/test and bench scripts: makes sure a PostgreSQL server is reachable and
# exports CONTINUUM_TEST_POSTGRES_URL (an admin URL whose user may create databases).
# Uses $CONTINUUM_TEST_POSTGRES_URL if it already answers; otherwise installs Debian's
# postgresql when missing and starts a private cluster on a free port, stopped on exit.

continuum_pg_ready() {
  psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

continuum_start_postgres() {
  if [ -n "${CONTINUUM_TEST_POSTGRES_URL:-}" ] && continuum_pg_ready "$CONTINUUM_TEST_POSTGRES_URL"; then
    echo "postgres: using $CONTINUUM_TEST_POSTGRES_URL" >&2
    return 0
  fi
  local pgbin
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ] || ! command -v psql >/dev/null; then
    echo "postgres: installing Debian's postgresql" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql postgresql-client >/dev/null
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  CONTINUUM_PGDATA=$(mktemp -d /tmp/continuum-pg.XXXXXX)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$CONTINUUM_PGDATA"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$pgbin/initdb" -D "$CONTINUUM_PGDATA" -A trust -U postgres -E UTF8 --no-locale >/dev/null
  "${as[@]}" "$pgbin/pg_ctl" -D "$CONTINUUM_PGDATA" -l "$CONTINUUM_PGDATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $CONTINUUM_PGDATA -c fsync=off -c max_connections=400 -c shared_buffers=256MB" start >/dev/null
  CONTINUUM_PG_STOP=("${as[@]}" "$pgbin/pg_ctl" -D "$CONTINUUM_PGDATA" -m fast -w stop)
  export CONTINUUM_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "postgres: started a private server at $CONTINUUM_TEST_POSTGRES_URL (data in $CONTINUUM_PGDATA)" >&2
  continuum_pg_ready "$CONTINUUM_TEST_POSTGRES_URL" || { echo "postgres: the server did not answer" >&2; cat "$CONTINUUM_PGDATA/server.log" >&2; return 1; }
}

continuum_stop_postgres() {
  if [ -n "${CONTINUUM_PGDATA:-}" ]; then
    "${CONTINUUM_PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$CONTINUUM_PGDATA"
    unset CONTINUUM_PGDATA
  fi
}

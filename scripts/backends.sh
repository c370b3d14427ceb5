#!/usr/bin/env bash
# scripts/backends.sh — local test backends for Vitrine (used by .ci/run and by developers).
#
#   scripts/backends.sh install [postgres|s3|amqp|all]   install what is missing (Garage: cargo install, ~13 min once)
#   scripts/backends.sh start   [postgres|s3|amqp|all]   install if missing, start (or reuse), verify, write env file
#   scripts/backends.sh stop    [postgres|s3|amqp|all]   stop cleanly
#   scripts/backends.sh status  [postgres|s3|amqp|all]   what runs where (exit 1 if something asked for is down)
#   scripts/backends.sh env                         print `export VITRINE_TEST_…` lines for running backends
#   scripts/backends.sh clean                       stop everything and delete the state dir
#
# Typical use:   scripts/backends.sh start all && eval "$(scripts/backends.sh env)" && cargo test --workspace
#
# Settings (environment variables, all optional):
#   VITRINE_BACKENDS_DIR     state dir (data, logs, configs, env.sh)   default: <repo>/target/backends
#   VITRINE_TOOLS            where tools built from crates.io go       default: /opt/vitrine-tools
#                            (Garage: $VITRINE_TOOLS/garage/bin/garage)
#   VITRINE_PG_PORT          PostgreSQL TCP port on 127.0.0.1          default: 55432
#   VITRINE_PG_BIN           PostgreSQL bin dir                        default: newest /usr/lib/postgresql/*/bin
#   VITRINE_S3_PORT          Garage S3 API port                        default: 3900
#   VITRINE_S3_RPC_PORT      Garage RPC port                           default: 3901
#   VITRINE_S3_ADMIN_PORT    Garage admin API port                     default: 3903
#   VITRINE_AMQP_PORT        RabbitMQ AMQP port on 127.0.0.1           default: 55672
#   VITRINE_AMQP_DIST_PORT   RabbitMQ Erlang distribution port         default: 55673
#   VITRINE_AMQP_EPMD_PORT   epmd port of the test node                default: 54369
#   VITRINE_BACKENDS_TIMEOUT seconds to wait for a server to come up   default: 60
#
# RabbitMQ (amqp) comes from Debian's rabbitmq-server package (apt-get, only when missing)
# and runs as its own node vitrine-test@localhost with its own ports, epmd, cookie and data
# under $STATE/rabbitmq, so a node the package may have started on :5672 is never touched.
# $STATE/rabbitmq/ctl.sh is rabbitmqctl for that node (exported as VITRINE_TEST_AMQP_CTL;
# the task-queue broker-restart test calls `ctl.sh stop_app` / `start_app`).
#
# Adding a backend: write install_amqp, start_amqp, stop_amqp, status_amqp
# (start_X must end by writing its export lines with `write_env X VAR=value …`), and add
# the name to ALL_BACKENDS. Nothing else needs to change.
#
# PostgreSQL runs with fsync=off, synchronous_commit=off and full_page_writes=off: its data
# is throw-away test data (re-created on every CI run), so crash durability buys nothing,
# while the tests' many CREATE DATABASE / DROP DATABASE calls get several times faster
# without an fsync per file. Never copy these settings to a real deployment.

set -euo pipefail

ALL_BACKENDS=(postgres s3 amqp)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${VITRINE_BACKENDS_DIR:-$REPO_ROOT/target/backends}"
VITRINE_TOOLS="${VITRINE_TOOLS:-/opt/vitrine-tools}"
TIMEOUT="${VITRINE_BACKENDS_TIMEOUT:-60}"

PG_PORT="${VITRINE_PG_PORT:-55432}"
S3_PORT="${VITRINE_S3_PORT:-3900}"
S3_RPC_PORT="${VITRINE_S3_RPC_PORT:-3901}"
S3_ADMIN_PORT="${VITRINE_S3_ADMIN_PORT:-3903}"
AMQP_PORT="${VITRINE_AMQP_PORT:-55672}"
AMQP_DIST_PORT="${VITRINE_AMQP_DIST_PORT:-55673}"
AMQP_EPMD_PORT="${VITRINE_AMQP_EPMD_PORT:-54369}"

GARAGE_VERSION="2.5.0"
GARAGE_ROOT="$VITRINE_TOOLS/garage"
GARAGE_BIN="$GARAGE_ROOT/bin/garage"
S3_REGION="garage"
S3_BUCKET="vitrine-test"
S3_KEY_NAME="vitrine-test-key"

# ----------------------------------------------------------------------------- helpers

log() { printf '[backends] %s\n' "$*" >&2; }
die() {
    printf '[backends] ERROR: %s\n' "$*" >&2
    exit 1
}

# Print the tail of a server log, loudly, to stderr.
show_log() {
    local file="$1"
    if [[ -f "$file" ]]; then
        printf '[backends] ---- last 40 lines of %s ----\n' "$file" >&2
        tail -n 40 "$file" >&2 || true
        printf '[backends] ---- end of %s ----\n' "$file" >&2
    else
        printf '[backends] (no log file at %s)\n' "$file" >&2
    fi
}

# port_in_use PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# require_free_port PORT VARNAME WHAT
require_free_port() {
    if port_in_use "$1"; then
        die "port $1 ($3) on 127.0.0.1 is already in use by another process; set $2 to a free port (e.g. $2=$(($1 + 10000)))"
    fi
}

check_port_value() {
    if [[ ! "$1" =~ ^[0-9]+$ ]] || (("$1" < 1 || "$1" > 65535)); then
        die "$2=$1 is not a valid TCP port"
    fi
}

# wait_until SECONDS CMD…: retry CMD every 0.25 s until it succeeds or SECONDS pass.
wait_until() {
    local secs="$1"
    shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.25
    done
}

# write_env NAME VAR=value …: the export lines of one backend; env.sh is rebuilt from all of them.
write_env() {
    local name="$1"
    shift
    local kv file="$STATE/$name.env"
    : >"$file.tmp"
    for kv in "$@"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}" >>"$file.tmp"
    done
    mv "$file.tmp" "$file"
    rebuild_env
}

drop_env() {
    rm -f "$STATE/$1.env"
    rebuild_env
}

rebuild_env() {
    local b
    {
        echo "# Written by scripts/backends.sh: exports for the backends running from $STATE"
        for b in "${ALL_BACKENDS[@]}"; do
            [[ -f "$STATE/$b.env" ]] && cat "$STATE/$b.env"
        done
    } >"$STATE/env.sh.tmp"
    mv "$STATE/env.sh.tmp" "$STATE/env.sh"
}

elapsed_since() { echo "$((SECONDS - $1))s"; }

# ----------------------------------------------------------------------------- postgres

# $STATE/postgres is owned by the postgres user when we run as root. It may be a symlink
# to a dir under /var/tmp (see pg_prepare_dirs); the real path is used, since postgres
# may not be able to follow the link's own path.
pg_set_paths() {
    PG_DIR="$STATE/postgres"
    if [[ -L "$PG_DIR" ]]; then PG_DIR="$(readlink -f "$PG_DIR")"; fi
    PG_DATA="$PG_DIR/data"
    PG_LOG="$PG_DIR/postgres.log"
}
pg_set_paths

pg_bindir() {
    if [[ -n "${VITRINE_PG_BIN:-}" ]]; then
        echo "$VITRINE_PG_BIN"
        return
    fi
    local d
    d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -n "$d" && -x "$d/initdb" ]]; then
        echo "$d"
    elif command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir
    elif command -v initdb >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}

# Run a PostgreSQL server-side command as the postgres user (initdb and postgres refuse root).
as_pg() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install_postgres() {
    if [[ -n "$(pg_bindir)" ]]; then
        return 0
    fi
    ((EUID == 0)) || die "PostgreSQL server binaries not found; install package postgresql-15 (or set VITRINE_PG_BIN)"
    log "installing postgresql-15 from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15 </dev/null
}

pg_running() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_prepare_dirs() {
    mkdir -p "$STATE"
    if ((EUID == 0)); then
        if ! id postgres >/dev/null 2>&1; then
            log "creating system user 'postgres' (PostgreSQL refuses to run as root)"
            useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
                --shell /usr/sbin/nologin postgres
        fi
        # The postgres user must be able to reach the data dir; a checkout under /root (mode
        # 700) is not reachable, so then the data lives under /var/tmp, linked from the state dir.
        if [[ ! -e "$PG_DIR" ]] && ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
            local alt
            alt="/var/tmp/vitrine-backends-$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)/postgres"
            log "user postgres cannot reach $STATE; keeping PostgreSQL data in $alt (symlinked)"
            mkdir -p "$alt"
            chmod 755 "$(dirname "$alt")"
            ln -sfn "$alt" "$PG_DIR"
            pg_set_paths
        fi
        mkdir -p "$PG_DIR"
        chown postgres: "$PG_DIR"
        chmod 700 "$PG_DIR"
        runuser -u postgres -- test -w "$PG_DIR/" ||
            die "user postgres cannot write $PG_DIR (check the permissions of its parent directories)"
    else
        mkdir -p "$PG_DIR"
        chmod 700 "$PG_DIR"
    fi
}

start_postgres() {
    local t0=$SECONDS
    check_port_value "$PG_PORT" VITRINE_PG_PORT
    install_postgres
    PG_BIN="$(pg_bindir)"
    [[ -n "$PG_BIN" ]] || die "PostgreSQL binaries not found (set VITRINE_PG_BIN)"
    pg_prepare_dirs

    if pg_running; then
        local running_port
        running_port="$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
        if [[ "$running_port" != "$PG_PORT" ]]; then
            die "PostgreSQL from $PG_DATA already runs on port $running_port, not VITRINE_PG_PORT=$PG_PORT; run '$0 stop postgres' first"
        fi
        log "postgres: already running on 127.0.0.1:$PG_PORT (reusing)"
    else
        require_free_port "$PG_PORT" VITRINE_PG_PORT "PostgreSQL"
        if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
            log "postgres: initdb $PG_DATA"
            rm -rf "$PG_DATA"
            if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 \
                --locale=C.UTF-8 --no-sync >"$PG_DIR/initdb.log" 2>&1; then
                show_log "$PG_DIR/initdb.log"
                die "postgres: initdb failed"
            fi
            echo "include_if_exists = 'vitrine.conf'" >>"$PG_DATA/postgresql.conf"
        fi
        # Settings are rewritten on every start so that a changed port takes effect.
        # A unix socket is made only when its path fits the 107-byte limit.
        local sockdir="$PG_DIR"
        if ((${#sockdir} + 20 > 107)); then sockdir=""; fi
        cat >"$PG_DATA/vitrine.conf" <<EOF
# Written by scripts/backends.sh on every start: throw-away test server, see that script.
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
        chmod 644 "$PG_DATA/vitrine.conf"
        log "postgres: starting on 127.0.0.1:$PG_PORT"
        if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" start >/dev/null 2>&1; then
            show_log "$PG_LOG"
            die "postgres: failed to start (log: $PG_LOG)"
        fi
    fi

    if ! wait_until "$TIMEOUT" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres; then
        show_log "$PG_LOG"
        die "postgres: not ready on 127.0.0.1:$PG_PORT after ${TIMEOUT}s"
    fi
    local got
    got="$("$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -c 'select 40 + 2' </dev/null 2>&1)" || true
    if [[ "$got" != "42" ]]; then
        show_log "$PG_LOG"
        die "postgres: test query failed: $got"
    fi
    # Each PostgreSQL test makes its own database (~8 MB each); drop those left by earlier
    # runs so that a developer's disk does not fill up run after run.
    local leftovers
    leftovers="$("$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -c "select datname from pg_database where datname like 'vitrine\_test\_%'" </dev/null)" || true
    if [[ -n "$leftovers" ]]; then
        log "postgres: dropping $(wc -l <<<"$leftovers") test databases left by earlier runs"
        while read -r db; do
            "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
                -c "drop database if exists \"$db\" with (force)" </dev/null >/dev/null || true
        done <<<"$leftovers"
    fi
    write_env postgres "VITRINE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    log "postgres: ready on 127.0.0.1:$PG_PORT ($(elapsed_since "$t0"); data $PG_DATA, log $PG_LOG)"
}

stop_postgres() {
    drop_env postgres
    PG_BIN="$(pg_bindir)"
    if [[ -z "$PG_BIN" ]] || ! pg_running; then
        log "postgres: not running"
        return 0
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop >/dev/null; then
        log "postgres: stopped"
    else
        show_log "$PG_LOG"
        die "postgres: pg_ctl stop failed"
    fi
}

status_postgres() {
    PG_BIN="$(pg_bindir)"
    if [[ -n "$PG_BIN" ]] && pg_running; then
        local port
        port="$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || echo '?')"
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
            echo "postgres: running   postgres://postgres@127.0.0.1:$port/postgres   data $PG_DATA"
            return 0
        fi
        echo "postgres: started but not accepting connections on 127.0.0.1:$port (log: $PG_LOG)"
        return 1
    fi
    echo "postgres: stopped"
    return 1
}

# ----------------------------------------------------------------------------- s3 (Garage)

GARAGE_DIR="$STATE/garage"
GARAGE_CONF="$GARAGE_DIR/garage.toml"
GARAGE_LOG="$GARAGE_DIR/garage.log"
GARAGE_PID="$GARAGE_DIR/garage.pid"
GARAGE_CREDS="$GARAGE_DIR/credentials"   # key id and secret, once created

garage_installed_version() {
    [[ -x "$GARAGE_BIN" ]] || return 1
    # `garage --version` prints e.g. "garage cargo:2.5.0 [features: …]"
    "$GARAGE_BIN" --version 2>/dev/null | grep -Eo '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1
}

install_s3() {
    local have
    have="$(garage_installed_version || true)"
    if [[ "$have" == "$GARAGE_VERSION" ]]; then
        return 0
    fi
    command -v cargo >/dev/null || die "cargo not found: needed to install Garage"
    if [[ -n "$have" ]]; then
        log "garage: $GARAGE_BIN is version $have, want $GARAGE_VERSION: reinstalling"
    fi
    log "garage: installing $GARAGE_VERSION into $GARAGE_ROOT (cargo install; ~13 min on 2 cores)"
    local t0=$SECONDS
    mkdir -p "$GARAGE_ROOT"
    # Run from / so that no project's .cargo/config applies to the build.
    (cd / && cargo install garage --locked --version "=$GARAGE_VERSION" --root "$GARAGE_ROOT" --force </dev/null)
    have="$(garage_installed_version || true)"
    [[ "$have" == "$GARAGE_VERSION" ]] || die "garage: installed, but $GARAGE_BIN reports version '${have:-?}'"
    log "garage: installed $GARAGE_VERSION in $(elapsed_since "$t0")"
}

garage() { "$GARAGE_BIN" -c "$GARAGE_CONF" "$@" </dev/null; }

garage_pid_alive() {
    local pid
    [[ -f "$GARAGE_PID" ]] || return 1
    pid="$(cat "$GARAGE_PID")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "garage.* server"
}

garage_write_config() {
    mkdir -p "$GARAGE_DIR/meta" "$GARAGE_DIR/data"
    local secret admin_token
    # rpc_secret is made once per state dir: the metadata remembers the cluster it belongs to.
    if [[ -f "$GARAGE_DIR/rpc_secret" ]]; then
        secret="$(cat "$GARAGE_DIR/rpc_secret")"
    else
        secret="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
        (umask 077 && echo "$secret" >"$GARAGE_DIR/rpc_secret")
    fi
    admin_token="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    (
        umask 077
        cat >"$GARAGE_CONF" <<EOF
# Written by scripts/backends.sh on every start: single-node throw-away Garage for tests.
metadata_dir = "$GARAGE_DIR/meta"
data_dir = "$GARAGE_DIR/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$S3_RPC_PORT"
rpc_public_addr = "127.0.0.1:$S3_RPC_PORT"
rpc_secret = "$secret"

[s3_api]
s3_region = "$S3_REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"

[admin]
api_bind_addr = "127.0.0.1:$S3_ADMIN_PORT"
admin_token = "$admin_token"
EOF
    )
}

# One-time cluster setup for a fresh metadata dir: layout, bucket, key, permissions.
garage_bootstrap() {
    local node_id out key_id secret
    node_id="$(garage node id -q 2>/dev/null)" || {
        show_log "$GARAGE_LOG"
        die "garage: 'garage node id' failed"
    }
    node_id="${node_id%%@*}"
    [[ "$node_id" =~ ^[0-9a-f]{16,}$ ]] || die "garage: could not parse node id from '$node_id'"
    log "garage: node ${node_id:0:16}…: applying layout, creating bucket $S3_BUCKET and key $S3_KEY_NAME"
    if ! { garage layout assign -z dc1 -c 1G "$node_id" &&
        garage layout apply --version 1 &&
        garage bucket create "$S3_BUCKET"; } >>"$GARAGE_DIR/setup.log" 2>&1; then
        show_log "$GARAGE_DIR/setup.log"
        die "garage: layout/bucket setup failed"
    fi
    out="$(garage key create "$S3_KEY_NAME" 2>&1)" || {
        echo "$out" >&2
        die "garage: key create failed"
    }
    key_id="$(awk -F':' '/^Key ID:/ {gsub(/[ \t]/, "", $2); print $2; exit}' <<<"$out")"
    secret="$(awk -F':' '/^Secret key:/ {gsub(/[ \t]/, "", $2); print $2; exit}' <<<"$out")"
    if [[ ! "$key_id" =~ ^GK[0-9a-f]+$ || ! "$secret" =~ ^[0-9a-f]{32,}$ ]]; then
        printf '%s\n' "$out" >&2
        die "garage: could not parse key id / secret from 'garage key create' output above"
    fi
    garage bucket allow --read --write --owner "$S3_BUCKET" --key "$S3_KEY_NAME" \
        >>"$GARAGE_DIR/setup.log" 2>&1 || {
        show_log "$GARAGE_DIR/setup.log"
        die "garage: bucket allow failed"
    }
    (umask 077 && printf '%s\n%s\n' "$key_id" "$secret" >"$GARAGE_CREDS")
}

# s3_request METHOD KEY [curl args…]: one signed request against the test bucket.
s3_request() {
    local method="$1" object="$2"
    shift 2
    curl -sS --fail-with-body --max-time 10 -X "$method" \
        --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_KEY_ID:$S3_SECRET" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        "http://127.0.0.1:$S3_PORT/$S3_BUCKET/$object" "$@"
}

# A real round trip: PUT, GET and compare, DELETE (the bucket is left empty for the tests).
s3_roundtrip() {
    local object="backends-sh-healthcheck-$$" body got
    body="vitrine healthcheck $(date +%s%N)"
    s3_request PUT "$object" --data-binary "$body" -H "Content-Type: text/plain" >/dev/null &&
        got="$(s3_request GET "$object")" &&
        [[ "$got" == "$body" ]] &&
        s3_request DELETE "$object" >/dev/null
}

start_s3() {
    local t0=$SECONDS p
    for p in S3_PORT S3_RPC_PORT S3_ADMIN_PORT; do check_port_value "${!p}" "VITRINE_$p"; done
    install_s3
    mkdir -p "$GARAGE_DIR"

    if garage_pid_alive; then
        log "garage: already running (pid $(cat "$GARAGE_PID"), reusing)"
    else
        rm -f "$GARAGE_PID"
        require_free_port "$S3_PORT" VITRINE_S3_PORT "Garage S3 API"
        require_free_port "$S3_RPC_PORT" VITRINE_S3_RPC_PORT "Garage RPC"
        require_free_port "$S3_ADMIN_PORT" VITRINE_S3_ADMIN_PORT "Garage admin API"
        garage_write_config
        log "garage: starting (S3 127.0.0.1:$S3_PORT, RPC :$S3_RPC_PORT, admin :$S3_ADMIN_PORT)"
        {
            echo
            echo "==== $(date -Is) started by scripts/backends.sh ===="
        } >>"$GARAGE_LOG"
        NO_COLOR=1 RUST_LOG="${RUST_LOG:-garage=info}" nohup "$GARAGE_BIN" -c "$GARAGE_CONF" server \
            </dev/null >>"$GARAGE_LOG" 2>&1 &
        echo $! >"$GARAGE_PID"
    fi

    # Wait until the node answers on RPC (the CLI talks to it there).
    local deadline=$((SECONDS + TIMEOUT))
    until garage status >/dev/null 2>&1; do
        if ! garage_pid_alive; then
            show_log "$GARAGE_LOG"
            die "garage: server exited during startup (log: $GARAGE_LOG)"
        fi
        if ((SECONDS >= deadline)); then
            show_log "$GARAGE_LOG"
            die "garage: no answer to 'garage status' after ${TIMEOUT}s (log: $GARAGE_LOG)"
        fi
        sleep 0.25
    done

    if [[ ! -s "$GARAGE_CREDS" ]]; then
        garage_bootstrap
    fi
    S3_KEY_ID="$(sed -n 1p "$GARAGE_CREDS")"
    S3_SECRET="$(sed -n 2p "$GARAGE_CREDS")"

    # The S3 endpoint can lag the layout by a moment: retry the round trip until the timeout.
    if ! wait_until "$TIMEOUT" s3_roundtrip; then
        log "garage: S3 round trip still failing after ${TIMEOUT}s; last attempt:"
        s3_roundtrip || true
        show_log "$GARAGE_LOG"
        die "garage: S3 PUT/GET check against http://127.0.0.1:$S3_PORT/$S3_BUCKET failed"
    fi

    write_env s3 \
        "VITRINE_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT" \
        "VITRINE_TEST_S3_BUCKET=$S3_BUCKET" \
        "VITRINE_TEST_S3_ACCESS_KEY_ID=$S3_KEY_ID" \
        "VITRINE_TEST_S3_SECRET_ACCESS_KEY=$S3_SECRET" \
        "VITRINE_TEST_S3_REGION=$S3_REGION"
    log "garage: ready, S3 PUT/GET verified on http://127.0.0.1:$S3_PORT bucket $S3_BUCKET ($(elapsed_since "$t0"); log $GARAGE_LOG)"
}

stop_s3() {
    drop_env s3
    if ! garage_pid_alive; then
        rm -f "$GARAGE_PID"
        log "garage: not running"
        return 0
    fi
    local pid
    pid="$(cat "$GARAGE_PID")"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 20 bash -c "! kill -0 $pid 2>/dev/null"; then
        log "garage: pid $pid ignored SIGTERM for 20s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 5 bash -c "! kill -0 $pid 2>/dev/null" || die "garage: pid $pid would not die"
    fi
    rm -f "$GARAGE_PID"
    log "garage: stopped"
}

status_s3() {
    if garage_pid_alive && garage status >/dev/null 2>&1; then
        echo "s3:       running   http://127.0.0.1:$S3_PORT bucket $S3_BUCKET (garage pid $(cat "$GARAGE_PID"), log $GARAGE_LOG)"
        return 0
    fi
    if garage_pid_alive; then
        echo "s3:       garage pid $(cat "$GARAGE_PID") alive but not answering (log: $GARAGE_LOG)"
        return 1
    fi
    echo "s3:       stopped"
    return 1
}

# ----------------------------------------------------------------------------- amqp (RabbitMQ)

# Our own node (name, ports, epmd, data, cookie), so it never meets a node that Debian's
# package may have started as a service (rabbit@<host> on 5672, epmd on 4369).
AMQP_DIR="$STATE/rabbitmq"
AMQP_NODE="vitrine-test@localhost"
AMQP_LOG="$AMQP_DIR/rabbitmq.log"
AMQP_PID="$AMQP_DIR/rabbitmq.pid"
AMQP_CTL="$AMQP_DIR/ctl.sh"
RABBIT_LIB="/usr/lib/rabbitmq/bin"

install_amqp() {
    if [[ -x "$RABBIT_LIB/rabbitmq-server" ]]; then
        return 0
    fi
    ((EUID == 0)) || die "RabbitMQ not found; install package rabbitmq-server (apt-get install rabbitmq-server)"
    local had_5672=0
    port_in_use 5672 && had_5672=1
    log "amqp: installing rabbitmq-server from Debian (~20 s)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server </dev/null
    # The package may start its own node (service rabbitmq-server, port 5672). We caused
    # it, so stop it: ours runs separately, and two Erlang VMs on 2 cores slow the tests.
    if ((!had_5672)) && wait_until 5 port_in_use 5672; then
        log "amqp: the package started a RabbitMQ service on :5672; stopping it (ours runs on :$AMQP_PORT)"
        service rabbitmq-server stop </dev/null >/dev/null 2>&1 ||
            /usr/sbin/rabbitmqctl stop </dev/null >/dev/null 2>&1 || true
    fi
}

# amqp_env CMD…: run CMD with our node's environment.
amqp_env() {
    env HOME="$AMQP_DIR" \
        ERL_EPMD_PORT="$AMQP_EPMD_PORT" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        RABBITMQ_NODENAME="$AMQP_NODE" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$AMQP_PORT" \
        RABBITMQ_DIST_PORT="$AMQP_DIST_PORT" \
        RABBITMQ_CONFIG_FILE="$AMQP_DIR/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$AMQP_DIR/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$AMQP_DIR/mnesia" \
        RABBITMQ_LOG_BASE="$AMQP_DIR/log" \
        RABBITMQ_PID_FILE="$AMQP_DIR/node.pid" \
        "$@"
}

amqp_ctl() { amqp_env "$RABBIT_LIB/rabbitmqctl" -n "$AMQP_NODE" "$@" </dev/null; }

amqp_pid_alive() {
    local pid
    [[ -f "$AMQP_PID" ]] || return 1
    pid="$(cat "$AMQP_PID")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

start_amqp() {
    local t0=$SECONDS p
    for p in AMQP_PORT AMQP_DIST_PORT AMQP_EPMD_PORT; do check_port_value "${!p}" "VITRINE_$p"; done
    install_amqp
    mkdir -p "$AMQP_DIR/log" "$AMQP_DIR/mnesia"
    chmod 700 "$AMQP_DIR"
    if port_in_use 5672; then
        log "amqp: note: another RabbitMQ node listens on :5672 (not ours; left alone)"
    fi

    if amqp_pid_alive && amqp_ctl -q await_startup --timeout 5 >/dev/null 2>&1; then
        log "amqp: already running on 127.0.0.1:$AMQP_PORT (pid $(cat "$AMQP_PID"), reusing)"
    else
        if amqp_pid_alive; then
            die "amqp: pid $(cat "$AMQP_PID") from $AMQP_DIR is alive but not answering; run '$0 stop amqp' first (log: $AMQP_LOG)"
        fi
        rm -f "$AMQP_PID"
        require_free_port "$AMQP_PORT" VITRINE_AMQP_PORT "RabbitMQ AMQP"
        require_free_port "$AMQP_DIST_PORT" VITRINE_AMQP_DIST_PORT "RabbitMQ distribution"
        cat >"$AMQP_DIR/rabbitmq.conf" <<CONF
# Written by scripts/backends.sh on every start: single-node throw-away RabbitMQ for tests.
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
# guest/guest, loopback only (the default), which is all the tests use.
loopback_users.guest = true
disk_free_limit.absolute = 100MB
log.file.level = warning
log.console = false
CONF
        echo "[]." >"$AMQP_DIR/enabled_plugins"
        # The wrapper tests use for a broker restart (stop_app / start_app) and status.
        cat >"$AMQP_CTL" <<CTL
#!/usr/bin/env bash
# Written by scripts/backends.sh: rabbitmqctl for the test node, e.g. \`$AMQP_CTL stop_app\`.
exec env HOME=$(printf '%q' "$AMQP_DIR") ERL_EPMD_PORT=$AMQP_EPMD_PORT $RABBIT_LIB/rabbitmqctl -n $AMQP_NODE "\$@"
CTL
        chmod 755 "$AMQP_CTL"
        log "amqp: starting RabbitMQ node $AMQP_NODE on 127.0.0.1:$AMQP_PORT (dist :$AMQP_DIST_PORT, epmd :$AMQP_EPMD_PORT)"
        {
            echo
            echo "==== $(date -Is) started by scripts/backends.sh ===="
        } >>"$AMQP_LOG"
        amqp_env nohup "$RABBIT_LIB/rabbitmq-server" </dev/null >>"$AMQP_LOG" 2>&1 &
        echo $! >"$AMQP_PID"
    fi

    local deadline=$((SECONDS + TIMEOUT))
    until amqp_ctl -q await_startup --timeout 5 >/dev/null 2>&1 && port_in_use "$AMQP_PORT"; do
        if ! amqp_pid_alive; then
            show_log "$AMQP_LOG"
            die "amqp: RabbitMQ exited during startup (log: $AMQP_LOG, node logs: $AMQP_DIR/log)"
        fi
        if ((SECONDS >= deadline)); then
            show_log "$AMQP_LOG"
            die "amqp: RabbitMQ not ready on 127.0.0.1:$AMQP_PORT after ${TIMEOUT}s (log: $AMQP_LOG)"
        fi
        sleep 0.5
    done
    write_env amqp \
        "VITRINE_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f" \
        "VITRINE_TEST_AMQP_CTL=$AMQP_CTL"
    log "amqp: ready on 127.0.0.1:$AMQP_PORT ($(elapsed_since "$t0"); data $AMQP_DIR, log $AMQP_LOG)"
}

stop_amqp() {
    drop_env amqp
    if ! amqp_pid_alive; then
        rm -f "$AMQP_PID"
        log "amqp: not running"
    else
        local pid
        pid="$(cat "$AMQP_PID")"
        amqp_ctl -q stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
        if ! wait_until 30 bash -c "! kill -0 $pid 2>/dev/null"; then
            log "amqp: pid $pid still alive 30s after 'rabbitmqctl stop'; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$AMQP_PID"
        log "amqp: stopped"
    fi
    # Our epmd (own port) outlives the node; stop it too. Never touches the default 4369.
    if [[ -x "$(command -v epmd)" ]] && port_in_use "$AMQP_EPMD_PORT"; then
        epmd -port "$AMQP_EPMD_PORT" -kill >/dev/null 2>&1 || true
    fi
}

status_amqp() {
    if amqp_pid_alive && amqp_ctl -q await_startup --timeout 5 >/dev/null 2>&1 && port_in_use "$AMQP_PORT"; then
        echo "amqp:     running   amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f (node $AMQP_NODE, pid $(cat "$AMQP_PID"), log $AMQP_LOG)"
        return 0
    fi
    if amqp_pid_alive; then
        echo "amqp:     pid $(cat "$AMQP_PID") alive but not answering (log: $AMQP_LOG)"
        return 1
    fi
    echo "amqp:     stopped"
    return 1
}

# ----------------------------------------------------------------------------- main

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Expand the backend argument ("" or "all" means every backend).
select_backends() {
    local arg="${1:-all}"
    if [[ "$arg" == all ]]; then
        SELECTED=("${ALL_BACKENDS[@]}")
        return
    fi
    local b
    for b in "${ALL_BACKENDS[@]}"; do
        if [[ "$b" == "$arg" ]]; then
            SELECTED=("$arg")
            return
        fi
    done
    die "unknown backend '$arg' (known: ${ALL_BACKENDS[*]} all)"
}

main() {
    local cmd="${1:-}"
    shift || true
    local b rc=0
    case "$cmd" in
    install)
        select_backends "${1:-all}"
        for b in "${SELECTED[@]}"; do "install_$b"; done
        ;;
    start)
        select_backends "${1:-all}"
        mkdir -p "$STATE"
        for b in "${SELECTED[@]}"; do "start_$b"; done
        log "env file: $STATE/env.sh   (load it with: eval \"\$($0 env)\")"
        ;;
    stop)
        select_backends "${1:-all}"
        [[ -d "$STATE" ]] || {
            log "nothing to stop (no $STATE)"
            return 0
        }
        # Stop all asked for even if one fails; report failure at the end.
        for b in "${SELECTED[@]}"; do ("stop_$b") || rc=1; done
        return "$rc"
        ;;
    status)
        select_backends "${1:-all}"
        echo "state dir: $STATE"
        for b in "${SELECTED[@]}"; do "status_$b" || rc=1; done
        return "$rc"
        ;;
    env)
        [[ -f "$STATE/env.sh" ]] || die "no $STATE/env.sh: run '$0 start' first"
        cat "$STATE/env.sh"
        ;;
    clean)
        [[ -d "$STATE" ]] || return 0
        main stop all
        if [[ -L "$STATE/postgres" ]]; then rm -rf "$(dirname "$PG_DIR")"; fi
        rm -rf "$STATE"
        log "removed $STATE"
        ;;
    -h | --help | help) usage ;;
    *) usage ;;
    esac
}

main "$@"

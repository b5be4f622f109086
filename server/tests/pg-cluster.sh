# Sourced by the server tests and benchmarks: a private PostgreSQL cluster on loopback.
#   pg_cluster_start DIR    initdb into DIR/pg as the postgres user, start it on a free
#                           127.0.0.1 port; sets PG_URL (database "pivot") and PG_DATA
#   pg_cluster_stop         stops it (the caller removes DIR)
# Needs the postgresql package (tools/deps.sh server) and root (runuser).

pg_cluster_start() {
        local dir=$1 bin port
        bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        if [[ ! -x $bin/initdb ]]; then
                echo "postgresql is not installed (tools/deps.sh server)" >&2
                return 1
        fi
        PG_BIN=$bin
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
        mkdir -p "$dir/pg" "$dir/pgrun"
        chown postgres: "$dir/pg" "$dir/pgrun"
        chmod 755 "$dir"
        if ! runuser -u postgres -- "$bin/initdb" -D "$dir/pg" -U postgres --auth=trust -E UTF8 >"$dir/pgrun/initdb.log" 2>&1; then
                cat "$dir/pgrun/initdb.log" >&2
                return 1
        fi
        if ! runuser -u postgres -- "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pgrun/pg.log" -w -t 60 start \
                -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/pgrun -c max_connections=200 -c shared_buffers=256MB" >/dev/null; then
                cat "$dir/pgrun/pg.log" >&2
                return 1
        fi
        PG_DATA=$dir/pg
        runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres pivot || return 1
        PG_URL="postgres://postgres@127.0.0.1:$port/pivot"
}

pg_cluster_stop() {
        [[ -n ${PG_DATA:-} ]] || return 0
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -t 30 stop >/dev/null 2>&1 ||
                runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1
        PG_DATA=
}

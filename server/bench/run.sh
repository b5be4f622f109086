#!/usr/bin/env bash
# make bench, server part: update checks per second on loopback, each as a ratio to nginx
# serving a static response of the same size in the same run, then a fleet simulation.
#
#   server/bench/run.sh [SECONDS]     SECONDS per wrk run (default 10)
#
# Every load is wrk on 127.0.0.1 with 2 threads and 64 connections, bounded by -d. The Omaha
# requests come from server/bench/check.lua: 100,000 machines running the channel's release,
# so every answer is "noupdate" (295 bytes) and every check-in is a database write. nginx
# answers the same POSTs with that same response from a file. Results go to
# out/bench/server.txt and out/bench/fleet-sim.txt.
# Exit status: 0 done, 1 a step failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS=${1:-10}
source "$ROOT/server/tests/pg-cluster.sh"
make -s out/bin/pivot-server out/bin/pivot-admin out/test/mkpayload >/dev/null
mkdir -p out/bench
WORK=$(mktemp -d /tmp/pivot-bench.XXXXXX)
PIDS=()
cleanup() {
        for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
        pg_cluster_stop
        rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# wrk_rps URL: requests per second of one bounded run with the check script.
wrk_rps() {
        timeout $((SECS + 30)) wrk -t2 -c64 -d"${SECS}s" -s server/bench/check.lua "$1" | awk '/Requests\/sec/ {print $2}'
}

start_pivot() { # start_pivot DATA [--db URL]: sets PIVOT_URL
        local data=$1 port; shift
        port=$(free_port)
        out/bin/pivot-server --listen "127.0.0.1:$port" --data "$data" "$@" >>"$WORK/server.log" 2>&1 &
        PIDS+=($!)
        PIVOT_PID=$!
        PIVOT_URL=http://127.0.0.1:$port
        for _ in $(seq 100); do curl -sf "$PIVOT_URL/healthz" >/dev/null && break; sleep 0.1; done
        mkdir -p "$WORK/pk"
        [[ -e $WORK/pk/update.payload ]] || out/test/mkpayload "$WORK/pk" 1.3.0 "$WORK/pk/update.payload"
        out/bin/pivot-admin --server "$PIVOT_URL" --token-file "$data/admin.token" \
                publish "$WORK/pk/update.payload" --channel stable --rollout 100 >/dev/null 2>&1
}
stop_pivot() { kill "$PIVOT_PID"; wait "$PIVOT_PID" 2>/dev/null || true; }

measure_pivot() { # measure_pivot LABEL: warm up (inserts the machines), then measure
        timeout 60 wrk -t2 -c64 -d"$((SECS / 2 + 1))s" -s server/bench/check.lua "$PIVOT_URL/v1/update/" >/dev/null
        wrk_rps "$PIVOT_URL/v1/update/"
}

# --- the static baseline: nginx, the same POSTs, the same response bytes ---
start_pivot "$WORK/sqlite"
REQ='<request protocol="3.0"><app appid="{b9606f32-42ac-4029-aef4-20ed435e8c45}" version="1.3.0" track="stable" machineid="00000000000000000000000000000001"><ping active="1"/><updatecheck/></app></request>'
mkdir -p "$WORK/www"
curl -s -X POST --data-binary "$REQ" "$PIVOT_URL/v1/update/" >"$WORK/www/check.xml"
SIZE=$(stat -c %s "$WORK/www/check.xml")
NGINX_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
    location = /v1/update/ { default_type text/xml; error_page 405 =200 /check.xml; try_files /check.xml =404; }
    location = /check.xml { default_type text/xml; }
  }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=($NGINX_PID)
sleep 0.5
NGINX1=$(wrk_rps "http://127.0.0.1:$NGINX_PORT/v1/update/")

SQLITE=$(measure_pivot)
stop_pivot

pg_cluster_start "$WORK"
start_pivot "$WORK/pgdata" --db "$PG_URL"
POSTGRES=$(measure_pivot)
stop_pivot

NGINX2=$(wrk_rps "http://127.0.0.1:$NGINX_PORT/v1/update/")
kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true
NGINX=$(echo "($NGINX1 + $NGINX2) / 2" | bc -l)

{
        echo "# update checks per second, wrk -t2 -c64 -d${SECS}s on 127.0.0.1, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "# response $SIZE bytes (noupdate); 100,000 machines; every check-in written"
        printf '%-28s %10.0f checks/s\n' "nginx static (mean of 2)" "$NGINX"
        printf '%-28s %10.0f checks/s  ratio %.2f of nginx\n' "pivot-server SQLite" "$SQLITE" "$(echo "$SQLITE / $NGINX" | bc -l)"
        printf '%-28s %10.0f checks/s  ratio %.2f of nginx\n' "pivot-server PostgreSQL" "$POSTGRES" "$(echo "$POSTGRES / $NGINX" | bc -l)"
} | tee out/bench/server.txt

# --- fleet simulation: a staged rollout and a safe-mode halt, thousands of machines ---
start_pivot "$WORK/fleet"
python3 server/bench/fleet-sim.py --server "$PIVOT_URL" --token-file "$WORK/fleet/admin.token" \
        --machines "${FLEET_MACHINES:-5000}" | tee out/bench/fleet-sim.txt
stop_pivot

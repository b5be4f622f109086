#!/usr/bin/env bash
# make bench, server part: update checks per second on loopback, each as a ratio to nginx
# answering the same POSTs with the same bytes in the same run, over several rounds; then a
# fleet simulation.
#
#   server/bench/run.sh [SECONDS [ROUNDS]]   SECONDS per wrk run (default 5), ROUNDS (default 8)
#
# The Omaha requests come from server/bench/check.lua: 100,000 machines running the channel's
# release, so every answer is "noupdate" (295 bytes) and every check-in is a database write.
#
# What keeps the comparison fair (see server/README.md, "Measurements"):
#   - every load is the same command, wrk -t2 -c64 with keep-alive and the same Lua script,
#     bounded by -d; BENCH_CPUS=LIST runs every wrk under `taskset -c LIST` alike;
#   - nginx answers POST /v1/update/ with `return 200` and the exact bytes pivot-server sends
#     (checked), access log off, keep-alive without a request limit (as libmicrohttpd), and
#     it reads each request body (to discard it) as keep-alive needs;
#   - nginx runs as many worker processes as pivot-server runs HTTP threads (BENCH_WORKERS,
#     default pivot-server's own default of 2 per CPU): on a machine shared with other work,
#     more threads get a larger share of the CPUs;
#     BENCH_NGINX=file serves the bytes from a file instead (open_file_cache), the other
#     common way;
#   - each pivot-server measurement sits between two nginx measurements and its ratio is to
#     their mean, so a change of the machine's load between runs shows in one ratio, not all;
#   - every target gets a warm-up run before each measurement (and the servers a long one at
#     start, which inserts most of the machines);
#   - a run with non-2xx answers or socket errors fails the bench.
# Results go to out/bench/server.txt and out/bench/fleet-sim.txt.
# Exit status: 0 done, 1 a step failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS=${1:-5}
ROUNDS=${2:-8}
WARM=2
WORKERS=${BENCH_WORKERS:-$((2 * $(nproc)))}
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
TASKSET=()
[[ -n ${BENCH_CPUS:-} ]] && TASKSET=(taskset -c "$BENCH_CPUS")

label() { # label URL: which server a URL is
        case $1 in
        "${SQLITE_URL:-}") echo "pivot-server, SQLite" ;;
        "${POSTGRES_URL:-}") echo "pivot-server, PostgreSQL" ;;
        "${NGINX_URL:-}") echo nginx ;;
        *) echo "?" ;;
        esac
}

# load URL SECONDS: one bounded wrk run with the check script; prints requests per second
# and the number of requests.
load() {
        local out
        out=$(timeout $(($2 + 30)) "${TASKSET[@]}" wrk -t2 -c64 -d"$2s" -s server/bench/check.lua "$1")
        if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
                echo "bench: errors against $1 ($(label "$1")):" >&2
                echo "$out" >&2
                return 1
        fi
        awk '/Requests\/sec/ {rps = $2} / requests in / {n = $1} END {print rps, n}' <<<"$out"
}

# The processes that serve a URL, for their CPU time: nginx's, pivot-server's, and for
# PostgreSQL the cluster's too.
server_pids() {
        case $1 in
        "$NGINX_URL") echo "$NGINX_PID" $(pgrep -P "$NGINX_PID") ;;
        "$SQLITE_URL") echo "$SQLITE_PID" ;;
        "$POSTGRES_URL")
                local pm
                pm=$(head -n 1 "$PG_DATA/postmaster.pid")
                echo "$POSTGRES_PID" "$pm" $(pgrep -P "$pm") ;;
        esac
}
cpu_ticks() { # user + system clock ticks of the given processes
        local t=0 p
        for p in "$@"; do
                [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
        done
        echo "$t"
}

# measure URL: a warm-up run, then a measured one; prints requests per second and the
# server's CPU time per request in microseconds.
measure() {
        local pids c0 c1 rps n
        load "$1" "$WARM" >/dev/null
        pids=$(server_pids "$1")
        c0=$(cpu_ticks $pids)
        read -r rps n < <(load "$1" "$SECS")
        c1=$(cpu_ticks $pids)
        echo "$rps $(( (c1 - c0) * 1000000 / $(getconf CLK_TCK) / n ))"
}

start_pivot() { # start_pivot DATA [--db URL]: prints the URL
        local data=$1 port pid; shift
        port=$(free_port)
        # All the load comes from one address: no limit per address.
        out/bin/pivot-server --listen "127.0.0.1:$port" --data "$data" --connections-per-ip 0 "$@" \
                >>"$WORK/server.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
        mkdir -p "$WORK/pk"
        [[ -e $WORK/pk/update.payload ]] || out/test/mkpayload "$WORK/pk" 1.3.0 "$WORK/pk/update.payload"
        out/bin/pivot-admin --server "http://127.0.0.1:$port" --token-file "$data/admin.token" \
                publish "$WORK/pk/update.payload" --channel stable --rollout 100 >/dev/null 2>&1
        START_URL=http://127.0.0.1:$port
        START_PID=$pid
}

# --- the servers: SQLite and PostgreSQL, both up for the whole run ---
mkdir -p "$WORK/sqlite" "$WORK/pgdata"
start_pivot "$WORK/sqlite" --threads "$WORKERS"
SQLITE_URL=$START_URL/v1/update/
SQLITE_PID=$START_PID
pg_cluster_start "$WORK"
start_pivot "$WORK/pgdata" --db "$PG_URL" --threads "$WORKERS"
POSTGRES_URL=$START_URL/v1/update/
POSTGRES_PID=$START_PID

# --- the static baseline: nginx, the same POSTs, the same response bytes ---
REQ=$(printf '%s' '<request protocol="3.0"><app appid="{b9606f32-42ac-4029-aef4-20ed435e8c45}" version="1.3.0"' \
        ' track="stable" machineid="00000000000000000000000000000001"><ping active="1"/><updatecheck/></app></request>')
mkdir -p "$WORK/www"
curl -s -X POST --data-binary "$REQ" "$SQLITE_URL" >"$WORK/www/check.xml"
SIZE=$(stat -c %s "$WORK/www/check.xml")
NGINX_PORT=$(free_port)
if [[ ${BENCH_NGINX:-return} == file ]]; then
        NGINX_LOCATION="location = /v1/update/ { default_type text/xml; error_page 405 =200 /check.xml; try_files /check.xml =404; }
    location = /check.xml { default_type text/xml; }"
        NGINX_HOW="static file, open_file_cache"
else
        # nginx's `return` takes the body as a quoted string: the response has neither quote
        # nor backslash nor '$' (checked), so it goes in as it is, newlines and all.
        if grep -q "['\\\$]" "$WORK/www/check.xml"; then
                echo "bench: the response cannot be quoted for nginx" >&2
                exit 1
        fi
        NGINX_LOCATION="location = /v1/update/ { default_type text/xml; return 200 '$(cat "$WORK/www/check.xml")
'; }"
        NGINX_HOW="return 200"
fi
cat >"$WORK/nginx.conf" <<CONF
worker_processes $WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000000;
  open_file_cache max=16;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
    $NGINX_LOCATION
  }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=($NGINX_PID)
NGINX_URL=http://127.0.0.1:$NGINX_PORT/v1/update/
for _ in $(seq 50); do curl -s -o /dev/null -X POST --data-binary "$REQ" "$NGINX_URL" && break; sleep 0.1; done
if ! cmp -s <(curl -s -X POST --data-binary "$REQ" "$NGINX_URL") "$WORK/www/check.xml"; then
        echo "bench: nginx does not answer the same bytes as pivot-server" >&2
        exit 1
fi

# --- rounds: nginx, SQLite, nginx, PostgreSQL, nginx, ... ---
load "$SQLITE_URL" $((SECS * 3)) >/dev/null
load "$POSTGRES_URL" $((SECS * 3)) >/dev/null
RESULTS=$WORK/results
: >"$RESULTS"
prev=$(measure "$NGINX_URL")
for r in $(seq "$ROUNDS"); do
        for engine in sqlite postgres; do
                [[ $engine == sqlite ]] && url=$SQLITE_URL || url=$POSTGRES_URL
                x=$(measure "$url")
                next=$(measure "$NGINX_URL")
                echo "$r $engine $x $prev $next" >>"$RESULTS"
                prev=$next
        done
done

{
        echo "# update checks per second, wrk -t2 -c64 -d${SECS}s on 127.0.0.1, ${ROUNDS} rounds, $(nproc) CPUs, $WORKERS server threads/workers, load $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "# response $SIZE bytes (noupdate); 100,000 machines; every check-in written; nginx: $NGINX_HOW"
        python3 - "$RESULTS" <<'EOF'
import statistics, sys
# round engine rps cpu  nginx-before rps cpu  nginx-after rps cpu
rows = [l.split() for l in open(sys.argv[1])]
names = {"sqlite": "pivot-server SQLite", "postgres": "pivot-server PostgreSQL"}
print("# round  engine      checks/s  CPU us/check   nginx before/after (checks/s)  ratio")
for r, e, x, c, a, ac, b, bc in rows:
    print(f"  {r:>5}  {e:<9} {float(x):>9.0f}  {int(c):>6}        {float(a):>7.0f} / {float(b):<7.0f}             "
          f"{float(x) * 2 / (float(a) + float(b)):.2f}")
nginx = [(float(a), int(ac)) for _, _, _, _, a, ac, _, _ in rows] + [(float(rows[-1][6]), int(rows[-1][7]))]
print(f"{'nginx static (median)':<26} {statistics.median(x for x, _ in nginx):>9.0f} checks/s"
      f"  {statistics.median(c for _, c in nginx):>4.0f} us CPU/check")
for e in ("sqlite", "postgres"):
    xs = [float(x) for _, en, x, *_ in rows if en == e]
    cs = [int(c) for _, en, _, c, *_ in rows if en == e]
    rs = sorted(float(x) * 2 / (float(a) + float(b)) for _, en, x, _, a, _, b, _ in rows if en == e)
    q = statistics.quantiles(rs, n=4) if len(rs) > 1 else [rs[0]] * 3
    print(f"{names[e]:<26} {statistics.median(xs):>9.0f} checks/s  {statistics.median(cs):>4.0f} us CPU/check"
          f"  ratio {statistics.median(rs):.2f} of nginx (median of {len(rs)}; quartiles {q[0]:.2f}-{q[2]:.2f},"
          f" min {rs[0]:.2f}, max {rs[-1]:.2f})")
print("# CPU us/check: the server's own processes (for PostgreSQL with the database's), user + system")
EOF
} | tee out/bench/server.txt

# --- fleet simulation: a staged rollout and a safe-mode halt, thousands of machines ---
mkdir -p "$WORK/fleet"
start_pivot "$WORK/fleet"
python3 server/bench/fleet-sim.py --server "$START_URL" --token-file "$WORK/fleet/admin.token" \
        --machines "${FLEET_MACHINES:-5000}" | tee out/bench/fleet-sim.txt

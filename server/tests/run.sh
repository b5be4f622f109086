#!/usr/bin/env bash
# End-to-end tests of pivot-server and pivot-admin: real HTTP exchanges on 127.0.0.1.
#
#   server/tests/run.sh sqlite      SQLite in a scratch data directory
#   server/tests/run.sh postgres    a private PostgreSQL cluster started here (initdb as the
#                                   postgres user, pg_ctl on a free loopback port), removed at
#                                   the end; also runs two servers on the one database
#
# Prints "ok NAME" / "not ok NAME" per test and closes with "N passed, N failed".
# Keeps the dashboard screenshot in out/test-output/dashboard-ENGINE.png.
# Exit status: 0 when every test passed, 1 otherwise, 2 on a usage error.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source "$ROOT/server/tests/pg-cluster.sh"
ENGINE=${1:-}
[[ $ENGINE == sqlite || $ENGINE == postgres ]] || { echo "usage: $0 sqlite|postgres" >&2; exit 2; }

make -s out/bin/pivot-server out/bin/pivot-admin out/test/mkpayload >/dev/null || {
        echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
SERVER=$ROOT/out/bin/pivot-server ADMIN_BIN=$ROOT/out/bin/pivot-admin MKPAYLOAD=$ROOT/out/test/mkpayload
OUTDIR=$ROOT/out/test-output
mkdir -p "$OUTDIR"

WORK=$(mktemp -d /tmp/pivot-server-test.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
        for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
        pg_cluster_stop
        rm -rf "$WORK"
}
trap cleanup EXIT

PASS=0 FAIL=0
ok() { echo "ok $1"; PASS=$((PASS + 1)); }
notok() { echo "not ok $1${2:+: $2}"; FAIL=$((FAIL + 1)); }
check() { # check NAME CONDITION-COMMAND...
        local name=$1; shift
        if "$@"; then ok "$name"; else notok "$name"; fi
}

free_port() {
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# json FILTER: reads JSON on stdin, prints a Python expression over it (j).
json() { python3 -c "import json,sys; j=json.load(sys.stdin); v=($1); print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)"; }

# --- PostgreSQL, private to this run ---------------------------------------------------------
DB_ARGS=()
if [[ $ENGINE == postgres ]]; then
        pg_cluster_start "$WORK" || { echo "0 passed, 1 failed"; exit 1; }
        DB_ARGS=(--db "$PG_URL")
        echo "# private PostgreSQL at $PG_URL"
fi

# --- the server ------------------------------------------------------------------------------
DATA=$WORK/data
start_server() { # start_server PORT [extra args]: sets LAST_PID
        local port=$1; shift
        "$SERVER" --listen "127.0.0.1:$port" --data "$DATA" "${DB_ARGS[@]}" "$@" >>"$WORK/server-$port.log" 2>&1 &
        LAST_PID=$!
        PIDS+=("$LAST_PID")
        for _ in $(seq 100); do
                curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
                sleep 0.1
        done
        cat "$WORK/server-$port.log"; return 1
}
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start_server "$PORT" || { echo "0 passed, 1 failed"; exit 1; }
SERVER_PID=$LAST_PID
ADMIN=("$ADMIN_BIN" --server "$URL" --token-file "$DATA/admin.token")

APP='{b9606f32-42ac-4029-aef4-20ed435e8c45}'
# request MACHINE VERSION TRACK [EVENT...] -- EVENT is "type:result[:errorcode[:nextversion]]";
# adds an update check unless NOCHECK=1. Prints the XML.
request() {
        local machine=$1 version=$2 track=$3; shift 3
        printf '<?xml version="1.0" encoding="UTF-8"?>\n'
        printf '<request protocol="3.0" version="pivot-0.1" updaterversion="pivot-0.1" installsource="scheduler" ismachine="1">\n'
        printf ' <os version="%s" platform="Pivot" sp="%s_x86_64"></os>\n' "$version" "$version"
        printf ' <app appid="%s" version="%s" track="%s" bootid="{00000000-0000-4000-8000-000000000001}" machineid="%s" oem="" alephversion="1.0.0" lang="en-US" board="amd64-usr" delta_okay="false">\n' \
                "${APPID:-$APP}" "$version" "$track" "$machine"
        printf '  <ping active="1"></ping>\n'
        [[ ${NOCHECK:-0} == 1 ]] || printf '  <updatecheck></updatecheck>\n'
        local e
        for e in "$@"; do
                IFS=: read -r t r c n <<<"$e"
                printf '  <event eventtype="%s" eventresult="%s"%s previousversion=""%s></event>\n' "$t" "$r" \
                        "${c:+ errorcode=\"$c\"}" "${n:+ nextversion=\"$n\"}"
        done
        printf ' </app>\n</request>\n'
}
omaha() { # omaha [curl args] < body
        curl -s -X POST -H 'Content-Type: text/xml' --data-binary @- "$@" "${OMAHA_URL:-$URL}/v1/update/"
}
check_status() { # the updatecheck status of the response on stdin
        local s
        s=$(sed -n 's/.*<updatecheck status="\([^"]*\)".*/\1/p')
        echo "${s:-none}"
}
mid() { printf '%032x' "$1"; }

# --- tests ---------------------------------------------------------------------------------

# Admin token: created at first start, mode 0600; the API needs it, the Omaha endpoint not.
mode=$(stat -c %a "$DATA/admin.token")
check token_file_mode_0600 test "$mode" = 600
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/api/v1/status")
check admin_without_token_401 test "$code" = 401
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' "$URL/api/v1/status")
check admin_wrong_token_401 test "$code" = 401
"$ADMIN_BIN" --server "$URL" status >/dev/null 2>&1; rc=$?
check admin_cli_without_token_fails test "$rc" -ne 0
PIVOT_ADMIN_TOKEN=$(cat "$DATA/admin.token") "$ADMIN_BIN" --server "$URL" status >/dev/null 2>&1
check admin_token_from_environment test $? -eq 0
PIVOT_ADMIN_TOKEN=wrong "$ADMIN_BIN" --server "$URL" status >/dev/null 2>&1; rc=$?
check admin_cli_wrong_token_exit_3 test "$rc" -eq 3
# A local error is no refused token: a payload pivot-admin may not read is exit status 1.
mkdir -p "$WORK/private" && head -c 4096 /dev/urandom >"$WORK/private/update.payload"
chmod 600 "$WORK/private/update.payload"
as_other=()
[[ $(id -u) == 0 ]] && as_other=(setpriv --reuid=65534 --regid=65534 --clear-groups) || chmod 000 "$WORK/private/update.payload"
PIVOT_ADMIN_TOKEN=$(cat "$DATA/admin.token") "${as_other[@]}" "$ADMIN_BIN" --server "$URL" \
        publish "$WORK/private/update.payload" --channel stable >"$WORK/private.out" 2>&1; rc=$?
check admin_cli_unreadable_file_exit_1 test "$rc" -eq 1 -a -n "$(grep -i 'permission denied' "$WORK/private.out")"
# A token file whose token follows a blank line and spaces.
(printf '\n  '; cat "$DATA/admin.token") >"$WORK/padded.token"
"$ADMIN_BIN" --server "$URL" --token-file "$WORK/padded.token" status >/dev/null 2>&1
check admin_cli_token_file_trimmed test $? -eq 0

# The server's token file is read the same way; an empty bearer never passes, and a file
# without a token of 32 characters or more stops the server (exit status 1).
TOKDATA=$WORK/tokdata
mkdir -p "$TOKDATA"
tok=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
printf '\n\t %s \n\n' "$tok" >"$TOKDATA/admin.token"
TOKPORT=$(free_port)
start_server "$TOKPORT" --data "$TOKDATA"; TOKPID=$LAST_PID
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer ' "http://127.0.0.1:$TOKPORT/api/v1/status")
code2=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://127.0.0.1:$TOKPORT/api/v1/status")
check admin_token_trimmed_empty_bearer_401 test "$code" = 401 -a "$code2" = 200
kill "$TOKPID"; wait "$TOKPID" 2>/dev/null
for bad in '\n\n' '\n  abc\n' "${tok:0:31}" "${tok:0:16} ${tok:0:16}"; do
        printf "$bad" >"$TOKDATA/admin.token"
        timeout 10 "$SERVER" --listen "127.0.0.1:$TOKPORT" --data "$TOKDATA" "${DB_ARGS[@]}" >"$WORK/badtoken.log" 2>&1; rc=$?
        [[ $rc == 1 ]] && grep -q 'holds no admin token' "$WORK/badtoken.log" || break
done
check admin_token_short_refused test "$rc" = 1 -a -n "$(grep 'holds no admin token' "$WORK/badtoken.log")"

# Unknown application and channel: the proper error statuses.
out=$(APPID='{00000000-dead-beef-0000-000000000000}' request "$(mid 1)" 1.0.0 stable | omaha)
check unknown_app_status grep -q 'status="error-unknownApplication"' <<<"$out"
out=$(request "$(mid 1)" 1.0.0 nosuchchannel | omaha)
check unknown_channel_status grep -q 'status="error-unknownApplicationOrGroup"' <<<"$out"

# Hostile and broken documents: 400/413, never a crash, never a fetch.
code=$(printf '<request protocol="3.0"><app appid="x"' | omaha -o /dev/null -w '%{http_code}')
check truncated_xml_400 test "$code" = 400
code=$(printf 'not xml' | omaha -o /dev/null -w '%{http_code}')
check garbage_400 test "$code" = 400
code=$(omaha -o /dev/null -w '%{http_code}' <"$ROOT/lib/fuzz/corpus/omaha/billion-laughs.xml")
check billion_laughs_400 test "$code" = 400
# An external entity pointing at a listener of ours: it must get no connection.
TRAP_PORT=$(free_port)
python3 - "$TRAP_PORT" "$WORK/trap-hit" <<'EOF' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5); s.settimeout(3)
try:
    c, _ = s.accept(); open(sys.argv[2], "w").write("hit")
except socket.timeout:
    pass
EOF
TRAP_PID=$!
sleep 0.3
code=$(printf '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:%s/x">]><request protocol="3.0"><app appid="&x;"/></request>' "$TRAP_PORT" | omaha -o /dev/null -w '%{http_code}')
code2=$(printf '<?xml version="1.0"?><!DOCTYPE request SYSTEM "http://127.0.0.1:%s/evil.dtd"><request protocol="3.0"/>' "$TRAP_PORT" | omaha -o /dev/null -w '%{http_code}')
wait "$TRAP_PID"
check external_entity_400_not_fetched test "$code" = 400 -a "$code2" = 400 -a ! -e "$WORK/trap-hit"
code=$(head -c 200000 /dev/zero | tr '\0' ' ' | omaha -o /dev/null -w '%{http_code}')
check oversized_body_413 test "$code" = 413
code=$( (printf '<request protocol="3.0">'; head -c 100000 /dev/zero | tr '\0' ' '; printf '</request>') |
        curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Transfer-Encoding: chunked' --data-binary @- "$URL/v1/update/")
check oversized_chunked_body_413 test "$code" = 413
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/update/")
check omaha_get_405 test "$code" = 405
check server_alive_after_hostile_input kill -0 "$SERVER_PID"

# Publish: version and hashes come from the signed payload; the upload is hosted here.
mkdir -p "$WORK/pk/next"
"$MKPAYLOAD" "$WORK/pk" 1.3.0 "$WORK/pk/update.payload" && "$MKPAYLOAD" "$WORK/pk" 1.4.0 "$WORK/pk/next/update.payload"
"${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel stable --rollout 0 --key "$WORK/pk/key.pub.pem" >"$WORK/publish.out" 2>&1
check publish_hosted test $? -eq 0
"${ADMIN[@]}" status --json >"$WORK/status.json"
check publish_created_channel_with_release test "$(json 'j["channels"][0]["release"]["version"]' <"$WORK/status.json")" = 1.3.0
check publish_recorded_manifest test "$(json 'j["channels"][0]["release"]["manifest"]["signature_checked"]' <"$WORK/status.json")" = true
sha=$(sha256sum "$WORK/pk/update.payload" | cut -d' ' -f1)
check publish_sha256_of_file test "$(json 'j["channels"][0]["release"]["sha256"]' <"$WORK/status.json")" = "$sha"
# A payload signed by another key is refused when --key is given.
mkdir -p "$WORK/other"
"$MKPAYLOAD" "$WORK/other" 1.3.5 "$WORK/other/update.payload"
"${ADMIN[@]}" publish "$WORK/other/update.payload" --channel stable --key "$WORK/pk/key.pub.pem" >/dev/null 2>&1; rc=$?
check publish_refuses_foreign_signature test "$rc" -ne 0
# Not a payload at all.
head -c 4096 /dev/urandom >"$WORK/junk.payload"
"${ADMIN[@]}" publish "$WORK/junk.payload" --channel stable >/dev/null 2>&1; rc=$?
check publish_refuses_non_payload test "$rc" -ne 0

# At 0% nobody gets it: "noupdate", not an error.
out=$(request "$(mid 10)" 1.2.0 stable | omaha)
check rollout_0_noupdate test "$(check_status <<<"$out")" = noupdate
check rollout_0_app_ok grep -q '<app appid="[^"]*" status="ok"' <<<"$out"

# At 100%: the full answer, and the payload downloads, whole and by ranges.
"${ADMIN[@]}" rollout stable 100 >/dev/null
out=$(request "$(mid 10)" 1.2.0 stable | omaha)
check rollout_100_update test "$(check_status <<<"$out")" = ok
codebase=$(sed -n 's/.*codebase="\([^"]*\)".*/\1/p' <<<"$out")
b64sha1=$(openssl dgst -sha1 -binary "$WORK/pk/update.payload" | base64)
b64sha256=$(openssl dgst -sha256 -binary "$WORK/pk/update.payload" | base64)
size=$(stat -c %s "$WORK/pk/update.payload")
check response_hash_encodings grep -q "hash=\"$b64sha1\" hash_sha256=\"$sha\" size=\"$size\"" <<<"$out"
check response_postinstall_sha256 grep -q "sha256=\"$b64sha256\"" <<<"$out"
curl -s -o "$WORK/dl" "${codebase}update.payload"
check payload_download_matches cmp -s "$WORK/dl" "$WORK/pk/update.payload"
curl -s -r 100-299 -o "$WORK/part" -D "$WORK/part.h" "${codebase}update.payload"
check payload_range_206 grep -q '^HTTP/1.1 206' "$WORK/part.h"
check payload_range_bytes cmp -s "$WORK/part" <(tail -c +101 "$WORK/pk/update.payload" | head -c 200)
code=$(curl -s -o /dev/null -w '%{http_code}' -r "$((size + 10))-" "${codebase}update.payload")
check payload_range_416 test "$code" = 416
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/payloads/../../data/admin.token")
code2=$(curl -s -o /dev/null -w '%{http_code}' --path-as-is "$URL/v1/payloads/x/..%2F..%2F/admin.token")
check payload_no_traversal test "$code" = 404 -a "$code2" = 404
# Another 1.3.0 under the same name, uploaded to the same path (by hand, then by a publish that
# is refused): the released file is still the one whose hashes the answer announces.
mkdir -p "$WORK/conflict"
"$MKPAYLOAD" "$WORK/conflict" 1.3.0 "$WORK/conflict/update.payload"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $(cat "$DATA/admin.token")" \
        --data-binary @"$WORK/conflict/update.payload" "$URL/api/v1/payloads/$(tr -d '{}' <<<"$APP")/1.3.0/update.payload")
"${ADMIN[@]}" publish "$WORK/conflict/update.payload" --channel stable >"$WORK/conflict.out" 2>&1; rc=$?
curl -s -o "$WORK/dl2" "${codebase}update.payload"
out=$(request "$(mid 10)" 1.2.0 stable | omaha)
check republish_hosted_keeps_released_file test "$code" = 201 -a "$rc" = 1 -a -n "$(grep 409 "$WORK/conflict.out")"
check republish_hosted_download_unchanged cmp -s "$WORK/dl2" "$WORK/pk/update.payload"
check republish_hosted_answer_unchanged grep -q "hash_sha256=\"$sha\"" <<<"$out"

# Staged rollout: the share follows the percentage, and raising it keeps earlier machines in.
"${ADMIN[@]}" rollout stable 30 >/dev/null
granted30=()
for i in $(seq 100 399); do
        s=$(request "$(mid "$i")" 1.2.0 stable | omaha | check_status)
        [[ $s == ok ]] && granted30+=("$i")
done
n30=${#granted30[@]}
check rollout_30_percent_share test "$n30" -ge 60 -a "$n30" -le 120
"${ADMIN[@]}" rollout stable 60 >/dev/null
kept=0
for i in "${granted30[@]}"; do
        s=$(request "$(mid "$i")" 1.2.0 stable | omaha | check_status)
        [[ $s == ok ]] && kept=$((kept + 1))
done
check rollout_raise_keeps_machines test "$kept" -eq "$n30"
n60=0
for i in $(seq 100 399); do
        s=$(request "$(mid "$i")" 1.2.0 stable | omaha | check_status)
        [[ $s == ok ]] && n60=$((n60 + 1))
done
check rollout_60_percent_share test "$n60" -ge 150 -a "$n60" -le 210

# Pause: machines not yet in flight are told "noupdate"; one already in flight keeps its offer;
# resume lifts it.
"${ADMIN[@]}" rollout stable 100 >/dev/null
request "$(mid 1001)" 1.2.0 stable | omaha >/dev/null   # granted: in flight
"${ADMIN[@]}" pause stable >/dev/null
s=$(request "$(mid 1000)" 1.2.0 stable | omaha | check_status)
check paused_noupdate test "$s" = noupdate
s=$(request "$(mid 1001)" 1.2.0 stable | omaha | check_status)
check paused_spares_in_flight test "$s" = ok
"${ADMIN[@]}" resume stable >/dev/null
s=$(request "$(mid 1000)" 1.2.0 stable | omaha | check_status)
check resumed_update test "$s" = ok

# Events move machine state: download, install, then the first boot of the new version
# (Flatcar sends it in the same <app> as its update check).
NOCHECK=1 request "$(mid 1000)" 1.2.0 stable 13:1 | omaha >/dev/null
NOCHECK=1 request "$(mid 1000)" 1.2.0 stable 14:1 3:1 | omaha >/dev/null
st=$("${ADMIN[@]}" machines --json | json '[m["state"] for m in j["machines"] if m["id"]=="'"$(mid 1000)"'"][0]')
check event_installed_state test "$st" = installed
out=$(request "$(mid 1000)" 1.3.0 stable 3:2 | omaha)
st=$("${ADMIN[@]}" machines --json | json '[m for m in j["machines"] if m["id"]=="'"$(mid 1000)"'"][0]["state"]')
check first_boot_event_complete test "$st" = complete
check updated_machine_noupdate test "$(check_status <<<"$out")" = noupdate
check event_acknowledged grep -q '<event status="ok">' <<<"$out"
# Flatcar's own request shape (update_engine), answered the same way.
sed "s/{e96281a6-d1af-4bde-9a0a-97b76e56dc57}/$APP/; s/3510.2.0/1.2.0/g; s/3374.2.0/1.0.0/g" \
        "$ROOT/lib/fuzz/corpus/omaha/request-flatcar.xml" >"$WORK/flatcar.xml"
out=$(omaha <"$WORK/flatcar.xml")
check flatcar_request_answered test "$(check_status <<<"$out")" = ok

# A rollback (error 44) is a failure, and that machine is not offered the release again.
request "$(mid 2000)" 1.2.0 stable | omaha >/dev/null
out=$(request "$(mid 2000)" 1.2.0 stable 3:0:44 | omaha)
check rolled_back_not_offered_again test "$(check_status <<<"$out")" = noupdate

# A machine id far longer than any real one is treated as none: answered, not stored.
long_id=$(printf 'f%.0s' $(seq 3000))
s=$(request "$long_id" 1.2.0 stable | omaha | check_status)
check long_machine_id_noupdate test "$s" = noupdate
"${ADMIN[@]}" machines --json --limit 100000 >"$WORK/machines.json"
check long_machine_id_not_stored test "$(json 'len([m for m in j["machines"] if len(m["id"]) > 128])' <"$WORK/machines.json")" = 0

# In-flight limit on a fresh channel.
"${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel beta --rollout 100 >/dev/null 2>&1
"${ADMIN[@]}" policy beta --max-inflight 3 >/dev/null
n=0
for i in $(seq 3000 3009); do
        s=$(request "$(mid "$i")" 1.2.0 beta | omaha | check_status)
        [[ $s == ok ]] && n=$((n + 1))
done
check inflight_limit_3 test "$n" -eq 3
# One finishes; a place frees up.
request "$(mid 3000)" 1.3.0 beta 3:2 | omaha >/dev/null
n=0
for i in $(seq 3010 3014); do
        s=$(request "$(mid "$i")" 1.2.0 beta | omaha | check_status)
        [[ $s == ok ]] && n=$((n + 1))
done
check inflight_limit_frees_up test "$n" -eq 1

# The limit holds for requests at the same moment.
"${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel burst --rollout 100 >/dev/null 2>&1
"${ADMIN[@]}" policy burst --max-inflight 1 >/dev/null
pids=()
for i in $(seq 3500 3563); do request "$(mid "$i")" 1.2.0 burst | omaha >"$WORK/burst.$i" & pids+=($!); done
wait "${pids[@]}"
n=$(cat "$WORK"/burst.* | grep -c 'updatecheck status="ok"')
check inflight_limit_concurrent test "$n" -eq 1

# A machine that was granted and only checks again (it never starts) keeps its place for the
# in-flight timeout, not for ever: its checks do not restart that time. Once the timeout is
# past another machine takes the place, and the first one then starts again under the limit
# like any other (refused: the place is taken).
"${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel idle --rollout 100 >/dev/null 2>&1
"${ADMIN[@]}" policy idle --max-inflight 1 --inflight-timeout 2 >/dev/null
s1=$(request "$(mid 3600)" 1.2.0 idle | omaha | check_status)
for _ in 1 2; do sleep 0.5; request "$(mid 3600)" 1.2.0 idle | omaha >/dev/null; done
sleep 2.1
s2=$(request "$(mid 3601)" 1.2.0 idle | omaha | check_status)
s3=$(request "$(mid 3600)" 1.2.0 idle | omaha | check_status)
if [[ $s1/$s2/$s3 == ok/ok/noupdate ]]; then ok inflight_timeout_not_renewed_by_checks
else notok inflight_timeout_not_renewed_by_checks "first, second machine, first again: $s1/$s2/$s3"; fi

# A rollback reported late names its release (nextversion): a machine installed 1.3.0 and
# waits for its reboot when 1.4.0 comes out and is granted it; then 1.3.0 does not come up.
# The rollback ends the 1.3.0 attempt, not the 1.4.0 one: 1.4.0 is still offered to the
# machine, and its rollout (safe mode at the first failure) does not halt.
"${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel late --rollout 100 >/dev/null 2>&1
"${ADMIN[@]}" policy late --safe-min-failures 1 --safe-failure-ratio 0.01 >/dev/null
request "$(mid 3700)" 1.2.0 late | omaha >/dev/null
NOCHECK=1 request "$(mid 3700)" 1.2.0 late 13:1::1.3.0 14:1::1.3.0 3:1::1.3.0 | omaha >/dev/null
# (1.4.0 is hosted as the test of external hosting below publishes it: a release is one per version)
"${ADMIN[@]}" publish "$WORK/pk/next/update.payload" --channel late --rollout 100 \
        --base-url https://cdn.example.net/pivot/1.4.0 >/dev/null 2>&1
v1=$(request "$(mid 3700)" 1.2.0 late | omaha | sed -n 's/.*<manifest version="\([^"]*\)".*/\1/p')
s=$(request "$(mid 3700)" 1.2.0 late 3:0:44:1.3.0 | omaha | check_status)
"${ADMIN[@]}" status --json >"$WORK/late.json"
halted=$(json '[c for c in j["channels"] if c["name"]=="late"][0]["rollout"]["halted"]' <"$WORK/late.json")
charged=$("${ADMIN[@]}" events --json --limit 1 --machine "$(mid 3700)" | json 'j["events"][0]["target_version"]')
if [[ $v1/$s/$halted/$charged == 1.4.0/ok/false/1.3.0 ]]; then ok late_rollback_charged_to_its_release
else notok late_rollback_charged_to_its_release "offered, answer after the rollback, halted, charged to: $v1/$s/$halted/$charged"; fi

# A check-in answered without the machine's state is written later (batched on PostgreSQL);
# one on channel "late" must not undo a move to "hop" that a request of the same second made,
# with its grant. Both requests at the start of a second; tried on fresh machines until they
# fall in one second.
"${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel hop --rollout 100 >/dev/null 2>&1
same=0
for k in 1 2 3; do
        m=$(mid $((3800 + k)))
        python3 -c 'import time; time.sleep(1 - time.time() % 1)'
        t0=$(date +%s)
        request "$m" 1.4.0 late | omaha >/dev/null  # up to date there: answered at once
        s=$(request "$m" 1.2.0 hop | omaha | check_status)
        t1=$(date +%s)
        [[ $t0 == "$t1" ]] && { same=1; break; }
done
sleep 0.5  # the batch is written
row=$("${ADMIN[@]}" machines --json | json '[m["channel"] + "/" + m["state"] for m in j["machines"] if m["id"]=="'"$m"'"][0]')
if [[ $same == 1 && $s/$row == ok/hop/granted ]]; then ok queued_checkin_keeps_channel_move
else notok queued_checkin_keeps_channel_move "same second: $same, answer $s, machine $row"; fi

# Safe mode (default: >= 5 failures and >= 20% of finished attempts) halts the rollout.
"${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel edge --rollout 100 >/dev/null 2>&1
for i in $(seq 4000 4019); do request "$(mid "$i")" 1.2.0 edge | omaha >/dev/null; done
for i in $(seq 4000 4009); do request "$(mid "$i")" 1.3.0 edge 3:2 | omaha >/dev/null; done   # 10 succeed
for i in $(seq 4010 4013); do NOCHECK=1 request "$(mid "$i")" 1.2.0 edge 3:0:10 | omaha >/dev/null; done
halted=$("${ADMIN[@]}" status --json | json '[c for c in j["channels"] if c["name"]=="edge"][0]["rollout"]["halted"]')
check safe_mode_not_before_5_failures test "$halted" = false
NOCHECK=1 request "$(mid 4014)" 1.2.0 edge 3:0:44 | omaha >/dev/null   # 5th failure: 5 of 15 = 33%
"${ADMIN[@]}" status --json >"$WORK/edge.json"
halted=$(json '[c for c in j["channels"] if c["name"]=="edge"][0]["rollout"]["halted"]' <"$WORK/edge.json")
check safe_mode_halts test "$halted" = true
check safe_mode_counts_failures test "$(json '[c for c in j["channels"] if c["name"]=="edge"][0]["attempts"]["failed"]' <"$WORK/edge.json")" = 5
s=$(request "$(mid 4100)" 1.2.0 edge | omaha | check_status)
check halted_noupdate test "$s" = noupdate
"${ADMIN[@]}" status | grep -q HALTED
check status_shows_halt test $? -eq 0
curl -s "$URL/metrics" >"$WORK/metrics"
check metrics_safe_mode_halt grep -q '^pivot_safe_mode_halts_total 1$' "$WORK/metrics"
# Publishing the same release again (a retried publish) does not lift the halt.
"${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel edge >/dev/null 2>&1
halted=$("${ADMIN[@]}" status --json | json '[c for c in j["channels"] if c["name"]=="edge"][0]["rollout"]["halted"]')
check republish_keeps_halt test "$halted" = true
"${ADMIN[@]}" resume edge >/dev/null
s=$(request "$(mid 4100)" 1.2.0 edge | omaha | check_status)
check resume_after_halt test "$s" = ok
# Per-channel thresholds.
"${ADMIN[@]}" policy edge --safe-min-failures 1 --safe-failure-ratio 0.01 >/dev/null
check policy_sets_thresholds test "$("${ADMIN[@]}" status --json | json '[c for c in j["channels"] if c["name"]=="edge"][0]["rollout"]["safe_min_failures"]')" = 1

# External hosting: the release points at a base URL; the answer uses it.
"${ADMIN[@]}" publish "$WORK/pk/next/update.payload" --channel cdn --rollout 100 --base-url https://cdn.example.net/pivot/1.4.0 >/dev/null 2>&1
out=$(request "$(mid 5000)" 1.2.0 cdn | omaha)
check external_base_url grep -q 'codebase="https://cdn.example.net/pivot/1.4.0/"' <<<"$out"
# Re-publishing a version with other content is refused.
"$MKPAYLOAD" "$WORK/other" 1.3.0 "$WORK/other/update.payload"
"${ADMIN[@]}" publish "$WORK/other/update.payload" --channel cdn --base-url https://x.example/ >/dev/null 2>&1; rc=$?
check republish_conflict_refused test "$rc" -ne 0

# Listing.
"${ADMIN[@]}" machines >"$WORK/machines.txt"
check machines_lists grep -q "$(mid 1000)" "$WORK/machines.txt"
"${ADMIN[@]}" machines --json --channel edge | json 'len(j["machines"])' >"$WORK/n"
check machines_filter_channel test "$(cat "$WORK/n")" = 21
"${ADMIN[@]}" status >"$WORK/status.txt"
check status_human grep -q 'channel stable' "$WORK/status.txt"

# Metrics: Prometheus text with the counters and gauges.
curl -s "$URL/metrics" >"$WORK/metrics"
check metrics_checkins grep -qE '^pivot_checkins_total [1-9]' "$WORK/metrics"
check metrics_granted grep -qE '^pivot_updates_granted_total [1-9]' "$WORK/metrics"
check metrics_events_by_type grep -qE '^pivot_events_total\{type="update_complete",result="error"\} [1-9]' "$WORK/metrics"
check metrics_machines_gauge grep -q '^pivot_machines{app=' "$WORK/metrics"
# Versions the server has no release of share one series: 30 made-up ones add to it, and no label.
others() { sed -n 's/^pivot_machines{.*channel="stable",version="other",state="idle"} //p' "$WORK/metrics"; }
before=$(others)
for i in $(seq 5100 5129); do NOCHECK=1 request "$(mid "$i")" "9.$i.0" stable | omaha >/dev/null; done
curl -s "$URL/metrics" >"$WORK/metrics"
check metrics_version_label_bounded test "$(grep -c '^pivot_machines{.*version="9\.' "$WORK/metrics")" = 0
check metrics_unknown_versions_other test "$(others)" = $((${before:-0} + 30))
check metrics_released_version_kept grep -q '^pivot_machines{.*version="1\.3\.0"' "$WORK/metrics"

# Concurrency: 400 check-ins from 8 parallel clients, all answered.
for i in $(seq 6000 6399); do request "$(mid "$i")" 1.2.0 stable >"$WORK/req-$i.xml"; done
ls "$WORK"/req-6*.xml | xargs -P 8 -n 1 sh -c 'curl -s -o /dev/null -w "%{http_code}\n" -X POST --data-binary @"$0" '"$URL"'/v1/update/' >"$WORK/codes"
check parallel_checkins_all_200 test "$(grep -c '^200$' "$WORK/codes")" = 400

# Connections one address may hold: a client that opens many and sends nothing keeps its
# share (the ones beyond are closed at once), and a client from another address is served.
IPPORT=$(free_port)
start_server "$IPPORT" --data "$WORK/ipdata" --connections-per-ip 8; IPPID=$LAST_PID
held=$(python3 - "$IPPORT" <<'EOF'
import select, socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
time.sleep(1)
def kept(s):
    if not select.select([s], [], [], 0)[0]:
        return True
    try:
        return s.recv(1) != b""
    except OSError:
        return False
other = socket.socket()
other.bind(("127.0.0.2", 0))
other.connect(("127.0.0.1", port))
other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
other.settimeout(5)
print(sum(kept(s) for s in held), other.recv(100).split(b"\r\n")[0].decode())
EOF
)
check per_ip_connection_limit test "$held" = "8 HTTP/1.1 200 OK"
kill "$IPPID"; wait "$IPPID" 2>/dev/null
"$SERVER" --help | grep -q -- '--connections-per-ip N'
check per_ip_option_in_help test $? -eq 0

# pivot-admin gives up on a server that accepts and never answers.
HANG_PORT=$(free_port)
python3 - "$HANG_PORT" <<'EOF' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5); s.settimeout(20)
c, _ = s.accept(); time.sleep(20)
EOF
HANG_PID=$!
sleep 0.3
t0=$(date +%s)
timeout 30 "$ADMIN_BIN" --server "http://127.0.0.1:$HANG_PORT" --token-file "$DATA/admin.token" --timeout 2 status >/dev/null 2>&1; rc=$?
t=$(($(date +%s) - t0))
kill "$HANG_PID" 2>/dev/null; wait "$HANG_PID" 2>/dev/null
check admin_cli_timeout test "$rc" = 1 -a "$t" -lt 10

# Dashboard: server-rendered HTML + SVG, nothing external, and it renders in Chromium.
curl -s "$URL/" >"$WORK/dash.html"
check dashboard_has_svg_charts test "$(grep -o '<svg id="[a-z]*"' "$WORK/dash.html" | wc -l)" -eq 3
# Rendered once per 5 s however many ask: a new machine shows only in a page made after that.
kpi() { sed -n 's/.*<b>\([0-9]*\)<\/b>machines<.*/\1/p' "$1"; }
NOCHECK=1 request "$(mid 5200)" 1.2.0 stable | omaha >/dev/null
curl -s "$URL/" >"$WORK/dash2.html"
sleep 5.5
curl -s "$URL/" >"$WORK/dash3.html"
check dashboard_page_reused cmp -s "$WORK/dash.html" "$WORK/dash2.html"
check dashboard_page_renewed test "$(kpi "$WORK/dash3.html")" = $(($(kpi "$WORK/dash.html") + 1))
check dashboard_no_external_fetch bash -c "! grep -qiE '(src|href)=\"(https?:)?//|<script|<link|@import|url\\(' '$WORK/dash.html'"
if command -v chromium >/dev/null; then
        shot=$OUTDIR/dashboard-$ENGINE.png
        rm -f "$shot"
        timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
                --disable-background-networking --disable-component-update --disable-sync \
                --user-data-dir="$(mktemp -d "$WORK/chrome.XXXXXX")" --window-size=1280,1100 --hide-scrollbars \
                --screenshot="$shot" "$URL/" >"$WORK/chromium.log" 2>&1
        check dashboard_screenshot test -s "$shot" -a "$(stat -c %s "$shot" 2>/dev/null || echo 0)" -gt 20000
else
        notok dashboard_screenshot "chromium is not installed (tools/deps.sh test)"
fi

# Event retention options: whole numbers in range, else a usage error.
for bad in "--event-retention 1.5" "--event-retention -1" "--events-per-machine x" "--events-per-machine 100000001"; do
        # shellcheck disable=SC2086
        timeout 10 "$SERVER" --listen 127.0.0.1:1 --data "$WORK/unused" $bad >/dev/null 2>&1; rc=$?
        [[ $rc == 2 ]] || break
done
check retention_options_checked test "$rc" = 2
"$SERVER" --help | grep -q -- '--event-retention DAYS'
check retention_options_in_help test $? -eq 0

# Events for the retention tests below: some to be made old, some recent, 96 from one machine
# (errorcode: the order they were sent in), and two failures of a rollout, safe mode at 3.
for i in 1 2 3; do
        NOCHECK=1 request "$(mid 8000)" 1.2.0 stable "3:9:$i" | omaha >/dev/null
        NOCHECK=1 request "$(mid 8001)" 1.2.0 stable "3:9:$i" | omaha >/dev/null
done
for k in 0 1 2; do
        NOCHECK=1 request "$(mid 8002)" 1.2.0 stable $(seq -f '3:9:%g' $((k * 32 + 1)) $((k * 32 + 32))) | omaha >/dev/null
done
"${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel aged --rollout 100 >/dev/null 2>&1
"${ADMIN[@]}" policy aged --safe-min-failures 3 --safe-failure-ratio 0.1 >/dev/null
for i in $(seq 8100 8105); do request "$(mid "$i")" 1.2.0 aged | omaha >/dev/null; done
for i in 8100 8101; do NOCHECK=1 request "$(mid "$i")" 1.2.0 aged 3:0:10 | omaha >/dev/null; done
events_of() { # events_of MACHINE: the error codes of its events, newest first ("-": none)
        "${ADMIN[@]}" events --json --limit 1000 --machine "$1" |
                json '" ".join(str(e["error_code"]) for e in j["events"]) or "-"'
}
check retention_events_recorded test "$(events_of "$(mid 8002)" | wc -w)" = 96

# sql STATEMENT: runs it on the server's database (the server stopped).
sql() {
        if [[ $ENGINE == postgres ]]; then
                psql "$PG_URL" -qAt -v ON_ERROR_STOP=1 -c "$1"
        else
                python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()' \
                        "$DATA/pivot.sqlite" "$1"
        fi
}

# Restart: everything is in the database. Meanwhile the events of 8000 and the two failures
# grow 40 days old; the server starts again keeping 30 days and 50 events a machine, and
# prunes at once.
# It stops on a SIGTERM sent by way of each of its threads in turn (kill() prefers the thread
# named when it takes the signal): only the main thread takes SIGINT and SIGTERM. A thread
# that did not block them would die of the signal and the process with it, as a second
# SIGTERM during the shutdown did.
tids=()
for t in /proc/"$SERVER_PID"/task/*; do [[ ${t##*/} == "$SERVER_PID" ]] || tids+=("${t##*/}"); done
for t in "${tids[@]}"; do kill -TERM "$t" 2>/dev/null; done
wait "$SERVER_PID"; rc=$?
check sigterm_through_any_thread_clean_exit test "$rc" = 0 -a "${#tids[@]}" -gt 2
sql "UPDATE events SET time = time - 40 * 86400 WHERE machine IN ('$(mid 8000)', '$(mid 8100)', '$(mid 8101)')"
# A release's file where servers before content-addressed payloads kept it: moved into place
# at start, since its bytes are the release's.
legacy=$DATA/payloads/$(tr -d '{}' <<<"$APP")/1.3.0
mkdir -p "$legacy" && mv "$DATA/payloads/sha256/$sha" "$legacy/update.payload"
start_server "$PORT" --event-retention 30 --events-per-machine 50; SERVER_PID=$LAST_PID
check restart_keeps_state test "$("${ADMIN[@]}" status --json | json 'len(j["channels"])')" = 9
curl -s -o "$WORK/dl3" "${codebase}update.payload"
check legacy_payload_file_moved cmp -s "$WORK/dl3" "$DATA/payloads/sha256/$sha"
check legacy_payload_download cmp -s "$WORK/dl3" "$WORK/pk/update.payload"
for _ in $(seq 50); do
        [[ $(events_of "$(mid 8000)") == - && $(events_of "$(mid 8002)" | wc -w) == 50 ]] && break
        sleep 0.1
done
check retention_old_events_deleted test "$(events_of "$(mid 8000)")" = -
check retention_recent_events_kept test "$(events_of "$(mid 8001)")" = "3 2 1"
check retention_per_machine_limit test "$(events_of "$(mid 8002)")" = "$(seq -s ' ' 96 -1 47)"
check retention_old_failures_deleted test "$(events_of "$(mid 8100)") $(events_of "$(mid 8101)")" = "- -"
# Safe mode still counts the two failures whose events are gone: the third one halts.
NOCHECK=1 request "$(mid 8102)" 1.2.0 aged 3:0:10 | omaha >/dev/null
"${ADMIN[@]}" status --json >"$WORK/aged.json"
check retention_keeps_safe_mode_inputs test \
        "$(json '[c for c in j["channels"] if c["name"]=="aged"][0]["rollout"]["halted"]' <"$WORK/aged.json")" = true
check retention_keeps_failure_counts test \
        "$(json '[c for c in j["channels"] if c["name"]=="aged"][0]["attempts"]["failed"]' <"$WORK/aged.json")" = 3

# PostgreSQL: a second process on the same database acts as the same server.
if [[ $ENGINE == postgres ]]; then
        PORT2=$(free_port)
        start_server "$PORT2"
        OMAHA_URL=http://127.0.0.1:$PORT2
        "${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel multi --rollout 100 >/dev/null 2>&1
        s=$(OMAHA_URL=http://127.0.0.1:$PORT2 request "$(mid 7000)" 1.2.0 multi | OMAHA_URL=http://127.0.0.1:$PORT2 omaha | check_status)
        check second_process_sees_release test "$s" = ok
        for i in $(seq 7001 7005); do
                OMAHA_URL=http://127.0.0.1:$PORT2 request "$(mid "$i")" 1.2.0 multi | OMAHA_URL=http://127.0.0.1:$PORT2 omaha >/dev/null
                NOCHECK=1 OMAHA_URL=http://127.0.0.1:$PORT2 request "$(mid "$i")" 1.2.0 multi 3:0:18 |
                        OMAHA_URL=http://127.0.0.1:$PORT2 omaha >/dev/null
        done
        halted=$("${ADMIN[@]}" status --json | json '[c for c in j["channels"] if c["name"]=="multi"][0]["rollout"]["halted"]')
        check halt_on_one_process_seen_by_other test "$halted" = true
        s=$(request "$(mid 7100)" 1.2.0 multi | omaha | check_status)
        check first_process_obeys_halt test "$s" = noupdate
        unset OMAHA_URL
        # The in-flight limit holds across the processes. A transaction that holds the channel's
        # row, as a grant does, and makes a machine in flight stands for a grant in another
        # process: a request meanwhile must wait for it and count that machine.
        "${ADMIN[@]}" publish "$WORK/pk/update.payload" --channel held --rollout 100 >/dev/null 2>&1
        "${ADMIN[@]}" policy held --max-inflight 2 >/dev/null
        s=$(request "$(mid 7200)" 1.2.0 held | OMAHA_URL=http://127.0.0.1:$PORT2 omaha | check_status)
        NOCHECK=1 request "$(mid 7201)" 1.2.0 held | omaha >/dev/null
        "${ADMIN[@]}" machines --json --limit 100000 >/dev/null # the check-in is written
        psql "$PG_URL" -qAt -v ON_ERROR_STOP=1 >"$WORK/held.out" 2>&1 <<EOT &
BEGIN;
SELECT 1 FROM channels WHERE app = '$APP' AND name = 'held' FOR UPDATE;
UPDATE machines SET state = 'granted', target_version = '1.3.0', state_changed = $(date +%s)
  WHERE app = '$APP' AND id = '$(mid 7201)';
SELECT pg_sleep(2);
COMMIT;
EOT
        holder=$!
        sleep 0.5
        t0=$(date +%s%N)
        s2=$(request "$(mid 7202)" 1.2.0 held | OMAHA_URL=http://127.0.0.1:$PORT2 omaha | check_status)
        waited=$(( ($(date +%s%N) - t0) / 1000000 ))
        wait "$holder"
        check inflight_limit_across_processes test "$s" = ok -a "$s2" = noupdate -a "$waited" -ge 1000
fi

# A database of schema version 1 (events without an id) is brought up to date at start, its
# events kept and in order; one of a newer version is refused.
V1=$WORK/v1
mkdir -p "$V1"
v1_schema="CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
CREATE TABLE events (
  app TEXT NOT NULL, channel TEXT, machine TEXT NOT NULL, version TEXT, target_version TEXT,
  type INTEGER NOT NULL, result INTEGER NOT NULL, error_code INTEGER NOT NULL,
  previous_version TEXT, time BIGINT NOT NULL);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_machine ON events (app, machine, time);
INSERT INTO events VALUES ('$APP', 'stable', '$(mid 9000)', '1.2.0', NULL, 3, 9, 2, '', $(($(date +%s) - 200))),
  ('$APP', 'stable', '$(mid 9000)', '1.2.0', NULL, 3, 9, 1, '', $(($(date +%s) - 300))),
  ('$APP', 'stable', '$(mid 9000)', '1.2.0', NULL, 3, 9, 3, '', $(($(date +%s) - 100)));"
if [[ $ENGINE == postgres ]]; then
        psql "$PG_URL" -qAt -c "CREATE DATABASE pivotv1" && V1_URL=${PG_URL%/*}/pivotv1 &&
                psql "$V1_URL" -qAt -v ON_ERROR_STOP=1 -c "$v1_schema"
        V1_ARGS=(--db "$V1_URL")
        v1_sql() { psql "$V1_URL" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
else
        python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()' \
                "$V1/pivot.sqlite" "$v1_schema"
        V1_ARGS=()
        v1_sql() {
                python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); r = c.execute(sys.argv[2]).fetchone(); c.commit(); r and print(r[0])' \
                        "$V1/pivot.sqlite" "$1"
        }
fi
V1_PORT=$(free_port)
start_server "$V1_PORT" --data "$V1" "${V1_ARGS[@]}"; V1_PID=$LAST_PID
V1_ADMIN=("$ADMIN_BIN" --server "http://127.0.0.1:$V1_PORT" --token-file "$V1/admin.token")
"${V1_ADMIN[@]}" channel-create stable >/dev/null
NOCHECK=1 OMAHA_URL=http://127.0.0.1:$V1_PORT request "$(mid 9000)" 1.2.0 stable 3:9:4 | OMAHA_URL=http://127.0.0.1:$V1_PORT omaha >/dev/null
codes=$("${V1_ADMIN[@]}" events --json --machine "$(mid 9000)" | json '" ".join(str(e["error_code"]) for e in j["events"])')
check schema_1_migrated_events_kept test "$codes" = "4 3 2 1"
check schema_1_migrated_version test "$(v1_sql "SELECT value FROM meta WHERE key = 'schema'")" = 2
check schema_1_migrated_ids test "$(v1_sql "SELECT COUNT(DISTINCT id) FROM events")" = 4
kill "$V1_PID"; wait "$V1_PID" 2>/dev/null
v1_sql "UPDATE meta SET value = '3' WHERE key = 'schema'" >/dev/null
timeout 20 "$SERVER" --listen "127.0.0.1:$V1_PORT" --data "$V1" "${V1_ARGS[@]}" >"$WORK/newer.log" 2>&1; rc=$?
check newer_schema_refused test "$rc" = 1 -a -n "$(grep 'newer than this' "$WORK/newer.log")"

grep -E 'AddressSanitizer|runtime error|Segmentation' "$WORK"/server-*.log && notok server_log_clean || ok server_log_clean
echo "$PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]

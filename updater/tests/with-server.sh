#!/usr/bin/env bash
# The agent against the real pivot-server: publish a payload with pivot-admin, let
# pivot-agent --once update a disk image file from it, and check what the server recorded.
#   updater/tests/with-server.sh WORKDIR PAYLOAD PUBLIC-KEY BASE-DISK
# Exit status 0 when everything matched; the failing step is printed otherwise.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
W=$1/server-test P=$2 KEY=$3 BASE=$4
rm -rf "$W"; mkdir -p "$W"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$ROOT/out/bin/pivot-server" --listen "127.0.0.1:$port" --data "$W/data" >"$W/server.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null' EXIT
for _ in $(seq 100); do [[ -f $W/data/admin.token ]] && curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && break; sleep 0.1; done
ADMIN=("$ROOT/out/bin/pivot-admin" --server "http://127.0.0.1:$port" --token-file "$W/data/admin.token")
fail() { echo "FAILED: $*"; cat "$W/server.log" | tail -n 20; exit 1; }

"${ADMIN[@]}" publish "$P" --channel stable --rollout 100 --key "$KEY" || fail "publish"
cp --sparse=always "$BASE" "$W/disk.img"
printf 'server = http://127.0.0.1:%s/v1/update/\npublic_key = %s\nstall_timeout = 5\n' "$port" "$KEY" >"$W/update.conf"
agent() { "$ROOT/out/test/san/pivot-agent" --disk "$W/disk.img" --state-dir "$W/state" --config "$W/update.conf" --quiet "$@"; }
agent --once --boot-id boot-1; rc=$?
[[ $rc == 0 ]] || fail "agent --once exit $rc (want 0: installed)"
next=$("$ROOT/out/test/san/pivotctl" --disk "$W/disk.img" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_boot"]["slot"])')
[[ $next == B ]] || fail "next boot $next, want B"
"${ADMIN[@]}" events --json >"$W/events.json" || fail "events"
python3 - "$W/events.json" <<'PY' || fail "server did not record events 13, 14 and 3/1"
import json, sys
j = json.load(open(sys.argv[1]))
evs = j.get("events", j) if isinstance(j, dict) else j
seen = {(int(e["type"]), int(e["result"])) for e in evs}
assert {(13, 1), (14, 1), (3, 1)} <= seen, seen
PY
# After the "reboot" into B: the first check reports success, and the server has nothing newer.
agent --once --boot-id boot-2 --booted-slot B; rc=$?
[[ $rc == 3 ]] || fail "second agent run exit $rc (want 3: no update)"
"${ADMIN[@]}" events --json >"$W/events.json"
python3 - "$W/events.json" <<'PY' || fail "server did not record the success after reboot (3/2)"
import json, sys
j = json.load(open(sys.argv[1]))
evs = j.get("events", j) if isinstance(j, dict) else j
assert any(int(e["type"]) == 3 and int(e["result"]) == 2 for e in evs)
PY
"${ADMIN[@]}" status --json >"$W/status.json"
echo "pivot-server: published, installed, reported; status:"
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["channels"][0].get("attempts")))' "$W/status.json"
exit 0

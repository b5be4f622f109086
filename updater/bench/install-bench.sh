#!/usr/bin/env bash
# make bench, updater part: installing a 1 GiB root image from a local HTTP server.
#
#   updater/bench/install-bench.sh [RUNS]        (PIVOT_BENCH_MIB=1024 sets the image size)
#
# Compares, on the same payload bytes served by nginx on 127.0.0.1:
#   agent     pivot-agent --once: Omaha check, download, verify every chunk, decompress, write
#             the slot (O_DIRECT), read it back and verify it, boot files to the ESP, GPT flip
#   pipeline  curl | zstd -d | tee >(sha256sum) | dd   (the same download, decompression,
#             hashing and write, done by a shell pipeline; dd with conv=fsync, and with
#             oflag=direct: the faster of the two counts)
#   zstd      zstd -d > /dev/null on the compressed bytes: the upper bound
# and the agent's peak RSS. Two more figures tell the disk's part: the agent installing into a
# copy of the disk image on a RAM-backed file system (/dev/shm, when it has room), and the
# disk's own floor for the write and read-back the agent must do (dd writing the image's size
# into the slot and reading it back, both O_DIRECT in 256 KiB requests, at the same time). Each is run RUNS times (default 3), interleaved; medians count, and
# the ratios are taken run by run (an agent run against the zstd run right after it) so that
# other work on the machine weighs on both sides alike. The agent's CPU time per thread (its
# debug log) gives the CPU seconds per GiB of each stage; /proc/stat around each run tells how
# much CPU other processes took meanwhile. Results go to stdout and
# out/bench/updater-install.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUNS=${1:-3}
MIB=${PIVOT_BENCH_MIB:-1024}
B=$ROOT/out/bench/updater
mkdir -p "$B"
make -s out/bin/pivot-agent out/bin/pivotctl out/bin/pivot-payload >/dev/null
for t in nginx curl zstd sfdisk mkfs.vfat mcopy python3; do
        command -v $t >/dev/null || { echo "install-bench: $t missing (tools/deps.sh bench test)"; exit 1; }
done
export MTOOLS_SKIP_CHECK=1
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# --- Inputs (kept between runs) ---------------------------------------------------------------
root=$B/root-$MIB.img
if [[ ! -f $root ]]; then
        echo "install-bench: making a ${MIB} MiB root image from /usr (once)"
        # Real program and data files: compresses like a root file system does.
        { find /usr/lib /usr/share /usr/bin -type f -size +4k 2>/dev/null | sort | xargs cat 2>/dev/null || true; } |
                head -c $((MIB << 20)) >"$root.tmp" || true
        [[ $(stat -c %s "$root.tmp") == $((MIB << 20)) ]] || { echo "install-bench: not enough data in /usr"; exit 1; }
        mv "$root.tmp" "$root"
fi
[[ -f $B/vmlinuz ]] || head -c 8000000 /dev/urandom >"$B/vmlinuz"
[[ -f $B/initrd ]] || head -c 20000000 "$root" >"$B/initrd"
[[ -f $B/key.pem ]] || out/bin/pivot-payload keygen --out-private "$B/key.pem" --out-public "$B/key.pub"
mkdir -p "$B/www"
payload=$B/www/bench-$MIB.payload
if [[ ! -f $payload || $root -nt $payload ]] || ! out/bin/pivot-payload show "$payload" >/dev/null 2>&1; then
        echo "install-bench: making the payload (the default chunk size and zstd level; once)"
        out/bin/pivot-payload create --quiet --root "$root" --kernel "$B/vmlinuz" --initrd "$B/initrd" \
                --cmdline "ro pivot.version=2.0.0 pivot.verity.roothash=$(printf bench | sha256sum | cut -c1-64)" \
                --version 2.0.0 --key "$B/key.pem" --out "$payload"
fi
# The payload's SHA-256 for the Omaha answer, computed once: a real server stores it with the
# release, and hashing 400 MB per request would charge the server's work to the agent's time.
payload_sha() { [[ -f $1.sha256 && $1.sha256 -nt $1 ]] || sha256sum "$1" | cut -c1-64 >"$1.sha256"; cat "$1.sha256"; }
off=$(out/bin/pivot-payload show --json "$payload" | sed -E 's/.*"data_offset":([0-9]+).*/\1/')
size=$(stat -c %s "$payload")
raw=$(( (MIB << 20) + $(stat -c %s "$B/vmlinuz") + $(stat -c %s "$B/initrd") ))
[[ -f $B/data-$MIB.zst && $B/data-$MIB.zst -nt $payload ]] || tail -c +$((off + 1)) "$payload" >"$B/data-$MIB.zst"

# The disk: slots big enough, allocated up front (a real disk has no holes to fill).
disk=$B/disk-$MIB.img
slot_mib=$((MIB + 64))
slot_b_sector=$(( (1 + 32 + slot_mib) * 2048 ))
if [[ ! -f $disk ]]; then
        echo "install-bench: making the disk image (once)"
        rm -f "$disk.tmp"
        fallocate -l $(( (1 + 32 + 2 * slot_mib + 2) << 20 )) "$disk.tmp"
        sfdisk -q "$disk.tmp" <<EOT
label: gpt
first-lba: 2048
start=2048, size=$((32 * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI-SYSTEM"
size=$((slot_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="ROOT-A", attrs="GUID:49,56"
size=$((slot_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="ROOT-B", attrs="GUID:48,56"
size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="STATE"
EOT
        mkfs.vfat -C "$B/esp.img" $((32 * 1024)) >/dev/null
        mmd -i "$B/esp.img" ::/EFI ::/pivot ::/pivot/A ::/pivot/B
        printf 'ro pivot.version=1.0.0\n' >"$B/cmdline"
        for s in A B; do mcopy -i "$B/esp.img" "$B/cmdline" "::/pivot/$s/cmdline"; done
        dd if="$B/esp.img" of="$disk.tmp" bs=1M seek=1 conv=notrunc status=none
        rm -f "$B/esp.img"
        mv "$disk.tmp" "$disk"
fi

# --- Servers ----------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
nport=$(free_port)
mkdir -p "$B/nginx"
cat >"$B/nginx/nginx.conf" <<EOT
daemon off;
worker_processes 1;
pid $B/nginx/nginx.pid;
error_log $B/nginx/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $B/nginx;
    proxy_temp_path $B/nginx;
    fastcgi_temp_path $B/nginx;
    uwsgi_temp_path $B/nginx;
    scgi_temp_path $B/nginx;
    server { listen 127.0.0.1:$nport; root $B/www; }
}
EOT
nginx -c "$B/nginx/nginx.conf" &
PIDS+=($!)
URL=http://127.0.0.1:$nport/$(basename "$payload")
for _ in $(seq 100); do curl -sf -o /dev/null -r 0-0 "$URL" && break; sleep 0.05; done

printf '{"omaha":"update","version":"2.0.0","payload":"%s","hash_sha256":"%s","base_url":"http://127.0.0.1:%s"}\n' \
        "$payload" "$(payload_sha "$payload")" "$nport" >"$B/responder.json"
rm -f "$B/port"
python3 updater/tests/responder.py --port-file "$B/port" --config "$B/responder.json" --log /dev/null &
PIDS+=($!)
for _ in $(seq 100); do [[ -f $B/port && $(cat "$B/port") ]] && break; sleep 0.05; done
# The responder's URLs are base_url + /payloads/NAME: give nginx that path too.
mkdir -p "$B/www/payloads"
ln -sf "$payload" "$B/www/payloads/$(basename "$payload")"
printf 'server = http://127.0.0.1:%s/v1/update/\npublic_key = %s\nreboot_strategy = off\n' "$(cat "$B/port")" "$B/key.pub" >"$B/update.conf"

if [[ -n ${PIVOT_BENCH_SERVE:-} ]]; then
        # Profiling: keep the servers up; the agent's configuration is in $B/update.conf.
        echo "install-bench: serving; config $B/update.conf; Ctrl-C ends"
        wait
fi

# --- Runs ---------------------------------------------------------------------------------------
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; } # user nice system irq softirq
hz=$(getconf CLK_TCK)
# Every agent run starts from the same disk: slot A running and good, B below it. Left flipped
# by the run before, B would outrank the running slot, which the agent takes for a rollback by
# hand (its install record, which tells its own install apart, is wiped with the state).
reset_slots() { # DISK
        sfdisk -q --part-attrs "$1" 2 "GUID:49,56" && sfdisk -q --part-attrs "$1" 3 "GUID:48,56"
}
run_agent() { # [DISK [STAGES-FILE]]; prints: wall maxrss user sys others-cpu; the per-thread CPU
        # line goes to agent.stages
        rm -rf "$B/state"
        reset_slots "${1:-$disk}" >&2
        local b0; b0=$(busy)
        /usr/bin/time -f "%e %M %U %S" -o "$B/time.out" out/bin/pivot-agent --once --quiet -v --no-mark-good \
                --disk "${1:-$disk}" --booted-slot A --state-dir "$B/state" --config "$B/update.conf" 2>"$B/agent.log" || {
                cat "$B/agent.log" >&2; echo "install-bench: the agent failed" >&2; exit 1; }
        local b1; b1=$(busy)
        read -r t m u s <"$B/time.out"
        echo "$t $m $u $s $(echo "$b0 $b1 $hz $u $s" | awk '{o = ($2 - $1) / $3 - $4 - $5; print o < 0 ? 0 : o}')"
        sed -n 's/.*install cpu: //p' "$B/agent.log" >>"${2:-$B/agent.stages}"
}
disk_floor() { # prints the wall time of writing and reading back the image's size in slot B
        local n=$(((MIB << 20) / 262144)) at=$((slot_b_sector * 512))
        /usr/bin/time -f "%e" -o "$B/time.out" bash -c "
                dd if=/dev/zero of='$disk' bs=256K count=$n oflag=direct,seek_bytes seek=$at conv=notrunc status=none &
                dd if='$disk' of=/dev/null bs=256K count=$n iflag=direct,skip_bytes skip=$at status=none; wait"
        cat "$B/time.out"
}
run_pipeline() { # fsync|direct
        local flags="conv=notrunc,fsync"
        [[ $1 == direct ]] && flags="conv=notrunc oflag=direct,seek_bytes iflag=fullblock"
        local seek="seek=$((slot_b_sector / 2048))"
        [[ $1 == direct ]] && seek="seek=$((slot_b_sector * 512))"
        /usr/bin/time -f "%e" -o "$B/time.out" bash -c "curl -s -r $off- '$URL' | zstd -q -d | tee >(sha256sum >/dev/null) | dd of='$disk' bs=1M $seek $flags status=none"
        cat "$B/time.out"
}
run_zstd() { # prints: wall user sys others-cpu
        local b0; b0=$(busy)
        /usr/bin/time -f "%e %U %S" -o "$B/time.out" zstd -q -d -c "$B/data-$MIB.zst" >/dev/null
        local b1; b1=$(busy)
        read -r t u s <"$B/time.out"
        echo "$t $u $s $(echo "$b0 $b1 $hz $u $s" | awk '{o = ($2 - $1) / $3 - $4 - $5; print o < 0 ? 0 : o}')"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The RAM-backed copy of the disk, when /dev/shm has room for it and some to spare.
shm_disk=/dev/shm/pivot-bench-disk-$MIB.img
rm -f "$shm_disk"
if (( $(df -k --output=avail /dev/shm 2>/dev/null | tail -n 1 || echo 0) > ($(stat -c %s "$disk") >> 10) * 2 )); then
        cp --sparse=never "$disk" "$shm_disk"
        trap 'cleanup; rm -f "$shm_disk"' EXIT
else
        shm_disk=
fi

echo "install-bench: $RUNS runs each; payload $((size >> 20)) MiB for $((raw >> 20)) MiB of images"
: >"$B/runs"; : >"$B/agent.stages"
cat "$payload" "$B/data-$MIB.zst" >/dev/null # the page cache holds both sides' input
run_zstd >/dev/null
for i in $(seq "$RUNS"); do
        read -r t rss au as ao < <(run_agent) && [[ -n $t ]] || exit 1
        tf=$(run_pipeline fsync)
        td=$(run_pipeline direct)
        read -r zt zu zs zo < <(run_zstd)
        ts=0
        if [[ -n $shm_disk ]]; then read -r ts _ < <(run_agent "$shm_disk" /dev/null) && [[ -n $ts ]] || exit 1; fi
        tfloor=$(disk_floor)
        echo "$t $rss $au $as $ao $tf $td $zt $zu $zs $zo $ts $tfloor" >>"$B/runs"
        echo "  run $i: agent ${t}s (peak RSS $((rss / 1024)) MiB, other processes ${ao} CPU-s meanwhile)," \
             "pipeline ${tf}s / ${td}s (direct), zstd -d ${zt}s (others ${zo} CPU-s)," \
             "agent on RAM ${ts}s, disk write+read ${tfloor}s"
done
# Peak RSS does not grow with the image: the same install from a 256 MiB image, and an agent
# run that finds no update (libraries and start-up alone).
small=$B/www/bench-256.payload
if [[ ! -f $small || $root -nt $small ]] || ! out/bin/pivot-payload show "$small" >/dev/null 2>&1; then
        head -c $((256 << 20)) "$root" >"$B/root-256.img"
        out/bin/pivot-payload create --quiet --root "$B/root-256.img" --kernel "$B/vmlinuz" --initrd "$B/initrd" \
                --cmdline "ro pivot.version=2.0.0 pivot.verity.roothash=$(printf bench | sha256sum | cut -c1-64)" \
                --version 2.0.0 --key "$B/key.pem" --out "$small"
        rm -f "$B/root-256.img"
fi
ln -sf "$small" "$B/www/payloads/$(basename "$small")"
cp "$B/responder.json" "$B/responder.json.1g"
printf '{"omaha":"update","version":"2.0.0","payload":"%s","hash_sha256":"%s","base_url":"http://127.0.0.1:%s"}\n' \
        "$small" "$(payload_sha "$small")" "$nport" >"$B/responder.json"
read -r _ rss256 _ < <(run_agent) && [[ -n $rss256 ]] || exit 1
printf '{"omaha":"noupdate"}\n' >"$B/responder.json"
rm -rf "$B/state"
/usr/bin/time -f "%M" -o "$B/time.out" out/bin/pivot-agent --once --quiet --no-mark-good --disk "$disk" \
        --booted-slot A --state-dir "$B/state" --config "$B/update.conf" 2>/dev/null || true
rss0=$(tail -n 1 "$B/time.out")
cp "$B/responder.json.1g" "$B/responder.json"
head -n "$RUNS" "$B/agent.stages" >"$B/agent.stages.1g"

python3 - "$raw" "$MIB" "$rss256" "$rss0" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)" "$B/runs" "$B/agent.stages.1g" <<'EOT' | tee "$ROOT/out/bench/updater-install.txt"
import statistics, sys
raw, mib, rss256, rss0, load, ncpu, runs_path, stages_path = sys.argv[1:]
raw = int(raw); rss256 = int(rss256) / 1024; rss0 = int(rss0) / 1024; ncpu = int(ncpu)
runs = [list(map(float, l.split())) for l in open(runs_path) if l.strip()]
med = lambda xs: statistics.median(xs)
col = lambda i: [r[i] for r in runs]
ta, rss, au, as_, ao, tf, td, tz, zu, zs, zo, ts, tfloor = (med(col(i)) for i in range(13))
rss = max(col(1)) / 1024
tp = min(tf, td)
gib = raw / (1 << 30)
mb = lambda t: raw / t / 1048576
print(f"updater install, {mib} MiB root image (+ kernel, initrd), payload over HTTP on 127.0.0.1, {len(runs)} runs, medians")
print(f"  agent (check, download, verify, write, read back, ESP, flip): {ta:6.2f} s  {mb(ta):7.0f} MiB/s")
print(f"  shell pipeline curl|zstd -d|tee >(sha256sum)|dd:   {tp:6.2f} s  {mb(tp):7.0f} MiB/s  (conv=fsync {tf:.2f} s, oflag=direct {td:.2f} s)")
print(f"  zstd -d > /dev/null (upper bound):                 {tz:6.2f} s  {mb(tz):7.0f} MiB/s")
r1 = tp / ta
per_run = [r[7] / r[0] for r in runs]
print(f"  agent / pipeline: {r1:.2f}x  (target >= 1.0x: {'met' if r1 >= 1.0 else 'MISSED'})")
r2 = med(per_run)
print(f"  agent / zstd bound: {100 * r2:.0f}% (run by run: {', '.join(f'{100 * x:.0f}%' for x in per_run)})"
      f"  (target >= 70%: {'met' if r2 >= 0.70 else 'MISSED'})")
if ts > 0:
    per_run_ram = [r[7] / r[11] for r in runs]
    print(f"    the same with the disk image on a RAM-backed file system: agent {ts:.2f} s,"
          f" {100 * med(per_run_ram):.0f}% of zstd -d (run by run: {', '.join(f'{100 * x:.0f}%' for x in per_run_ram)})")
print(f"    the disk alone, writing the image and reading it back as the agent does (dd, O_DIRECT,"
      f" 256 KiB requests, both at once): {tfloor:.2f} s; an install on this disk that takes no"
      f" longer than that would be {100 * med([r[7] / r[12] for r in runs]):.0f}% of the bound")
print(f"  CPU: agent {au + as_:.2f} s ({(au + as_) / gib:.2f} s/GiB), zstd -d {zu + zs:.2f} s ({(zu + zs) / gib:.2f} s/GiB);"
      f" other processes took {ao:.2f} CPU-s during an agent run, {zo:.2f} during a zstd run; {ncpu} CPUs, load average {load}")
stages = [dict(zip(l.split()[0::2], map(float, l.split()[1::2]))) for l in open(stages_path) if l.strip()]
if stages:
    names = ["receiver", "decompressor", "writer", "reader", "verifier"]
    what = {"receiver": "download, whole-file SHA-256", "decompressor": "zstd",
            "writer": "O_DIRECT writes", "reader": "O_DIRECT read-back",
            "verifier": "SHA-256 of each compressed chunk and of what was read back"}
    m = {n: med([s[n] for s in stages]) for n in names + ["wall"]}
    print(f"  agent CPU by stage (s/GiB of image): " +
          ", ".join(f"{n} {m[n] / gib:.2f} ({what[n]})" for n in names) +
          f"; the rest (start, Omaha, ESP, flip) {max(0.0, au + as_ - sum(m[n] for n in names)) / gib:.2f}")
    busy = sum(m[n] for n in names)
    alone = max(m["decompressor"], busy / ncpu)
    run_alone = ta - m["wall"] + alone
    print(f"  streaming (first byte to last chunk verified): {m['wall']:.2f} s wall, {busy:.2f} CPU-s in the agent's"
          f" threads ({busy / m['wall']:.2f} CPUs); with the {ncpu} CPUs to itself it would take about"
          f" max(decompressor, CPU-s / {ncpu}) = {alone:.2f} s, the run {run_alone:.2f} s, and zstd -d's"
          f" {zu + zs:.2f} CPU-s would be {100 * (zu + zs) / run_alone:.0f}% of it")
    if "runqueue_workers" in stages[0]:
        rq = {n: med([s[n] for s in stages]) for n in ("runqueue_receiver", "runqueue_workers", "workers")}
        print(f"  ready to run but waiting for a CPU while streaming: the receiver {rq['runqueue_receiver']:.2f} s,"
              f" each of the {rq['workers']:.0f} workers {rq['runqueue_workers'] / rq['workers']:.2f} s on average"
              f" ({100 * rq['runqueue_workers'] / rq['workers'] / m['wall']:.0f}% of the streaming time)")
print(f"  agent peak RSS: {rss:.1f} MiB  (target <= 16 MiB: {'met' if rss <= 16 else 'MISSED'})")
print(f"    same install from a 256 MiB image: {rss256:.1f} MiB; an agent run without an install"
      f" (shared libraries, start-up): {rss0:.1f} MiB; the install's own share: {rss - rss0:.1f} MiB")
EOT

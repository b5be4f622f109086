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
# and the agent's peak RSS. Each is run RUNS times (default 3), interleaved; medians count.
# Results go to stdout and out/bench/updater-install.txt.
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
if [[ ! -f $payload || $root -nt $payload ]]; then
        echo "install-bench: making the payload (zstd level 6, 1 MiB chunks; once)"
        out/bin/pivot-payload create --quiet --root "$root" --kernel "$B/vmlinuz" --initrd "$B/initrd" \
                --cmdline "ro pivot.version=2.0.0 pivot.verity.roothash=$(printf bench | sha256sum | cut -c1-64)" \
                --version 2.0.0 --key "$B/key.pem" --out "$payload"
fi
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

printf '{"omaha":"update","version":"2.0.0","payload":"%s","base_url":"http://127.0.0.1:%s"}\n' "$payload" "$nport" >"$B/responder.json"
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
run_agent() {
        rm -rf "$B/state"
        /usr/bin/time -f "%e %M %U %S" -o "$B/time.out" out/bin/pivot-agent --once --quiet --no-mark-good \
                --disk "$disk" --booted-slot A --state-dir "$B/state" --config "$B/update.conf" 2>"$B/agent.log" || {
                cat "$B/agent.log"; echo "install-bench: the agent failed"; exit 1; }
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
run_zstd() {
        /usr/bin/time -f "%e %U %S" -o "$B/time.out" zstd -q -d -c "$B/data-$MIB.zst" >/dev/null
        cat "$B/time.out"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "install-bench: $RUNS runs each; payload $((size >> 20)) MiB for $((raw >> 20)) MiB of images"
: >"$B/agent.times"; : >"$B/rss"; : >"$B/agent.cpu"; : >"$B/zstd.cpu"; : >"$B/fsync.times"; : >"$B/direct.times"; : >"$B/zstd.times"
run_zstd >/dev/null # warm the page cache
for i in $(seq "$RUNS"); do
        run_agent >"$B/agent.out"
        read -r t rss au as <"$B/agent.out"; echo "$t" >>"$B/agent.times"; echo "$rss" >>"$B/rss"
        echo "$au $as" | awk '{print $1 + $2}' >>"$B/agent.cpu"
        run_pipeline fsync >>"$B/fsync.times"
        run_pipeline direct >>"$B/direct.times"
        run_zstd >"$B/zstd.out"
        read -r zt zu zs <"$B/zstd.out"; echo "$zt" >>"$B/zstd.times"
        echo "$zu $zs" | awk '{print $1 + $2}' >>"$B/zstd.cpu"
        echo "  run $i: agent ${t}s (peak RSS $((rss / 1024)) MiB), pipeline $(tail -1 "$B/fsync.times")s / $(tail -1 "$B/direct.times")s (direct), zstd -d $(tail -1 "$B/zstd.times")s"
done
# Peak RSS does not grow with the image: the same install from a 256 MiB image, and an agent
# run that finds no update (libraries and start-up alone).
small=$B/www/bench-256.payload
if [[ ! -f $small || $root -nt $small ]]; then
        head -c $((256 << 20)) "$root" >"$B/root-256.img"
        out/bin/pivot-payload create --quiet --root "$B/root-256.img" --kernel "$B/vmlinuz" --initrd "$B/initrd" \
                --cmdline "ro pivot.version=2.0.0 pivot.verity.roothash=$(printf bench | sha256sum | cut -c1-64)" \
                --version 2.0.0 --key "$B/key.pem" --out "$small"
        rm -f "$B/root-256.img"
fi
ln -sf "$small" "$B/www/payloads/$(basename "$small")"
cp "$B/responder.json" "$B/responder.json.1g"
sed -i "s|$(basename "$payload")|$(basename "$small")|" "$B/responder.json"
run_agent >"$B/agent.out"
read -r _ rss256 _ <"$B/agent.out"
printf '{"omaha":"noupdate"}\n' >"$B/responder.json"
rm -rf "$B/state"
/usr/bin/time -f "%M" -o "$B/time.out" out/bin/pivot-agent --once --quiet --no-mark-good --disk "$disk" \
        --booted-slot A --state-dir "$B/state" --config "$B/update.conf" 2>/dev/null || true
rss0=$(tail -n 1 "$B/time.out")
cp "$B/responder.json.1g" "$B/responder.json"

ta=$(median <"$B/agent.times") tf=$(median <"$B/fsync.times") td=$(median <"$B/direct.times") tz=$(median <"$B/zstd.times")
ca=$(median <"$B/agent.cpu") cz=$(median <"$B/zstd.cpu")
load=$(cut -d' ' -f1-3 /proc/loadavg)
rss=$(sort -n "$B/rss" | tail -1)
tp=$(printf '%s\n%s\n' "$tf" "$td" | sort -n | head -1)
python3 - "$raw" "$ta" "$tp" "$tz" "$rss" "$tf" "$td" "$MIB" "$rss256" "$rss0" "$ca" "$cz" "$load" "$(nproc)" <<'EOT' | tee "$ROOT/out/bench/updater-install.txt"
import sys
raw, ta, tp, tz, rss, tf, td, mib, rss256, rss0, ca, cz, load, ncpu = sys.argv[1:]
raw = int(raw); ta, tp, tz, tf, td = map(float, (ta, tp, tz, tf, td)); rss = int(rss) / 1024
rss256 = int(rss256) / 1024; rss0 = int(rss0) / 1024
mb = lambda t: raw / t / 1048576
print(f"updater install, {mib} MiB root image (+ kernel, initrd), payload over HTTP on 127.0.0.1")
print(f"  agent (check, download, verify, write, read back, ESP, flip): {ta:6.2f} s  {mb(ta):7.0f} MiB/s")
print(f"  shell pipeline curl|zstd -d|tee >(sha256sum)|dd:   {tp:6.2f} s  {mb(tp):7.0f} MiB/s  (conv=fsync {tf:.2f} s, oflag=direct {td:.2f} s)")
print(f"  zstd -d > /dev/null (upper bound):                 {tz:6.2f} s  {mb(tz):7.0f} MiB/s")
print(f"  CPU time: agent {float(ca):.2f} s, zstd -d {float(cz):.2f} s; {ncpu} CPUs, load average {load}"
      " (other work on the machine slows the multi-threaded agent more than single-threaded zstd)")
r1, r2 = tp / ta, tz / ta
print(f"  agent / pipeline: {r1:.2f}x  (target >= 1.0x: {'met' if r1 >= 1.0 else 'MISSED'})")
print(f"  agent / zstd bound: {100 * r2:.0f}%  (target >= 70%: {'met' if r2 >= 0.70 else 'MISSED'})")
print(f"  agent peak RSS: {rss:.1f} MiB  (target <= 16 MiB: {'met' if rss <= 16 else 'MISSED'})")
print(f"    same install from a 256 MiB image: {rss256:.1f} MiB; an agent run without an install"
      f" (shared libraries, start-up): {rss0:.1f} MiB; the install's own buffers: {rss - rss0:.1f} MiB")
EOT

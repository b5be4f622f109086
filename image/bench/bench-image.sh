#!/usr/bin/env bash
# Image build and boot figures for README.md. Builds into out/bench, sharing the package cache
# (out/cache) with the main build: "warm" means packages are already downloaded and unpacked.
#   full build (warm cache)      everything but the package download: root, initramfs, ESP, disk, payload
#   overlay-only rebuild         after changing one file in the overlay
#   root image / disk image      sizes
#   QEMU start -> banner         through OVMF + the boot selector, and OVMF starting the same
#                                kernel directly (-kernel): the difference is the selector's share
set -euo pipefail
cd "$(dirname "$0")/../.."
out=out/bench
runs=${BENCH_RUNS:-2}
rm -rf "$out"
mkdir -p "$out"
overlay=$out/overlay
cp -a rootfs-overlay "$overlay"

build() { make --no-print-directory image OUT="$out" CACHE=out/cache OVERLAY="$overlay" >"$out/build.log" 2>&1; }

# Programs and the package cache first, so the timings below are of the image alone.
build
rm -rf "$out/image" out/cache/initrd-*
t0=$(date +%s.%N); build; t1=$(date +%s.%N)
full=$(echo "$t1 - $t0" | bc)
echo "bench change $(date +%s%N)" >"$overlay/etc/bench-stamp"
t0=$(date +%s.%N); build; t1=$(date +%s.%N)
overlay_only=$(echo "$t1 - $t0" | bc)

root_mib=$(echo "scale=1; $(stat -c %s "$out/image/root.img") / 1048576" | bc)
disk_mib=$(($(stat -c %s "$out/disk.img") / 1048576))
disk_alloc_mib=$(($(du -k "$out/disk.img" | cut -f1) / 1024))
payload_mib=$([[ -f $out/update.payload ]] && echo "scale=1; $(stat -c %s "$out/update.payload") / 1048576" | bc || echo n/a)

python3 - "$out" "$runs" "$full" "$overlay_only" "$root_mib" "$disk_mib" "$disk_alloc_mib" "$payload_mib" <<'PY'
import os, shutil, statistics, sys, time
sys.path.insert(0, "qemu-tests")
from pivotvm import BANNER, PivotVM

out, runs = sys.argv[1], int(sys.argv[2])
full, overlay_only, root_mib, disk_mib, alloc_mib, payload_mib = sys.argv[3:]
img = os.path.join(out, "image")
cmdline = open(os.path.join(img, "cmdline")).read().strip()

def boot(name, extra=()):
    wd = os.path.join(out, name)
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    with PivotVM(os.path.join(out, "disk.img"), wd, extra=extra) as vm:
        t = time.monotonic()
        vm.start()
        vm.expect(BANNER.pattern, 300)
        done = time.monotonic() - t
        started = vm.line_time(r"BdsDxe: starting")
        decided = vm.line_time(r"^pivot-selector: .* -> ")
        if started and decided:
            own.append(decided - started)
        return done

def partuuid_a():
    import json, subprocess
    t = json.loads(subprocess.run(["sfdisk", "--json", os.path.join(out, "disk.img")],
                                  capture_output=True, text=True, check=True).stdout)
    return next(p["uuid"].lower() for p in t["partitiontable"]["partitions"] if p.get("name") == "ROOT-A")

direct = ["-kernel", os.path.join(img, "vmlinuz"), "-initrd", os.path.join(img, "initrd"),
          "-append", f"{cmdline} console=ttyS0,115200 pivot.slot=A pivot.root=PARTUUID={partuuid_a()}"]
# Alternate the two so machine noise falls on both alike.
sel, dir_, own = [], [], []
for i in range(runs):
    sel.append(boot(f"selector-{i}"))
    dir_.append(boot(f"direct-{i}", direct))
s, d = statistics.median(sel), statistics.median(dir_)
print("image build and boot (this machine, medians of %d boots)" % runs)
print(f"  full build, warm package cache   {float(full):6.1f} s   (target <= 90 s)")
print(f"  overlay-only rebuild             {float(overlay_only):6.1f} s   (target <= 15 s)")
print(f"  root image (squashfs + verity)   {root_mib:>6} MiB (target <= 64 MiB)")
print(f"  disk image                       {disk_mib:>6} MiB, {alloc_mib} MiB allocated (sparse)")
print(f"  update payload                   {payload_mib:>6} MiB")
print(f"  QEMU start -> banner, selector   {s:6.1f} s   (target <= 20 s)")
print(f"  QEMU start -> banner, direct     {d:6.1f} s   (OVMF starts the kernel itself)")
print(f"  selector's share                 {s - d:6.1f} s   ({s / d:.2f}x the direct boot)")
if own:
    print(f"    of which its own decision      {statistics.median(own):6.2f} s   (firmware starts it -> its console line:")
    print(f"                                               GPT, policy, selector.conf; the rest is loading")
    print(f"                                               kernel and initrd through the firmware's FAT driver)")
PY
rm -rf "$out"

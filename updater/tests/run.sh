#!/usr/bin/env bash
# End-to-end tests of pivotctl and pivot-agent on disk image files (--disk), against a local
# Nebraska-shaped Omaha responder (updater/tests/responder.py) and, when it is built, the real
# pivot-server. No QEMU, no network beyond 127.0.0.1. The programs are the ASan+UBSan builds.
#
#   updater/tests/run.sh [NAME-SUBSTRING]
#
# Prints "ok NAME" / "not ok NAME: why" per test and closes with "N passed, N failed".
# Exit status: 0 when every test passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ONLY=${1:-}

if ! make -s out/test/san/pivotctl out/test/san/pivot-agent out/bin/pivot-payload >/dev/null; then
        echo "build failed"; echo "0 passed, 1 failed"; exit 1
fi
CTL=$ROOT/out/test/san/pivotctl AGENT=$ROOT/out/test/san/pivot-agent PAYLOAD=$ROOT/out/bin/pivot-payload
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
export MTOOLS_SKIP_CHECK=1
for tool in sfdisk mkfs.vfat mcopy mksquashfs python3 openssl; do
        command -v $tool >/dev/null || { echo "missing $tool (tools/deps.sh test)"; echo "0 passed, 1 failed"; exit 1; }
done

WORK=$(mktemp -d /tmp/pivot-updater-test.XXXXXX)
PIDS=()
cleanup() {
        for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
        mountpoint -q "$WORK/small-fs" 2>/dev/null && umount "$WORK/small-fs"
        rm -rf "$WORK"
}
trap cleanup EXIT

PASS=0 FAIL=0
ok() { echo "ok $1"; PASS=$((PASS + 1)); [[ -n ${VERBOSE:-} && -f $WORK/last.log ]] && sed "s/^/    | /" "$WORK/last.log"; }
notok() { echo "not ok $1${2:+: $2}"; FAIL=$((FAIL + 1)); [[ -f $WORK/last.log ]] && sed 's/^/    | /' "$WORK/last.log" | tail -n 25; }
want() { [[ -z $ONLY || $1 == *"$ONLY"* ]]; }

# --- Fixtures -----------------------------------------------------------------------------------
ROOTHASH=$(printf 'pivot-test' | sha256sum | cut -c1-64)
KEYS=$WORK/keys
mkdir -p "$KEYS"
$PAYLOAD keygen --out-private "$KEYS/dev.pem" --out-public "$KEYS/dev.pub" >/dev/null
$PAYLOAD keygen --out-private "$KEYS/other.pem" --out-public "$KEYS/other.pub" >/dev/null

# A root image the way the image build makes one (squashfs with the public key inside).
rootfs() { # DIR VERSION -> DIR/root.img
        local d=$1/rootfs
        mkdir -p "$d/usr/share/pivot" "$d/etc"
        cp "$KEYS/dev.pub" "$d/usr/share/pivot/update-signing.pub"
        printf 'ID=pivot\nVERSION_ID=%s\n' "$2" >"$d/etc/os-release"
        mksquashfs "$d" "$1/root.img" -noappend -quiet -no-progress >/dev/null
}

# The base disk: GPT as `make image` lays it out (small), ESP with both slots' boot files,
# version 1.0.0 in both slots; A runs (priority 2), B is the successful fallback (priority 1).
BASE=$WORK/base.img
make_base() {
        local d=$WORK/base
        mkdir -p "$d"
        rootfs "$d" 1.0.0
        truncate -s 36M "$BASE"
        sfdisk -q "$BASE" <<EOF
label: gpt
first-lba: 2048
start=2048, size=32768, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI-SYSTEM"
size=16384, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="ROOT-A", attrs="GUID:49,56"
size=16384, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="ROOT-B", attrs="GUID:48,56"
size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="STATE"
EOF
        mkfs.vfat -C "$d/esp.img" 16384 >/dev/null
        mmd -i "$d/esp.img" ::/EFI ::/EFI/BOOT ::/pivot ::/pivot/A ::/pivot/B
        printf 'kernel 1.0.0' >"$d/vmlinuz"
        printf 'initrd 1.0.0' >"$d/initrd"
        printf 'ro pivot.version=1.0.0 pivot.verity.roothash=%s\n' "$ROOTHASH" >"$d/cmdline"
        for s in A B; do mcopy -i "$d/esp.img" "$d/vmlinuz" "$d/initrd" "$d/cmdline" "::/pivot/$s/"; done
        dd if="$d/esp.img" of="$BASE" bs=1M seek=1 conv=notrunc status=none
        dd if="$d/root.img" of="$BASE" bs=512 seek=34816 conv=notrunc status=none
        dd if="$d/root.img" of="$BASE" bs=512 seek=51200 conv=notrunc status=none
}
make_base

# make_payload OUT VERSION [ROOT-BYTES] [MIN-VERSION] [KEY] [CHUNK-SIZE]
make_payload() {
        local out=$1 v=$2 bytes=${3:-3000000} min=${4:-0.0.0} key=${5:-$KEYS/dev.pem} chunk=${6:-64K}
        local d=$WORK/p-$v-$bytes
        if [[ ! -f $d/root.img ]]; then
                mkdir -p "$d"
                rootfs "$d" "$v"
                # Pad the file system image with compressible and random bytes to the wanted size.
                { cat "$d/root.img"; yes "pivot $v" | head -c $((bytes / 2)); head -c "$bytes" /dev/urandom; } |
                        head -c "$bytes" >"$d/root.pad" || true
                mv "$d/root.pad" "$d/root.img"
                head -c 200000 /dev/urandom >"$d/vmlinuz"
                { printf 'initrd %s' "$v"; head -c 300000 /dev/zero; } >"$d/initrd"
        fi
        $PAYLOAD create --quiet --root "$d/root.img" --kernel "$d/vmlinuz" --initrd "$d/initrd" \
                --cmdline "ro pivot.version=$v pivot.verity.roothash=$ROOTHASH" --version "$v" \
                --min-version "$min" --key "$key" --out "$out" --chunk-size "$chunk" >/dev/null
        cp "$d/root.img" "$out.root"
        cp "$d/vmlinuz" "$out.vmlinuz"
}
P11=$WORK/u-1.1.0.payload
make_payload "$P11" 1.1.0

new_disk() { cp --sparse=always "$BASE" "$WORK/disk.img"; rm -rf "$WORK/state"; mkdir -p "$WORK/state"; DISK=$WORK/disk.img; }

# slot DISK NAME FIELD: priority|tries|successful|version from pivotctl status --json.
slot() {
        "$CTL" --disk "$1" status --json 2>/dev/null |
                python3 -c "import json,sys; j=json.load(sys.stdin); s=[x for x in j['slots'] if x['name']=='$2'][0]; v=s['$3']; print(str(v).lower() if isinstance(v,bool) else v)"
}
next_boot() { "$CTL" --disk "$1" status --json 2>/dev/null | python3 -c "import json,sys; print((json.load(sys.stdin)['next_boot'] or {}).get('slot'))"; }
# The 1 MiB-aligned offset of slot B (third partition) in bytes.
SLOT_A_OFF=$((34816 * 512)) SLOT_B_OFF=$((51200 * 512))
slot_holds() { # DISK OFFSET FILE
        cmp -s <(dd if="$1" bs=512 skip=$(($2 / 512)) count=$(( ($(stat -c %s "$3") + 511) / 512 )) status=none | head -c "$(stat -c %s "$3")") "$3"
}
a_untouched() { # DISK: slot A as in the base disk, and still what boots
        [[ $(slot "$1" A priority) == 2 && $(slot "$1" A successful) == true ]] &&
                slot_holds "$1" $SLOT_A_OFF "$WORK/base/root.img"
}
b_not_bootable() { [[ $(slot "$1" B priority) == 0 && $(next_boot "$1") == A ]]; }

# --- Offline: pivotctl --disk ------------------------------------------------------------------
if want status; then
        new_disk
        out=$("$CTL" --disk "$DISK" status 2>"$WORK/last.log")
        if [[ $out == *"slot A"*"priority  2"*"version 1.0.0"* && $out == *"next boot: A: highest priority, successful"* ]] &&
                [[ $(slot "$DISK" B priority) == 1 && $(slot "$DISK" B version) == 1.0.0 ]]; then
                ok status
        else notok status "$out"; fi
fi

# Slot names that differ only in case share one ESP folder (FAT): refused, never written.
if want slot-names-case; then
        cp --sparse=always "$BASE" "$WORK/case.img"
        sfdisk -q --part-label "$WORK/case.img" 3 ROOT-a 2>/dev/null
        "$CTL" --disk "$WORK/case.img" --key "$KEYS/dev.pub" install "$P11" >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 1 ]] && grep -q "differ only in case" "$WORK/last.log" && slot_holds "$WORK/case.img" $SLOT_B_OFF "$WORK/base/root.img"; then
                ok slot-names-case
        else notok slot-names-case "exit $rc"; fi
        rm -f "$WORK/case.img"
fi

# Three slots: A runs, B failed its update, C is a good fallback. The update goes to B; C
# stays what it was.
if want three-slots; then
        D3=$WORK/three.img
        cp --sparse=always "$BASE" "$D3"
        truncate -s 46M "$D3"
        sfdisk -q --relocate gpt-bak-std "$D3" 2>/dev/null
        echo 'size=16384, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="ROOT-C"' | sfdisk -q --append "$D3" 2>/dev/null
        mmd -i "$D3@@1M" ::/pivot/C
        mcopy -i "$D3@@1M" "$WORK/base/vmlinuz" "$WORK/base/initrd" "$WORK/base/cmdline" ::/pivot/C/
        sfdisk -q --part-attrs "$D3" 2 "GUID:48,49,56"  # A: priority 3, successful
        sfdisk -q --part-attrs "$D3" 3 "GUID:49"        # B: priority 2, no tries, failed
        sfdisk -q --part-attrs "$D3" 5 "GUID:48,56"     # C: priority 1, successful
        "$CTL" --disk "$D3" --booted-slot A --key "$KEYS/dev.pub" install "$P11" >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 && $(slot "$D3" B version) == 1.1.0 && $(slot "$D3" C priority) == 1 &&
                $(slot "$D3" C successful) == true && $(next_boot "$D3") == B ]]; then
                ok three-slots
        else notok three-slots "exit $rc, B $(slot "$D3" B version), C priority $(slot "$D3" C priority)"; fi
        # No room above 15: the others step down in their order. C (15) runs and A (14) is the
        # older fallback; after the flip C must still rank above A (C at 14 beside A at 14
        # would lose the tie to A's lower partition number).
        sfdisk -q --part-attrs "$D3" 2 "GUID:49,50,51,56"     # A: priority 14, successful
        sfdisk -q --part-attrs "$D3" 3 ""                     # B: priority 0
        sfdisk -q --part-attrs "$D3" 5 "GUID:48,49,50,51,56"  # C: priority 15, successful
        "$CTL" --disk "$D3" --booted-slot C --key "$KEYS/dev.pub" install "$P11" >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 && $(slot "$D3" B priority) == 15 && $(slot "$D3" C priority) == 14 &&
                $(slot "$D3" A priority) == 13 && $(slot "$D3" A successful) == true &&
                $(slot "$D3" C successful) == true && $(next_boot "$D3") == B ]]; then
                ok priorities-keep-order-at-15
        else notok priorities-keep-order-at-15 "exit $rc, priorities A $(slot "$D3" A priority) B $(slot "$D3" B priority) C $(slot "$D3" C priority)"; fi
        # A rollback from B goes back to C, the slot that ran before it (a good one ranked
        # highest), not to A, the oldest.
        "$CTL" --disk "$D3" --booted-slot B rollback >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 && $(next_boot "$D3") == C ]]; then
                ok rollback-three-slots
        else notok rollback-three-slots "exit $rc, next $(next_boot "$D3")"; fi
        rm -f "$D3"
fi

if want offline-install; then
        new_disk
        if "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" install "$P11" >"$WORK/last.log" 2>&1 &&
                [[ $(slot "$DISK" B priority) == 3 && $(slot "$DISK" B tries) == 1 && $(slot "$DISK" B successful) == false ]] &&
                [[ $(slot "$DISK" B version) == 1.1.0 && $(next_boot "$DISK") == B ]] &&
                slot_holds "$DISK" $SLOT_B_OFF "$P11.root" &&
                cmp -s <(mcopy -n -i "$DISK@@1M" ::/pivot/B/vmlinuz -) "$P11.vmlinuz" &&
                [[ $(mtype -i "$DISK@@1M" ::/pivot/B/cmdline) == *"pivot.version=1.1.0"* ]] &&
                ! mdir -b -i "$DISK@@1M" ::/pivot/B | grep -q '\.new' &&
                a_untouched "$DISK"; then
                ok offline-install
        else notok offline-install; fi
fi

# An install killed while the boot files were linked for the ESP copy leaves its link folder
# (a hard link to a big kernel, kept for good): the next install clears it, and those of
# earlier versions (esp.XXXXXX), and goes through.
if want esp-links-stale; then
        new_disk
        mkdir -p "$WORK/state/download/esp-links" "$WORK/state/download/esp.Ab12Cd"
        head -c 100000 /dev/urandom >"$WORK/state/download/esp-links/vmlinuz.new"
        head -c 100000 /dev/urandom >"$WORK/state/download/esp.Ab12Cd/vmlinuz.new"
        touch "$WORK/state/download/esp-links/.hidden"
        if "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" --state-dir "$WORK/state" install "$P11" >"$WORK/last.log" 2>&1 &&
                [[ ! -e $WORK/state/download/esp-links && ! -e $WORK/state/download/esp.Ab12Cd && $(next_boot "$DISK") == B ]] &&
                cmp -s <(mcopy -n -i "$DISK@@1M" ::/pivot/B/vmlinuz -) "$P11.vmlinuz"; then
                ok esp-links-stale
        else notok esp-links-stale "$(ls -R "$WORK/state/download" 2>&1 | head -5)"; fi
fi

# An old boot file that cannot be removed (here a folder in its place): the install stops
# there with a message, before any new file is copied, and B stays unbootable.
if want esp-old-file-stuck; then
        new_disk
        mdel -i "$DISK@@1M" ::/pivot/B/vmlinuz && mmd -i "$DISK@@1M" ::/pivot/B/vmlinuz
        if "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" install "$P11" >"$WORK/last.log" 2>&1; then
                notok esp-old-file-stuck "install succeeded"
        elif ! grep -q "Cannot remove /pivot/B/vmlinuz from the ESP" "$WORK/last.log"; then notok esp-old-file-stuck "no message"
        elif ! a_untouched "$DISK" || ! b_not_bootable "$DISK"; then notok esp-old-file-stuck "slots"
        elif mdir -b -i "$DISK@@1M" ::/pivot/B | grep -q '\.new'; then notok esp-old-file-stuck "new files copied"
        else ok esp-old-file-stuck; fi
fi

if want key-from-slot; then
        # No --key: the key built into the running slot's root file system is the trusted one.
        new_disk
        if "$CTL" --disk "$DISK" --config /dev/null install "$P11" >"$WORK/last.log" 2>&1 &&
                grep -q "update key built into slot A" "$WORK/last.log" && [[ $(next_boot "$DISK") == B ]]; then
                ok key-from-slot
        else notok key-from-slot; fi
fi

if want rollback; then
        new_disk
        "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" install "$P11" >/dev/null 2>&1
        # Offline, the slot that boots next is the "running" one: treat A as running, B as new.
        if "$CTL" --disk "$DISK" --booted-slot B rollback >"$WORK/last.log" 2>&1 &&
                [[ $(next_boot "$DISK") == A && $(slot "$DISK" A successful) == true ]] &&
                ! "$CTL" --disk "$DISK" --booted-slot A rollback >>"$WORK/last.log" 2>&1 &&
                "$CTL" --disk "$DISK" --booted-slot A rollback --force >>"$WORK/last.log" 2>&1 &&
                [[ $(next_boot "$DISK") == B && $(slot "$DISK" B tries) == 1 ]]; then
                ok rollback
        else notok rollback; fi
fi

if want mark-good; then
        new_disk
        "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" install "$P11" >/dev/null 2>&1
        if "$CTL" --disk "$DISK" --booted-slot B mark-good >"$WORK/last.log" 2>&1 &&
                [[ $(slot "$DISK" B successful) == true && $(slot "$DISK" B tries) == 0 && $(slot "$DISK" B priority) == 3 ]]; then
                ok mark-good
        else notok mark-good; fi
fi

# Offline without --booted-slot, the slot that boots next never ran: marked good, it would
# lose its fallback. Refused, and so are options given to a command that does not take them;
# options after FILE are taken.
if want mark-good-offline; then
        new_disk
        "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" install "$P11" >/dev/null 2>&1
        "$CTL" --disk "$DISK" mark-good --force >"$WORK/last.log" 2>&1; rcm=$?
        "$CTL" --disk "$DISK" --booted-slot B rollback --slot B >>"$WORK/last.log" 2>&1; rcs=$?
        if [[ $rcm == 1 && $rcs == 2 && $(slot "$DISK" B successful) == false && $(slot "$DISK" B tries) == 1 ]] &&
                grep -q "only boots next, it does not run" "$WORK/last.log" &&
                grep -q -- "--slot is not an option of this command" "$WORK/last.log"; then
                ok mark-good-offline
        else notok mark-good-offline "mark-good exit $rcm, rollback --slot exit $rcs"; fi
fi
if want options-after-file; then
        new_disk
        "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" install "$P11" --no-flip >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 && $(next_boot "$DISK") == A ]] && slot_holds "$DISK" $SLOT_B_OFF "$P11.root"; then
                ok options-after-file
        else notok options-after-file "exit $rc, next $(next_boot "$DISK")"; fi
fi

if want no-flip; then
        new_disk
        if "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" install --no-flip "$P11" >"$WORK/last.log" 2>&1 &&
                slot_holds "$DISK" $SLOT_B_OFF "$P11.root" && b_not_bootable "$DISK"; then
                ok no-flip
        else notok no-flip; fi
fi

# --- Bad payloads, offline: a clear error, A untouched, B not bootable ----------------------------
bad_install() { # NAME PAYLOAD EXPECTED-MESSAGE [pivotctl args...]
        local name=$1 p=$2 msg=$3; shift 3
        want "$name" || return 0
        new_disk
        if "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" "$@" install "$p" >"$WORK/last.log" 2>&1; then
                notok "$name" "install succeeded"
        elif ! grep -q -- "$msg" "$WORK/last.log"; then
                notok "$name" "no message matching '$msg'"
        elif ! a_untouched "$DISK" || ! b_not_bootable "$DISK"; then
                notok "$name" "slots: A prio $(slot "$DISK" A priority), B prio $(slot "$DISK" B priority)"
        elif grep -q "ERROR: AddressSanitizer\|runtime error" "$WORK/last.log"; then
                notok "$name" "sanitizer report"
        else ok "$name"; fi
}
size11=$(stat -c %s "$P11")
dataoff=$($PAYLOAD show --json "$P11" | sed -E 's/.*"data_offset":([0-9]+).*/\1/')
tableoff=$($PAYLOAD show --json "$P11" | sed -E 's/.*"table_offset":([0-9]+).*/\1/')
# A flipped bit in the signature.
cp "$P11" "$WORK/badsig.payload"
printf '\xff' | dd of="$WORK/badsig.payload" bs=1 seek=$((tableoff - 10)) conv=notrunc status=none
bad_install bad-signature "$WORK/badsig.payload" "bad signature"
# A changed byte in the chunk table (which the signed manifest holds the hash of).
cp "$P11" "$WORK/badtable.payload"
printf '\xff' | dd of="$WORK/badtable.payload" bs=1 seek=$((dataoff - 10)) conv=notrunc status=none
bad_install altered-chunk-table "$WORK/badtable.payload" "chunk table does not match"
# A changed manifest byte (the version string), signature unchanged.
cp "$P11" "$WORK/badmanifest.payload"
printf '9' | dd of="$WORK/badmanifest.payload" bs=1 seek=$((32 + 8 + 2)) conv=notrunc status=none
bad_install altered-manifest "$WORK/badmanifest.payload" "bad signature"
# Signed by a key this system does not trust.
make_payload "$WORK/other.payload" 1.1.0 3000000 0.0.0 "$KEYS/other.pem"
bad_install other-key "$WORK/other.payload" "signed by another key"
# Truncated: in the manifest, and in the data.
head -c 300 "$P11" >"$WORK/trunc-manifest.payload"
bad_install truncated-manifest "$WORK/trunc-manifest.payload" "truncated payload"
head -c $((size11 - 5000)) "$P11" >"$WORK/trunc-data.payload"
bad_install truncated-data "$WORK/trunc-data.payload" "truncated payload"
# A flipped bit in a chunk: its hash does not match.
cp "$P11" "$WORK/badchunk.payload"
printf '\x00\x01' | dd of="$WORK/badchunk.payload" bs=1 seek=$((size11 - 70000)) conv=notrunc status=none
bad_install wrong-chunk-hash "$WORK/badchunk.payload" "does not match its SHA-256"
# Not a payload at all.
head -c 100000 /dev/urandom >"$WORK/junk.payload"
bad_install not-a-payload "$WORK/junk.payload" "not a Pivot update payload"
# Older than the running version; and one that needs a newer running version.
make_payload "$WORK/old.payload" 0.9.0
bad_install older-version "$WORK/old.payload" "older than the running 1.0.0"
make_payload "$WORK/needs-new.payload" 1.2.0 3000000 1.1.0
bad_install min-version "$WORK/needs-new.payload" "updates from 1.1.0 or later"
# A root image larger than the slot (8 MiB).
make_payload "$WORK/big.payload" 1.1.0 9000000
bad_install slot-too-small "$WORK/big.payload" "too small"

if want allow-downgrade; then
        new_disk
        if "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" --allow-downgrade install "$WORK/old.payload" >"$WORK/last.log" 2>&1 &&
                [[ $(slot "$DISK" B version) == 0.9.0 && $(next_boot "$DISK") == B ]]; then
                ok allow-downgrade
        else notok allow-downgrade; fi
fi

if want esp-full; then
        new_disk
        # Fill the ESP so the new kernel does not fit.
        free=$(mdir -i "$DISK@@1M" :: | sed -nE 's/^ *([0-9 ]+) bytes free.*/\1/p' | tr -d ' ')
        head -c $((free - 50000)) /dev/zero >"$WORK/filler"
        mcopy -i "$DISK@@1M" "$WORK/filler" ::/filler 2>/dev/null
        bad_install_esp() {
                if "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" install "$P11" >"$WORK/last.log" 2>&1; then
                        notok esp-full "install succeeded"
                elif ! grep -q "ESP is full" "$WORK/last.log"; then notok esp-full "no message"
                elif ! a_untouched "$DISK" || ! b_not_bootable "$DISK"; then notok esp-full "slots"
                elif [[ $(mtype -i "$DISK@@1M" ::/pivot/A/cmdline) != *"pivot.version=1.0.0"* ]]; then notok esp-full "A's boot files"
                else ok esp-full; fi
        }
        bad_install_esp
fi

# A disk that fills up while the slot is written (a sparse image file on a small tmpfs; tmpfs
# has no O_DIRECT, so this also runs the buffered write and read-back path), and a state
# directory with no room for the boot files. Both need mount(2): skipped without it.
if want disk-full; then
        M=$WORK/small-fs
        mkdir -p "$M"
        if mount -t tmpfs -o size=64m tmpfs "$M" 2>/dev/null; then
                new_disk
                cp --sparse=always "$BASE" "$M/disk.img"
                # Room for the disk as it is plus 1 MiB: the 3.5 MB root image cannot fit.
                mount -o remount,size=$(( $(du -k "$M/disk.img" | cut -f1) + 1024 ))k "$M"
                if "$CTL" --disk "$M/disk.img" --key "$KEYS/dev.pub" --state-dir "$WORK/state" install "$P11" >"$WORK/last.log" 2>&1; then
                        notok disk-full "install succeeded"
                elif ! grep -q "No space left on device" "$WORK/last.log"; then notok disk-full "no message"
                elif ! a_untouched "$M/disk.img" || ! b_not_bootable "$M/disk.img"; then notok disk-full "slots"
                else ok disk-full; fi
                rm -f "$M/disk.img"
                mount -o remount,size=2m "$M"
                mkdir -p "$M/state"
                head -c $((1700 * 1024)) /dev/zero >"$M/filler" 2>/dev/null
                new_disk
                if "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" --state-dir "$M/state" install "$P11" >"$WORK/last.log" 2>&1; then
                        notok state-dir-full "install succeeded"
                elif ! grep -q "is full" "$WORK/last.log"; then notok state-dir-full "no message"
                elif ! a_untouched "$DISK" || ! b_not_bootable "$DISK"; then notok state-dir-full "slots"
                else ok state-dir-full; fi
                umount "$M"
        else
                echo "ok disk-full # skipped: cannot mount a tmpfs here"
                echo "ok state-dir-full # skipped: cannot mount a tmpfs here"
        fi
fi

if want missing-disk; then
        if "$CTL" --disk "$WORK/nope.img" status >"$WORK/last.log" 2>&1; then notok missing-disk
        elif grep -q "nope.img" "$WORK/last.log"; then ok missing-disk
        else notok missing-disk "no message"; fi
fi

# --- Against the Omaha responder ---------------------------------------------------------------
CONF=$WORK/responder.json
RLOG=$WORK/responder.log
start_responder() { # [extra args]
        rm -f "$WORK/port"
        python3 "$ROOT/updater/tests/responder.py" --port-file "$WORK/port" --config "$CONF" --log "$RLOG" "$@" &
        PIDS+=($!)
        for _ in $(seq 100); do [[ -f $WORK/port ]] && break; sleep 0.05; done
        PORT=$(cat "$WORK/port")
}
responder() { # JSON
        printf '%s\n' "$1" >"$CONF"
        : >"$RLOG"
}
responder '{"omaha":"noupdate"}'
start_responder
URL=http://127.0.0.1:$PORT/v1/update/

# The 1.1.0 update on offer, served as MODE (see responder.py), with more JSON fields if given.
offer_p11() { # [MODE [FIELDS]]
        local more=""
        [[ -n ${1:-} ]] && more+=",\"payload_mode\":\"$1\""
        [[ -n ${2:-} ]] && more+=",$2"
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\"$more}"
}
# A new disk whose first download of 1.1.0 broke off at 700,000 bytes: the checkpoint stays.
# Returns the agent's exit code; its output goes to LOG.
interrupted_download() { # [LOG]
        new_disk; agent_conf "download_retries = 0"
        offer_p11 drop '"drop_after":700000'
        agent --once >"${1:-/dev/null}" 2>&1
}

agent_conf() { # extra lines...
        {
                echo "server = $URL"
                echo "public_key = $KEYS/dev.pub"
                echo "stall_timeout = 3"
                echo "connect_timeout = 3"
                echo "download_retries = 2"
                printf '%s\n' "$@"
        } >"$WORK/update.conf"
}
agent() { "$AGENT" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" --quiet "$@"; }
# The agent in the background, itself (not a subshell), so that signals reach it: sets APID.
agent_bg() { # LOG [args]
        local log=$1; shift
        "$AGENT" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" --quiet "$@" >>"$log" 2>&1 &
        APID=$!
}
# events TYPE[/RESULT[/CODE]]: how many such events the responder got.
events() {
        python3 - "$RLOG" "$1" <<'EOF'
import json, sys
want = sys.argv[2].split("/")
n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    for ev in e.get("events", []):
        got = [ev.get("eventtype"), ev.get("eventresult"), ev.get("errorcode", "0")]
        if got[:len(want)] == want:
            n += 1
print(n)
EOF
}
# event_attr TYPE/RESULT[/CODE] ATTRIBUTE: that attribute of the last such event ("" if none).
event_attr() {
        python3 - "$RLOG" "$1" "$2" <<'EOF'
import json, sys
want = sys.argv[2].split("/")
v = ""
for line in open(sys.argv[1]):
    for ev in json.loads(line).get("events", []):
        got = [ev.get("eventtype"), ev.get("eventresult"), ev.get("errorcode", "0")]
        if got[:len(want)] == want:
            v = ev.get(sys.argv[3], "")
print(v)
EOF
}
requests() { grep -c "\"path\": \"$1\"" "$RLOG"; }

if want agent-noupdate; then
        new_disk; agent_conf; responder '{"omaha":"noupdate"}'
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 3 ]] && grep -q '"updatecheck": true' "$RLOG" && [[ $(slot "$DISK" B priority) == 1 ]]; then
                ok agent-noupdate
        else notok agent-noupdate "exit $rc"; fi
fi

if want agent-update; then
        new_disk; agent_conf
        offer_p11
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 && $(next_boot "$DISK") == B && $(slot "$DISK" B tries) == 1 ]] &&
                slot_holds "$DISK" $SLOT_B_OFF "$P11.root" &&
                [[ $(events 13/1) == 1 && $(events 14/1) == 1 && $(events 3/1) == 1 && $(events 3/0) == 0 ]] &&
                [[ $(event_attr 13/1 nextversion)/$(event_attr 3/1 nextversion) == 1.1.0/1.1.0 ]] &&
                grep -q '"track": "stable"' "$RLOG" && grep -q '"appid": "{b9606f32-42ac-4029-aef4-20ed435e8c45}"' "$RLOG"; then
                ok agent-update
        else notok agent-update "exit $rc, events 13:$(events 13/1) 14:$(events 14/1) 3/1:$(events 3/1)," \
                "nextversion of 3/1: '$(event_attr 3/1 nextversion)'"; fi
fi

if want channel-override; then
        new_disk; agent_conf; responder '{"omaha":"noupdate"}'
        agent --once --channel beta >"$WORK/last.log" 2>&1
        if grep -q '"track": "beta"' "$RLOG"; then ok channel-override; else notok channel-override; fi
fi

# The boot stories: the update comes up (success reported on the first check), or it does not
# (rollback reported with error code 44, and that version is not taken again).
if want boot-success; then
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >/dev/null 2>&1
        responder '{"omaha":"noupdate"}'
        agent --once --boot-id boot-2 --booted-slot B >"$WORK/last.log" 2>&1; rc=$?
        prev=$(event_attr 3/2 previousversion) next=$(event_attr 3/2 nextversion)
        if [[ $rc == 3 && $(slot "$DISK" B successful) == true && $(slot "$DISK" B tries) == 0 ]] &&
                [[ $prev/$next == 1.0.0/1.1.0 && $(next_boot "$DISK") == B ]]; then
                ok boot-success
        else notok boot-success "exit $rc, previousversion '$prev', nextversion '$next'"; fi
fi

# A fresh disk where 1.1.0 was installed into B and B then booted (boot-2); the log starts in
# $WORK/last.log. ARGS go to the agent's run on B (--no-mark-good: B stays on trial).
installed_and_booted_b() {
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >"$WORK/last.log" 2>&1
        agent --once --boot-id boot-2 --booted-slot B "$@" >>"$WORK/last.log" 2>&1
}
# pivotctl on that disk, running B in boot-2.
ctl_b() { "$CTL" --disk "$DISK" --booted-slot B --boot-id boot-2 --state-dir "$WORK/state" "$@"; }

# A rollback by hand after the update was marked good stands: while it waits for the reboot,
# the agent installs nothing (an install would overwrite the slot chosen, or switch away from
# it; exit 4, nothing reported), and after it the version left is not installed again.
if want manual-rollback-stands; then
        [[ -f $WORK/u-1.2.0.payload ]] || make_payload "$WORK/u-1.2.0.payload" 1.2.0
        installed_and_booted_b
        ctl_b rollback >>"$WORK/last.log" 2>&1; rcr=$?
        responder "{\"omaha\":\"update\",\"version\":\"1.2.0\",\"payload\":\"$WORK/u-1.2.0.payload\"}"
        agent --once --boot-id boot-2 --booted-slot B >>"$WORK/last.log" 2>&1; rcw=$?
        n12=$(requests /payloads/u-1.2.0.payload); f12=$(events 3/0)
        next=$(next_boot "$DISK")
        offer_p11
        agent --once --boot-id boot-3 --booted-slot A >>"$WORK/last.log" 2>&1; rca=$?
        if [[ $rcr == 0 && $rcw == 4 && $n12 == 0 && $f12 == 0 && $next == A && $rca == 3 &&
                $(requests /payloads/u-1.1.0.payload) == 0 && $(next_boot "$DISK") == A ]] &&
                grep -q "another slot was chosen to boot next" "$WORK/last.log" &&
                grep -q "rolled back here before" "$WORK/last.log"; then
                ok manual-rollback-stands
        else notok manual-rollback-stands "rollback exit $rcr, exits $rcw/$rca, 1.2.0 downloads $n12, next $next, then $(next_boot "$DISK")"; fi
fi

# pivotctl mark-good after a rollback by hand, the running slot still on trial: refused (it
# would undo the rollback and report a success); after rollback --cancel it is marked good.
# A rollback waits for no install: while one holds the lock, it is refused.
# pivotctl update, too, waits while a rollback by hand waits for its reboot (exit 4, nothing
# downloaded); update --force installs and so undoes the rollback.
# A rollback while an installed update waits for its reboot: nothing ran since to roll back
# from; refused, and the install stays as it was.
if want rollback-while-pending; then
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >"$WORK/last.log" 2>&1
        "$CTL" --disk "$DISK" --booted-slot A --boot-id boot-1 --state-dir "$WORK/state" rollback --force >>"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 1 && $(next_boot "$DISK") == B ]] && grep -q "waits in slot B for a reboot" "$WORK/last.log" &&
                grep -q '^pending_version=1.1.0' "$WORK/state/update-state"; then
                ok rollback-while-pending
        else notok rollback-while-pending "exit $rc, next $(next_boot "$DISK")"; fi
fi

# A rollback by hand made while the agent's update check waits for the server's answer stands:
# the agent decides with the install lock held, on the table as it is then.
if want rollback-during-check; then
        [[ -f $WORK/u-1.2.0.payload ]] || make_payload "$WORK/u-1.2.0.payload" 1.2.0
        installed_and_booted_b
        responder "{\"omaha\":\"update\",\"version\":\"1.2.0\",\"payload\":\"$WORK/u-1.2.0.payload\",\"omaha_delay\":3}"
        agent_bg "$WORK/last.log" --once --boot-id boot-2 --booted-slot B
        for ((i = 0; i < 100; i++)); do (($(requests /v1/update/) >= 1)) && break; sleep 0.1; done
        ctl_b rollback >>"$WORK/last.log" 2>&1; rcr=$?
        wait $APID; rc=$?
        if [[ $rcr == 0 && $rc == 4 && $(requests /payloads/u-1.2.0.payload) == 0 && $(next_boot "$DISK") == A &&
                $(slot "$DISK" A version) == 1.0.0 ]]; then
                ok rollback-during-check
        else notok rollback-during-check "rollback exit $rcr, agent exit $rc, 1.2.0 downloads $(requests /payloads/u-1.2.0.payload), next $(next_boot "$DISK"), A holds $(slot "$DISK" A version)"; fi
fi

# The slot bits change under a lock on the whole disk (BSD flock, as udev honours): mark-good
# and rollback wait while another process holds it, then go on.
if want disk-lock; then
        installed_and_booted_b --no-mark-good
        flock -x "$DISK" -c "sleep 2" & holder=$!
        sleep 0.5
        t0=$(date +%s%N)
        ctl_b mark-good --force >>"$WORK/last.log" 2>&1; rcm=$?
        t1=$(date +%s%N)
        wait $holder
        flock -x "$DISK" -c "sleep 2" & holder=$!
        sleep 0.5
        t2=$(date +%s%N)
        ctl_b rollback >>"$WORK/last.log" 2>&1; rcr=$?
        t3=$(date +%s%N)
        wait $holder
        waited_m=$(( (t1 - t0) / 1000000 )) waited_r=$(( (t3 - t2) / 1000000 ))
        if [[ $rcm == 0 && $rcr == 0 && $waited_m -ge 1000 && $waited_r -ge 1000 && $(next_boot "$DISK") == A ]]; then
                ok disk-lock
        else notok disk-lock "mark-good exit $rcm after ${waited_m} ms, rollback exit $rcr after ${waited_r} ms, next $(next_boot "$DISK")"; fi
fi

if want update-after-rollback; then
        [[ -f $WORK/u-1.2.0.payload ]] || make_payload "$WORK/u-1.2.0.payload" 1.2.0
        installed_and_booted_b
        ctl_b rollback >>"$WORK/last.log" 2>&1; rcr=$?
        responder "{\"omaha\":\"update\",\"version\":\"1.2.0\",\"payload\":\"$WORK/u-1.2.0.payload\"}"
        ctl_b --config "$WORK/update.conf" update >>"$WORK/last.log" 2>&1; rcu=$?
        n12=$(requests /payloads/u-1.2.0.payload); next=$(next_boot "$DISK")
        ctl_b --config "$WORK/update.conf" update --force >>"$WORK/last.log" 2>&1; rcf=$?
        if [[ $rcr == 0 && $rcu == 4 && $n12 == 0 && $next == A && $rcf == 0 &&
                $(next_boot "$DISK") == A && $(slot "$DISK" A version) == 1.2.0 ]] &&
                grep -q "pivotctl update --force installs it now" "$WORK/last.log"; then
                ok update-after-rollback
        else notok update-after-rollback "rollback exit $rcr, update exits $rcu/$rcf, 1.2.0 downloads $n12, next $next, then $(next_boot "$DISK") with A $(slot "$DISK" A version)"; fi
fi

if want mark-good-after-rollback; then
        installed_and_booted_b --no-mark-good
        ctl_b rollback >>"$WORK/last.log" 2>&1; rcr=$?
        ctl_b mark-good --force >>"$WORK/last.log" 2>&1; rcm=$?
        s1=$(slot "$DISK" B successful) n1=$(next_boot "$DISK")
        ctl_b rollback --cancel >>"$WORK/last.log" 2>&1; rcc=$?
        flock "$WORK/state/lock" sleep 3 & lpid=$!
        sleep 0.5
        ctl_b rollback >>"$WORK/last.log" 2>&1; rcl=$?
        wait $lpid
        ctl_b mark-good --force >>"$WORK/last.log" 2>&1; rcg=$?
        if [[ $rcr == 0 && $rcm == 1 && $s1 == false && $n1 == A && $rcc == 0 && $rcl == 1 && $rcg == 0 ]] &&
                [[ $(slot "$DISK" B successful) == true && $(next_boot "$DISK") == B ]] &&
                grep -q "Another slot was chosen to boot next (pivotctl rollback)" "$WORK/last.log" &&
                grep -q "Another update is in progress" "$WORK/last.log"; then
                ok mark-good-after-rollback
        else notok mark-good-after-rollback "exits: rollback $rcr, mark-good $rcm ($s1, next $n1), cancel $rcc, locked rollback $rcl, mark-good $rcg"; fi
fi

# A rollback by hand is undone before the reboot (rollback --cancel): the running slot boots
# next again, and the agent installs the next release at once, as if nothing happened.
if want manual-rollback-cancel; then
        [[ -f $WORK/u-1.2.0.payload ]] || make_payload "$WORK/u-1.2.0.payload" 1.2.0
        installed_and_booted_b
        ctl_b rollback --cancel >>"$WORK/last.log" 2>&1; rc0=$?  # nothing to cancel
        ctl_b rollback >>"$WORK/last.log" 2>&1; rcr=$?
        next1=$(next_boot "$DISK")
        ctl_b rollback --cancel >>"$WORK/last.log" 2>&1; rcc=$?
        next2=$(next_boot "$DISK")
        ctl_b status --cancel >>"$WORK/last.log" 2>&1; rcu=$?
        responder "{\"omaha\":\"update\",\"version\":\"1.2.0\",\"payload\":\"$WORK/u-1.2.0.payload\"}"
        agent --once --boot-id boot-2 --booted-slot B >>"$WORK/last.log" 2>&1; rcw=$?
        if [[ $rc0/$rcr/$next1/$rcc/$next2/$rcu/$rcw == 0/0/A/0/B/2/0 && $(next_boot "$DISK") == A ]] &&
                [[ $(slot "$DISK" B successful) == true ]] && slot_holds "$DISK" $SLOT_A_OFF "$WORK/u-1.2.0.payload.root" &&
                grep -q "no rollback to cancel" "$WORK/last.log" && grep -q "boots next again" "$WORK/last.log"; then
                ok manual-rollback-cancel
        else notok manual-rollback-cancel "exits (none to cancel/rollback/next/cancel/next/misuse/agent)" \
                "$rc0/$rcr/$next1/$rcc/$next2/$rcu/$rcw, then $(next_boot "$DISK")"; fi
fi

# The same for an update still on trial: rolled back by hand before it was marked good, then
# the rollback cancelled. It gets its try back, is marked good, and its success is reported,
# not a rollback.
if want manual-rollback-cancel-on-trial; then
        installed_and_booted_b --no-mark-good
        ctl_b rollback >>"$WORK/last.log" 2>&1; rcr=$?
        next1=$(next_boot "$DISK")
        ctl_b rollback --cancel >>"$WORK/last.log" 2>&1; rcc=$?
        next2=$(next_boot "$DISK") tries=$(slot "$DISK" B tries)
        responder '{"omaha":"noupdate"}'
        agent --once --boot-id boot-2 --booted-slot B >>"$WORK/last.log" 2>&1
        agent --once --boot-id boot-2 --booted-slot B >>"$WORK/last.log" 2>&1
        if [[ $rcr/$next1/$rcc/$next2/$tries == 0/A/0/B/1 && $(slot "$DISK" B successful) == true ]] &&
                [[ $(events 3/2) == 1 && $(events 3/0/44) == 0 && $(next_boot "$DISK") == B ]]; then
                ok manual-rollback-cancel-on-trial
        else notok manual-rollback-cancel-on-trial "exits $rcr/$rcc, next $next1 then $next2 (B tries $tries)," \
                "successes $(events 3/2), rollbacks $(events 3/0/44)"; fi
fi

# The update came up but, before it was marked good, an admin rolled it back by hand: reported
# as a rollback on the next boot, and that version is not taken again.
if want boot-manual-rollback; then
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >/dev/null 2>&1
        agent --once --boot-id boot-2 --booted-slot B --no-mark-good >"$WORK/last.log" 2>&1
        "$CTL" --disk "$DISK" --booted-slot B --state-dir "$WORK/state" rollback >>"$WORK/last.log" 2>&1; rcr=$?
        agent --once --boot-id boot-3 --booted-slot A >>"$WORK/last.log" 2>&1; rc=$?
        if [[ $rcr == 0 && $(events 3/0/44) == 1 && $rc == 3 && $(requests /payloads/u-1.1.0.payload) == 1 ]]; then
                ok boot-manual-rollback
        else notok boot-manual-rollback "rollback exit $rcr, agent exit $rc, 44 events: $(events 3/0/44), downloads: $(requests /payloads/u-1.1.0.payload)"; fi
fi

# Power cuts around the flip (the agent stopped for good at a debug_pause point, then killed).
# The install record is written right before the flip: cut after the flip, the new slot boots
# and its success is reported; cut before it, nothing rolled back and the update is taken again.
paused_agent() { # POINT BOOT-ID: install 1.1.0 and stop at POINT, then cut the power
        agent_conf "debug_pause = $1"
        offer_p11
        : >"$WORK/last.log"
        agent_bg "$WORK/last.log" --once --boot-id "$2"
        for ((i = 0; i < 300; i++)); do grep -q "debug_pause: stopped" "$WORK/last.log" && break; sleep 0.1; done
        kill -KILL $APID; wait $APID 2>/dev/null
        agent_conf
}
if want power-cut-after-flip; then
        new_disk; paused_agent events boot-1
        responder '{"omaha":"noupdate"}'
        agent --once --boot-id boot-2 --booted-slot B >>"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 3 && $(events 3/2) == 1 && $(slot "$DISK" B successful) == true ]]; then
                ok power-cut-after-flip
        else notok power-cut-after-flip "exit $rc, success reports: $(events 3/2)"; fi
fi
if want power-cut-before-flip; then
        new_disk; paused_agent flip boot-1
        b=$(slot "$DISK" B priority)
        offer_p11
        agent --once --boot-id boot-2 --booted-slot A >>"$WORK/last.log" 2>&1; rc=$?
        if [[ $b == 0 && $rc == 0 && $(events 3/0/44) == 0 && $(next_boot "$DISK") == B ]] &&
                grep -q "switch to it did not happen" "$WORK/last.log"; then
                ok power-cut-before-flip
        else notok power-cut-before-flip "B priority after the cut $b, exit $rc, 44 events: $(events 3/0/44)"; fi
fi

# A state directory where nothing can be saved: the install is not switched to, since the new
# slot would boot with no record of it (its outcome never reported, and it would be installed
# again and again).
if want state-unsaved; then
        new_disk; agent_conf
        mkdir -p "$WORK/state/update-state.tmp" # every save of update-state fails
        offer_p11
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 1 ]] && grep -q "Cannot record the install" "$WORK/last.log" && b_not_bootable "$DISK" &&
                a_untouched "$DISK" && [[ $(events 3/0/5) == 1 ]]; then
                ok state-unsaved
        else notok state-unsaved "exit $rc, B priority $(slot "$DISK" B priority), failure events $(events 3/0)"; fi
        rm -rf "$WORK/state/update-state.tmp"
fi

# While the running slot is on trial (booted, not yet marked good), the other slot is the only
# one known to boot: an install there would leave nothing to fall back on. The agent waits
# (no failure reported); pivotctl install refuses.
if want install-while-on-trial; then
        new_disk; agent_conf
        [[ -f $WORK/u-1.2.0.payload ]] || make_payload "$WORK/u-1.2.0.payload" 1.2.0
        offer_p11
        agent --once --boot-id boot-1 >"$WORK/last.log" 2>&1
        responder "{\"omaha\":\"update\",\"version\":\"1.2.0\",\"payload\":\"$WORK/u-1.2.0.payload\"}"
        agent --once --boot-id boot-2 --booted-slot B --no-mark-good >>"$WORK/last.log" 2>&1; rca=$?
        "$CTL" --disk "$DISK" --booted-slot B --state-dir "$WORK/state" --key "$KEYS/dev.pub" \
                install "$WORK/u-1.2.0.payload" >>"$WORK/last.log" 2>&1; rcc=$?
        if [[ $rca == 4 && $rcc == 1 && $(events 3/0) == 0 && $(requests /payloads/u-1.2.0.payload) == 0 ]] &&
                grep -q "Not installing 1.2.0 yet" "$WORK/last.log" && grep -q "only slot known to boot" "$WORK/last.log" &&
                a_untouched "$DISK"; then
                ok install-while-on-trial
        else notok install-while-on-trial "agent exit $rca, pivotctl exit $rcc, failure events $(events 3/0)"; fi
fi

# The daemon and pivotctl share update-state: the daemon reads it again before it acts. Here
# the daemon queues the rollback report at its start; before its first check, pivotctl sends
# that report and installs 1.2.0. The report must go out once, the install record must stay,
# and the daemon must see that an update waits for its reboot.
if want daemon-shares-state; then
        new_disk; agent_conf "first_check_delay = 4" "poll_interval = 600" "poll_jitter = 0" \
                "reboot_command = touch $WORK/rebooted"
        [[ -f $WORK/u-1.2.0.payload ]] || make_payload "$WORK/u-1.2.0.payload" 1.2.0
        rm -f "$WORK/rebooted"
        offer_p11
        sed -i "s|^reboot_command = .*|reboot_command = true|" "$WORK/update.conf"
        agent --once --boot-id boot-1 >"$WORK/last.log" 2>&1
        sed -i "s|^reboot_command = .*|reboot_command = touch $WORK/rebooted|" "$WORK/update.conf"
        responder '{"omaha":"noupdate"}'
        agent_bg "$WORK/last.log" --boot-id boot-2 --booted-slot A
        for ((i = 0; i < 100; i++)); do grep -q '^report=' "$WORK/state/update-state" 2>/dev/null && break; sleep 0.1; done
        ctl=("$CTL" --disk "$DISK" --booted-slot A --boot-id boot-2 --state-dir "$WORK/state" --config "$WORK/update.conf")
        "${ctl[@]}" check >>"$WORK/last.log" 2>&1; rcc=$?
        "${ctl[@]}" install "$WORK/u-1.2.0.payload" >>"$WORK/last.log" 2>&1; rci=$?
        # The daemon's own check (the third request), then its reboot.
        for ((i = 0; i < 150; i++)); do (($(requests /v1/update/) >= 3)) && [[ -f $WORK/rebooted ]] && break; sleep 0.1; done
        kill -TERM $APID; wait $APID; rc=$?
        pending=$(sed -n 's/^pending_version=//p' "$WORK/state/update-state")
        if [[ $rcc == 3 && $rci == 0 && $rc == 0 && $(events 3/0/44) == 1 && $pending == 1.2.0 && -f $WORK/rebooted ]] &&
                [[ $(next_boot "$DISK") == B && $(slot "$DISK" B version) == 1.2.0 ]]; then
                ok daemon-shares-state
        else notok daemon-shares-state "check exit $rcc, install exit $rci, daemon exit $rc; 44 events: $(events 3/0/44); pending: '$pending'; rebooted: $([[ -f $WORK/rebooted ]] && echo yes || echo no)"; fi
fi

# A rollback by hand while the daemon runs (after it read the table at its start): its check
# reads the table again and finds the slot chosen, which an install would overwrite. Nothing
# is downloaded or reported, and the rollback stands.
if want daemon-sees-rollback; then
        [[ -f $WORK/u-1.2.0.payload ]] || make_payload "$WORK/u-1.2.0.payload" 1.2.0
        installed_and_booted_b
        agent_conf "first_check_delay = 3" "poll_interval = 600" "poll_jitter = 0"
        responder "{\"omaha\":\"update\",\"version\":\"1.2.0\",\"payload\":\"$WORK/u-1.2.0.payload\"}"
        agent_bg "$WORK/last.log" --boot-id boot-2 --booted-slot B
        # In its loop, waiting for the first check.
        for ((i = 0; i < 100; i++)); do grep -q '^next_check=' "$WORK/state/agent-status" 2>/dev/null && break; sleep 0.1; done
        ctl_b rollback >>"$WORK/last.log" 2>&1; rcr=$?
        for ((i = 0; i < 150; i++)); do grep -q "another slot was chosen" "$WORK/last.log" && break; sleep 0.1; done
        kill -TERM $APID; wait $APID; rc=$?
        n12=$(requests /payloads/u-1.2.0.payload)
        if [[ $rcr == 0 && $rc == 0 && $(requests /v1/update/) -ge 1 && $n12 == 0 && $(events 13) == 0 ]] &&
                [[ $(next_boot "$DISK") == A && $(slot "$DISK" A version) == 1.0.0 ]] &&
                grep -q "another slot was chosen to boot next" "$WORK/last.log"; then
                ok daemon-sees-rollback
        else notok daemon-sees-rollback "rollback exit $rcr, daemon exit $rc, 1.2.0 downloads $n12, next $(next_boot "$DISK"), A holds $(slot "$DISK" A version)"; fi
fi

if want report-once-concurrent; then
        # Two checks at once after a rollback (the daemon's and pivotctl's): the rollback is
        # reported once, by the one that started first, and neither fails.
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >/dev/null 2>&1
        responder '{"omaha":"noupdate","omaha_delay":2}'
        agent --once --boot-id boot-2 --booted-slot A >"$WORK/first.log" 2>&1 &
        first=$!
        for ((i = 0; i < 100; i++)); do (($(requests /v1/update/) >= 1)) && break; sleep 0.05; done
        "$CTL" --disk "$DISK" --booted-slot A --boot-id boot-2 --state-dir "$WORK/state" \
                --config "$WORK/update.conf" check >"$WORK/last.log" 2>&1; rcc=$?
        wait $first; rc=$?
        cat "$WORK/first.log" >>"$WORK/last.log"
        if [[ $rc == 3 && $rcc == 3 && $(events 3/0/44) == 1 && $(requests /v1/update/) == 2 ]] &&
                grep -q "Another check is sending the boot report" "$WORK/last.log" &&
                ! grep -q '^report=' "$WORK/state/update-state"; then
                ok report-once-concurrent
        else notok report-once-concurrent "agent exit $rc, pivotctl exit $rcc, 44 events: $(events 3/0/44), requests $(requests /v1/update/)"; fi
fi

if want report-waits-without-lock; then
        # The report lock cannot be taken (here: a directory in its place): the report waits for
        # a check that can take it, rather than risk going out twice.
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >/dev/null 2>&1
        responder '{"omaha":"noupdate"}'
        mkdir -p "$WORK/state/report.lock"
        agent --once --boot-id boot-2 --booted-slot A >"$WORK/last.log" 2>&1; rc1=$?
        n1=$(events 3/0/44)
        grep -q '^report=' "$WORK/state/update-state"; kept=$?
        rmdir "$WORK/state/report.lock"
        agent --once --boot-id boot-2 --booted-slot A >>"$WORK/last.log" 2>&1; rc2=$?
        if [[ $rc1 == 3 && $n1 == 0 && $kept == 0 && $rc2 == 3 && $(events 3/0/44) == 1 ]] &&
                grep -q "the boot report waits" "$WORK/last.log" && ! grep -q '^report=' "$WORK/state/update-state"; then
                ok report-waits-without-lock
        else notok report-waits-without-lock "exits $rc1 $rc2, 44 events $n1 then $(events 3/0/44), report kept: $kept"; fi
fi

if want boot-rollback; then
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >/dev/null 2>&1
        # The selector spent B's try and B never got healthy: the next boot is A again.
        agent --once --boot-id boot-2 --booted-slot A >"$WORK/last.log" 2>&1; rc=$?
        if [[ $(events 3/0/44) == 1 && $rc == 3 ]] && grep -q "rolled back here before" "$WORK/last.log" &&
                [[ $(requests /payloads/u-1.1.0.payload) == 1 && $(event_attr 3/0/44 nextversion) == 1.1.0 ]]; then
                ok boot-rollback
        else notok boot-rollback "exit $rc, 44 events: $(events 3/0/44), nextversion '$(event_attr 3/0/44 nextversion)'"; fi
fi

# An update that never gets healthy: the agent reboots, so that the selector falls back. With
# --once it asks once and exits 1 without a check; the daemon asks again (retry_interval) while
# the reboot command fails, and checks for nothing meanwhile; marked good by hand meanwhile,
# the slot is not rebooted any more, and the daemon goes on to its checks.
if want unhealthy-reboot; then
        new_disk; agent_conf "reboot_command = true"
        offer_p11
        agent --once --boot-id boot-1 >"$WORK/last.log" 2>&1
        agent_conf "health_check = false" "health_timeout = 1" "retry_interval = 1" \
                "first_check_delay = 1" "poll_jitter = 0" "reboot_command = echo reboot >>$WORK/reboots"
        rm -f "$WORK/reboots"; : >"$RLOG"
        agent --once --boot-id boot-2 --booted-slot B >>"$WORK/last.log" 2>&1; rc=$?
        n1=$(wc -l <"$WORK/reboots" 2>/dev/null); c1=$(requests /v1/update/)
        sed -i "s|^reboot_command = .*|reboot_command = echo reboot >>$WORK/reboots; exit 1|" "$WORK/update.conf"
        agent_bg "$WORK/last.log" --boot-id boot-2 --booted-slot B
        for ((i = 0; i < 150; i++)); do (($(wc -l <"$WORK/reboots") >= 3)) && break; sleep 0.1; done
        n2=$(wc -l <"$WORK/reboots"); c2=$(requests /v1/update/); b2=$(slot "$DISK" B successful)
        ctl_b mark-good --force >>"$WORK/last.log" 2>&1; rcm=$?
        for ((i = 0; i < 100; i++)); do (($(requests /v1/update/) >= 1)) && break; sleep 0.1; done
        n3=$(wc -l <"$WORK/reboots"); sleep 1.5
        kill -TERM $APID; wait $APID; rcd=$?
        if [[ $rc == 1 && $n1 == 1 && $c1 == 0 && $rcd == 0 && $n2 -ge 3 && $c2 == 0 && $b2 == false &&
                $rcm == 0 && $(requests /v1/update/) -ge 1 && $(wc -l <"$WORK/reboots") == "$n3" ]] &&
                grep -q "not healthy after" "$WORK/last.log" && grep -q "Trying the reboot again" "$WORK/last.log" &&
                grep -q "was marked successful; not rebooting" "$WORK/last.log"; then
                ok unhealthy-reboot
        else notok unhealthy-reboot "--once exit $rc with $n1 reboot(s), $c1 check(s); daemon exit $rcd with $((n2 - n1)) reboot(s), $c2 check(s); mark-good exit $rcm, then $(requests /v1/update/) check(s), $(( $(wc -l <"$WORK/reboots") - n3 )) more reboot(s)"; fi
fi

# An update that did not come up, and pivotctl install runs before the agent did (say its
# configuration stops it): the install must not take the failed update's record with it. The
# rollback is noted and reported at the next check (44), and that version is not taken again.
if want install-after-boot-rollback; then
        [[ -f $WORK/u-1.2.0.payload ]] || make_payload "$WORK/u-1.2.0.payload" 1.2.0
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >"$WORK/last.log" 2>&1
        "$CTL" --disk "$DISK" --booted-slot A --boot-id boot-2 --state-dir "$WORK/state" --key "$KEYS/dev.pub" \
                install "$WORK/u-1.2.0.payload" >>"$WORK/last.log" 2>&1; rci=$?
        failed=$(sed -n 's/^failed_version=//p' "$WORK/state/update-state")
        responder '{"omaha":"noupdate"}'
        agent --once --boot-id boot-2 --booted-slot A >>"$WORK/last.log" 2>&1; rc=$?
        if [[ $rci == 0 && $failed == 1.1.0 && $(events 3/0/44) == 1 && $(event_attr 3/0/44 nextversion) == 1.1.0 ]]; then
                ok install-after-boot-rollback
        else notok install-after-boot-rollback "install exit $rci, failed_version '$failed', 44 events: $(events 3/0/44)"; fi
fi

# Bad answers from the server. In each: an error, a failure event when the server can take one,
# A untouched, B not made bootable.
bad_agent() { # NAME RESPONDER-JSON EXPECTED-MESSAGE EVENT-OR-"" [agent args]
        local name=$1 json=$2 msg=$3 ev=$4; shift 4
        want "$name" || return 0
        new_disk; agent_conf; responder "$json"
        agent --once "$@" >"$WORK/last.log" 2>&1; local rc=$?
        if [[ $rc != 1 ]]; then notok "$name" "exit $rc"
        elif ! grep -q -- "$msg" "$WORK/last.log"; then notok "$name" "no message matching '$msg'"
        elif [[ -n $ev && $(events "$ev") == 0 ]]; then notok "$name" "no event $ev"
        elif ! a_untouched "$DISK"; then notok "$name" "slot A changed"
        elif [[ $(next_boot "$DISK") != A ]]; then notok "$name" "B boots next"
        elif grep -q "ERROR: AddressSanitizer\|runtime error" "$WORK/last.log"; then notok "$name" "sanitizer report"
        else ok "$name"; fi
}
bad_agent malformed-xml '{"omaha":"malformed"}' "invalid Omaha response" 3/0/31
bad_agent truncated-xml '{"omaha":"raw","raw":"<?xml version=\"1.0\"?><response protocol=\"3.0\"><app appid=\"{b9606f32-42ac-4029-aef4-20ed435e8c45}\" status=\"ok\"><updatecheck sta"}' "invalid Omaha response" 3/0/31
bad_agent no-updatecheck '{"omaha":"raw","raw":"<response protocol=\"3.0\"><app appid=\"{b9606f32-42ac-4029-aef4-20ed435e8c45}\" status=\"ok\"></app></response>"}' "no <updatecheck>" 3/0/34
bad_agent xml-external-entity '{"omaha":"xxe"}' "invalid Omaha response" 3/0/31
if want xml-external-entity && [[ $(requests /secret) != 0 ]]; then notok xml-external-entity-not-fetched; elif want xml-external-entity; then ok xml-external-entity-not-fetched; fi
bad_agent xml-entity-expansion '{"omaha":"entities"}' "invalid Omaha response" 3/0/31
# The device programs load the Omaha parser from ../lib/pivot/ beside their directory
# (updater/omaha-module.h). A program without it fails the check with the reason, before anything
# is fetched or written.
if want no-omaha-parser; then
        new_disk; agent_conf; offer_p11
        mkdir -p "$WORK/alone"
        cp "$AGENT" "$WORK/alone/pivot-agent"
        "$WORK/alone/pivot-agent" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" \
                --quiet --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 1 && $(requests /payloads/u-1.1.0.payload) == 0 && $(next_boot "$DISK") == A &&
              $(slot "$DISK" B priority) == 1 ]] &&
                grep -q "Cannot load the Omaha parser: .*omaha-parser.so" "$WORK/last.log"; then
                ok no-omaha-parser
        else notok no-omaha-parser "exit $rc, B priority $(slot "$DISK" B priority)"; fi
fi
bad_agent huge-response '{"omaha":"huge"}' "larger than" ""
bad_agent omaha-5xx '{"omaha":"500"}' "HTTP status 500" ""
bad_agent omaha-stall '{"omaha":"stall","stall_seconds":20}' "no answer in time\|Connection\|timed out" ""
bad_agent wrong-hash "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"hash_sha256\":\"$(printf x | sha256sum | cut -c1-64)\"}" "differs from the one the server announced" 3/0/10
bad_agent wrong-size "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"size\":12345}" "the server announced 12345" 3/0/11
bad_agent version-mismatch "{\"omaha\":\"update\",\"version\":\"1.2.0\",\"payload\":\"$P11\"}" "announced version 1.2.0 but the payload is 1.1.0" 3/0/12
bad_agent server-bad-signature "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$WORK/badsig.payload\"}" "bad signature" 3/0/18
bad_agent server-other-key "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$WORK/other.payload\"}" "signed by another key" 3/0/18
bad_agent server-older "{\"omaha\":\"update\",\"version\":\"0.9.0\",\"payload\":\"$WORK/old.payload\"}" "older than the running" 3/0/35
# Offered again at the next checks, the older version is refused again but reported once; and
# pivotctl check, which installs nothing, finds no update in it (exit 3, nothing reported).
if want server-older-once; then
        new_disk; agent_conf
        responder "{\"omaha\":\"update\",\"version\":\"0.9.0\",\"payload\":\"$WORK/old.payload\"}"
        agent --once >"$WORK/last.log" 2>&1; rc1=$?
        agent --once >>"$WORK/last.log" 2>&1; rc2=$?
        "$CTL" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" check >>"$WORK/last.log" 2>&1; rcc=$?
        if [[ $rc1 == 1 && $rc2 == 1 && $rcc == 3 && $(events 3/0/35) == 1 ]] && a_untouched "$DISK"; then
                ok server-older-once
        else notok server-older-once "agent exits $rc1/$rc2, check exit $rcc, 35 events: $(events 3/0/35)"; fi
fi
if want server-older; then
        # Refused before any attempt: B stays the successful fallback it was.
        if [[ $(slot "$DISK" B priority) == 1 ]]; then ok server-older-keeps-fallback
        else notok server-older-keeps-fallback "B priority $(slot "$DISK" B priority)"; fi
fi
bad_agent server-truncated "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$WORK/trunc-data.payload\"}" "announced" 3/0/11
bad_agent payload-5xx "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"payload_mode\":\"500\"}" "HTTP status 503" 3/0/2503
bad_agent payload-stall "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"payload_mode\":\"stall\",\"stall_seconds\":20}" "download failed" 3/0/9
bad_agent slot-too-small-agent "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$WORK/big.payload\"}" "too small" 3/0/14
if want bad-agent-b-disabled; then
        # After a failed attempt B is no longer a fallback with stale content: priority 0.
        if [[ $(slot "$DISK" B priority) == 0 ]]; then ok bad-agent-b-disabled; else notok bad-agent-b-disabled; fi
fi
if want connection-refused; then
        new_disk; agent_conf
        sed -i "s|^server = .*|server = http://127.0.0.1:1/v1/update/|" "$WORK/update.conf"
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 1 ]] && grep -q "127.0.0.1:1" "$WORK/last.log" && a_untouched "$DISK"; then ok connection-refused
        else notok connection-refused "exit $rc"; fi
fi

# A rollback chosen by hand while the health checks run stands: the slot on trial is not
# marked good, and the next boot (on the old slot) reports the rollback.
if want rollback-during-health-checks; then
        new_disk; agent_conf 'health_check = sleep 3'
        offer_p11
        agent --once --boot-id boot-1 >/dev/null 2>&1
        responder '{"omaha":"noupdate"}'
        agent --once --boot-id boot-2 --booted-slot B >"$WORK/last.log" 2>&1 &
        apid=$!
        sleep 1
        "$CTL" --disk "$DISK" --booted-slot B --state-dir "$WORK/state" rollback >>"$WORK/last.log" 2>&1; rc1=$?
        wait $apid
        agent --once --boot-id boot-3 --booted-slot A >>"$WORK/last.log" 2>&1
        if [[ $rc1 == 0 && $(slot "$DISK" B successful) == false && $(next_boot "$DISK") == A ]] &&
                ! grep -q "Slot B .* marked successful" "$WORK/last.log" && [[ $(events 3/0/44) == 1 ]]; then
                ok rollback-during-health-checks
        else notok rollback-during-health-checks "rollback exit $rc1, B successful $(slot "$DISK" B successful), 44 events $(events 3/0/44)"; fi
fi

# An install into the running slot is refused, and the record of the update on trial there
# stays (its success or rollback is still reported).
if want install-running-keeps-record; then
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >/dev/null 2>&1
        agent --once --boot-id boot-2 --booted-slot B --no-mark-good >/dev/null 2>&1
        "$CTL" --disk "$DISK" --booted-slot B --boot-id boot-2 --state-dir "$WORK/state" --key "$KEYS/dev.pub" \
                install --slot B "$P11" >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc != 0 ]] && grep -q "it is the running one" "$WORK/last.log" &&
                grep -q '^pending_slot *= *B' "$WORK/state/update-state"; then
                ok install-running-keeps-record
        else notok install-running-keeps-record "exit $rc; state: $(tr '\n' ' ' <"$WORK/state/update-state")"; fi
fi

# An install that stops before it touches its slot (here: the download folder cannot be made)
# leaves the record of the update installed there, which still boots next.
if want install-stopped-keeps-record; then
        new_disk; agent_conf
        offer_p11
        agent --once --boot-id boot-1 >/dev/null 2>&1
        rm -rf "$WORK/state/download"; : >"$WORK/state/download"
        "$CTL" --disk "$DISK" --booted-slot A --boot-id boot-1 --state-dir "$WORK/state" --key "$KEYS/dev.pub" \
                install "$P11" >"$WORK/last.log" 2>&1; rc=$?
        rm -f "$WORK/state/download"
        if [[ $rc != 0 && $(next_boot "$DISK") == B ]] && grep -q "Cannot create" "$WORK/last.log" &&
                grep -q '^pending_slot *= *B' "$WORK/state/update-state"; then
                ok install-stopped-keeps-record
        else notok install-stopped-keeps-record "exit $rc; state: $(tr '\n' ' ' <"$WORK/state/update-state")"; fi
fi

# Offline without --booted-slot, a second run finds the slot installed by the first one
# booting next: it never booted, so it must not be marked good (it would lose its fallback).
if want offline-next-slot-not-marked-good; then
        new_disk; agent_conf
        offer_p11
        agent --once >"$WORK/last.log" 2>&1; rc1=$?
        rm -rf "$WORK/state"
        agent --once >>"$WORK/last.log" 2>&1; rc2=$?
        if [[ $rc1 == 0 && $(next_boot "$DISK") == B && $(slot "$DISK" B successful) == false ]] &&
                ! grep -q "marked successful" "$WORK/last.log"; then
                ok offline-next-slot-not-marked-good
        else notok offline-next-slot-not-marked-good "exits $rc1/$rc2, B successful $(slot "$DISK" B successful)"; fi
fi

# Resume: a dropped connection is resumed with a Range request in the same run; an agent that
# gives up (or is restarted) resumes from its checkpoint.
if want resume-dropped; then
        new_disk; agent_conf
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"payload_mode\":\"drop-once\",\"drop_after\":1500000}"
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 && $(next_boot "$DISK") == B ]] && slot_holds "$DISK" $SLOT_B_OFF "$P11.root" &&
                grep -q '"range": "bytes=[1-9][0-9]*-"' "$RLOG" && grep -q "retrying from the last chunk boundary" "$WORK/last.log"; then
                ok resume-dropped
        else notok resume-dropped "exit $rc"; fi
fi

if want resume-restart; then
        interrupted_download "$WORK/last.log"; rc1=$?
        ckpt=$([[ -f $WORK/state/download/checkpoint ]] && echo yes)
        b1=$(slot "$DISK" B priority)
        offer_p11
        agent --once >>"$WORK/last.log" 2>&1; rc2=$?
        if [[ $rc1 == 1 && $ckpt == yes && $b1 == 0 && $rc2 == 0 ]] && grep -q "Resuming the download" "$WORK/last.log" &&
                grep -q '"range": "bytes=0-[0-9]*"' "$RLOG" && grep -q '"range": "bytes=[1-9][0-9]*-"' "$RLOG" &&
                [[ $(next_boot "$DISK") == B ]] && slot_holds "$DISK" $SLOT_B_OFF "$P11.root" &&
                [[ ! -f $WORK/state/download/checkpoint ]] &&
                # What this run downloaded: the head again, and the chunks from the checkpoint on.
                [[ $(sed -n 's/.*(resumed: \([0-9]*\) of \([0-9]*\) bytes.*/\1/p' "$WORK/last.log") == \
                        $(($(stat -c %s "$P11") - $(sed -n 's/.*Resuming the download.* (\([0-9]*\) of .*/\1/p' "$WORK/last.log") +
                           $($PAYLOAD show --json "$P11" | python3 -c "import json,sys; print(json.load(sys.stdin)['data_offset'])"))) ]]; then
                ok resume-restart
        else notok resume-restart "exits $rc1/$rc2, checkpoint '$ckpt', B prio after failure $b1"; fi
fi

# The slot, or a staged boot file, no longer holds what a checkpoint says was verified (written
# meanwhile, or writes lost in a power cut): the download starts over in the same run, and no
# failure goes to the server (it would count against the rollout).
if want resume-held-lost; then
        good=1
        for what in slot kernel; do
                interrupted_download "$WORK/last.log"
                [[ -f $WORK/state/download/checkpoint ]] || { good=0; echo "  $what: no checkpoint" >&2; }
                if [[ $what == slot ]]; then
                        dd if=/dev/zero of="$DISK" bs=4096 count=1 seek=$((SLOT_B_OFF / 4096)) conv=notrunc status=none
                else
                        truncate -s 1000 "$WORK/state/download/kernel"
                fi
                offer_p11
                agent --once >>"$WORK/last.log" 2>&1; rc=$?
                [[ $rc == 0 && $(events 3/0) == 0 && $(next_boot "$DISK") == B ]] &&
                        grep -q "downloading again from the start" "$WORK/last.log" &&
                        slot_holds "$DISK" $SLOT_B_OFF "$P11.root" ||
                        { good=0; echo "  $what: exit $rc, failure events $(events 3/0)" >&2; }
        done
        if [[ $good == 1 ]]; then ok resume-held-lost; else notok resume-held-lost; fi
fi

# A damaged primary GPT (the backup intact) is repaired from the backup before any attribute is
# changed, so that no power cut can leave the disk without a good copy; both copies are good
# after.
gpt_copies_ok() { # DISK: both GPT headers and entry arrays match their CRCs
        python3 - "$1" <<'PY'
import struct, sys, zlib
f = open(sys.argv[1], "rb")
def ok(lba):
    f.seek(lba * 512); h = bytearray(f.read(512))
    if h[:8] != b"EFI PART": return False
    size, crc = struct.unpack_from("<II", h, 12)
    ent_lba, n, esz, ecrc = struct.unpack_from("<QIII", h, 72)
    alt = struct.unpack_from("<Q", h, 32)[0]
    hh = bytearray(h[:size]); hh[16:20] = b"\0\0\0\0"
    f.seek(ent_lba * 512)
    return zlib.crc32(hh) == crc and zlib.crc32(f.read(n * esz)) == ecrc, alt
good, alt = ok(1)
sys.exit(0 if good and ok(alt)[0] else 1)
PY
}
if want gpt-primary-repaired; then
        new_disk
        gpt_copies_ok "$DISK"; before=$?
        printf '\x01' | dd of="$DISK" bs=1 seek=$((33 * 512 + 100)) conv=notrunc status=none
        gpt_copies_ok "$DISK"; damaged=$?
        "$CTL" --disk "$DISK" --booted-slot A rollback --force >"$WORK/last.log" 2>&1; rc=$?
        if [[ $before == 0 && $damaged != 0 && $rc == 0 ]] && gpt_copies_ok "$DISK" &&
                grep -q "repairing it from the backup first" "$WORK/last.log" && [[ $(next_boot "$DISK") == B ]]; then
                ok gpt-primary-repaired
        else notok gpt-primary-repaired "before $before, damaged $damaged, exit $rc"; fi
fi

# A resume whose first request (the signed prefix and the chunk table, up to the saved point)
# drops inside the table: the retry must still stop at the end of the table and jump to the
# saved chunk, not take the bytes that follow the table for it.
if want resume-drop-in-table; then
        interrupted_download "$WORK/last.log"; rc1=$?
        mid=$($PAYLOAD show --json "$P11" | python3 -c "import json,sys; j=json.load(sys.stdin); print((j['table_offset'] + j['data_offset']) // 2)")
        agent_conf
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"payload_mode\":\"drop-once\",\"drop_after\":$mid}"
        agent --once >>"$WORK/last.log" 2>&1; rc2=$?
        if [[ $rc1 == 1 && $rc2 == 0 ]] && grep -q "Resuming the download" "$WORK/last.log" &&
                grep -q "retrying from the last chunk boundary" "$WORK/last.log" &&
                slot_holds "$DISK" $SLOT_B_OFF "$P11.root" && [[ $(next_boot "$DISK") == B ]]; then
                ok resume-drop-in-table
        else notok resume-drop-in-table "exits $rc1/$rc2 (drop at byte $mid)"; fi
fi

# A resume from a server that ignores Range and now sends a body that ends inside the chunk
# table: each request brings nothing new. That is a failed attempt, counted, with its delay; it
# used to be asked again at once, for ever.
if want resume-no-progress; then
        interrupted_download "$WORK/last.log"; rc1=$?
        mid=$($PAYLOAD show --json "$P11" | python3 -c "import json,sys; j=json.load(sys.stdin); print((j['table_offset'] + j['data_offset']) // 2)")
        head -c "$mid" "$P11" >"$WORK/cut-in-table.payload"
        agent_conf "download_retries = 1"
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$WORK/cut-in-table.payload\",\"size\":$size11,\"payload_mode\":\"norange\"}"
        timeout 60 "$AGENT" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" --quiet --once >>"$WORK/last.log" 2>&1; rc2=$?
        if [[ $rc1 == 1 && $rc2 == 1 ]] && grep -q "truncated payload" "$WORK/last.log" &&
                (($(requests /payloads/cut-in-table.payload) <= 4)) && [[ $(next_boot "$DISK") == A ]]; then
                ok resume-no-progress
        else notok resume-no-progress "exits $rc1/$rc2 (124: still asking after 60 s), $(requests /payloads/cut-in-table.payload) requests"; fi
fi

# An HTTP 4xx (an expired signed URL, a mirror without the file) fails this run but keeps what
# is on the disk: the next run resumes.
if want resume-after-4xx; then
        interrupted_download "$WORK/last.log"; rc1=$?
        offer_p11 403
        agent --once >>"$WORK/last.log" 2>&1; rc2=$?
        ckpt=$([[ -f $WORK/state/download/checkpoint ]] && echo yes)
        n403=$(events 3/0/2403)
        offer_p11
        agent --once >>"$WORK/last.log" 2>&1; rc3=$?
        if [[ $rc1 == 1 && $rc2 == 1 && $ckpt == yes && $rc3 == 0 && $n403 == 1 ]] &&
                grep -q "HTTP status 403" "$WORK/last.log" && grep -q "Resuming the download" "$WORK/last.log" &&
                slot_holds "$DISK" $SLOT_B_OFF "$P11.root" && [[ $(next_boot "$DISK") == B ]]; then
                ok resume-after-4xx
        else notok resume-after-4xx "exits $rc1/$rc2/$rc3, checkpoint after 403: '$ckpt', 2403 events: $n403"; fi
fi

# Every byte arrived, then the transfer failed (the server promised more): the install is
# complete, not a reason to ask for a range past the end of the file.
if want error-after-last-byte; then
        new_disk; agent_conf
        offer_p11 overlong
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 && $(requests /payloads/u-1.1.0.payload) == 1 ]] && slot_holds "$DISK" $SLOT_B_OFF "$P11.root" &&
                [[ $(next_boot "$DISK") == B ]]; then
                ok error-after-last-byte
        else notok error-after-last-byte "exit $rc, $(requests /payloads/u-1.1.0.payload) payload requests"; fi
fi

if want resume-sigterm; then
        new_disk; agent_conf
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"rate\":300000}"
        : >"$WORK/last.log"
        agent_bg "$WORK/last.log" --once
        sleep 2.5
        kill -TERM $APID; wait $APID; rc1=$?
        # Stopped is not failed: no failure event (it would count against the rollout).
        failures=$(events 3/0)
        offer_p11
        agent --once >>"$WORK/last.log" 2>&1; rc2=$?
        if [[ $rc1 == 1 && $rc2 == 0 && $failures == 0 ]] && grep -q "Resuming the download" "$WORK/last.log" &&
                slot_holds "$DISK" $SLOT_B_OFF "$P11.root" && [[ $(next_boot "$DISK") == B ]]; then
                ok resume-sigterm
        else notok resume-sigterm "exits $rc1/$rc2, failure events: $failures"; fi
fi

# SIGTERM while the server sends nothing (a stall): the download stops at once, without
# waiting for stall_timeout, and is not reported as failed.
if want sigterm-during-stall; then
        new_disk; agent_conf
        sed -i "s|^stall_timeout = .*|stall_timeout = 120|" "$WORK/update.conf"
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"payload_mode\":\"stall\",\"stall_seconds\":100}"
        : >"$WORK/last.log"
        agent_bg "$WORK/last.log" --once
        for ((i = 0; i < 100; i++)); do (($(requests /payloads/u-1.1.0.payload) >= 1)) && break; sleep 0.1; done
        sleep 1
        t0=$(date +%s)
        kill -TERM $APID; wait $APID; rc=$?
        took=$(($(date +%s) - t0))
        if [[ $rc == 1 && $took -lt 30 && $(events 3/0) == 0 ]] && grep -q "Download stopped" "$WORK/last.log" && b_not_bootable "$DISK"; then
                ok sigterm-during-stall
        else notok sigterm-during-stall "exit $rc after ${took}s, failure events $(events 3/0)"; fi
fi

if want range-ignored; then
        interrupted_download
        # The server now ignores Range and sends the whole file: the agent skips what it has.
        offer_p11 norange
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        # Downloaded in this run: the head, then the whole file again (what it skipped counts).
        got=$(sed -n 's/.*(resumed: \([0-9]*\) of .*/\1/p' "$WORK/last.log")
        want=$(($(stat -c %s "$P11") + $($PAYLOAD show --json "$P11" | python3 -c "import json,sys; print(json.load(sys.stdin)['data_offset'])")))
        if [[ $rc == 0 && $got == "$want" ]] && slot_holds "$DISK" $SLOT_B_OFF "$P11.root" && [[ $(next_boot "$DISK") == B ]]; then
                ok range-ignored
        else notok range-ignored "exit $rc, $got bytes downloaded, $want expected"; fi
fi

# A resume whose 206 starts before the offset asked for (a cache serving whole blocks): the
# bytes before it are dropped. One that starts after it, or has no Content-Range, cannot be
# placed: a clear error, and the checkpoint stays for the next attempt.
if want range-widened; then
        interrupted_download
        offer_p11 range-widened
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 ]] && grep -q "Resuming the download" "$WORK/last.log" &&
                slot_holds "$DISK" $SLOT_B_OFF "$P11.root" && [[ $(next_boot "$DISK") == B ]]; then
                ok range-widened
        else notok range-widened "exit $rc"; fi
fi
if want range-unusable; then
        good=1
        for mode in range-late range-bare range-416; do
                interrupted_download
                offer_p11 "$mode"
                agent --once >"$WORK/last.log" 2>&1; rc=$?
                msg="not from"; [[ $mode == range-bare ]] && msg="no usable Content-Range"
                [[ $mode == range-416 ]] && msg="cannot serve this Range (HTTP 416)"
                grep -q "$msg" "$WORK/last.log" && [[ $rc == 1 && -f $WORK/state/download/checkpoint ]] &&
                        b_not_bootable "$DISK" && a_untouched "$DISK" || { good=0; echo "  $mode: exit $rc" >&2; }
                # With a retry, the same server still works: the whole file, skipped to the offset.
                agent_conf "download_retries = 1"
                agent --once >"$WORK/last.log" 2>&1; rc=$?
                [[ $rc == 0 ]] && grep -q "Resuming the download" "$WORK/last.log" &&
                        grep -q "asking for the whole file" "$WORK/last.log" &&
                        slot_holds "$DISK" $SLOT_B_OFF "$P11.root" && [[ $(next_boot "$DISK") == B ]] ||
                        { good=0; echo "  $mode, with a retry: exit $rc" >&2; }
        done
        if [[ $good == 1 ]]; then ok range-unusable; else notok range-unusable; fi
fi

# A link that always drops 1.3 MB into a transfer, and a payload whose chunks are bigger than
# that: each try gets past 1 MiB but keeps nothing. That is no progress: the retries run out.
# (They used to start again at every such drop, for ever.)
if want retry-no-kept-progress; then
        P4M=$WORK/u-1.1.0-4m.payload
        [[ -f $P4M ]] || make_payload "$P4M" 1.1.0 3000000 0.0.0 "$KEYS/dev.pem" 4M
        new_disk; agent_conf "download_retries = 2"
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P4M\",\"payload_mode\":\"drop\",\"drop_after\":1300000}"
        timeout 60 "$AGENT" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" --quiet \
                --once >"$WORK/last.log" 2>&1; rc=$?
        n=$(requests /payloads/u-1.1.0-4m.payload)
        if [[ $rc == 1 && $n == 3 ]] && b_not_bootable "$DISK" && a_untouched "$DISK"; then
                ok retry-no-kept-progress
        else notok retry-no-kept-progress "exit $rc after $n requests"; fi
fi

# A saved download whose head is shorter than the new payload's signed prefix (a payload made
# with a much longer manifest): the head asked for ends inside the prefix. The rest of it comes
# next, and the download starts over; it used to ask for the same short head until it failed.
if want resume-short-head; then
        PLONG=$WORK/u-1.2.0-long.payload
        if [[ ! -f $PLONG ]]; then
                d=$WORK/p-1.2.0-long; mkdir -p "$d"
                head -c 200000 /dev/urandom >"$d/root.img"
                $PAYLOAD create --quiet --root "$d/root.img" --kernel "$WORK/p-1.1.0-3000000/vmlinuz" \
                        --initrd "$WORK/p-1.1.0-3000000/initrd" --version 1.2.0 --key "$KEYS/dev.pem" \
                        --cmdline "ro pivot.version=1.2.0 pivot.verity.roothash=$ROOTHASH $(printf 'pad=%03900d' 0)" \
                        --out "$PLONG" --chunk-size 64K >/dev/null
                cp "$d/root.img" "$PLONG.root"
        fi
        PSMALL=$WORK/u-1.1.0-small.payload
        [[ -f $PSMALL ]] || make_payload "$PSMALL" 1.1.0 600000
        new_disk; agent_conf "download_retries = 0"
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$PSMALL\",\"payload_mode\":\"drop\",\"drop_after\":300000}"
        agent --once >/dev/null 2>&1
        head_old=$($PAYLOAD show --json "$PSMALL" | python3 -c "import json,sys; print(json.load(sys.stdin)['data_offset'])")
        prefix_new=$($PAYLOAD show --json "$PLONG" | python3 -c "import json,sys; print(json.load(sys.stdin)['table_offset'])")
        responder "{\"omaha\":\"update\",\"version\":\"1.2.0\",\"payload\":\"$PLONG\"}"
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        if ((prefix_new > head_old)) && [[ $rc == 0 ]] && grep -q "another payload" "$WORK/last.log" &&
                slot_holds "$DISK" $SLOT_B_OFF "$PLONG.root" && [[ $(next_boot "$DISK") == B ]]; then
                ok resume-short-head
        else notok resume-short-head "exit $rc; prefix $prefix_new, saved head $head_old"; fi
fi

# Reboot strategies (offline, a reboot command configured on purpose is run).
if want reboot-strategy; then
        good=1
        for strat in reboot off; do
                new_disk; agent_conf "reboot_strategy = $strat" "reboot_command = touch $WORK/rebooted"
                rm -f "$WORK/rebooted"
                offer_p11
                agent --once >"$WORK/last.log" 2>&1
                if [[ $strat == reboot && ! -f $WORK/rebooted ]] || [[ $strat == off && -f $WORK/rebooted ]]; then good=0; fi
        done
        # off: pivotctl reboot does it.
        "$CTL" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" reboot >>"$WORK/last.log" 2>&1
        [[ -f $WORK/rebooted ]] || good=0
        if [[ $good == 1 ]]; then ok reboot-strategy; else notok reboot-strategy; fi
fi

# The daemon: first check after first_check_delay, then every poll_interval; backs off on errors.
if want daemon-schedule; then
        new_disk; agent_conf "first_check_delay = 1" "poll_interval = 1" "poll_jitter = 0"
        responder '{"omaha":"noupdate"}'
        : >"$WORK/last.log"
        # Wait for the checks rather than count them in a fixed window: a loaded machine is
        # slow to start the agent, and that says nothing about its schedule. The schedule is
        # checked by the elapsed time: three checks 1 s apart take at least 2 s, and a daemon
        # that ignored poll_interval would make many more meanwhile.
        wait_requests() { # COUNT TIMEOUT_TENTHS
                local i
                for ((i = 0; i < $2; i++)); do
                        (($(requests /v1/update/) >= $1)) && return 0
                        sleep 0.1
                done
                return 1
        }
        agent_bg "$WORK/last.log"
        t0=$(date +%s%N)
        wait_requests 3 200; got3=$?
        t1=$(date +%s%N)
        n=$(requests /v1/update/)
        kill -TERM $APID; wait $APID; rc=$?
        agent_conf "first_check_delay = 0" "poll_interval = 1" "poll_jitter = 0" "retry_interval = 1" "retry_max = 2"
        responder '{"omaha":"500"}'
        agent_bg "$WORK/last.log"
        wait_requests 2 200; got2=$?
        kill -TERM $APID; wait $APID
        m=$(requests /v1/update/)
        ms=$(((t1 - t0) / 1000000))
        if [[ $rc == 0 && $got3 == 0 && $ms -ge 2000 && $n -le 4 && $got2 == 0 ]] && grep -q "backing off" "$WORK/last.log"; then
                ok daemon-schedule
        else notok daemon-schedule "3 checks took ${ms} ms ($n seen, found: $got3); $m checks with back-off (found: $got2); exit $rc"; fi
fi

if want status-agent; then
        new_disk; agent_conf; responder '{"omaha":"noupdate"}'
        agent --once >/dev/null 2>&1
        out=$("$CTL" --disk "$DISK" --state-dir "$WORK/state" status --json)
        if python3 -c "import json,sys; j=json.loads(sys.argv[1]); a=j['agent']; assert a['last_result']=='noupdate' and a['state']=='idle'" "$out" 2>"$WORK/last.log"; then
                ok status-agent
        else notok status-agent "$out"; fi
fi

if want pivotctl-check-update; then
        new_disk; agent_conf
        offer_p11
        c1=$("$CTL" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" check 2>"$WORK/last.log")
        b1=$(slot "$DISK" B priority)
        "$CTL" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" update >>"$WORK/last.log" 2>&1; rc=$?
        if [[ $c1 == "update available: 1.1.0"* && $b1 == 1 && $rc == 0 && $(next_boot "$DISK") == B ]] &&
                grep -q '"installsource": "ondemandupdate"' "$RLOG" && grep -q "verifying 100%" "$WORK/last.log"; then
                ok pivotctl-check-update
        else notok pivotctl-check-update "check '$c1', exit $rc"; fi
fi

# Proxy from the environment: the server name resolves nowhere, only the proxy knows it.
if want proxy; then
        new_disk; agent_conf
        sed -i "s|^server = .*|server = http://updates.pivot.invalid/v1/update/|" "$WORK/update.conf"
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"base_url\":\"http://updates.pivot.invalid\"}"
        http_proxy=http://127.0.0.1:$PORT agent --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 ]] && grep -q '"proxied": true' "$RLOG" && [[ $(next_boot "$DISK") == B ]]; then ok proxy
        else notok proxy "exit $rc"; fi
fi

# A server that moved (301): the Omaha request goes again to the new place, as a POST with its
# body (libcurl's default would follow with a GET).
if want omaha-redirect; then
        new_disk; agent_conf
        sed -i "s|^server = .*|server = http://127.0.0.1:$PORT/moved/|" "$WORK/update.conf"
        offer_p11
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        posts=$(grep -c '"method": "POST", "path": "/v1/update/"' "$RLOG")
        if [[ $rc == 0 && $(next_boot "$DISK") == B && $posts -ge 2 ]]; then ok omaha-redirect
        else notok omaha-redirect "exit $rc, $posts requests posted to the new place"; fi
fi

# Several codebases: a dead first one, then the working one.
if want second-url; then
        new_disk; agent_conf
        responder "{\"omaha\":\"update\",\"version\":\"1.1.0\",\"payload\":\"$P11\",\"dead_urls\":[\"http://127.0.0.1:1/x/\"]}"
        agent --once >"$WORK/last.log" 2>&1; rc=$?
        if [[ $rc == 0 && $(next_boot "$DISK") == B ]] && grep -q "Trying the next download location" "$WORK/last.log"; then
                ok second-url
        else notok second-url "exit $rc"; fi
fi

# pivotctl install straight from a URL (same engine, HTTP source).
if want install-url; then
        new_disk
        responder "{\"omaha\":\"noupdate\",\"payload\":\"$P11\"}"
        if "$CTL" --disk "$DISK" --key "$KEYS/dev.pub" install "http://127.0.0.1:$PORT/payloads/u.payload" >"$WORK/last.log" 2>&1 &&
                [[ $(next_boot "$DISK") == B ]] && slot_holds "$DISK" $SLOT_B_OFF "$P11.root"; then
                ok install-url
        else notok install-url; fi
fi

# TLS: verified against the configured CA; refused without it.
if want tls; then
        T=$WORK/tls; mkdir -p "$T"
        openssl req -x509 -newkey ed25519 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 2 -subj /CN=pivot-test-ca 2>/dev/null
        openssl req -newkey ed25519 -nodes -keyout "$T/srv.key" -out "$T/srv.csr" -subj /CN=127.0.0.1 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\n' >"$T/ext"
        openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -out "$T/srv.pem" -days 2 -extfile "$T/ext" 2>/dev/null
        plain_port=$PORT
        start_responder --cert "$T/srv.pem" --certkey "$T/srv.key"
        TLS_URL=https://127.0.0.1:$PORT/v1/update/
        new_disk; agent_conf "ca_file = $T/ca.pem"
        sed -i "s|^server = .*|server = $TLS_URL|" "$WORK/update.conf"
        offer_p11
        agent --once >"$WORK/last.log" 2>&1; rc1=$?
        new_disk; agent_conf
        sed -i "s|^server = .*|server = $TLS_URL|" "$WORK/update.conf"
        agent --once >>"$WORK/last.log" 2>&1; rc2=$?
        if [[ $rc1 == 0 && $rc2 == 1 ]] && grep -qi "certificate" "$WORK/last.log"; then ok tls
        else notok tls "with CA: exit $rc1, without: exit $rc2"; fi
        # ca_file is then the only CA trusted: the server's CA in the system's store is not
        # enough. The store is a directory of our own, mounted over /etc/ssl/certs in a mount
        # namespace; without ca_file the agent trusts it (the check that the mount works).
        if want tls-ca-file-only; then
                openssl req -x509 -newkey ed25519 -nodes -keyout "$T/other.key" -out "$T/other.pem" -days 2 -subj /CN=pivot-other-ca 2>/dev/null
                mkdir -p "$T/store"
                cp "$T/ca.pem" "$T/store/"
                cp "$T/ca.pem" "$T/store/ca-certificates.crt" # the bundle libcurl reads by default
                ln -sf ca.pem "$T/store/$(openssl x509 -hash -noout -in "$T/ca.pem").0"
                in_store() { unshare -m sh -c 'mount --bind "$1" /etc/ssl/certs && shift && exec "$@"' sh "$T/store" \
                        "$AGENT" --disk "$DISK" --state-dir "$WORK/state" --config "$WORK/update.conf" --quiet --once; }
                new_disk; agent_conf
                sed -i "s|^server = .*|server = $TLS_URL|" "$WORK/update.conf"
                in_store >"$WORK/last.log" 2>&1; rc3=$?
                new_disk; agent_conf "ca_file = $T/other.pem"
                sed -i "s|^server = .*|server = $TLS_URL|" "$WORK/update.conf"
                in_store >>"$WORK/last.log" 2>&1; rc4=$?
                if [[ $rc3 == 0 && $rc4 == 1 ]]; then ok tls-ca-file-only
                else notok tls-ca-file-only "system store only: exit $rc3 (want 0), ca_file of another CA: exit $rc4 (want 1)"; fi
        fi
        PORT=$plain_port
fi

# The real pivot-server, when it is built: publish with pivot-admin, update with the agent.
if want pivot-server; then
        if make -s out/bin/pivot-server out/bin/pivot-admin >/dev/null 2>&1; then
                "$ROOT/updater/tests/with-server.sh" "$WORK" "$P11" "$KEYS/dev.pub" "$BASE" >"$WORK/last.log" 2>&1; rc=$?
                if [[ $rc == 0 ]]; then ok pivot-server; else notok pivot-server "exit $rc"; fi
        else
                echo "ok pivot-server # skipped: pivot-server not built"
        fi
fi

echo "$PASS passed, $FAIL failed"
[[ $FAIL == 0 ]]

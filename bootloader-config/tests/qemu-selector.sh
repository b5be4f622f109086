#!/usr/bin/env bash
# The boot selector under QEMU + OVMF on small synthetic disks, before (and independently of) a
# real OS image. Each slot's "kernel" is out/efi/fake-kernel.efi, which prints the command line
# it got and powers the machine off, or returns an error when its command line says fake.fail.
# Each case builds a GPT with sfdisk, an ESP with mtools, boots (one boot = one QEMU run with
# -no-reboot), then checks the serial log and the attributes left on disk.
#
#   bootloader-config/tests/qemu-selector.sh [CASE...]     ends with "N passed, N failed"
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-out}
SELECTOR=$OUT/efi/BOOTX64.EFI
FAKE=$OUT/efi/fake-kernel.efi
OVMF_CODE=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
OVMF_VARS=${OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
ROOT_TYPE=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709

tools/deps.sh qemu image efi >&2 || exit 1
make -s "$SELECTOR" "$FAKE" >&2 || { echo "0 passed, 1 failed"; exit 1; }

work=$(mktemp -d /tmp/pivot-selector-test.XXXXXX)
[[ -n "${KEEP:-}" ]] && echo "work directory: $work" >&2 || trap 'rm -rf "$work"' EXIT
passed=0 failed=0

pass() { passed=$((passed + 1)); echo "  ok: $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL: $*"; }

# GPT attribute bit list, as sfdisk prints it, for priority, tries, successful.
attrs() {
  local prio=$1 tries=$2 ok=$3 bits=() b
  for b in 0 1 2 3; do (((prio >> b) & 1)) && bits+=($((48 + b))); done
  for b in 0 1 2 3; do (((tries >> b) & 1)) && bits+=($((52 + b))); done
  ((ok)) && bits+=(56)
  local IFS=,
  echo "${bits[*]:+GUID:${bits[*]}}"
}

# mkdisk NAME ATTRS_A ATTRS_B: a 64 MiB disk with ESP, ROOT-A, ROOT-B, STATE; both slots have
# a (fake) kernel, an initrd and a cmdline "slotfile=<X>".
mkdisk() {
  local d=$work/$1
  mkdir -p "$d"
  truncate -s 64M "$d/disk.img"
  sfdisk -q "$d/disk.img" >/dev/null <<EOF
label: gpt
first-lba: 2048
size=16MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=EFI-SYSTEM
size=8MiB, type=$ROOT_TYPE, name=ROOT-A, attrs="$2"
size=8MiB, type=$ROOT_TYPE, name=ROOT-B, attrs="$3"
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=STATE
EOF
  truncate -s 16M "$d/esp.img"
  mkfs.vfat -n EFI-SYSTEM "$d/esp.img" >/dev/null
  mmd -i "$d/esp.img" ::/EFI ::/EFI/BOOT ::/pivot ::/pivot/A ::/pivot/B
  mcopy -i "$d/esp.img" "$SELECTOR" ::/EFI/BOOT/BOOTX64.EFI
  local s
  for s in A B; do
    mcopy -i "$d/esp.img" "$FAKE" ::/pivot/$s/vmlinuz
    echo "initrd of $s" | mcopy -i "$d/esp.img" - ::/pivot/$s/initrd
    echo "slotfile=$s" | mcopy -i "$d/esp.img" - ::/pivot/$s/cmdline
  done
  cp "$OVMF_VARS" "$d/vars.fd"
}

# ESP edits before the ESP goes onto the disk (esp_done).
esp_put() { printf '%s' "$3" | mcopy -o -i "$work/$1/esp.img" - "::$2"; }
esp_rm() { mdel -i "$work/$1/esp.img" "::$2"; }
esp_done() { dd if="$work/$1/esp.img" of="$work/$1/disk.img" bs=1M seek=1 conv=notrunc status=none; }

# boot NAME N: the Nth boot of a disk; its serial log is $work/NAME/bootN.log.
boot() {
  local d=$work/$1
  timeout 300 qemu-system-x86_64 -machine q35 -m 256 -nographic -no-reboot -nodefaults \
    -serial stdio -monitor none \
    -drive if=pflash,format=raw,readonly=on,file="$OVMF_CODE" \
    -drive if=pflash,format=raw,file="$d/vars.fd" \
    -drive file="$d/disk.img",format=raw,if=virtio </dev/null >"$d/boot$2.log" 2>&1
  # The log has ANSI control sequences and CRs from the firmware; keep plain lines.
  sed -e 's/\x1b\[[0-9;=]*[A-Za-z]//g' -e 's/\r//g' "$d/boot$2.log" >"$d/boot$2.txt"
}

log_has() { grep -qaF -- "$3" "$work/$1/boot$2.txt"; }
# The one line the fake kernel prints: which slot booted and with what.
booted_slot() { sed -n 's/.*fake-kernel: cmdline=.* pivot\.slot=\([^ ]*\) .*/\1/p' "$work/$1/boot$2.txt" | tail -n 1; }
part_attrs() { sfdisk --part-attrs "$work/$1/disk.img" "$2" 2>/dev/null; }

expect_boot() { # NAME N SLOT
  local got
  got=$(booted_slot "$1" "$2")
  if [[ "$got" == "$3" ]]; then pass "$1: boot $2 started slot $3"; else
    fail "$1: boot $2 started '${got:-nothing}', expected $3"; sed 's/^/    | /' "$work/$1/boot$2.txt" | grep -a 'pivot-selector\|fake-kernel' >&2; fi
}
expect_attrs() { # NAME PARTNO ATTRS
  local got
  got=$(part_attrs "$1" "$2")
  if [[ "$got" == "$3" ]]; then pass "$1: partition $2 attrs '${3}'"; else
    fail "$1: partition $2 attrs '$got', expected '$3'"; fi
}
expect_log() { # NAME N TEXT
  if log_has "$1" "$2" "$3"; then pass "$1: boot $2 printed '$3'"; else
    fail "$1: boot $2 did not print '$3'"; fi
}
expect_gpt_clean() { # NAME
  if sfdisk --verify "$work/$1/disk.img" 2>&1 | grep -q 'No errors detected'; then
    pass "$1: sfdisk --verify finds no errors"
  else fail "$1: GPT not clean: $(sfdisk --verify "$work/$1/disk.img" 2>&1 | head -n 3)"; fi
}

# --- cases ---

case_successful_b() {
  mkdisk succ "$(attrs 1 0 1)" "$(attrs 2 0 1)"; esp_done succ
  boot succ 1
  expect_boot succ 1 B
  expect_log succ 1 "pivot-selector: A(prio=1 tries=0 ok=1) B(prio=2 tries=0 ok=1) -> B: highest priority, successful"
  expect_attrs succ 3 "$(attrs 2 0 1)"
}

case_trying_b() {
  mkdisk try "$(attrs 1 0 1)" "$(attrs 2 2 0)"; esp_done try
  boot try 1
  expect_boot try 1 B
  expect_log try 1 "-> B: highest priority, trying (tries 2->1)"
  expect_attrs try 3 "$(attrs 2 1 0)"
  local uuid
  uuid=$(sfdisk --part-uuid "$work/try/disk.img" 3 | tr 'A-F' 'a-f')
  expect_log try 1 "fake-kernel: cmdline=slotfile=B console=ttyS0,115200 initrd=\\pivot\\B\\initrd pivot.disk=pci:01.0 pivot.slot=B pivot.root=PARTUUID=$uuid"
}

# B never becomes healthy: its last try is spent, and the boot after that is A's (rollback).
case_rollback() {
  mkdisk roll "$(attrs 1 0 1)" "$(attrs 2 1 0)"; esp_done roll
  boot roll 1
  expect_boot roll 1 B
  expect_attrs roll 3 "$(attrs 2 0 0)"
  boot roll 2
  expect_boot roll 2 A
  expect_log roll 2 "B(prio=2 tries=0 ok=0) -> A: highest priority, successful"
}

# OVMF's partition driver (EDK2 PartitionDxe) already restores a damaged GPT copy from the good
# one before the selector runs, so on OVMF these two cases prove the end result (right slot,
# clean GPT, try spent) rather than the selector's own repair, which the unit tests cover
# (lib/tests/test-gpt.c, test-gpt-powercut.c) for firmware that does not repair.
case_primary_gpt_corrupt() {
  mkdisk pgpt "$(attrs 1 0 1)" "$(attrs 2 2 0)"; esp_done pgpt
  # Overwrite the primary header's disk GUID: its CRC no longer matches.
  printf 'XXXXXXXX' | dd of="$work/pgpt/disk.img" bs=1 seek=$((512 + 56)) conv=notrunc status=none
  boot pgpt 1
  expect_boot pgpt 1 B
  expect_attrs pgpt 3 "$(attrs 2 1 0)"
  expect_gpt_clean pgpt
}

case_backup_gpt_corrupt() {
  mkdisk bgpt "$(attrs 2 0 1)" "$(attrs 1 0 1)"; esp_done bgpt
  printf 'XXXXXXXX' | dd of="$work/bgpt/disk.img" bs=512 seek=$(((64 << 11) - 1)) conv=notrunc status=none
  boot bgpt 1
  expect_boot bgpt 1 A
  expect_gpt_clean bgpt
}

case_kernel_missing() {
  mkdisk nokern "$(attrs 1 0 1)" "$(attrs 2 2 0)"
  esp_rm nokern /pivot/B/vmlinuz; esp_done nokern
  boot nokern 1
  expect_boot nokern 1 A
  expect_log nokern 1 "slot B: kernel missing"
  expect_log nokern 1 "B(prio=2 tries=0 ok=0 unbootable) -> A: highest priority, successful"
  expect_attrs nokern 3 "$(attrs 2 0 0)"
  expect_attrs nokern 2 "$(attrs 1 0 1)"
}

# A successful slot whose kernel does not load is skipped for this boot, not marked bad on
# disk: the error may pass, and the slot is a way back. One on trial is marked bad (its try is
# spent). Files that are not there mark either bad (case_kernel_missing).
case_kernel_corrupt() {
  mkdisk badkern "$(attrs 1 0 1)" "$(attrs 2 0 1)"
  esp_put badkern /pivot/B/vmlinuz "MZ this is not a PE image"; esp_done badkern
  boot badkern 1
  expect_boot badkern 1 A
  expect_log badkern 1 "slot B: cannot load kernel"
  expect_log badkern 1 "skipping it for this boot (it stays successful)"
  expect_attrs badkern 3 "$(attrs 2 0 1)"
}

case_kernel_corrupt_on_trial() {
  mkdisk badtry "$(attrs 1 0 1)" "$(attrs 2 2 0)"
  esp_put badtry /pivot/B/vmlinuz "MZ this is not a PE image"; esp_done badtry
  boot badtry 1
  expect_boot badtry 1 A
  expect_log badtry 1 "slot B: cannot load kernel"
  expect_log badtry 1 "marking it bad (tries=0 ok=0)"
  expect_attrs badtry 3 "$(attrs 2 0 0)"
}

# The kernel's EFI stub starts and gives up (returns from StartImage): next slot, same boot.
case_kernel_returns() {
  mkdisk kret "$(attrs 1 0 1)" "$(attrs 2 3 0)"
  esp_put kret /pivot/B/cmdline "slotfile=B fake.fail"; esp_done kret
  boot kret 1
  expect_log kret 1 "-> B: highest priority, trying (tries 3->2)"
  expect_log kret 1 "slot B: kernel returned"
  expect_boot kret 1 A
  expect_attrs kret 3 "$(attrs 2 0 0)"
}

case_no_slot_qualifies() {
  mkdisk fallback "$(attrs 1 0 0)" "$(attrs 2 0 0)"; esp_done fallback
  boot fallback 1
  expect_boot fallback 1 B
  expect_log fallback 1 "WARNING: no root slot has tries left or is marked successful; booting B anyway"
  expect_log fallback 1 "-> B: fallback: no slot qualifies, highest priority"
  expect_attrs fallback 3 "$(attrs 2 0 0)"
}

case_nothing_bootable() {
  mkdisk none "$(attrs 1 0 1)" "$(attrs 2 1 0)"
  esp_rm none /pivot/A/vmlinuz; esp_rm none /pivot/B/initrd
  esp_put none /pivot/selector.conf "reset_delay = 1"; esp_done none
  boot none 1
  expect_log none 1 "-> none: no bootable slot"
  expect_log none 1 "FATAL: no slot can be booted; resetting in 1 s"
  expect_attrs none 2 "$(attrs 1 0 0)"
  expect_attrs none 3 "$(attrs 2 0 0)"
}

case_conf() {
  mkdisk conf "$(attrs 1 0 1)" "$(attrs 0 0 0)"
  esp_put conf /pivot/selector.conf '# test configuration
cmdline_extra = quiet  loglevel=3
console = tty0 ttyS0,115200n8
colour = blue
verbose = 1
'
  esp_done conf
  boot conf 1
  expect_boot conf 1 A
  expect_log conf 1 "warning: selector.conf line 4: unknown key ignored: colour"
  expect_log conf 1 "fake-kernel: cmdline=slotfile=A quiet  loglevel=3 console=tty0 console=ttyS0,115200n8 initrd=\\pivot\\A\\initrd pivot.disk=pci:01.0 pivot.slot=A"
  expect_log conf 1 "pivot-selector: command line: slotfile=A quiet"
}

ALL_CASES=(successful_b trying_b rollback primary_gpt_corrupt backup_gpt_corrupt kernel_missing
           kernel_corrupt kernel_corrupt_on_trial kernel_returns no_slot_qualifies nothing_bootable
           conf)
cases=("$@")
((${#cases[@]})) || cases=("${ALL_CASES[@]}")
for c in "${cases[@]}"; do
  echo "--- $c"
  "case_$c"
done
echo "selector-qemu: $passed passed, $failed failed"
((failed == 0))

#!/usr/bin/env bash
# Bad image configuration stops the build early with a message that names the problem.
# Runs image/build-image with broken settings into a scratch OUT; the package cache is shared
# with the main build so no case downloads more than it must.
set -uo pipefail
cd "$(dirname "$0")/../.."
pass=0 fail=0
scratch=$(mktemp -d /tmp/pivot-config-test.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# Settings as `make image` passes them; each case overrides some.
base_env() {
  env -i PATH="$PATH" HOME="$HOME" VERSION=1.0.0 MIN_VERSION=0.0.0 SUITE=bookworm \
    MIRROR=http://deb.debian.org/debian KERNEL_FLAVOUR=amd64 PACKAGES=image/packages.list ROOT_ZSTD_LEVEL=15 \
    OVERLAY=rootfs-overlay SEED=test SOURCE_DATE_EPOCH=1700000000 ESP_SIZE_MIB=256 \
    SLOT_SIZE_MIB=1024 STATE_SIZE_MIB=64 WATCHDOG_SEC=60 INITRAMFS_MODULES="virtio_blk" \
    CONSOLE=ttyS0 CMDLINE_EXTRA= UPDATE_SERVER=http://127.0.0.1/ CHANNEL=stable \
    POLL_INTERVAL=60 FIRST_CHECK_DELAY=1 POLL_JITTER=0 UPDATE_TRIES=1 REBOOT_STRATEGY=reboot SIGNING_KEY= CACHE="${CACHE:-out/cache}" \
    OUT="$scratch/out" "$@"
}

# expect_error NAME PATTERN [VAR=VALUE...]: the build fails, and says PATTERN.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  mkdir -p "$scratch/out/bin" "$scratch/out/efi"
  cp out/bin/pivot-mkdisk out/bin/pivot-init "$scratch/out/bin/" 2>/dev/null
  cp out/efi/BOOTX64.EFI "$scratch/out/efi/" 2>/dev/null
  local log=$scratch/$name.log
  if base_env "$@" image/build-image >"$log" 2>&1; then
    echo "not ok $name: the build succeeded"
    fail=$((fail + 1))
  elif ! grep -qE "$pattern" "$log"; then
    echo "not ok $name: no message matching /$pattern/; it said:"
    tail -n 5 "$log" | sed 's/^/    /'
    fail=$((fail + 1))
  else
    echo "ok $name: $(grep -E "$pattern" "$log" | head -n 1)"
    pass=$((pass + 1))
  fi
}

printf 'busybox\nno-such-package-pivot\n' >"$scratch/unknown.list"
printf 'busybox\nBad_Name!\n' >"$scratch/badname.list"
printf '# nothing\n' >"$scratch/empty.list"

expect_error unknown-package "unknown package 'no-such-package-pivot'" PACKAGES="$scratch/unknown.list"
expect_error bad-package-name "'Bad_Name!' .* is not a Debian package name" PACKAGES="$scratch/badname.list"
expect_error empty-package-list "names no package" PACKAGES="$scratch/empty.list"
expect_error missing-package-list "package list '/nonexistent.list' does not exist" PACKAGES=/nonexistent.list
expect_error missing-overlay "overlay source '/nonexistent-overlay' does not exist" OVERLAY=/nonexistent-overlay
expect_error bad-version "VERSION='1..x' is not a version" VERSION=1..x
expect_error bad-reboot-strategy "REBOOT_STRATEGY='sometimes'" REBOOT_STRATEGY=sometimes
expect_error root-larger-than-slot "larger than its slot \(SLOT_SIZE_MIB=8\)" SLOT_SIZE_MIB=8
expect_error unreadable-key "SIGNING_KEY='/nonexistent.pem' cannot be read" SIGNING_KEY=/nonexistent.pem
echo "not a key" >"$scratch/bad.pem"
expect_error bad-key "not a private key" SIGNING_KEY="$scratch/bad.pem"
mkdir -p "$scratch/overlay/etc"
echo 'x=@NO_SUCH_SETTING@' >"$scratch/overlay/etc/x.conf.in"
expect_error unknown-template-setting "unknown setting: @NO_SUCH_SETTING@" OVERLAY="$scratch/overlay"
# A missing tool: a PATH without mksquashfs.
mkdir -p "$scratch/path"
for t in bash env sed grep sort cut sha256sum cat tr head tail mkdir cp rm dirname; do
  ln -sf "$(command -v $t)" "$scratch/path/$t"
done
expect_error missing-tool "missing tools; fix with: apt-get install -y .*squashfs-tools" PATH="$scratch/path"

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]

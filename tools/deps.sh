#!/usr/bin/env bash
# Installs the Debian packages a make target needs and that this machine lacks.
#   tools/deps.sh GROUP...      groups: build image qemu efi server test bench
# As root it runs apt-get; otherwise it prints the apt-get line that fixes it and fails.
set -euo pipefail

declare -A GROUP=(
  [build]="build-essential pkg-config libfdisk-dev libblkid-dev libssl-dev libzstd-dev libcurl4-openssl-dev libxml2-dev"
  [image]="mmdebstrap kmod openssl squashfs-tools cryptsetup-bin dosfstools mtools cpio zstd fdisk busybox-static debian-archive-keyring"
  [efi]="gnu-efi binutils"
  [qemu]="qemu-system-x86 qemu-utils qemu-system-common ovmf iproute2 util-linux mtools fdisk python3"
  [server]="libmicrohttpd-dev libsqlite3-dev libpq-dev libjansson-dev postgresql"
  [test]="clang libclang-rt-14-dev python3 fdisk curl openssl tzdata chromium fonts-dejavu-core mtools dosfstools squashfs-tools zstd"
  [bench]="hyperfine wrk nginx-light bc curl zstd mtools dosfstools fdisk python3"
)

all=()
for g in "$@"; do
  [[ -n "${GROUP[$g]+x}" ]] || { echo "deps.sh: unknown group '$g'" >&2; exit 2; }
  all+=(${GROUP[$g]})
done
# One dpkg-query for all: "install ok installed" marks a package that is fully installed.
mapfile -t want < <(dpkg-query -W -f='${Package} ${Status}\n' "${all[@]}" 2>/dev/null |
  awk '$NF == "installed" && $(NF-1) == "ok" { ok[$1] = 1 } END { for (p in ok) print p }' |
  sort | comm -13 - <(printf '%s\n' "${all[@]}" | sort -u))
((${#want[@]})) || exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "missing packages: ${want[*]}" >&2
  echo "fix: sudo apt-get install -y ${want[*]}" >&2
  exit 1
fi
echo "installing: ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale package list makes apt-get fail on packages it has not heard of yet.
apt-get install -y --no-install-recommends "${want[@]}" >/dev/null 2>&1 ||
  { apt-get update -qq && apt-get install -y --no-install-recommends "${want[@]}"; }

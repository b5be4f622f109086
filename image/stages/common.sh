# Shared by the image build stages: messages, checks, stage timing.
# shellcheck shell=bash

die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'image: %s\n' "$*" >&2; }

BUILD_START=$SECONDS
declare -a STAGE_TIMES=()
stage() {
  local name=$1 t0=$SECONDS
  shift
  "$@"
  STAGE_TIMES+=("$name=$((SECONDS - t0))s")
}

# sha256 of its arguments and stdin, shortened: names cache entries.
cache_key() { { printf '%s\n' "$@"; cat; } | sha256sum | cut -c1-16; }

# Builds that share a cache (the QEMU tests build several images at once) fill an entry one at
# a time: cache_lock NAME waits for the lock on it, the entry is checked again after, and
# cache_unlock lets the next builder in (or the build's exit does).
cache_lock() {
  exec {CACHE_LOCK_FD}>"$CACHE/.$1.lock"
  flock "$CACHE_LOCK_FD"
}
cache_unlock() {
  [[ -n ${CACHE_LOCK_FD:-} ]] || return 0
  exec {CACHE_LOCK_FD}>&-
  CACHE_LOCK_FD=
}

# The package list without comments and blanks, one name per line, sorted.
package_names() { sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PACKAGES" | grep -v '^$' | LC_ALL=C sort -u; }

check_config() {
  : "${OUT:?}" "${CACHE:?}" "${VERSION:?}" "${PACKAGES:?}" "${OVERLAY:?}"
  [[ -f $PACKAGES ]] || die "package list '$PACKAGES' does not exist (PACKAGES=...)"
  [[ -n $(package_names) ]] || die "package list '$PACKAGES' names no package"
  local bad
  bad=$(package_names | grep -vE '^[a-z0-9][a-z0-9.+-]+$' | head -n 1 || true)
  [[ -z $bad ]] || die "'$bad' in $PACKAGES is not a Debian package name"
  [[ -d $OVERLAY ]] || die "overlay source '$OVERLAY' does not exist (OVERLAY=...)"
  [[ $VERSION =~ ^[0-9]+(\.[0-9]+)*([-+~][0-9A-Za-z.+~-]+)?$ ]] ||
    die "VERSION='$VERSION' is not a version (digits and dots, such as 1.2.3)"
  [[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH='$SOURCE_DATE_EPOCH' is not a number"
  local v
  for v in ESP_SIZE_MIB SLOT_SIZE_MIB STATE_SIZE_MIB WATCHDOG_SEC POLL_INTERVAL ROOT_ZSTD_LEVEL \
    FIRST_CHECK_DELAY POLL_JITTER UPDATE_TRIES; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v='${!v}' is not a whole number"
  done
  ((ROOT_ZSTD_LEVEL >= 1 && ROOT_ZSTD_LEVEL <= 22)) || die "ROOT_ZSTD_LEVEL=$ROOT_ZSTD_LEVEL: zstd levels are 1 to 22"
  ((ESP_SIZE_MIB >= 64)) || die "ESP_SIZE_MIB=$ESP_SIZE_MIB is too small (at least 64)"
  ((UPDATE_TRIES >= 1 && UPDATE_TRIES <= 15)) || die "UPDATE_TRIES=$UPDATE_TRIES: 1 to 15"
  # The agent's config has the strategy and the window as two keys.
  case $REBOOT_STRATEGY in
    reboot | off) REBOOT_STRATEGY_NAME=$REBOOT_STRATEGY REBOOT_WINDOW_LINE= ;;
    "window "?*) REBOOT_STRATEGY_NAME=window REBOOT_WINDOW_LINE="reboot_window = ${REBOOT_STRATEGY#window }" ;;
    *) die "REBOOT_STRATEGY='$REBOOT_STRATEGY': use reboot, off or 'window <days> <HH:MM> <duration>'" ;;
  esac
  if [[ -n $SIGNING_KEY && ! -r $SIGNING_KEY ]]; then
    die "SIGNING_KEY='$SIGNING_KEY' cannot be read"
  fi
}

# Tool -> Debian package that provides it.
declare -A TOOL_PACKAGE=(
  [mmdebstrap]=mmdebstrap [mksquashfs]=squashfs-tools [veritysetup]=cryptsetup-bin
  [mkfs.vfat]=dosfstools [mcopy]=mtools [mmd]=mtools [cpio]=cpio [zstd]=zstd
  [depmod]=kmod [openssl]=openssl
)
require_tools() {
  local t missing=()
  for t in "${!TOOL_PACKAGE[@]}"; do
    command -v "$t" >/dev/null || missing+=("${TOOL_PACKAGE[$t]}")
  done
  ((${#missing[@]} == 0)) ||
    die "missing tools; fix with: apt-get install -y $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
  local b
  for b in pivot-mkdisk pivot-init; do
    [[ -x $OUT/bin/$b ]] || die "$OUT/bin/$b is not built: run 'make' first"
  done
}

summary() {
  local root_bytes disk_alloc
  root_bytes=$(stat -c %s "$OUT/image/root.img")
  disk_alloc=$(du -k "$OUT/disk.img" | cut -f1)
  note "stages: ${STAGE_TIMES[*]}"
  note "root image $((root_bytes / 1024 / 1024)) MiB (file system + verity), disk $(($(stat -c %s "$OUT/disk.img") / 1024 / 1024)) MiB ($((disk_alloc / 1024)) MiB allocated)"
  note "built $OUT/disk.img version $VERSION in $((SECONDS - BUILD_START))s"
}

source image/stages/rootfs.sh
source image/stages/kernel.sh
source image/stages/root.sh
source image/stages/initramfs.sh
source image/stages/esp.sh
source image/stages/disk.sh

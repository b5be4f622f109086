# Stage root: the read-only root file system (squashfs, zstd) with its dm-verity hash tree,
# and the slot's kernel command line that carries the root hash.
# shellcheck shell=bash

# What of Pivot's runs on the device, from $OUT into /usr: the programs, and the Omaha parser
# they load from ../lib/pivot/ (updater/omaha-module.h).
DEVICE_FILES=(bin/pivot-agent bin/pivotctl lib/pivot/omaha-parser.so)

ensure_signing_key() {
  if [[ -z $SIGNING_KEY ]]; then
    SIGNING_KEY=keys/dev-signing.pem
    if [[ ! -f $SIGNING_KEY ]]; then
      note "key: making a development signing key in keys/ (git-ignored); pass SIGNING_KEY=... for releases"
      mkdir -p keys
      (umask 077 && openssl genpkey -algorithm ed25519 -out "$SIGNING_KEY.tmp") && mv "$SIGNING_KEY.tmp" "$SIGNING_KEY"
    fi
  fi
  openssl pkey -in "$SIGNING_KEY" -pubout -out "$work/update-signing.pub" 2>/dev/null ||
    die "SIGNING_KEY='$SIGNING_KEY' is not a private key openssl can read"
  grep -q 'BEGIN PUBLIC KEY' "$work/update-signing.pub" || die "no public key in $SIGNING_KEY"
  openssl pkey -in "$work/update-signing.pub" -pubin -noout -text 2>/dev/null | grep -q ED25519 ||
    die "SIGNING_KEY='$SIGNING_KEY' is not an Ed25519 key (make one: openssl genpkey -algorithm ed25519)"
}

# Replaces @NAME@ in a template with the value of the setting NAME.
render_template() {
  local src=$1 dst=$2 v
  local -a args=()
  for v in VERSION MIN_VERSION UPDATE_SERVER CHANNEL POLL_INTERVAL FIRST_CHECK_DELAY POLL_JITTER \
    REBOOT_STRATEGY_NAME REBOOT_WINDOW_LINE UPDATE_TRIES WATCHDOG_SEC KERNEL_VERSION; do
    args+=(-e "s|@$v@|${!v//|/\\|}|g")
  done
  # A symlink at dst (absolute ones point at the build host) is replaced, never written through.
  rm -f "$dst"
  sed "${args[@]}" "$src" >"$dst"
  if grep -qE '@[A-Z_]+@' "$dst"; then
    die "template $src uses an unknown setting: $(grep -oE '@[A-Z_]+@' "$dst" | head -n 1)"
  fi
}

prune_rootfs() {
  local st=$1
  # No package manager on the device: its database and caches go; the package list stays
  # as a record of what the image holds.
  mkdir -p "$st/usr/share/pivot"
  if [[ -f $st/var/lib/dpkg/status ]]; then
    awk '/^Package:/{p=$2} /^Version:/{print p, $2}' "$st/var/lib/dpkg/status" | LC_ALL=C sort \
      >"$st/usr/share/pivot/packages.txt"
  fi
  # mmdebstrap copies the build host's resolv.conf and hostname in: not the device's.
  rm -f "$st"/etc/resolv.conf "$st"/etc/hostname "$st"/etc/fstab
  rm -rf "$st"/var/* "$st"/etc/apt "$st"/etc/dpkg "$st"/etc/cron.* "$st"/usr/share/lintian \
    "$st"/usr/share/bug "$st"/usr/share/doc "$st"/usr/share/man "$st"/usr/share/locale
  # /var is STATE's mount point; everything under it lives there.
  mkdir -p "$st/var" "$st/run" "$st/tmp" "$st/proc" "$st/sys" "$st/dev" "$st/root"
}

link_busybox_applets() {
  local st=$1 applet
  [[ -x $st/bin/busybox ]] || die "busybox is not in the root file system: keep it in $PACKAGES"
  while read -r applet; do
    [[ -e $st/$applet || -L $st/$applet ]] && continue
    [[ -d $st/${applet%/*} ]] || mkdir -p "$st/${applet%/*}"
    ln -s /bin/busybox "$st/$applet"
  done < <("$st/bin/busybox" --list-full)
}

# What update-ca-certificates would do at install time: one bundle of the shipped CAs.
make_ca_bundle() {
  local st=$1
  [[ -d $st/usr/share/ca-certificates ]] || return 0
  mkdir -p "$st/etc/ssl/certs"
  rm -f "$st/etc/ssl/certs/ca-certificates.crt"
  find "$st/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z |
    xargs -0 cat >"$st/etc/ssl/certs/ca-certificates.crt"
}

apply_overlay() {
  local st=$1 f rel
  # Copy as root-owned files whatever owns the checkout; templates (*.in) are rendered.
  tar -C "$OVERLAY" --owner=0 --group=0 --numeric-owner --exclude='*.in' -cf - . | tar -C "$st" -xf -
  while IFS= read -r -d '' f; do
    rel=${f#"$OVERLAY"/}
    mkdir -p "$st/$(dirname "$rel")"
    render_template "$f" "$st/${rel%.in}"
    chmod --reference="$f" "$st/${rel%.in}"
  done < <(find "$OVERLAY" -name '*.in' -type f -print0)
}

install_device_programs() {
  local st=$1 f lib mode
  for f in "${DEVICE_FILES[@]}"; do
    [[ -f $OUT/$f ]] || { note "root: $f not built, left out"; continue; }
    mode=0755
    [[ $f == *.so ]] && mode=0644
    install -D -m "$mode" "$OUT/$f" "$st/usr/$f"
    # Every library it links must come from a package in the image.
    for lib in $(readelf -d "$OUT/$f" | sed -nE 's/.*NEEDED.*\[(.*)\].*/\1/p'); do
      compgen -G "$st/usr/lib/x86_64-linux-gnu/$lib" >/dev/null || compgen -G "$st/lib/x86_64-linux-gnu/$lib" >/dev/null ||
        die "$f needs $lib, which no package in $PACKAGES provides"
    done
  done
  install -m 0644 "$work/update-signing.pub" "$st/usr/share/pivot/update-signing.pub"
}

# Derived from the seed: the same inputs make the same hash tree.
verity_salt() { printf '%s/verity' "$SEED" | sha256sum | cut -c1-64; }

build_root_image() {
  local st=$work/rootfs
  rm -rf "$st"
  mkdir -p "$st"
  tar -xf "$ROOTFS_TAR" -C "$st" --numeric-owner --exclude='./dev/*'
  prune_rootfs "$st"
  link_busybox_applets "$st"
  make_ca_bundle "$st"
  apply_overlay "$st"
  install_device_programs "$st"

  # mksquashfs takes only the superblock's time from SOURCE_DATE_EPOCH: the files' own
  # times are set here. Entries are sorted, so the image is a function of the tree.
  find "$st" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

  local img=$work/root.img
  rm -f "$img"
  mksquashfs "$st" "$img" -quiet -noappend -comp zstd -Xcompression-level "$ROOT_ZSTD_LEVEL" \
    -b 256K -all-root -processors "$(nproc)" >/dev/null ||
    die "mksquashfs failed"
  local fs_bytes data_blocks slot_bytes
  fs_bytes=$(stat -c %s "$img")
  data_blocks=$(((fs_bytes + 4095) / 4096))
  truncate -s $((data_blocks * 4096)) "$img"

  local out roothash salt
  salt=$(verity_salt)
  out=$(veritysetup format "$img" "$img" --no-superblock --hash-offset=$((data_blocks * 4096)) \
    --data-block-size=4096 --hash-block-size=4096 --hash=sha256 --salt="$salt") ||
    die "veritysetup format failed"
  roothash=$(sed -nE 's/^Root hash:[[:space:]]+([0-9a-f]+)$/\1/p' <<<"$out")
  [[ -n $roothash ]] || die "veritysetup printed no root hash"

  slot_bytes=$((SLOT_SIZE_MIB * 1024 * 1024))
  (($(stat -c %s "$img") <= slot_bytes)) ||
    die "root image is $(($(stat -c %s "$img") / 1048576)) MiB, larger than its slot (SLOT_SIZE_MIB=$SLOT_SIZE_MIB)"

  ROOT_HASH=$roothash
  # The slot's own kernel arguments. The boot selector adds console, initrd, pivot.slot and
  # pivot.root; panic=10 turns a kernel that cannot go on into a reboot, i.e. a spent try.
  printf '%s\n' "ro panic=10 quiet pivot.version=$VERSION pivot.fstype=squashfs pivot.verity.roothash=$roothash pivot.verity.salt=$salt pivot.verity.datablocks=$data_blocks pivot.verity.hashstart=$data_blocks pivot.watchdog=$WATCHDOG_SEC" \
    >"$work/cmdline"
  note "root: $((fs_bytes / 1024 / 1024)) MiB squashfs, verity root hash ${roothash:0:16}..."
}

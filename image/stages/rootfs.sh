# Stage rootfs: the declared Debian packages, unpacked by mmdebstrap into a tarball.
# shellcheck shell=bash

# Runs mmdebstrap and turns apt's complaint about a name it does not know into one line
# that says which entry of the package list is wrong.
mmdebstrap_or_explain() {
  local what=$1 log=$2
  shift 2
  if ! mmdebstrap "$@" >"$log" 2>&1; then
    local unknown
    unknown=$(grep -oE "Unable to locate package [^ ]+|Package '[^']+' has no installation candidate" "$log" |
      grep -oE "(package |Package ')[^ ']+" | sed -E "s/^(package |Package ')//" | head -n 1 || true)
    [[ -z $unknown ]] || die "unknown package '$unknown' in $what (suite $SUITE)"
    tail -n 20 "$log" >&2
    die "mmdebstrap failed for $what; full log: $log"
  fi
}

build_rootfs_tarball() {
  local key
  key=$(package_names | cache_key rootfs-v1 "$SUITE" "$MIRROR")
  ROOTFS_TAR=$CACHE/rootfs-$key.tar
  [[ -f $ROOTFS_TAR ]] || cache_lock rootfs
  if [[ -f $ROOTFS_TAR ]]; then
    cache_unlock
    note "rootfs: cached ($ROOTFS_TAR)"
    return
  fi
  note "rootfs: unpacking $(package_names | wc -l) packages and their dependencies from $SUITE"
  local includes
  includes=$(package_names | paste -sd, -)
  rm -f "$CACHE"/rootfs-*.part.tar # what an interrupted or failed run left
  # The extract variant unpacks without running maintainer scripts: no package manager and
  # no configuration step end up in the image. Documentation and translations never land.
  mmdebstrap_or_explain "$PACKAGES" "$CACHE/rootfs.log" \
    --variant=extract --include="$includes" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    "$SUITE" "$ROOTFS_TAR.part.tar" "deb $MIRROR $SUITE main"
  mv "$ROOTFS_TAR.part.tar" "$ROOTFS_TAR"
  cache_unlock
}

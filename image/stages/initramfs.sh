# Stage initramfs: pivot-init as /init and the kernel modules the image needs, loaded in
# dependency order. Nothing else: no shell, no busybox, nothing to fall into on failure.
# shellcheck shell=bash

# Prints the module files (paths relative to lib/modules/<version>) for the given module
# names, each after everything it depends on, once each.
resolve_modules() {
  local dep=$KERNEL_DIR/lib/modules/$KERNEL_VERSION/modules.dep
  local builtin=$KERNEL_DIR/lib/modules/$KERNEL_VERSION/modules.builtin
  declare -A seen=()
  local -a order=()
  visit() {
    local path=$1 d
    [[ -n ${seen[$path]:-} ]] && return
    seen[$path]=1
    for d in $(awk -v p="$path:" '$1 == p { $1 = ""; print }' "$dep"); do visit "$d"; done
    order+=("$path")
  }
  local name path
  for name in "$@"; do
    # modules.dep names files with '-' or '_' as the source had it; module names use '_'.
    path=$(awk -F: '{ f = $1; sub(".*/", "", f); sub("\\.ko.*", "", f); gsub("-", "_", f); print f, $1 }' "$dep" |
      awk -v n="${name//-/_}" '$1 == n { print $2; exit }')
    if [[ -z $path ]]; then
      if grep -qE "/${name//_/[-_]}\.ko" "$builtin" 2>/dev/null; then continue; fi
      note "initramfs: kernel $KERNEL_VERSION has no module '$name', left out"
      continue
    fi
    visit "$path"
  done
  printf '%s\n' "${order[@]}"
}

build_initramfs() {
  local modules key
  modules=$(resolve_modules $INITRAMFS_MODULES)
  key=$( (cat "$OUT/bin/pivot-init"; printf '%s\n' "$modules") | cache_key initrd-v1 "$KERNEL_DIR")
  INITRD=$CACHE/initrd-$key.cpio.zst
  [[ -f $INITRD ]] || cache_lock initrd
  if [[ ! -f $INITRD ]]; then
    local dir=$work/initramfs m
    rm -rf "$dir"
    mkdir -p "$dir"/{dev,proc,sys,newroot} "$dir/lib/modules/$KERNEL_VERSION"
    install -m 0755 "$OUT/bin/pivot-init" "$dir/init"
    while read -r m; do
      [[ -n $m ]] || continue
      mkdir -p "$dir/lib/modules/$KERNEL_VERSION/$(dirname "$m")"
      cp "$KERNEL_DIR/lib/modules/$KERNEL_VERSION/$m" "$dir/lib/modules/$KERNEL_VERSION/$m"
    done <<<"$modules"
    printf '%s\n' "$modules" >"$dir/lib/modules/load.list"
    # Fixed times: the initramfs is a function of its inputs alone, so it caches across commits.
    find "$dir" -exec touch -h -d @0 {} +
    (cd "$dir" && find . -mindepth 1 | LC_ALL=C sort |
      cpio --quiet -o -H newc -R 0:0 --reproducible) | zstd -q -19 -T1 >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
  fi
  cache_unlock
  cp "$INITRD" "$work/initrd"
  cp "$KERNEL_IMAGE" "$work/vmlinuz"
  note "initramfs: $(printf '%s\n' "$modules" | grep -c .) modules, $(($(stat -c %s "$work/initrd") / 1024)) KiB"
}

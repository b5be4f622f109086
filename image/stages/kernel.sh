# Stage kernel: Debian's kernel image and modules, with a module index (depmod).
# shellcheck shell=bash

build_kernel_dir() {
  local dir=$1
  mmdebstrap_or_explain "KERNEL_FLAVOUR=$KERNEL_FLAVOUR" "$CACHE/kernel.log" \
    --variant=extract --include="linux-image-$KERNEL_FLAVOUR" \
    "$SUITE" "$dir.tar" "deb $MIRROR $SUITE main"
  mkdir -p "$dir"
  tar -xf "$dir.tar" -C "$dir" --wildcards './boot/vmlinuz-*' './lib/modules/*' ||
    tar -xf "$dir.tar" -C "$dir" --wildcards './boot/vmlinuz-*' './usr/lib/modules/*'
  rm -f "$dir.tar"
  [[ -d $dir/lib/modules ]] || { mkdir -p "$dir/lib" && mv "$dir/usr/lib/modules" "$dir/lib/"; }
  local kver
  kver=$(ls "$dir/lib/modules")
  # The package ships no module index; its postinst would have made one.
  depmod -b "$dir" "$kver"
}

fetch_kernel() {
  local key
  key=$(cache_key kernel-v1 "$KERNEL_FLAVOUR" "$SUITE" "$MIRROR" </dev/null)
  KERNEL_DIR=$CACHE/kernel-$key
  [[ -f $KERNEL_DIR/.done ]] || cache_lock kernel
  if [[ ! -f $KERNEL_DIR/.done ]]; then
    note "kernel: fetching linux-image-$KERNEL_FLAVOUR"
    rm -rf "$KERNEL_DIR"
    build_kernel_dir "$KERNEL_DIR"
    touch "$KERNEL_DIR/.done"
  fi
  cache_unlock
  KERNEL_VERSION=$(ls "$KERNEL_DIR/lib/modules")
  KERNEL_IMAGE=$(ls "$KERNEL_DIR"/boot/vmlinuz-*)
  note "kernel: $KERNEL_VERSION"
}

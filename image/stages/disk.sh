# Stages disk and payload: the GPT disk image and the signed update payload.
# shellcheck shell=bash

build_disk() {
  "$OUT/bin/pivot-mkdisk" --output "$OUT/disk.img.tmp" --seed "$SEED" --esp "$work/esp.img" \
    --root "$work/root.img" --esp-size "$ESP_SIZE_MIB" --slot-size "$SLOT_SIZE_MIB" \
    --state-size "$STATE_SIZE_MIB" || die "pivot-mkdisk failed"
  mv "$OUT/disk.img.tmp" "$OUT/disk.img"
}

build_payload() {
  if [[ ! -x $OUT/bin/pivot-payload ]]; then
    note "payload: pivot-payload not built, no update payload"
    return
  fi
  "$OUT/bin/pivot-payload" create --root "$work/root.img" --kernel "$work/vmlinuz" \
    --initrd "$work/initrd" --cmdline-file "$work/cmdline" --version "$VERSION" \
    --min-version "$MIN_VERSION" --verity-roothash "$ROOT_HASH" --key "$SIGNING_KEY" \
    --out "$OUT/update.payload.tmp" || die "pivot-payload failed"
  mv "$OUT/update.payload.tmp" "$OUT/update.payload"
}

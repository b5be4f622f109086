# Stage esp: the EFI system partition as a vfat image, made with mkfs.vfat and mtools.
# shellcheck shell=bash

# 8 hex digits from the seed: the vfat volume id.
esp_volume_id() { printf '%s/esp' "$SEED" | sha256sum | cut -c1-8; }

build_esp() {
  local esp=$work/esp.img selector=$OUT/efi/BOOTX64.EFI slot
  [[ -f $selector ]] || die "the boot selector $selector is not built: run 'make' first"
  rm -f "$esp"
  # --invariant: mkfs.fat stamps the label entry with the clock otherwise.
  mkfs.vfat --invariant -C -F 32 -n EFI-SYSTEM -i "$(esp_volume_id)" "$esp" $((ESP_SIZE_MIB * 1024)) >/dev/null ||
    die "mkfs.vfat failed"

  # mtools takes file times from the files themselves and honours SOURCE_DATE_EPOCH for
  # the rest: stamp every input first.
  local files=$work/esp-files
  rm -rf "$files"
  mkdir -p "$files"
  printf '%s\n' \
    "# Boot selector defaults; format in bootloader-config/README.md" \
    "console = $CONSOLE" \
    "cmdline_extra = $CMDLINE_EXTRA" >"$files/selector.conf"
  cp "$selector" "$files/BOOTX64.EFI"
  cp "$work/vmlinuz" "$work/initrd" "$work/cmdline" "$files/"
  touch -d "@$SOURCE_DATE_EPOCH" "$files"/*

  export MTOOLS_SKIP_CHECK=1
  mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/pivot ::/pivot/A ::/pivot/B
  mcopy -m -i "$esp" "$files/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -m -i "$esp" "$files/selector.conf" ::/pivot/selector.conf
  for slot in A B; do
    mcopy -m -i "$esp" "$files/vmlinuz" "$files/initrd" "$files/cmdline" "::/pivot/$slot/"
  done
}

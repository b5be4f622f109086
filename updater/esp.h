/* The EFI system partition, read and written with mtools straight on the disk (image file or
 * block device) at the partition's offset: the same code path on a device and on a file, and
 * no mount. Layout (docs/design.md): \pivot\<slot>\vmlinuz, \pivot\<slot>\initrd,
 * \pivot\<slot>\cmdline. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "disk.h"

struct esp {
        char *disk_path;
        char *image;     /* "DISK@@OFFSET", as mtools' -i wants it */
};

int esp_open(const struct disk *d, struct esp *ret);
void esp_done(struct esp *e);

/* Reads a file (path like "/pivot/A/cmdline") into a NUL-terminated buffer of at most max
 * bytes. -ENOENT when it does not exist. */
int esp_read_file(const struct esp *e, const char *path, size_t max, char **ret, size_t *ret_len);

#define ESP_FILES_MAX 8

struct esp_file {
        const char *name;       /* in the slot's directory: "vmlinuz" */
        const char *local_path; /* what to put there */
        const uint8_t *sha256;  /* of local_path, when the caller knows it; NULL: hashed here */
};

/* Installs a slot's boot files: the slot's old files are removed (it cannot boot meanwhile:
 * priority 0), each new one is copied to "<name>.new" in /pivot/<slot>/, the disk is synced,
 * every copy is read back from the disk and compared (SHA-256) with its source, and only then
 * is each renamed to its final name; then the disk is synced again. -ENOSPC when the ESP is
 * full. The first file's folder is the caller's (one install at a time): the copy links the
 * files under their new names in its "esp-links" folder. */
int esp_install_slot_files(const struct esp *e, const char *slot, const struct esp_file *files,
                           size_t n);

/* The value of "key=" in a command line (e.g. "pivot.version"), malloc'd, or NULL. The last
 * one counts, as in the initramfs: the boot selector puts pivot.slot= and pivot.root= after
 * the slot's own command line and selector.conf's cmdline_extra. */
char *cmdline_value(const char *cmdline, const char *key);

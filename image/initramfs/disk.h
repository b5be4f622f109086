#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Waits up to timeout_sec for a partition with this unique GUID to show up, and names the
 * partition (/dev/vda2) and its disk (/dev/vda). */
int disk_find_partuuid(const char *partuuid, unsigned timeout_sec, char *disk, size_t disk_size,
                       char *part, size_t part_size);

/* Finds the partition labelled `label` on `disk`. When it is the last partition and the disk
 * is larger than the GPT says (an image written to a bigger disk), moves the backup GPT to
 * the end of the disk, grows the partition to it and tells the kernel; *grown says so. */
int disk_find_and_grow(const char *disk, const char *label, bool grow, char *part,
                       size_t part_size, bool *grown);

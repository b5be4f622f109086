/* The disk a Pivot system boots from, seen through libfdisk: the GPT partitions that matter
 * (EFI-SYSTEM, the ROOT-<slot> slots) and the slot attribute bits. The same code serves a block
 * device (/dev/vda) and a disk image file (pivotctl --disk out/disk.img).
 *
 * Slot decisions ("what boots next") are lib/slot-policy.h's; this module only reads and
 * writes the bits. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slot-policy.h"

#define DISK_MAX_PARTITIONS 16

struct disk_partition {
        unsigned partno;   /* 1-based, as in /dev/vda2 */
        char name[72];     /* GPT name, ASCII */
        char uuid[40];     /* PARTUUID, lowercase */
        char type[40];     /* type GUID, lowercase */
        uint64_t offset;   /* bytes from the start of the disk */
        uint64_t size;     /* bytes */
        uint64_t attrs;
};

struct disk {
        char *path;         /* the whole disk: a block device or an image file */
        bool block_device;
        unsigned sector_size;
        struct disk_partition parts[DISK_MAX_PARTITIONS];
        size_t n_parts;
        int esp;            /* index into parts, or -1 */
        /* The root slots, in partition order, as lib/slot-policy sees them. */
        struct slot slots[SLOT_MAX];
        int slot_part[SLOT_MAX]; /* index into parts of each slot */
        size_t n_slots;
        int lock_fd;             /* disk_lock() */
        unsigned lock_depth;
};

/* Reads the partition table. -ENOMEDIUM when there is no GPT, -ENOENT if the file is missing. */
int disk_open(const char *path, struct disk **ret);
void disk_free(struct disk *d);
void disk_freep(struct disk **d);

/* Reads the table again (after someone else changed it). On failure, the copy is as before. */
int disk_reload(struct disk *d);

/* The slot named "A", "B", ... or NULL. */
int disk_slot_index(const struct disk *d, const char *name);
const struct disk_partition *disk_slot_partition(const struct disk *d, size_t slot);

/* A BSD lock on the whole disk (as udev and systemd take one): the processes that change slot
 * bits (the agent marking good, pivotctl rolling back, an install) take it around reading the
 * table, deciding and writing, so that no change is decided from a table another is writing,
 * or lost to it. Waits up to a minute (then -EBUSY); nested calls count. disk_update_slots()
 * takes it itself. */
int disk_lock(struct disk *d);
void disk_unlock(struct disk *d);
void disk_unlockp(struct disk **d);

/* Writes new attributes for some slots in one GPT write (libfdisk writes the backup copy,
 * then the primary), then syncs the disk. Only the slot bits (48-56) change; others are kept.
 * On success the in-memory table is updated. */
struct disk_slot_update {
        size_t slot;
        unsigned priority, tries;
        bool successful;
};
int disk_update_slots(struct disk *d, const struct disk_slot_update *u, size_t n);

/* What lib/slot-policy says boots next. -ENOENT if no slot can boot. */
int disk_next_boot(const struct disk *d, struct slot_choice *ret);

/* Finds the whole disk holding the partition with this PARTUUID (libblkid).
 * *ret is e.g. "/dev/vda". */
int disk_find_by_partuuid(const char *partuuid, char **ret);

/* The partition the root file system at root (normally "/") is read from: the device under
 * its dm-verity mapping, or the device itself. *ret_disk is its whole disk ("/dev/vda"),
 * *ret_partno its number. -ENOENT when the root is not on a disk partition. */
int disk_find_running_root(const char *root, char **ret_disk, unsigned *ret_partno);

/* A GUID Partition Table reader and writer with no libc, shared by the UEFI boot selector,
 * the initramfs (find a partition by PARTUUID, grow STATE to the end of a bigger disk) and the
 * host tools.
 *
 * All disk access goes through a struct gpt_io the caller provides, so the same code runs on
 * UEFI BlockIo/DiskIo, on a file descriptor, and on a memory buffer in tests.
 *
 * Reading: the primary copy (header at LBA 1) is used when its header and entry array pass
 * their CRCs and sanity checks; otherwise the backup copy, looked for at the primary header's
 * alternate LBA (if that header was readable), at the last LBA of the disk, and at the last LBA
 * the protective MBR covers (an image written to a larger disk, not yet grown).
 * gpt->primary_valid and gpt->backup_valid say which copies were found good and in step with
 * each other.
 *
 * Writing: the backup copy is written and flushed before the primary, entry array before
 * header, so a power cut after any single sector write leaves at least one valid copy whose
 * contents are either all old or all new. A write also repairs whichever copy was bad.
 *
 * Every function returns 0 (or a documented positive value) on success and a negative
 * errno-style GPT_E* code on failure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Negative errno values, spelled out here because the UEFI build has no errno.h. */
#define GPT_ENOENT (-2)
#define GPT_EIO (-5)
#define GPT_E2BIG (-7)
#define GPT_EINVAL (-22)
#define GPT_ENOSPC (-28)
#define GPT_ERANGE (-34)
#define GPT_EBADMSG (-74)

#define GPT_MIN_SECTOR_SIZE 512u
#define GPT_MAX_SECTOR_SIZE 4096u
/* The standard table (128 entries of 128 bytes) is 16 KiB; anything up to twice that is read. */
#define GPT_ENTRIES_MAX_BYTES (32u * 1024u)
#define GPT_ENTRY_MIN_SIZE 128u
#define GPT_NAME_CHARS 36u
/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" plus the terminating NUL. */
#define GPT_GUID_STRING_SIZE 37u

struct gpt_io {
        void *ctx;
        uint32_t sector_size; /* 512 or 4096 (any power of two in between) */
        uint64_t n_sectors;   /* size of the whole disk in sectors */
        /* bytes is always a whole number of sectors. Return 0 or a negative errno. */
        int (*read)(void *ctx, uint64_t lba, void *buf, size_t bytes);
        int (*write)(void *ctx, uint64_t lba, const void *buf, size_t bytes);
        int (*flush)(void *ctx); /* may be NULL when writes are synchronous */
};

/* A GUID in its on-disk byte order (first three fields little-endian). */
struct gpt_guid {
        uint8_t b[16];
};

/* Initialiser from the textual form's groups: GPT_GUID(0x4F68BCE3, 0xE8CD, 0x4DB1, 0x96E7,
 * 0xFBCAF984B709) is 4f68bce3-e8cd-4db1-96e7-fbcaf984b709. */
#define GPT_GUID(a, b, c, d, e)                                                                    \
        ((struct gpt_guid){{                                                                       \
                (uint8_t)(a), (uint8_t)((a) >> 8), (uint8_t)((a) >> 16), (uint8_t)((a) >> 24),     \
                (uint8_t)(b), (uint8_t)((b) >> 8), (uint8_t)(c), (uint8_t)((c) >> 8),              \
                (uint8_t)((d) >> 8), (uint8_t)(d), (uint8_t)((e) >> 40), (uint8_t)((e) >> 32),     \
                (uint8_t)((e) >> 24), (uint8_t)((e) >> 16), (uint8_t)((e) >> 8), (uint8_t)(e),     \
        }})

#define GPT_TYPE_ESP GPT_GUID(0xC12A7328, 0xF81F, 0x11D2, 0xBA4B, 0x00A0C93EC93Bull)
/* Discoverable Partitions Specification: root file system, x86-64. Pivot's root slots. */
#define GPT_TYPE_ROOT_X86_64 GPT_GUID(0x4F68BCE3, 0xE8CD, 0x4DB1, 0x96E7, 0xFBCAF984B709ull)
#define GPT_TYPE_LINUX_DATA GPT_GUID(0x0FC63DAF, 0x8483, 0x4772, 0x8E79, 0x3D69D8477DE4ull)

/* Header fields in host byte order. */
struct gpt_header {
        uint32_t revision;
        uint32_t header_size;
        uint64_t my_lba;
        uint64_t alternate_lba;
        uint64_t first_usable_lba;
        uint64_t last_usable_lba;
        struct gpt_guid disk_guid;
        uint64_t entries_lba;
        uint32_t n_entries;
        uint32_t entry_size;
        uint32_t entries_crc;
};

struct gpt {
        /* The copy in use, seen as the primary: my_lba 1, entries_lba the primary entry array,
         * alternate_lba the backup header. */
        struct gpt_header hdr;
        uint64_t backup_entries_lba;
        uint32_t sector_size;
        /* Where a moved backup header used to be; cleared on disk by the next gpt_write(). */
        uint64_t stale_backup_lba;
        /* The protective MBR in LBA 0 needs writing (new table) or resizing (disk grew). */
        enum { GPT_PMBR_KEEP, GPT_PMBR_RESIZE, GPT_PMBR_CREATE } pmbr;
        bool primary_valid; /* primary header and entries were good */
        bool backup_valid;  /* backup was good and agrees with the primary */
        /* Bytes past the standard 92-byte header that a larger header_size carries. */
        uint8_t hdr_extra[GPT_MIN_SECTOR_SIZE - 92];
        /* The entry array, n_entries * entry_size bytes, padded to whole sectors. */
        uint8_t entries[GPT_ENTRIES_MAX_BYTES];
        /* One sector of scratch space, so nothing large lives on the (UEFI) stack. */
        uint8_t sector[GPT_MAX_SECTOR_SIZE];
};

/* Reads and validates the table; falls back to the backup copy as described above.
 * -EBADMSG when neither copy is usable, -EIO on read errors, -EINVAL for a bad io. */
int gpt_read(struct gpt *gpt, const struct gpt_io *io);

/* Writes both copies with fresh CRCs, flushing after each: the backup first, or the primary
 * first when only the backup was valid (the copy we read from stays intact until the other one
 * is complete). Afterwards both copies are valid. LBA 0 is written only for a new table (a
 * protective MBR) or after growth (the protective MBR's size). */
int gpt_write(struct gpt *gpt, const struct gpt_io *io);

/* Creates an empty table for a disk of io->n_sectors: n_entries entries of 128 bytes, usable
 * space from first_usable_lba (0 means 1 MiB, the usual 2048 at 512-byte sectors) to the
 * backup entries. Nothing is written until gpt_write(), which also writes a protective MBR. */
int gpt_init_empty(struct gpt *gpt, const struct gpt_io *io, const struct gpt_guid *disk_guid,
                   uint32_t n_entries, uint64_t first_usable_lba);

/* True when either copy needs rewriting. */
static inline bool gpt_needs_repair(const struct gpt *gpt) {
        return !gpt->primary_valid || !gpt->backup_valid;
}

/* When io->n_sectors exceeds the disk the table was made for, moves the backup header and
 * entries to the real end and raises last_usable_lba. If grow_index is >= 0, that entry's last
 * LBA is then extended to the new last usable LBA rounded down to a 1 MiB boundary (never
 * shrunk; -ENOSPC if another partition lies in the way). The change is made in memory: call
 * gpt_write() after. The one exception: a table with a damaged copy is first rewritten in place,
 * because moving the backup while the primary is bad would leave no copy a reader can find.
 * Returns 1 when something changed, 0 when the table already fills the disk (and the partition,
 * if given, already reaches the end), -ERANGE when the disk is smaller than the table. */
int gpt_grow_to_disk_end(struct gpt *gpt, const struct gpt_io *io, int grow_index);

/* Entries: index is 0-based; the partition number (as in /dev/sda2) is index + 1. */
static inline uint32_t gpt_n_entries(const struct gpt *gpt) {
        return gpt->hdr.n_entries;
}
bool gpt_entry_used(const struct gpt *gpt, uint32_t index); /* type GUID is not all zero */
void gpt_entry_type(const struct gpt *gpt, uint32_t index, struct gpt_guid *ret);
void gpt_entry_uuid(const struct gpt *gpt, uint32_t index, struct gpt_guid *ret);
uint64_t gpt_entry_first_lba(const struct gpt *gpt, uint32_t index);
uint64_t gpt_entry_last_lba(const struct gpt *gpt, uint32_t index);
uint64_t gpt_entry_attrs(const struct gpt *gpt, uint32_t index);
/* Copies the name as ASCII (non-ASCII UTF-16 units become '?'); returns its length. */
size_t gpt_entry_name(const struct gpt *gpt, uint32_t index, char *buf, size_t size);
/* Exact comparison of the UTF-16LE name with an ASCII string. */
bool gpt_entry_name_eq(const struct gpt *gpt, uint32_t index, const char *ascii);

int gpt_entry_set_attrs(struct gpt *gpt, uint32_t index, uint64_t attrs);
int gpt_entry_set_last_lba(struct gpt *gpt, uint32_t index, uint64_t last_lba);
/* Fills a free or existing entry; name is ASCII, at most 36 characters. */
int gpt_entry_set(struct gpt *gpt, uint32_t index, const struct gpt_guid *type,
                  const struct gpt_guid *uuid, uint64_t first_lba, uint64_t last_lba,
                  uint64_t attrs, const char *name);

/* Index of the used entry with this unique GUID / name, or -ENOENT. */
int gpt_find_by_uuid(const struct gpt *gpt, const struct gpt_guid *uuid);
int gpt_find_by_name(const struct gpt *gpt, const char *ascii);

/* GUIDs as text, lowercase, in the usual mixed-endian order. */
void gpt_guid_to_string(const struct gpt_guid *guid, char buf[GPT_GUID_STRING_SIZE]);
/* Accepts upper or lower case, with or without surrounding braces. -EINVAL otherwise. */
int gpt_guid_from_string(const char *s, struct gpt_guid *ret);
bool gpt_guid_equal(const struct gpt_guid *a, const struct gpt_guid *b);
bool gpt_guid_is_null(const struct gpt_guid *guid);

/* Slot attribute bits (ChromeOS cgpt / CoreOS gptprio layout). */
#define GPT_ATTR_PRIORITY_SHIFT 48
#define GPT_ATTR_TRIES_SHIFT 52
#define GPT_ATTR_SUCCESSFUL_SHIFT 56
#define GPT_ATTR_PRIORITY_MASK (UINT64_C(15) << GPT_ATTR_PRIORITY_SHIFT)
#define GPT_ATTR_TRIES_MASK (UINT64_C(15) << GPT_ATTR_TRIES_SHIFT)
#define GPT_ATTR_SUCCESSFUL (UINT64_C(1) << GPT_ATTR_SUCCESSFUL_SHIFT)
#define GPT_ATTR_SLOT_MASK (GPT_ATTR_PRIORITY_MASK | GPT_ATTR_TRIES_MASK | GPT_ATTR_SUCCESSFUL)

static inline unsigned gpt_attr_priority(uint64_t attrs) {
        return (unsigned)(attrs >> GPT_ATTR_PRIORITY_SHIFT) & 15u;
}
static inline unsigned gpt_attr_tries(uint64_t attrs) {
        return (unsigned)(attrs >> GPT_ATTR_TRIES_SHIFT) & 15u;
}
static inline bool gpt_attr_successful(uint64_t attrs) {
        return (attrs & GPT_ATTR_SUCCESSFUL) != 0;
}
/* Replaces the slot bits and keeps every other attribute bit as it was. Values above 15 are
 * clamped, not wrapped: priority 16 must not become 0. */
static inline uint64_t gpt_attr_set_slot(uint64_t attrs, unsigned priority, unsigned tries,
                                         bool successful) {
        priority = priority > 15 ? 15 : priority;
        tries = tries > 15 ? 15 : tries;
        attrs &= ~GPT_ATTR_SLOT_MASK;
        return attrs | (uint64_t)priority << GPT_ATTR_PRIORITY_SHIFT |
               (uint64_t)tries << GPT_ATTR_TRIES_SHIFT | (successful ? GPT_ATTR_SUCCESSFUL : 0);
}

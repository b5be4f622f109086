/* Pivot's disk layout in miniature, for the GPT and slot tests, on an 8 MiB disk:
 *   1 EFI-SYSTEM [1, 2) MiB, 2 ROOT-A [2, 4), 3 ROOT-B [4, 6), 4 STATE [6 MiB, end of the usable
 *   space rounded down to 1 MiB). */
#pragma once

#include "gpt.h"
#include "memdisk.h"
#include "test/test.h"

#define FIX_ESP 0
#define FIX_ROOT_A 1
#define FIX_ROOT_B 2
#define FIX_STATE 3

#define FIX_DISK_BYTES (8u << 20)
#define FIX_BIG_DISK_BYTES (16u << 20)

static const struct gpt_guid fix_disk_guid = GPT_GUID(0x11223344, 0x5566, 0x4788, 0x99aa,
                                                      0xbbccddeeff00ull);

static inline struct gpt_guid fix_uuid(unsigned n) {
        return GPT_GUID(0xa0000000u + n, 0x1000 + n, 0x4000 + n, 0x8000 + n, 0x0000c0ffee00ull + n);
}

/* Fills *g for the disk io describes (at least 8 MiB). Slot attributes from the arguments; STATE carries every slot bit set so a test notices
 * if anything reads it as a slot. */
static inline int fixture_layout(struct gpt *g, const struct gpt_io *io, uint32_t n_entries,
                                 uint64_t attrs_a, uint64_t attrs_b) {
        uint64_t mib = (1024u * 1024u) / io->sector_size, end;
        struct gpt_guid u[4] = {fix_uuid(1), fix_uuid(2), fix_uuid(3), fix_uuid(4)};
        int r;

        r = gpt_init_empty(g, io, &fix_disk_guid, n_entries, 0);
        if (r < 0)
                return r;
        end = (g->hdr.last_usable_lba + 1) / mib * mib - 1;
        r = gpt_entry_set(g, FIX_ESP, &GPT_TYPE_ESP, &u[0], mib, 2 * mib - 1, 0, "EFI-SYSTEM");
        if (r == 0)
                r = gpt_entry_set(g, FIX_ROOT_A, &GPT_TYPE_ROOT_X86_64, &u[1], 2 * mib,
                                  4 * mib - 1, attrs_a, "ROOT-A");
        if (r == 0)
                r = gpt_entry_set(g, FIX_ROOT_B, &GPT_TYPE_ROOT_X86_64, &u[2], 4 * mib,
                                  6 * mib - 1, attrs_b, "ROOT-B");
        if (r == 0)
                r = gpt_entry_set(g, FIX_STATE, &GPT_TYPE_LINUX_DATA, &u[3], 6 * mib, end,
                                  GPT_ATTR_SLOT_MASK, "STATE");
        return r;
}

static inline uint64_t slot_attrs(unsigned prio, unsigned tries, bool ok) {
        return gpt_attr_set_slot(0, prio, tries, ok);
}

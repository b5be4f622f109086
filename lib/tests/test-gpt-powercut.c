/* Power cuts during every GPT write the boot path makes. For each k, the disk loses power after
 * its k-th sector write; then the machine "boots again": gpt_read() must succeed and show the
 * table either as it was before the write or as the write meant to leave it, never a mix, and
 * the slot policy must still name a slot to boot. A normal boot (read, spend a try if the policy
 * says so, write) must then leave both copies valid. */
#include "gpt-fixture.h"
#include "slot-policy.h"
#include "util.h"

struct scenario {
        const char *name;
        uint32_t sector_size; /* 0: 512 */
        uint32_t n_entries;   /* 0: 128 */
        uint64_t grow_to; /* bytes; 0: same disk */
        void (*damage)(struct memdisk *d); /* may be NULL */
        /* The change under test, applied to a table just read. */
        int (*change)(struct gpt *g, const struct gpt_io *io);
};

static void damage_primary_header(struct memdisk *d) {
        memdisk_sector(d, 1)[70] ^= 0x10;
}
static void damage_primary_entries(struct memdisk *d) {
        memdisk_sector(d, 2)[130] ^= 0x01;
}
static void damage_backup_header(struct memdisk *d) {
        memdisk_sector(d, d->n_sectors - 1)[0] = 0;
}

/* What the boot selector does for B, freshly updated: spend one try. */
static int spend_try_b(struct gpt *g, const struct gpt_io *io) {
        return gpt_entry_set_attrs(g, FIX_ROOT_B, slot_attrs_spend_try(gpt_entry_attrs(g, FIX_ROOT_B)));
}

/* What it does when B's kernel will not load: mark B bad. */
static int mark_b_bad(struct gpt *g, const struct gpt_io *io) {
        return gpt_entry_set_attrs(g, FIX_ROOT_B, slot_attrs_mark_bad(gpt_entry_attrs(g, FIX_ROOT_B)));
}

/* What the initramfs does on first boot on a bigger disk. */
static int grow_state(struct gpt *g, const struct gpt_io *io) {
        int r = gpt_grow_to_disk_end(g, io, FIX_STATE);
        return r < 0 ? r : 0;
}

/* A snapshot of everything a reader sees, for "old or new" comparisons. */
struct view {
        uint64_t alternate_lba, last_usable_lba;
        uint8_t entries[GPT_ENTRIES_MAX_BYTES];
        size_t entries_len;
};

static void take_view(const struct gpt *g, struct view *v) {
        v->alternate_lba = g->hdr.alternate_lba;
        v->last_usable_lba = g->hdr.last_usable_lba;
        v->entries_len = (size_t)g->hdr.n_entries * g->hdr.entry_size;
        memcpy(v->entries, g->entries, v->entries_len);
}

static bool same_view(const struct gpt *g, const struct view *v) {
        return g->hdr.alternate_lba == v->alternate_lba &&
               g->hdr.last_usable_lba == v->last_usable_lba &&
               (size_t)g->hdr.n_entries * g->hdr.entry_size == v->entries_len &&
               memcmp(g->entries, v->entries, v->entries_len) == 0;
}

/* Runs one scenario for every cut point; returns the number of cut points tried. */
static unsigned run_scenario(const struct scenario *sc_in) {
        struct memdisk base, d;
        _cleanup_free_ struct gpt *g = calloc(1, sizeof(*g));
        _cleanup_free_ struct view *old_v = calloc(1, sizeof(*old_v));
        _cleanup_free_ struct view *new_v = calloc(1, sizeof(*new_v));
        struct gpt_io io;
        unsigned total_writes, k;
        uint64_t n_big;
        struct scenario sc_defaults = *sc_in;
        const struct scenario *sc;

        if (!sc_defaults.sector_size)
                sc_defaults.sector_size = 512;
        if (!sc_defaults.n_entries)
                sc_defaults.n_entries = 128;
        sc = &sc_defaults;

        /* The disk as the image build leaves it: A good, B just updated (prio 2, 2 tries). */
        memdisk_init(&base, sc->sector_size, FIX_DISK_BYTES / sc->sector_size);
        io = memdisk_io(&base);
        CHECK_EQ(fixture_layout(g, &io, sc->n_entries, slot_attrs(1, 0, true),
                                slot_attrs(2, 2, false)),
                 0);
        CHECK_EQ(gpt_write(g, &io), 0);
        n_big = sc->grow_to ? sc->grow_to / sc->sector_size : base.n_sectors;
        if (n_big != base.n_sectors) {
                memdisk_clone(&d, &base, n_big);
                memdisk_free(&base);
                base = d;
        }
        if (sc->damage)
                sc->damage(&base);

        /* The old and new views, from an uninterrupted run on a copy. */
        memdisk_clone(&d, &base, base.n_sectors);
        io = memdisk_io(&d);
        CHECK_EQ(gpt_read(g, &io), 0);
        take_view(g, old_v);
        d.sector_writes = 0;
        CHECK_EQ(sc->change(g, &io), 0); /* may write: growing repairs a damaged copy first */
        take_view(g, new_v);
        CHECK_EQ(gpt_write(g, &io), 0);
        total_writes = d.sector_writes;
        CHECK(total_writes > 2);
        memdisk_free(&d);

        for (k = 0; k <= total_writes; k++) {
                struct slot slots[SLOT_MAX];
                struct slot_choice c;
                int n, r;

                memdisk_clone(&d, &base, base.n_sectors);
                io = memdisk_io(&d);
                if (gpt_read(g, &io) < 0) {
                        test_fail(__FILE__, __LINE__, "%s: setup failed", sc->name);
                        break;
                }
                d.budget = (long)k;
                r = sc->change(g, &io);
                if (r == 0)
                        r = gpt_write(g, &io);
                if ((r == 0) != (k == total_writes))
                        test_fail(__FILE__, __LINE__, "%s k=%u: gpt_write=%d", sc->name, k, r);

                /* Power back on. The firmware sees whatever reached the disk. */
                memdisk_power_on(&d);
                r = gpt_read(g, &io);
                if (r < 0) {
                        test_fail(__FILE__, __LINE__, "%s: cut after %u of %u writes: gpt_read=%d",
                                  sc->name, k, total_writes, r);
                        memdisk_free(&d);
                        continue;
                }
                if (!same_view(g, old_v) && !same_view(g, new_v))
                        test_fail(__FILE__, __LINE__, "%s: cut after %u of %u writes: table is "
                                  "neither old nor new", sc->name, k, total_writes);
                if (k == total_writes && !same_view(g, new_v))
                        test_fail(__FILE__, __LINE__, "%s: complete write not seen", sc->name);

                n = slot_policy_from_gpt(g, slots, SLOT_MAX);
                if (n != 2 || slot_policy_choose(slots, (size_t)n, &c) < 0)
                        test_fail(__FILE__, __LINE__, "%s k=%u: no slot to boot", sc->name, k);

                /* A normal boot now: spend a try if due, write; both copies end up valid. */
                if (n == 2 && c.spend_try) {
                        uint32_t idx = slots[c.index].partno - 1;
                        gpt_entry_set_attrs(g, idx, slot_attrs_spend_try(gpt_entry_attrs(g, idx)));
                }
                r = gpt_write(g, &io);
                if (r == 0)
                        r = gpt_read(g, &io);
                if (r < 0 || !g->primary_valid || !g->backup_valid)
                        test_fail(__FILE__, __LINE__, "%s k=%u: not repaired (r=%d p=%d b=%d)",
                                  sc->name, k, r, g->primary_valid, g->backup_valid);
                memdisk_free(&d);
        }
        memdisk_free(&base);
        return k;
}

#define SCENARIO_TEST(tname, ...)                                                                 \
        TEST(tname) {                                                                              \
                struct scenario sc = {.name = #tname, __VA_ARGS__};                                \
                unsigned n = run_scenario(&sc);                                                    \
                printf("  %s: %u cut points\n", #tname, n);                                        \
                CHECK(n > 2);                                                                      \
        }

SCENARIO_TEST(spend_try, .change = spend_try_b)
SCENARIO_TEST(spend_try_4k_sectors, .sector_size = 4096, .change = spend_try_b)
SCENARIO_TEST(spend_try_small_table, .n_entries = 4, .change = spend_try_b)
SCENARIO_TEST(mark_bad, .change = mark_b_bad)
SCENARIO_TEST(spend_try_primary_header_damaged, .damage = damage_primary_header,
              .change = spend_try_b)
SCENARIO_TEST(spend_try_primary_entries_damaged, .damage = damage_primary_entries,
              .change = spend_try_b)
SCENARIO_TEST(spend_try_backup_damaged, .damage = damage_backup_header, .change = spend_try_b)
SCENARIO_TEST(grow_state, .grow_to = FIX_BIG_DISK_BYTES, .change = grow_state)
SCENARIO_TEST(grow_state_primary_entries_damaged, .grow_to = FIX_BIG_DISK_BYTES,
              .damage = damage_primary_entries, .change = grow_state)
SCENARIO_TEST(grow_state_primary_header_damaged, .grow_to = FIX_BIG_DISK_BYTES,
              .damage = damage_primary_header, .change = grow_state)
SCENARIO_TEST(grow_state_4k_sectors, .sector_size = 4096, .grow_to = FIX_BIG_DISK_BYTES,
              .change = grow_state)

/* An I/O error in the middle of a write, which the caller survives, then - in the same boot,
 * from the same in-memory table - the next write, cut by a power loss at every point. The
 * first failure must leave the in-memory record of which copy is intact true to the disk, so
 * that the second write does not start by overwriting the only good copy: after any cut a
 * table must still be readable and name a slot to boot. (The selector does this: a failed
 * write while spending a try, then marking a kernel bad.) */
TEST(write_error_then_power_cut) {
        struct memdisk base, d;
        _cleanup_free_ struct gpt *g = calloc(1, sizeof(*g));
        struct gpt_io io;
        unsigned total_writes, cases = 0;

        memdisk_init(&base, 512, FIX_DISK_BYTES / 512);
        io = memdisk_io(&base);
        CHECK_EQ(fixture_layout(g, &io, 128, slot_attrs(1, 0, true), slot_attrs(2, 2, false)), 0);
        CHECK_EQ(gpt_write(g, &io), 0);
        /* How many sector writes one change takes (on a copy: B keeps its two tries, so that
         * spending one and then marking B bad are two different tables). */
        memdisk_clone(&d, &base, base.n_sectors);
        io = memdisk_io(&d);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK_EQ(spend_try_b(g, &io), 0);
        CHECK_EQ(gpt_write(g, &io), 0);
        total_writes = d.sector_writes;
        memdisk_free(&d);

        for (unsigned e = 0; e < total_writes; e++) {
                for (unsigned k = 0; k <= total_writes; k++) {
                        struct slot slots[SLOT_MAX];
                        struct slot_choice c;

                        memdisk_clone(&d, &base, base.n_sectors);
                        io = memdisk_io(&d);
                        CHECK_EQ(gpt_read(g, &io), 0);
                        d.fail_at = (long)e;
                        CHECK_EQ(spend_try_b(g, &io), 0);
                        if (gpt_write(g, &io) == 0)
                                test_fail(__FILE__, __LINE__, "error after %u sectors not seen", e);
                        d.budget = (long)k;
                        CHECK_EQ(mark_b_bad(g, &io), 0);
                        (void)gpt_write(g, &io);
                        memdisk_power_on(&d);
                        int r = gpt_read(g, &io);
                        int n = r < 0 ? 0 : slot_policy_from_gpt(g, slots, SLOT_MAX);
                        if (r < 0 || n != 2 || slot_policy_choose(slots, (size_t)n, &c) < 0)
                                test_fail(__FILE__, __LINE__, "error after %u sectors, then power "
                                          "cut after %u: gpt_read=%d, %d slots", e, k, r, n);
                        memdisk_free(&d);
                        cases++;
                }
        }
        memdisk_free(&base);
        printf("  write_error_then_power_cut: %u cases\n", cases);
        CHECK(cases > 4);
}

/* The slot policy, checked exhaustively against a second, independently written statement of
 * the rule in docs/design.md. */
#include "gpt-fixture.h"
#include "slot-policy.h"
#include "util.h"

/* The reference: give each bootable slot one number whose order is the rule's order, and take
 * the largest. Qualifying beats everything, then priority, then the lower partition number.
 * If the largest does not qualify we are in the fallback; if it also has priority 0, every
 * bootable slot has priority 0 and the lowest partition number wins, which the same key already
 * picks (equal priorities, lower partno ranks higher). */
struct expect {
        bool found;
        uint32_t partno;
        bool spend_try;
        bool fallback;
        enum slot_reason reason;
};

static struct expect reference(const struct slot *s, size_t n) {
        struct expect e = {0};
        long best_key = -1;
        const struct slot *best = NULL;

        for (size_t i = 0; i < n; i++) {
                if (!s[i].bootable)
                        continue;
                bool q = s[i].priority != 0 && (s[i].successful || s[i].tries != 0);
                long key = (q ? 1L << 20 : 0) + s[i].priority * 1024L + (1000 - (long)s[i].partno);
                if (key > best_key) {
                        best_key = key;
                        best = &s[i];
                }
        }
        if (!best)
                return e;
        e.found = true;
        e.partno = best->partno;
        if (best_key >= 1L << 20) {
                e.spend_try = !best->successful;
                e.reason = best->successful ? SLOT_REASON_SUCCESSFUL : SLOT_REASON_TRYING;
        } else {
                e.fallback = true;
                e.reason = best->priority ? SLOT_REASON_FALLBACK_PRIORITY : SLOT_REASON_FALLBACK_LOWEST;
        }
        return e;
}

/* Compares one policy answer with the reference; returns false (and reports once) on mismatch. */
static bool agrees(const struct slot *s, size_t n, const char *what) {
        struct slot_choice c;
        struct expect e = reference(s, n);
        int r = slot_policy_choose(s, n, &c);
        bool ok;

        if (!e.found)
                ok = r == SLOT_ENOENT;
        else
                ok = r == 0 && c.index < n && s[c.index].partno == e.partno &&
                     c.spend_try == e.spend_try && c.fallback == e.fallback && c.reason == e.reason;
        if (!ok) {
                char line[256];
                slot_policy_summary(s, n, r == 0 ? &c : NULL, line, sizeof(line));
                test_fail(__FILE__, __LINE__, "%s: %s; expected partno %u%s", what, line,
                          e.found ? e.partno : 0, e.fallback ? " (fallback)" : "");
        }
        return ok;
}

static struct slot mkslot(uint32_t partno, const char *name, unsigned prio, unsigned tries,
                          bool ok, bool bootable) {
        struct slot s = {.partno = partno,
                         .priority = (uint8_t)prio,
                         .tries = (uint8_t)tries,
                         .successful = ok,
                         .bootable = bootable};
        snprintf(s.name, sizeof(s.name), "%s", name);
        return s;
}

/* Every priority, tries and successful value for two slots (2^18 cases), each one through a
 * real GPT: written to a memory disk with gpt_write(), read back with gpt_read(), slots
 * collected by slot_policy_from_gpt() (which must skip the ESP and STATE, whose attributes
 * have every slot bit set), then chosen. */
TEST(exhaustive_two_slots_through_gpt) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = calloc(1, sizeof(*g));
        struct gpt_io io;
        unsigned mismatches = 0;
        unsigned long cases = 0;

        memdisk_init(&d, 512, FIX_DISK_BYTES / 512);
        io = memdisk_io(&d);
        /* A 4-entry table keeps 2^18 write+read round trips fast; the format code is the same. */
        CHECK_EQ(fixture_layout(g, &io, 4, 0, 0), 0);
        CHECK_EQ(gpt_write(g, &io), 0);

        for (unsigned a = 0; a < 32 * 16; a++) {
                for (unsigned b = 0; b < 32 * 16; b++) {
                        unsigned pa = a & 15, ta = (a >> 4) & 15, sa = a >> 8;
                        unsigned pb = b & 15, tb = (b >> 4) & 15, sb = b >> 8;
                        struct slot slots[SLOT_MAX];
                        int n;

                        /* Other attribute bits set too: they must survive and not matter. */
                        gpt_entry_set_attrs(g, FIX_ROOT_A, slot_attrs(pa, ta, sa) | 1);
                        gpt_entry_set_attrs(g, FIX_ROOT_B, slot_attrs(pb, tb, sb) | UINT64_C(1) << 60);
                        if (gpt_write(g, &io) < 0 || gpt_read(g, &io) < 0) {
                                mismatches++;
                                continue;
                        }
                        n = slot_policy_from_gpt(g, slots, SLOT_MAX);
                        if (n != 2 || slots[0].partno != 2 || slots[1].partno != 3 ||
                            slots[0].priority != pa || slots[0].tries != ta ||
                            slots[0].successful != sa || slots[1].priority != pb ||
                            slots[1].tries != tb || slots[1].successful != sb ||
                            strcmp(slots[0].name, "A") || strcmp(slots[1].name, "B")) {
                                if (mismatches++ < 5)
                                        test_fail(__FILE__, __LINE__, "slots from GPT wrong: n=%d", n);
                                continue;
                        }
                        if (!agrees(slots, 2, "gpt") && mismatches++ > 5)
                                goto out;
                        cases++;
                }
        }
out:
        CHECK_EQ(mismatches, 0);
        CHECK_EQ(cases, 262144);
        memdisk_free(&d);
}

/* The same space without the GPT, with every combination of the bootable flags and with the
 * slots given in both array orders (the tie-break is by partition number, not array position). */
TEST(exhaustive_two_slots_bootable_and_order) {
        unsigned long cases = 0;
        bool ok = true;

        for (unsigned a = 0; a < 512 && ok; a++) {
                for (unsigned b = 0; b < 512 && ok; b++) {
                        for (unsigned boot = 0; boot < 4 && ok; boot++) {
                                struct slot s[2] = {
                                        mkslot(2, "A", a & 15, (a >> 4) & 15, a >> 8, boot & 1),
                                        mkslot(3, "B", b & 15, (b >> 4) & 15, b >> 8, boot & 2),
                                };
                                struct slot r[2] = {s[1], s[0]};
                                ok = agrees(s, 2, "a,b") && agrees(r, 2, "b,a");
                                cases++;
                        }
                }
        }
        CHECK(ok);
        CHECK_EQ(cases, 512 * 512 * 4);
}

/* Three slots, a coarser grid, all bootable combinations. */
TEST(three_slots) {
        static const unsigned prios[] = {0, 1, 2, 15}, tries[] = {0, 1, 15};
        bool ok = true;

        for (unsigned i = 0; i < 3 * 24 * 24 * 24 && ok; i++) {
                struct slot s[3];
                unsigned v = i;
                for (unsigned k = 0; k < 3; k++) {
                        unsigned x = v % 24;
                        v /= 24;
                        s[k] = mkslot(2 + k, k == 0 ? "A" : k == 1 ? "B" : "C", prios[x % 4],
                                      tries[(x / 4) % 3], x / 12, true);
                }
                /* v is now 0..2: the number of leading slots marked unbootable. */
                for (unsigned k = 0; k < v; k++)
                        s[k].bootable = false;
                ok = agrees(s, 3, "three");
        }
        CHECK(ok);
}

TEST(named_cases) {
        struct slot s[2];
        struct slot_choice c;
        char line[200];

        /* B updated above A, successful: B, nothing to spend. */
        s[0] = mkslot(2, "A", 1, 0, true, true);
        s[1] = mkslot(3, "B", 2, 0, true, true);
        CHECK_EQ(slot_policy_choose(s, 2, &c), 0);
        CHECK_EQ(c.index, 1);
        CHECK(!c.spend_try && !c.fallback);
        slot_policy_summary(s, 2, &c, line, sizeof(line));
        CHECK_STREQ(line, "A(prio=1 tries=0 ok=1) B(prio=2 tries=0 ok=1) -> B: highest priority, "
                          "successful");

        /* B freshly written: tries 2, not successful. */
        s[1] = mkslot(3, "B", 2, 2, false, true);
        CHECK_EQ(slot_policy_choose(s, 2, &c), 0);
        CHECK_EQ(c.index, 1);
        CHECK(c.spend_try);
        slot_policy_summary(s, 2, &c, line, sizeof(line));
        CHECK_STREQ(line, "A(prio=1 tries=0 ok=1) B(prio=2 tries=2 ok=0) -> B: highest priority, "
                          "trying (tries 2->1)");

        /* B's tries spent: back to A. That is the rollback. */
        s[1].tries = 0;
        CHECK_EQ(slot_policy_choose(s, 2, &c), 0);
        CHECK_EQ(c.index, 0);
        CHECK(!c.spend_try && !c.fallback);

        /* Priority 0 never boots normally, even with tries and successful. */
        s[0] = mkslot(2, "A", 0, 5, true, true);
        s[1] = mkslot(3, "B", 1, 0, true, true);
        CHECK_EQ(slot_policy_choose(s, 2, &c), 0);
        CHECK_EQ(c.index, 1);

        /* Ties go to the lower partition number. */
        s[0] = mkslot(3, "B", 1, 1, false, true);
        s[1] = mkslot(2, "A", 1, 0, true, true);
        CHECK_EQ(slot_policy_choose(s, 2, &c), 0);
        CHECK_EQ(c.index, 1);

        /* Nothing qualifies: the higher priority boots anyway, as a fallback. */
        s[0] = mkslot(2, "A", 1, 0, false, true);
        s[1] = mkslot(3, "B", 2, 0, false, true);
        CHECK_EQ(slot_policy_choose(s, 2, &c), 0);
        CHECK_EQ(c.index, 1);
        CHECK(c.fallback && !c.spend_try);
        CHECK_EQ(c.reason, SLOT_REASON_FALLBACK_PRIORITY);
        slot_policy_summary(s, 2, &c, line, sizeof(line));
        CHECK_STREQ(line, "A(prio=1 tries=0 ok=0) B(prio=2 tries=0 ok=0) -> B: fallback: no slot "
                          "qualifies, highest priority");

        /* Everything at priority 0: the lowest partition number. */
        s[0] = mkslot(3, "B", 0, 3, true, true);
        s[1] = mkslot(2, "A", 0, 0, false, true);
        CHECK_EQ(slot_policy_choose(s, 2, &c), 0);
        CHECK_EQ(c.index, 1);
        CHECK_EQ(c.reason, SLOT_REASON_FALLBACK_LOWEST);

        /* The better slot cannot be loaded: the other one, even if it does not qualify. */
        s[0] = mkslot(2, "A", 1, 0, false, true);
        s[1] = mkslot(3, "B", 2, 0, true, false);
        CHECK_EQ(slot_policy_choose(s, 2, &c), 0);
        CHECK_EQ(c.index, 0);
        CHECK(c.fallback);
        slot_policy_summary(s, 2, &c, line, sizeof(line));
        CHECK_STREQ(line, "A(prio=1 tries=0 ok=0) B(prio=2 tries=0 ok=1 unbootable) -> A: "
                          "fallback: no slot qualifies, highest priority");

        /* Nothing bootable. */
        s[0].bootable = false;
        CHECK_EQ(slot_policy_choose(s, 2, &c), SLOT_ENOENT);
        CHECK_EQ(slot_policy_choose(s, 0, &c), SLOT_ENOENT);
        slot_policy_summary(s, 2, NULL, line, sizeof(line));
        CHECK_STREQ(line, "A(prio=1 tries=0 ok=0 unbootable) B(prio=2 tries=0 ok=1 unbootable) "
                          "-> none: no bootable slot");
}

TEST(summary_truncates) {
        struct slot s[2] = {mkslot(2, "A", 15, 15, true, true), mkslot(3, "B", 1, 0, true, true)};
        struct slot_choice c;
        char small[10];

        CHECK_EQ(slot_policy_choose(s, 2, &c), 0);
        CHECK_EQ(slot_policy_summary(s, 2, &c, small, sizeof(small)), 9);
        CHECK_STREQ(small, "A(prio=15");
        CHECK_EQ(slot_policy_summary(s, 2, &c, small, 0), 0);
}

TEST(attr_updates) {
        uint64_t other = UINT64_C(1) << 0 | UINT64_C(1) << 63;
        uint64_t a = gpt_attr_set_slot(other, 3, 2, false);

        a = slot_attrs_spend_try(a);
        CHECK_EQ(a, gpt_attr_set_slot(other, 3, 1, false));
        a = slot_attrs_spend_try(slot_attrs_spend_try(a));
        CHECK_EQ(a, gpt_attr_set_slot(other, 3, 0, false));
        a = slot_attrs_mark_bad(gpt_attr_set_slot(other, 4, 7, true));
        CHECK_EQ(a, gpt_attr_set_slot(other, 4, 0, false));
}

TEST(slots_from_gpt_names_and_types) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = calloc(1, sizeof(*g));
        struct gpt_io io;
        struct slot slots[SLOT_MAX];
        struct gpt_guid u = fix_uuid(8);
        int n;

        memdisk_init(&d, 512, FIX_DISK_BYTES / 512);
        io = memdisk_io(&d);
        CHECK_EQ(fixture_layout(g, &io, 128, slot_attrs(1, 0, true), slot_attrs(2, 1, false)), 0);
        n = slot_policy_from_gpt(g, slots, SLOT_MAX);
        CHECK_EQ(n, 2);
        CHECK_STREQ(slots[0].name, "A");
        CHECK_EQ(slots[1].tries, 1);
        CHECK_EQ(slot_policy_from_gpt(g, slots, 1), SLOT_E2BIG);

        /* Root type with a name that is not a slot name, or a slot name on another type. */
        static const char *const bad[] = {"ROOT-", "ROOT", "root-A", "ROOT-A/B", "ROOT-A B",
                                          "ROOT-0123456789abcdef"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                CHECK_EQ(gpt_entry_set(g, FIX_ROOT_B, &GPT_TYPE_ROOT_X86_64, &u, 4 * 2048,
                                       6 * 2048 - 1, slot_attrs(9, 9, true), bad[i]),
                         0);
                CHECK_EQ(slot_policy_from_gpt(g, slots, SLOT_MAX), 1);
        }
        CHECK_EQ(gpt_entry_set(g, FIX_ROOT_B, &GPT_TYPE_LINUX_DATA, &u, 4 * 2048, 6 * 2048 - 1,
                               slot_attrs(9, 9, true), "ROOT-B"),
                 0);
        CHECK_EQ(slot_policy_from_gpt(g, slots, SLOT_MAX), 1);
        CHECK_EQ(gpt_entry_set(g, FIX_ROOT_B, &GPT_TYPE_ROOT_X86_64, &u, 4 * 2048, 6 * 2048 - 1,
                               slot_attrs(9, 9, true), "ROOT-0123456789abcde"),
                 0);
        n = slot_policy_from_gpt(g, slots, SLOT_MAX);
        CHECK_EQ(n, 2);
        CHECK_STREQ(slots[1].name, "0123456789abcde");
        memdisk_free(&d);
}

/* GPT reader/writer: round trips, damaged copies, GUID text, agreement with util-linux, growth. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32.h"
#include "gpt-fixture.h"
#include "gpt.h"
#include "util.h"

static struct gpt *gpt_new(void) {
        struct gpt *g = calloc(1, sizeof(*g));
        if (!g)
                abort();
        return g;
}

/* An 8 MiB disk holding the fixture layout, written with gpt_write(). */
static void make_disk(struct memdisk *d, uint32_t ss, uint32_t n_entries) {
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;

        memdisk_init(d, ss, FIX_DISK_BYTES / ss);
        io = memdisk_io(d);
        CHECK_EQ(fixture_layout(g, &io, n_entries, slot_attrs(2, 0, true), slot_attrs(1, 3, false)),
                 0);
        CHECK_EQ(gpt_write(g, &io), 0);
}

/* The protective MBR's 0xEE partition size, or -1 when LBA 0 holds no protective MBR. */
static long long pmbr_size(struct memdisk *d) {
        const uint8_t *m = memdisk_sector(d, 0);
        uint32_t v;
        if (m[510] != 0x55 || m[511] != 0xaa || m[446 + 4] != 0xee)
                return -1;
        memcpy(&v, m + 446 + 12, 4);
        return v;
}

static void check_fixture(const struct gpt *g) {
        struct gpt_guid u, want;
        char name[40];

        CHECK(gpt_entry_used(g, FIX_STATE));
        CHECK(!gpt_entry_used(g, FIX_STATE + 1));
        CHECK(gpt_entry_name_eq(g, FIX_ROOT_A, "ROOT-A"));
        CHECK(gpt_entry_name_eq(g, FIX_ROOT_B, "ROOT-B"));
        CHECK_EQ(gpt_entry_name(g, FIX_ESP, name, sizeof(name)), 10);
        CHECK_STREQ(name, "EFI-SYSTEM");
        gpt_entry_uuid(g, FIX_ROOT_B, &u);
        want = fix_uuid(3);
        CHECK(gpt_guid_equal(&u, &want));
        CHECK_EQ(gpt_attr_priority(gpt_entry_attrs(g, FIX_ROOT_A)), 2);
        CHECK(gpt_attr_successful(gpt_entry_attrs(g, FIX_ROOT_A)));
        CHECK_EQ(gpt_attr_tries(gpt_entry_attrs(g, FIX_ROOT_B)), 3);
        CHECK(gpt_guid_equal(&g->hdr.disk_guid, &fix_disk_guid));
}

TEST(crc32_check_value) {
        /* The CRC-32/ISO-HDLC check value from the catalogue of CRC parameters. */
        CHECK_EQ(crc32_ieee(0, "123456789", 9), 0xcbf43926u);
        CHECK_EQ(crc32_ieee(0, "", 0), 0);
        CHECK_EQ(crc32_ieee(crc32_ieee(0, "1234", 4), "56789", 5), 0xcbf43926u);
}

TEST(round_trip) {
        uint32_t sizes[] = {512, 4096};
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                struct memdisk d;
                _cleanup_free_ struct gpt *g = gpt_new();
                struct gpt_io io;

                make_disk(&d, sizes[i], 128);
                io = memdisk_io(&d);
                CHECK_EQ(gpt_read(g, &io), 0);
                CHECK(g->primary_valid);
                CHECK(g->backup_valid);
                CHECK(!gpt_needs_repair(g));
                CHECK_EQ(g->hdr.alternate_lba, d.n_sectors - 1);
                CHECK_EQ(g->hdr.entries_lba, 2);
                CHECK_EQ(g->hdr.n_entries, 128);
                CHECK_EQ(pmbr_size(&d), d.n_sectors - 1);
                check_fixture(g);
                CHECK_EQ(gpt_find_by_name(g, "STATE"), FIX_STATE);
                CHECK_EQ(gpt_find_by_name(g, "ROOT-"), GPT_ENOENT);
                struct gpt_guid u = fix_uuid(4);
                CHECK_EQ(gpt_find_by_uuid(g, &u), FIX_STATE);
                u = fix_uuid(9);
                CHECK_EQ(gpt_find_by_uuid(g, &u), GPT_ENOENT);
                memdisk_free(&d);
        }
}

TEST(write_changes_attrs_in_both_copies) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;

        make_disk(&d, 512, 128);
        io = memdisk_io(&d);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK_EQ(gpt_entry_set_attrs(g, FIX_ROOT_B, slot_attrs(3, 1, false) | 1), 0);
        CHECK_EQ(gpt_write(g, &io), 0);

        /* Read each copy alone by destroying the other. */
        memset(memdisk_sector(&d, 1), 0, 512);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(!g->primary_valid);
        CHECK_EQ(gpt_entry_attrs(g, FIX_ROOT_B), slot_attrs(3, 1, false) | 1);
        CHECK_EQ(gpt_write(g, &io), 0);
        memset(memdisk_sector(&d, d.n_sectors - 1), 0, 512);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid);
        CHECK(!g->backup_valid);
        CHECK_EQ(gpt_entry_attrs(g, FIX_ROOT_B), slot_attrs(3, 1, false) | 1);
        memdisk_free(&d);
}

TEST(primary_header_crc_bad_uses_backup_and_repairs) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;
        uint8_t orig[512];

        make_disk(&d, 512, 128);
        io = memdisk_io(&d);
        memcpy(orig, memdisk_sector(&d, 1), 512);
        memdisk_sector(&d, 1)[60] ^= 0x40; /* a byte of the disk GUID: only the CRC notices */
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(!g->primary_valid);
        CHECK(g->backup_valid);
        CHECK(gpt_needs_repair(g));
        check_fixture(g);
        CHECK_EQ(g->hdr.entries_lba, 2);
        CHECK_EQ(g->hdr.alternate_lba, d.n_sectors - 1);

        CHECK_EQ(gpt_write(g, &io), 0);
        CHECK(memcmp(orig, memdisk_sector(&d, 1), 512) == 0);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid);
        CHECK(g->backup_valid);
        memdisk_free(&d);
}

TEST(primary_entries_bad_uses_backup) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;

        make_disk(&d, 512, 128);
        io = memdisk_io(&d);
        /* Entry 2 (ROOT-B) lives in the first entries sector; flip its attribute byte. */
        memdisk_sector(&d, 2)[2 * 128 + 48 + 6] ^= 0x0f;
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(!g->primary_valid);
        CHECK(g->backup_valid);
        check_fixture(g);
        CHECK_EQ(gpt_write(g, &io), 0);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid && g->backup_valid);
        check_fixture(g);
        memdisk_free(&d);
}

TEST(backup_bad_is_reported) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;

        make_disk(&d, 512, 128);
        io = memdisk_io(&d);
        memdisk_sector(&d, d.n_sectors - 2)[0] ^= 1; /* last sector of the backup entries */
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid);
        CHECK(!g->backup_valid);
        CHECK(gpt_needs_repair(g));
        /* The entries CRC covers the whole array, unused entries included. */
        CHECK_EQ(gpt_write(g, &io), 0);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid && g->backup_valid);
        memdisk_free(&d);
}

TEST(both_copies_bad_is_an_error) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;

        make_disk(&d, 512, 128);
        io = memdisk_io(&d);
        memdisk_sector(&d, 1)[0] = 'X';
        memdisk_sector(&d, d.n_sectors - 3)[5] ^= 1;
        CHECK_EQ(gpt_read(g, &io), GPT_EBADMSG);

        memdisk_free(&d);
        memdisk_init(&d, 512, 1 << 16); /* a blank disk */
        io = memdisk_io(&d);
        CHECK_EQ(gpt_read(g, &io), GPT_EBADMSG);
        memdisk_free(&d);
}

TEST(primary_names_a_wrong_backup_lba) {
        /* A valid-looking primary header whose entries are damaged and whose alternate LBA
         * points nowhere useful: the backup is still found at the end of the disk. */
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;
        uint8_t *h;

        make_disk(&d, 512, 128);
        io = memdisk_io(&d);
        h = memdisk_sector(&d, 1);
        h[32] -= 7; /* alternate LBA */
        memset(h + 16, 0, 4);
        uint32_t c = crc32_ieee(0, h, 92);
        memcpy(h + 16, &c, 4);
        memdisk_sector(&d, 3)[0] ^= 1;
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(!g->primary_valid);
        CHECK_EQ(g->hdr.alternate_lba, d.n_sectors - 1);
        check_fixture(g);
        memdisk_free(&d);
}

TEST(rejects_oversized_entry_array) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;
        uint8_t *h;

        make_disk(&d, 512, 128);
        io = memdisk_io(&d);
        /* Claim 512 entries (64 KiB) in both headers, with correct header CRCs. */
        uint64_t lbas[] = {1, d.n_sectors - 1};
        for (size_t i = 0; i < 2; i++) {
                h = memdisk_sector(&d, lbas[i]);
                h[81] = 2; /* n_entries = 0x200 */
                memset(h + 16, 0, 4);
                uint32_t c = crc32_ieee(0, h, 92);
                memcpy(h + 16, &c, 4);
        }
        CHECK_EQ(gpt_read(g, &io), GPT_EBADMSG);

        CHECK_EQ(gpt_init_empty(g, &io, &fix_disk_guid, 257, 0), GPT_E2BIG);
        CHECK_EQ(gpt_init_empty(g, &io, &fix_disk_guid, 256, 0), 0);
        g->hdr.n_entries = 512;
        CHECK_EQ(gpt_write(g, &io), GPT_E2BIG);
        memdisk_free(&d);
}

TEST(small_entry_table) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;

        make_disk(&d, 512, 4);
        io = memdisk_io(&d);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid && g->backup_valid);
        CHECK_EQ(g->hdr.n_entries, 4);
        CHECK_EQ(g->backup_entries_lba, d.n_sectors - 2);
        check_fixture(g);
        memdisk_free(&d);
}

TEST(entry_edits_are_checked) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;
        struct gpt_guid u = fix_uuid(7);

        make_disk(&d, 512, 128);
        io = memdisk_io(&d);
        CHECK_EQ(gpt_read(g, &io), 0);
        /* Overlaps ROOT-A. */
        CHECK_EQ(gpt_entry_set(g, 9, &GPT_TYPE_LINUX_DATA, &u, 5000, 5100, 0, "X"), GPT_ENOSPC);
        CHECK_EQ(gpt_entry_set(g, 9, &GPT_TYPE_LINUX_DATA, &u, 0, 100, 0, "X"), GPT_ERANGE);
        CHECK_EQ(gpt_entry_set(g, 128, &GPT_TYPE_LINUX_DATA, &u, 0, 100, 0, "X"), GPT_ERANGE);
        CHECK_EQ(gpt_entry_set(g, FIX_ROOT_A, &GPT_TYPE_ROOT_X86_64, &u, 4096, 4096 + 100, 0,
                               "123456789012345678901234567890123456"),
                 0);
        CHECK(gpt_entry_name_eq(g, FIX_ROOT_A, "123456789012345678901234567890123456"));
        CHECK(!gpt_entry_name_eq(g, FIX_ROOT_A, "1234567890123456789012345678901234567"));
        CHECK(!gpt_entry_name_eq(g, FIX_ROOT_A, "12345678901234567890123456789012345"));
        CHECK_EQ(gpt_entry_set(g, FIX_ROOT_A, &GPT_TYPE_ROOT_X86_64, &u, 4096, 4096 + 100, 0,
                               "1234567890123456789012345678901234567"),
                 GPT_EINVAL);
        CHECK_EQ(gpt_entry_set_last_lba(g, FIX_ROOT_A, 4 * 2048), GPT_ENOSPC); /* into ROOT-B */
        CHECK_EQ(gpt_entry_set_attrs(g, 128, 0), GPT_ERANGE);
        CHECK_EQ(gpt_entry_attrs(g, 500), 0);
        memdisk_free(&d);
}

TEST(attribute_helpers) {
        uint64_t a = UINT64_C(1) << 60 | 1; /* bits that are not the slot's */

        a = gpt_attr_set_slot(a, 2, 3, true);
        CHECK_EQ(a, (UINT64_C(1) << 60) | 1 | UINT64_C(2) << 48 | UINT64_C(3) << 52 |
                            UINT64_C(1) << 56);
        CHECK_EQ(gpt_attr_priority(a), 2);
        CHECK_EQ(gpt_attr_tries(a), 3);
        CHECK(gpt_attr_successful(a));
        a = gpt_attr_set_slot(a, 99, 16, false);
        CHECK_EQ(gpt_attr_priority(a), 15);
        CHECK_EQ(gpt_attr_tries(a), 15);
        CHECK(!gpt_attr_successful(a));
        CHECK_EQ(a & ~GPT_ATTR_SLOT_MASK, (UINT64_C(1) << 60) | 1);
}

TEST(guid_text) {
        struct gpt_guid g, h;
        char s[GPT_GUID_STRING_SIZE];

        gpt_guid_to_string(&GPT_TYPE_ROOT_X86_64, s);
        CHECK_STREQ(s, "4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
        gpt_guid_to_string(&GPT_TYPE_ESP, s);
        CHECK_STREQ(s, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        /* The on-disk bytes of the ESP type, as the UEFI specification lists them. */
        static const uint8_t esp_disk[16] = {0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11,
                                             0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b};
        CHECK(memcmp(GPT_TYPE_ESP.b, esp_disk, 16) == 0);

        CHECK_EQ(gpt_guid_from_string("0FC63DAF-8483-4772-8E79-3D69D8477DE4", &g), 0);
        CHECK(gpt_guid_equal(&g, &GPT_TYPE_LINUX_DATA));
        CHECK_EQ(gpt_guid_from_string("{0fc63daf-8483-4772-8e79-3d69d8477de4}", &h), 0);
        CHECK(gpt_guid_equal(&g, &h));
        gpt_guid_to_string(&g, s);
        CHECK_STREQ(s, "0fc63daf-8483-4772-8e79-3d69d8477de4");

        CHECK_EQ(gpt_guid_from_string("0fc63daf-8483-4772-8e79-3d69d8477de", &g), GPT_EINVAL);
        CHECK_EQ(gpt_guid_from_string("0fc63daf-8483-4772-8e79-3d69d8477de44", &g), GPT_EINVAL);
        CHECK_EQ(gpt_guid_from_string("0fc63daf84834772-8e79-3d69d8477de4", &g), GPT_EINVAL);
        CHECK_EQ(gpt_guid_from_string("{0fc63daf-8483-4772-8e79-3d69d8477de4", &g), GPT_EINVAL);
        CHECK_EQ(gpt_guid_from_string("0fc63daf-8483-4772-8e79-3d69d8477dg4", &g), GPT_EINVAL);
        CHECK_EQ(gpt_guid_from_string("", &g), GPT_EINVAL);
        CHECK(gpt_guid_is_null(&(struct gpt_guid){{0}}));
}

/* --- agreement with util-linux, on a real image file --- */

struct filedisk {
        int fd;
        uint32_t ss;
};

static int file_read(void *ctx, uint64_t lba, void *buf, size_t bytes) {
        struct filedisk *f = ctx;
        return pread(f->fd, buf, bytes, (off_t)(lba * f->ss)) == (ssize_t)bytes ? 0 : -EIO;
}
static int file_write(void *ctx, uint64_t lba, const void *buf, size_t bytes) {
        struct filedisk *f = ctx;
        return pwrite(f->fd, buf, bytes, (off_t)(lba * f->ss)) == (ssize_t)bytes ? 0 : -EIO;
}
static int file_flush(void *ctx) {
        struct filedisk *f = ctx;
        return fsync(f->fd) == 0 ? 0 : -EIO;
}

/* Runs a shell command and returns its first output line without the newline, or "". */
static void run_line(const char *cmd, char *out, size_t size) {
        FILE *p = popen(cmd, "r");
        out[0] = '\0';
        if (!p)
                return;
        if (fgets(out, (int)size, p))
                out[strcspn(out, "\n")] = '\0';
        pclose(p);
}

static void lowercase(char *s) {
        for (; *s; s++)
                if (*s >= 'A' && *s <= 'Z')
                        *s = (char)(*s - 'A' + 'a');
}

static bool have_sfdisk(void) {
        return system("sfdisk --version >/dev/null 2>&1") == 0;
}

TEST(agrees_with_sfdisk_and_blkid) {
        char img[] = "/tmp/pivot-test-gpt-XXXXXX", cmd[512], line[256], s[GPT_GUID_STRING_SIZE];
        _cleanup_free_ struct gpt *g = gpt_new();
        struct filedisk f;
        struct gpt_io io;
        int fd;

        if (!have_sfdisk()) {
                printf("  (sfdisk not installed: install fdisk to run this check)\n");
                return;
        }
        fd = mkstemp(img);
        CHECK(fd >= 0);
        if (fd < 0)
                return;
        CHECK(ftruncate(fd, 64 << 20) == 0);
        /* sfdisk chooses the GUIDs, so the expected text comes from util-linux, not from us. */
        snprintf(cmd, sizeof(cmd),
                 "printf '%%s\\n' 'label: gpt' "
                 "'size=4MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=EFI-SYSTEM' "
                 "'size=16MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=ROOT-A, "
                 "attrs=\"GUID:49,56\"' "
                 "'size=16MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=ROOT-B, "
                 "attrs=\"GUID:48,49,53\"' "
                 "'type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=STATE' "
                 "| sfdisk -q %s >/dev/null 2>&1",
                 img);
        CHECK_EQ(system(cmd), 0);

        f = (struct filedisk){fd, 512};
        io = (struct gpt_io){&f, 512, (64u << 20) / 512, file_read, file_write, file_flush};
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid && g->backup_valid);

        snprintf(cmd, sizeof(cmd), "blkid -p -s PTUUID -o value %s", img);
        run_line(cmd, line, sizeof(line));
        gpt_guid_to_string(&g->hdr.disk_guid, s);
        CHECK_STREQ(s, line);

        for (uint32_t i = 0; i < 4; i++) {
                struct gpt_guid u;
                snprintf(cmd, sizeof(cmd), "sfdisk --part-uuid %s %u", img, i + 1);
                run_line(cmd, line, sizeof(line));
                lowercase(line);
                gpt_entry_uuid(g, i, &u);
                gpt_guid_to_string(&u, s);
                CHECK_STREQ(s, line);
                snprintf(cmd, sizeof(cmd), "sfdisk --part-type %s %u", img, i + 1);
                run_line(cmd, line, sizeof(line));
                lowercase(line);
                gpt_entry_type(g, i, &u);
                gpt_guid_to_string(&u, s);
                CHECK_STREQ(s, line);
        }
        CHECK(gpt_entry_name_eq(g, 1, "ROOT-A"));
        CHECK_EQ(gpt_attr_priority(gpt_entry_attrs(g, 1)), 2);
        CHECK_EQ(gpt_attr_tries(gpt_entry_attrs(g, 1)), 0);
        CHECK(gpt_attr_successful(gpt_entry_attrs(g, 1)));
        CHECK_EQ(gpt_attr_priority(gpt_entry_attrs(g, 2)), 3);
        CHECK_EQ(gpt_attr_tries(gpt_entry_attrs(g, 2)), 2);
        CHECK(!gpt_attr_successful(gpt_entry_attrs(g, 2)));

        /* Now we write; util-linux must read it back and find nothing to complain about. */
        CHECK_EQ(gpt_entry_set_attrs(g, 2, gpt_attr_set_slot(gpt_entry_attrs(g, 2), 3, 1, true)), 0);
        CHECK_EQ(gpt_write(g, &io), 0);
        snprintf(cmd, sizeof(cmd), "sfdisk --part-attrs %s 3", img);
        run_line(cmd, line, sizeof(line));
        CHECK_STREQ(line, "GUID:48,49,52,56");
        snprintf(cmd, sizeof(cmd), "sfdisk --verify %s 2>&1 | grep -qi 'no errors detected'", img);
        CHECK_EQ(system(cmd), 0);

        /* Grow the image file by 32 MiB and STATE with it; sfdisk must see the new layout. */
        CHECK(ftruncate(fd, 96 << 20) == 0);
        io.n_sectors = (96u << 20) / 512;
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK_EQ(gpt_grow_to_disk_end(g, &io, 3), 1);
        CHECK_EQ(gpt_write(g, &io), 0);
        snprintf(cmd, sizeof(cmd), "sfdisk --verify %s 2>&1 | grep -qi 'no errors detected'", img);
        CHECK_EQ(system(cmd), 0);
        snprintf(cmd, sizeof(cmd), "sfdisk -l -o Device,End %s 2>&1 | tail -n 1 | awk '{print $2}'",
                 img);
        run_line(cmd, line, sizeof(line));
        CHECK_EQ(strtoull(line, NULL, 10), (96u << 20) / 512 - 2048 - 1);

        close(fd);
        unlink(img);
}

/* --- growth --- */

TEST(grow_to_bigger_disk) {
        uint32_t sizes[] = {512, 4096};
        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                uint32_t ss = sizes[k];
                struct memdisk small, big;
                _cleanup_free_ struct gpt *g = gpt_new();
                struct gpt_io io;
                uint64_t old_alt, mib = (1u << 20) / ss, old_state_end;

                make_disk(&small, ss, 128);
                memdisk_clone(&big, &small, FIX_BIG_DISK_BYTES / ss);
                io = memdisk_io(&big);
                CHECK_EQ(gpt_read(g, &io), 0);
                /* The old backup is where the image ended, and it is valid. */
                CHECK(g->primary_valid && g->backup_valid);
                old_alt = g->hdr.alternate_lba;
                CHECK_EQ(old_alt, small.n_sectors - 1);
                CHECK_EQ(pmbr_size(&big), small.n_sectors - 1);
                old_state_end = gpt_entry_last_lba(g, FIX_STATE);

                CHECK_EQ(gpt_grow_to_disk_end(g, &io, FIX_STATE), 1);
                CHECK_EQ(g->hdr.alternate_lba, big.n_sectors - 1);
                CHECK_EQ(g->hdr.last_usable_lba, big.n_sectors - 1 - (16384 / ss) - 1);
                CHECK_EQ(gpt_entry_last_lba(g, FIX_STATE), (g->hdr.last_usable_lba + 1) / mib * mib - 1);
                CHECK(gpt_entry_last_lba(g, FIX_STATE) > old_state_end);
                CHECK_EQ((gpt_entry_last_lba(g, FIX_STATE) + 1) % mib, 0);
                CHECK_EQ(gpt_write(g, &io), 0);

                CHECK_EQ(pmbr_size(&big), big.n_sectors - 1);
                /* The stale header at the old end is gone; the new table reads back whole. */
                CHECK(memcmp(memdisk_sector(&big, old_alt), "EFI PART", 8) != 0);
                CHECK_EQ(gpt_read(g, &io), 0);
                CHECK(g->primary_valid && g->backup_valid);
                CHECK_EQ(g->hdr.alternate_lba, big.n_sectors - 1);
                check_fixture(g);
                /* Backup alone is good too. */
                memdisk_sector(&big, 1)[0] ^= 1;
                CHECK_EQ(gpt_read(g, &io), 0);
                CHECK(!g->primary_valid);
                CHECK_EQ(gpt_entry_last_lba(g, FIX_STATE), (g->hdr.last_usable_lba + 1) / mib * mib - 1);
                CHECK_EQ(gpt_write(g, &io), 0);

                /* Nothing left to do. */
                CHECK_EQ(gpt_read(g, &io), 0);
                CHECK_EQ(gpt_grow_to_disk_end(g, &io, FIX_STATE), 0);
                CHECK_EQ(gpt_grow_to_disk_end(g, &io, -1), 0);

                /* A smaller disk is refused. */
                io.n_sectors = big.n_sectors - 1;
                CHECK_EQ(gpt_grow_to_disk_end(g, &io, FIX_STATE), GPT_ERANGE);

                memdisk_free(&small);
                memdisk_free(&big);
        }
}

TEST(grow_table_only_and_blocked_partition) {
        struct memdisk small, big;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;
        uint64_t a_end;

        make_disk(&small, 512, 128);
        memdisk_clone(&big, &small, FIX_BIG_DISK_BYTES / 512);
        io = memdisk_io(&big);
        CHECK_EQ(gpt_read(g, &io), 0);
        a_end = gpt_entry_last_lba(g, FIX_ROOT_A);
        /* ROOT-A cannot grow: ROOT-B is in the way. Nothing is written by the failure. */
        CHECK_EQ(gpt_grow_to_disk_end(g, &io, FIX_ROOT_A), GPT_ENOSPC);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK_EQ(gpt_grow_to_disk_end(g, &io, -1), 1);
        CHECK_EQ(gpt_entry_last_lba(g, FIX_ROOT_A), a_end);
        CHECK_EQ(gpt_write(g, &io), 0);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid && g->backup_valid);
        CHECK_EQ(g->hdr.alternate_lba, big.n_sectors - 1);
        /* STATE can still take the space later. */
        CHECK_EQ(gpt_grow_to_disk_end(g, &io, FIX_STATE), 1);
        CHECK_EQ(gpt_grow_to_disk_end(g, &io, 7), GPT_ERANGE); /* unused entry */
        memdisk_free(&small);
        memdisk_free(&big);
}

TEST(bigger_disk_damaged_primary_finds_backup_via_pmbr) {
        /* The image on a larger disk, before first boot grew it: the backup is not at the end.
         * With the primary header gone, the protective MBR says where the image ended. */
        struct memdisk small, big;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;

        make_disk(&small, 512, 128);
        memdisk_clone(&big, &small, FIX_BIG_DISK_BYTES / 512);
        memset(memdisk_sector(&big, 1), 0, 512);
        io = memdisk_io(&big);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(!g->primary_valid && g->backup_valid);
        CHECK_EQ(g->hdr.alternate_lba, small.n_sectors - 1);
        check_fixture(g);
        CHECK_EQ(gpt_grow_to_disk_end(g, &io, FIX_STATE), 1);
        CHECK_EQ(gpt_write(g, &io), 0);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid && g->backup_valid);
        CHECK_EQ(g->hdr.alternate_lba, big.n_sectors - 1);

        /* Without a protective MBR there is nowhere else to look. */
        memdisk_free(&big);
        memdisk_clone(&big, &small, FIX_BIG_DISK_BYTES / 512);
        memset(memdisk_sector(&big, 1), 0, 512);
        memset(memdisk_sector(&big, 0), 0, 512);
        io = memdisk_io(&big);
        CHECK_EQ(gpt_read(g, &io), GPT_EBADMSG);
        memdisk_free(&small);
        memdisk_free(&big);
}

TEST(grow_with_damaged_primary_repairs_first) {
        struct memdisk small, big;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;

        make_disk(&small, 512, 128);
        memdisk_clone(&big, &small, FIX_BIG_DISK_BYTES / 512);
        memdisk_sector(&big, 2)[0] ^= 1; /* primary entries */
        io = memdisk_io(&big);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(!g->primary_valid);
        CHECK_EQ(gpt_grow_to_disk_end(g, &io, FIX_STATE), 1);
        CHECK_EQ(gpt_write(g, &io), 0);
        CHECK_EQ(gpt_read(g, &io), 0);
        CHECK(g->primary_valid && g->backup_valid);
        CHECK_EQ(g->hdr.alternate_lba, big.n_sectors - 1);
        check_fixture(g);
        memdisk_free(&small);
        memdisk_free(&big);
}

TEST(io_errors) {
        struct memdisk d;
        _cleanup_free_ struct gpt *g = gpt_new();
        struct gpt_io io;

        make_disk(&d, 512, 128);
        io = memdisk_io(&d);
        CHECK_EQ(gpt_read(g, &io), 0);
        d.dead = true;
        CHECK_EQ(gpt_write(g, &io), -EIO);
        io.sector_size = 1000;
        CHECK_EQ(gpt_read(g, &io), GPT_EINVAL);
        io.sector_size = 256;
        CHECK_EQ(gpt_read(g, &io), GPT_EINVAL);
        io = memdisk_io(&d);
        io.read = NULL;
        CHECK_EQ(gpt_read(g, &io), GPT_EINVAL);
        memdisk_free(&d);
}

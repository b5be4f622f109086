/* Tests for lib/payload.c: versions, the manifest decoder, keys and signatures, and whole
 * payload files written and read back. */
#include "payload.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test/test.h"
#include "util.h"

#define ROOTHASH "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char dir[] = "/tmp/test-payload.XXXXXX";
static bool dir_made;

static const char *path(const char *name) {
        static char buf[256][256]; /* a ring: names stay valid for 256 calls */
        static unsigned i;
        if (!dir_made) {
                if (!mkdtemp(dir))
                        abort();
                dir_made = true;
        }
        char *b = buf[i++ % 256];
        snprintf(b, sizeof(buf[0]), "%s/%s", dir, name);
        return b;
}

__attribute__((destructor)) static void cleanup_dir(void) {
        if (dir_made) {
                char cmd[300];
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
                if (system(cmd) != 0)
                        fprintf(stderr, "could not remove %s\n", dir);
        }
}

/* Writes size bytes: a mix of text-like runs and pseudo-random bytes, reproducibly. */
static void write_file(const char *p, size_t size, unsigned seed) {
        FILE *f = fopen(p, "we");
        uint32_t x = seed * 2654435761u + 1;
        for (size_t i = 0; i < size; i++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                fputc((i / 4096) % 3 == 0 ? (int)(x & 0xff) : "pivot update "[i % 13], f);
        }
        fclose(f);
}

static void write_text(const char *p, const char *text) {
        FILE *f = fopen(p, "we");
        fputs(text, f);
        fclose(f);
}

static size_t file_size(const char *p) {
        struct stat st;
        return stat(p, &st) == 0 ? (size_t)st.st_size : 0;
}

static uint8_t *read_file(const char *p, size_t *ret_size) {
        size_t n = file_size(p);
        uint8_t *buf = malloc(n + 1);
        FILE *f = fopen(p, "re");
        if (!f || fread(buf, 1, n, f) != n)
                abort();
        fclose(f);
        *ret_size = n;
        return buf;
}

static void write_bytes(const char *p, const void *buf, size_t n) {
        FILE *f = fopen(p, "we");
        fwrite(buf, 1, n, f);
        fclose(f);
}

static struct payload_key *key_a, *key_b, *pub_a, *pub_b;

static void setup_keys(void) {
        if (key_a)
                return;
        unlink(path("a.pem")), unlink(path("a.pub")), unlink(path("b.pem")), unlink(path("b.pub"));
        if (payload_keygen(path("a.pem"), path("a.pub")) < 0 ||
            payload_keygen(path("b.pem"), path("b.pub")) < 0 ||
            payload_key_load_private(path("a.pem"), &key_a) < 0 ||
            payload_key_load_private(path("b.pem"), &key_b) < 0 ||
            payload_key_load_public(path("a.pub"), &pub_a) < 0 ||
            payload_key_load_public(path("b.pub"), &pub_b) < 0)
                abort();
}

__attribute__((destructor)) static void free_keys(void) {
        payload_key_free(key_a), payload_key_free(key_b);
        payload_key_free(pub_a), payload_key_free(pub_b);
}

/* A payload with a root of root_size bytes and 64 KiB chunks, signed with key_a. */
static int make_payload(const char *out, size_t root_size, const char *version) {
        setup_keys();
        write_file(path("root.img"), root_size, 1);
        write_file(path("vmlinuz"), 100000, 2);
        write_file(path("initrd"), 65536, 3);
        struct payload_create_params p = {
                .image_paths = {path("root.img"), path("vmlinuz"), path("initrd")},
                .version = version,
                .min_version = "1.0.0",
                .cmdline = "console=ttyS0 pivot.verity.roothash=" ROOTHASH "\n",
                .chunk_size = 64 * 1024,
                .level = 3,
                .threads = 3,
                .key = key_a,
                .out_path = out,
                .quiet = true,
        };
        return payload_create(&p);
}

TEST(version_compare) {
        CHECK(version_compare("1.2.3", "1.2.3") == 0);
        CHECK(version_compare("1.2", "1.2.0") == 0);
        CHECK(version_compare("1.2.3", "1.2.10") < 0);
        CHECK(version_compare("3815.2.0", "3760.2.0") > 0);
        CHECK(version_compare("1.2.3-rc1", "1.2.3") < 0);
        CHECK(version_compare("1.2.3", "1.2.3-rc1") > 0);
        CHECK(version_compare("1.2.3-rc.2", "1.2.3-rc.10") < 0);
        CHECK(version_compare("1.2.3-alpha", "1.2.3-alpha.1") < 0);
        CHECK(version_compare("1.2.3-1", "1.2.3-alpha") < 0);
        CHECK(version_compare("1.2.3+build5", "1.2.3+build7") == 0);
        CHECK(version_compare("010.0", "10.0") == 0);
        CHECK(version_compare("0.0.0", "0.0.1") < 0);
        /* Release components that are not plain numbers: by their number first, '~' before
         * the end (Debian's order), and one with no number after every number. Each list is
         * in order, and every pair in it compares that way. */
        static const char *const ordered[] = {"1.2.3~rc1", "1.2.3~rc2", "1.2.3~rc10", "1.2.3",
                                              "1.2.3a", "1.2.3b2", "1.2.3b10", "1.2.10",
                                              "1.2.10.1", "1.2.x", "1.3~", "1.3"};
        for (size_t i = 0; i < sizeof(ordered) / sizeof(ordered[0]); i++)
                for (size_t j = 0; j < sizeof(ordered) / sizeof(ordered[0]); j++) {
                        int r = version_compare(ordered[i], ordered[j]), want = i < j ? -1 : i > j;
                        if ((r > 0) - (r < 0) != want)
                                test_fail(__FILE__, __LINE__, "%s vs %s: %d, want %d", ordered[i],
                                          ordered[j], r, want);
                }
        CHECK(version_compare("1.2.3~rc1", "1.2.003~rc1") == 0);
        CHECK(version_valid("1.2.3"));
        CHECK(version_valid("3815.2.0+dev_1"));
        CHECK(!version_valid(""));
        CHECK(!version_valid("v1.2"));
        CHECK(!version_valid("1.2 3"));
        CHECK(!version_valid("1.2/3"));
}

TEST(cmdline_roothash) {
        _cleanup_free_ char *h = NULL;
        CHECK_EQ(payload_cmdline_roothash("a b pivot.verity.roothash=abcd c", &h), 0);
        CHECK_STREQ(h, "abcd");
        char *x = NULL;
        CHECK_EQ(payload_cmdline_roothash("a pivot.verity.roothash= b", &x), -ENOENT);
        CHECK_EQ(payload_cmdline_roothash("", &x), -ENOENT);
        /* The initramfs would take the second one: two are refused, whatever they say. */
        CHECK_EQ(payload_cmdline_roothash("pivot.verity.roothash=ab pivot.verity.roothash=cd", &x), -EBADMSG);
        CHECK_EQ(payload_cmdline_roothash("pivot.verity.roothash=ab pivot.verity.roothash=ab", &x), -EBADMSG);
        CHECK_EQ(payload_cmdline_roothash("pivot.verity.roothash= pivot.verity.roothash=cd", &x), -EBADMSG);
        CHECK(x == NULL);
}

TEST(header_rejects) {
        uint8_t h[PAYLOAD_HEADER_SIZE] = "PIVOTPAY";
        uint32_t n;
        CHECK_EQ(payload_header_parse(h, sizeof(h), &n), -EPROTONOSUPPORT);
        h[8] = 1; /* the format before the chunk table left the manifest */
        CHECK_EQ(payload_header_parse(h, sizeof(h), &n), -EPROTONOSUPPORT);
        h[8] = 3;
        CHECK_EQ(payload_header_parse(h, sizeof(h), &n), -EPROTONOSUPPORT);
        h[8] = 2;
        CHECK_EQ(payload_header_parse(h, sizeof(h), &n), -EBADMSG); /* sizes are 0 */
        h[12] = 32, h[20] = 64, h[16] = 8;
        CHECK_EQ(payload_header_parse(h, sizeof(h), &n), 0);
        CHECK_EQ(n, 8);
        CHECK_EQ(payload_header_parse(h, sizeof(h) - 1, &n), -EBADMSG);
        h[19] = 0x7f; /* a manifest of 2 GiB */
        CHECK_EQ(payload_header_parse(h, sizeof(h), &n), -EBADMSG);
        h[0] = 'X';
        CHECK_EQ(payload_header_parse(h, sizeof(h), &n), -EBADMSG);
}

TEST(roundtrip) {
        const char *out = path("rt.payload");
        CHECK_EQ(make_payload(out, 300000, "1.2.3"), 0);

        struct payload_manifest m;
        _cleanup_close_ int fd = -1;
        CHECK_EQ(payload_open_file(out, pub_a, &m, &fd), 0);
        CHECK_STREQ(m.version, "1.2.3");
        CHECK_STREQ(m.min_version, "1.0.0");
        CHECK_STREQ(m.cmdline, "console=ttyS0 pivot.verity.roothash=" ROOTHASH);
        CHECK_STREQ(m.verity_roothash, ROOTHASH);
        CHECK_EQ(m.chunk_size, 65536);
        CHECK_EQ(m.images[PAYLOAD_IMAGE_ROOT].size, 300000);
        CHECK_EQ(m.images[PAYLOAD_IMAGE_ROOT].n_chunks, 5);
        CHECK_EQ(m.images[PAYLOAD_IMAGE_KERNEL].n_chunks, 2);
        CHECK_EQ(m.images[PAYLOAD_IMAGE_INITRD].n_chunks, 1);
        CHECK_EQ(m.n_chunks, 8);
        /* Stored order: kernel, initrd, root. */
        CHECK_EQ(m.images[PAYLOAD_IMAGE_KERNEL].first_chunk, 0);
        CHECK_EQ(m.images[PAYLOAD_IMAGE_INITRD].first_chunk, 2);
        CHECK_EQ(m.images[PAYLOAD_IMAGE_ROOT].first_chunk, 3);
        CHECK_EQ(m.chunks[7].raw_size, 300000 - 4 * 65536);
        CHECK_EQ(m.chunks[7].image_offset, 4 * 65536);
        CHECK_EQ(m.chunks[0].offset, m.data_offset);
        CHECK_EQ(m.payload_size, file_size(out));
        uint8_t id[PAYLOAD_KEY_ID_SIZE];
        payload_key_id(pub_a, id);
        CHECK(memcmp(id, m.key_id, sizeof(id)) == 0);
        CHECK_EQ(payload_verify_data(fd, &m, NULL, NULL), 0);

        /* Decode chunk by chunk and compare with the source. */
        size_t n;
        _cleanup_free_ uint8_t *root = read_file(path("root.img"), &n);
        struct payload_decoder *d;
        CHECK_EQ(payload_decoder_new(&d), 0);
        uint8_t *in = malloc(200000), *raw = malloc(65536);
        for (uint32_t i = 3; i < m.n_chunks; i++) {
                const struct payload_chunk *c = &m.chunks[i];
                CHECK(pread(fd, in, c->size, (off_t)c->offset) == (ssize_t)c->size);
                CHECK_EQ(payload_chunk_decode(d, c, in, raw, true), 0);
                CHECK(memcmp(raw, root + c->image_offset, c->raw_size) == 0);
        }
        /* A corrupted compressed chunk is caught before it is decompressed. */
        const struct payload_chunk *c = &m.chunks[4];
        CHECK(pread(fd, in, c->size, (off_t)c->offset) == (ssize_t)c->size);
        in[c->size / 2] ^= 1;
        CHECK_EQ(payload_chunk_decode(d, c, in, raw, false), -EILSEQ);
        free(in), free(raw);
        payload_decoder_free(d);
        payload_manifest_done(&m);
}

TEST(reproducible) {
        CHECK_EQ(make_payload(path("r1.payload"), 200000, "2.0.0"), 0);
        CHECK_EQ(make_payload(path("r2.payload"), 200000, "2.0.0"), 0);
        size_t n1, n2;
        _cleanup_free_ uint8_t *a = read_file(path("r1.payload"), &n1);
        _cleanup_free_ uint8_t *b = read_file(path("r2.payload"), &n2);
        CHECK_EQ(n1, n2);
        CHECK(n1 == n2 && memcmp(a, b, n1) == 0);
}

TEST(reproducible_any_thread_count) {
        setup_keys();
        write_file(path("tr.img"), 1000000, 9);
        struct payload_create_params p = {
                .image_paths = {path("tr.img"), path("tr.img"), path("tr.img")},
                .version = "3.0.0",
                .cmdline = "pivot.verity.roothash=" ROOTHASH,
                .chunk_size = 64 * 1024,
                .key = key_a,
                .quiet = true,
        };
        p.threads = 1;
        p.out_path = path("t1.payload");
        CHECK_EQ(payload_create(&p), 0);
        p.threads = 5;
        p.out_path = path("t5.payload");
        CHECK_EQ(payload_create(&p), 0);
        size_t n1, n5;
        _cleanup_free_ uint8_t *a = read_file(path("t1.payload"), &n1);
        _cleanup_free_ uint8_t *b = read_file(path("t5.payload"), &n5);
        CHECK(n1 == n5 && memcmp(a, b, n1) == 0);
}

TEST(signature_rejects) {
        const char *out = path("sig.payload");
        struct payload_manifest m;
        CHECK_EQ(make_payload(out, 70000, "1.2.3"), 0);

        /* Another key. */
        CHECK_EQ(payload_open_file(out, pub_b, &m, NULL), -EKEYREJECTED);
        /* No key: readable, unauthenticated. */
        CHECK_EQ(payload_open_file(out, NULL, &m, NULL), 0);
        uint32_t manifest_size = m.manifest_size;
        payload_manifest_done(&m);

        size_t n;
        _cleanup_free_ uint8_t *buf = read_file(out, &n);
        /* A flipped bit in the signature, and in the version string. */
        buf[PAYLOAD_HEADER_SIZE + manifest_size + 5] ^= 0x10;
        write_bytes(path("bad.payload"), buf, n);
        CHECK_EQ(payload_open_file(path("bad.payload"), pub_a, &m, NULL), -EKEYREJECTED);
        buf[PAYLOAD_HEADER_SIZE + manifest_size + 5] ^= 0x10;
        buf[PAYLOAD_HEADER_SIZE + 8 + 2] = '9'; /* "1.2.3" -> "1.9.3" */
        write_bytes(path("bad.payload"), buf, n);
        CHECK_EQ(payload_open_file(path("bad.payload"), NULL, &m, NULL), 0);
        CHECK_STREQ(m.version, "1.9.3");
        payload_manifest_done(&m);
        CHECK_EQ(payload_open_file(path("bad.payload"), pub_a, &m, NULL), -EKEYREJECTED);
}

TEST(truncated_and_corrupt_files) {
        const char *out = path("trunc.payload");
        struct payload_manifest m;
        CHECK_EQ(make_payload(out, 200000, "1.2.3"), 0);
        size_t n;
        _cleanup_free_ uint8_t *buf = read_file(out, &n);

        /* Cut anywhere: never accepted. */
        size_t cuts[] = {0, 10, 31, 32, 100, 500, n - 1000, n - 1};
        for (size_t i = 0; i < ELEMENTSOF(cuts); i++) {
                write_bytes(path("cut.payload"), buf, cuts[i]);
                int r = payload_open_file(path("cut.payload"), pub_a, &m, NULL);
                CHECK(r == -EBADMSG || r == -ENODATA);
        }

        /* A bit flipped in the data: signature fine, data not. */
        buf[n - 100] ^= 0x01;
        write_bytes(path("flip.payload"), buf, n);
        int fd;
        CHECK_EQ(payload_open_file(path("flip.payload"), pub_a, &m, &fd), 0);
        CHECK_EQ(payload_verify_data(fd, &m, NULL, NULL), -EILSEQ);
        close(fd);
        payload_manifest_done(&m);
}

/* The chunk table after the signature: bound to the signed manifest by its hash, and each
 * record checked against the manifest as a streaming reader reaches it. */
TEST(chunk_table) {
        const char *out = path("table.payload");
        struct payload_manifest m;
        CHECK_EQ(make_payload(out, 200000, "1.2.3"), 0);
        size_t n;
        _cleanup_free_ uint8_t *buf = read_file(out, &n);
        CHECK_EQ(payload_manifest_parse(buf, n, &m), 0);
        CHECK_EQ(m.n_chunks, 2 + 1 + 4);
        CHECK_EQ(m.table_offset, payload_prefix_size(m.manifest_size));
        CHECK_EQ(m.data_offset, m.table_offset + 7 * PAYLOAD_CHUNK_RECORD_SIZE);
        CHECK_EQ(m.payload_size, n);
        const uint8_t *table = buf + m.table_offset;
        CHECK(payload_chunk_table_check(&m, table));

        /* Record by record, as the agent reads them, equals the whole table at once. */
        struct payload_chunk *all = NULL;
        CHECK_EQ(payload_chunk_table_parse(&m, table, m.data_offset - m.table_offset, &all), 0);
        uint64_t offset = m.data_offset;
        for (uint32_t i = 0; i < m.n_chunks; i++) {
                struct payload_chunk c;
                CHECK_EQ(payload_chunk_record_parse(&m, i, offset, table + i * PAYLOAD_CHUNK_RECORD_SIZE, &c), 0);
                CHECK(memcmp(&c, &all[i], sizeof(c)) == 0);
                offset += c.size;
        }
        CHECK_EQ(offset, m.payload_size);
        CHECK_EQ(all[6].image, PAYLOAD_IMAGE_ROOT);
        CHECK_EQ(all[6].raw_size, 200000 - 3 * 65536);
        free(all);

        struct payload_chunk c;
        /* The last chunk must end where the file does; no chunk may run past it. */
        CHECK_EQ(payload_chunk_record_parse(&m, 6, offset - 1, table + 6 * PAYLOAD_CHUNK_RECORD_SIZE, &c), -EBADMSG);
        CHECK_EQ(payload_chunk_record_parse(&m, 0, m.payload_size - 1, table, &c), -EBADMSG);
        CHECK_EQ(payload_chunk_record_parse(&m, 7, m.data_offset, table, &c), -EBADMSG);
        /* A raw size that does not fit the image: the kernel's first chunk is a whole one. */
        uint8_t rec[PAYLOAD_CHUNK_RECORD_SIZE];
        memcpy(rec, table, sizeof(rec));
        rec[4] ^= 1;
        CHECK_EQ(payload_chunk_record_parse(&m, 0, m.data_offset, rec, &c), -EBADMSG);
        CHECK(!payload_chunk_table_check(&m, buf) );
        /* A bit flipped in the table: the signature still verifies, the table's hash does not. */
        buf[m.table_offset + 100] ^= 0x01;
        write_bytes(path("table-flip.payload"), buf, n);
        payload_manifest_done(&m);
        CHECK_EQ(payload_open_file(path("table-flip.payload"), pub_a, &m, NULL), -EILSEQ);
        /* Cut inside the table. */
        write_bytes(path("table-cut.payload"), buf, 600);
        CHECK_EQ(payload_open_file(path("table-cut.payload"), NULL, &m, NULL), -ENODATA);
}

TEST(manifest_every_prefix) {
        const char *out = path("prefix.payload");
        CHECK_EQ(make_payload(out, 70000, "1.2.3"), 0);
        size_t n;
        _cleanup_free_ uint8_t *buf = read_file(out, &n);
        struct payload_manifest m;
        uint32_t ms;
        CHECK_EQ(payload_header_parse(buf, n, &ms), 0);
        size_t full = PAYLOAD_HEADER_SIZE + ms;
        for (size_t len = 0; len < full; len++) {
                uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any overread */
                memcpy(copy, buf, len);
                CHECK(payload_manifest_parse(copy, len, &m) < 0);
                free(copy);
        }
        CHECK_EQ(payload_manifest_parse(buf, full, &m), 0);
        payload_manifest_done(&m);

        /* Every single-byte change in the manifest is either rejected or still self-consistent. */
        for (size_t i = PAYLOAD_HEADER_SIZE; i < full; i += 7) {
                buf[i] ^= 0xa5;
                if (payload_manifest_parse(buf, full, &m) == 0)
                        payload_manifest_done(&m);
                buf[i] ^= 0xa5;
        }
}

/* Appends a record after the chunk table and fixes the header's manifest size. */
static int parse_with_extra_record(uint16_t tag, uint16_t flags, struct payload_manifest *m) {
        size_t n;
        _cleanup_free_ uint8_t *buf = read_file(path("prefix.payload"), &n);
        uint32_t ms;
        if (payload_header_parse(buf, n, &ms) < 0)
                return -999;
        size_t full = PAYLOAD_HEADER_SIZE + ms;
        _cleanup_free_ uint8_t *copy = malloc(full + 12);
        memcpy(copy, buf, full);
        uint8_t rec[12] = {(uint8_t)tag, (uint8_t)(tag >> 8), (uint8_t)flags, (uint8_t)(flags >> 8),
                           4, 0, 0, 0, 1, 2, 3, 4};
        memcpy(copy + full, rec, sizeof(rec));
        ms += 12;
        copy[16] = (uint8_t)ms, copy[17] = (uint8_t)(ms >> 8), copy[18] = (uint8_t)(ms >> 16);
        return payload_manifest_parse(copy, full + 12, m);
}

TEST(unknown_records) {
        struct payload_manifest m;
        CHECK_EQ(make_payload(path("prefix.payload"), 70000, "1.2.3"), 0);
        CHECK_EQ(parse_with_extra_record(200, 1, &m), 0);
        payload_manifest_done(&m);
        CHECK_EQ(parse_with_extra_record(200, 0, &m), -EPROTONOSUPPORT);
        CHECK_EQ(parse_with_extra_record(1, 0, &m), -EBADMSG); /* a second version */
}

TEST(create_rejects) {
        setup_keys();
        write_file(path("k"), 1000, 1);
        write_text(path("empty"), "");
        struct payload_create_params p = {
                .image_paths = {path("k"), path("k"), path("k")},
                .version = "1.0.0",
                .cmdline = "pivot.verity.roothash=" ROOTHASH,
                .key = key_a,
                .out_path = path("x.payload"),
                .quiet = true,
        };
        CHECK_EQ(payload_create(&p), 0);
        p.verity_roothash = "aa23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        CHECK_EQ(payload_create(&p), -ENOTUNIQ);
        p.verity_roothash = NULL;
        p.cmdline = "console=ttyS0";
        CHECK_EQ(payload_create(&p), -ENOENT);
        p.verity_roothash = ROOTHASH;
        CHECK_EQ(payload_create(&p), 0);
        p.version = "v2";
        CHECK_EQ(payload_create(&p), -EINVAL);
        p.version = "2.0";
        p.chunk_size = 1000;
        CHECK_EQ(payload_create(&p), -EINVAL);
        p.chunk_size = 0;
        p.image_paths[1] = path("empty");
        CHECK_EQ(payload_create(&p), -EINVAL);
        p.image_paths[1] = path("missing");
        CHECK_EQ(payload_create(&p), -ENOENT);
}

TEST(keys) {
        setup_keys();
        struct payload_key *k;
        CHECK_EQ(payload_keygen(path("a.pem"), NULL), -EEXIST);
        CHECK_EQ(payload_key_load_public(path("a.pem"), &k), -ENOKEY); /* private, not public */
        CHECK_EQ(payload_key_load_private(path("a.pub"), &k), -ENOKEY);
        CHECK_EQ(payload_key_load_public(path("nope"), &k), -ENOENT);
        unlink(path("a2.pub"));
        CHECK_EQ(payload_key_write_public(key_a, path("a2.pub")), 0);
        CHECK_EQ(payload_key_load_public(path("a2.pub"), &k), 0);
        uint8_t id1[PAYLOAD_KEY_ID_SIZE], id2[PAYLOAD_KEY_ID_SIZE], id3[PAYLOAD_KEY_ID_SIZE];
        payload_key_id(k, id1);
        payload_key_id(key_a, id2);
        payload_key_id(key_b, id3);
        CHECK(memcmp(id1, id2, sizeof(id1)) == 0);
        CHECK(memcmp(id1, id3, sizeof(id1)) != 0);
        payload_key_free(k);
        struct stat st;
        CHECK(stat(path("a.pem"), &st) == 0 && (st.st_mode & 0777) == 0600);
}

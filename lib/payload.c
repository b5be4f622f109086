/* Update payload: decoding, keys and signatures, chunk decoding, file reading and writing.
 * docs/payload-format.md describes the bytes; lib/payload.h the API. */
#include "payload.h"

#include <ctype.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <zstd.h>

#include "log.h"
#include "util.h"

/* Manifest record tags. Each known tag appears once, in this order, except IMAGE (three times).
 * A record whose flags have PAYLOAD_TAG_OPTIONAL set may be skipped by readers that do not know
 * its tag; an unknown record without it makes the payload unreadable for this reader. */
enum {
        TAG_VERSION = 1,
        TAG_MIN_VERSION = 2,
        TAG_CMDLINE = 3,
        TAG_VERITY_ROOTHASH = 4,
        TAG_KEY_ID = 5,
        TAG_CHUNK_SIZE = 6,
        TAG_COMPRESSION = 7,
        TAG_IMAGE = 8,
        TAG_CHUNK_TABLE = 9, /* SHA-256 of the chunk table after the signature */
};
#define PAYLOAD_TAG_OPTIONAL 0x0001u
#define RECORD_HEADER_SIZE 8u
#define IMAGE_RECORD_SIZE 48u
#define COMPRESSION_ZSTD 1u

static inline uint16_t get16(const uint8_t *p) {
        return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t get32(const uint8_t *p) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get64(const uint8_t *p) {
        return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}
static inline void put16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}
static inline void put32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

const char *payload_image_name(enum payload_image_type type) {
        static const char *const names[] = {
                [PAYLOAD_IMAGE_ROOT] = "root",
                [PAYLOAD_IMAGE_KERNEL] = "kernel",
                [PAYLOAD_IMAGE_INITRD] = "initrd",
        };
        return (unsigned)type < ELEMENTSOF(names) ? names[type] : "unknown";
}

/* --- Decoding ------------------------------------------------------------------------------ */

int payload_header_parse(const void *buf, size_t len, uint32_t *ret_manifest_size) {
        const uint8_t *p = buf;
        if (len < PAYLOAD_HEADER_SIZE || memcmp(p, PAYLOAD_MAGIC, 8) != 0) {
                log_debug("payload: not a payload (bad magic)");
                return -EBADMSG;
        }
        uint32_t format = get32(p + 8), header_size = get32(p + 12);
        uint32_t manifest_size = get32(p + 16), sig_size = get32(p + 20);
        if (format != PAYLOAD_FORMAT_VERSION) {
                log_debug("payload: format version %u, this reader knows %u", format,
                          PAYLOAD_FORMAT_VERSION);
                return -EPROTONOSUPPORT;
        }
        if (header_size != PAYLOAD_HEADER_SIZE || sig_size != PAYLOAD_SIGNATURE_SIZE) {
                log_debug("payload: bad header or signature size");
                return -EBADMSG;
        }
        if (manifest_size < RECORD_HEADER_SIZE || manifest_size > PAYLOAD_MAX_MANIFEST) {
                log_debug("payload: manifest size %u out of range", manifest_size);
                return -EBADMSG;
        }
        if (ret_manifest_size)
                *ret_manifest_size = manifest_size;
        return 0;
}

static int dup_string(const uint8_t *v, uint32_t n, size_t max, bool (*ok)(int c), char **ret) {
        if (n == 0 || n > max)
                return -EBADMSG;
        for (uint32_t i = 0; i < n; i++)
                if (!ok(v[i]))
                        return -EBADMSG;
        char *s = strndup((const char *)v, n);
        if (!s)
                return -ENOMEM;
        free(*ret);
        *ret = s;
        return 0;
}

static bool is_print(int c) {
        return c >= 0x20 && c < 0x7f;
}
static bool is_lower_hex(int c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

void payload_manifest_done(struct payload_manifest *m) {
        if (!m)
                return;
        free(m->version);
        free(m->min_version);
        free(m->cmdline);
        free(m->verity_roothash);
        free(m->chunks);
        memset(m, 0, sizeof(*m));
}

#define BAD(...)                                                                                   \
        ({                                                                                         \
                log_debug("payload manifest: " __VA_ARGS__);                                       \
                -EBADMSG;                                                                          \
        })

int payload_manifest_parse(const void *buf, size_t len, struct payload_manifest *ret) {
        _cleanup_(payload_manifest_done) struct payload_manifest m = {0};
        const uint8_t *p = buf;
        uint32_t manifest_size;
        int r;

        memset(ret, 0, sizeof(*ret));
        r = payload_header_parse(buf, len, &manifest_size);
        if (r < 0)
                return r;
        if (len - PAYLOAD_HEADER_SIZE < manifest_size)
                return BAD("truncated (%zu of %u bytes)", len - PAYLOAD_HEADER_SIZE,
                           manifest_size);
        uint64_t header_data_size = get64(p + 24);

        const uint8_t *q = p + PAYLOAD_HEADER_SIZE, *end = q + manifest_size;
        unsigned last_tag = 0, n_images = 0;
        bool seen[TAG_CHUNK_TABLE + 1] = {0};
        uint8_t image_order[PAYLOAD_IMAGE_MAX];
        uint32_t compression = 0;

        while (q < end) {
                if ((size_t)(end - q) < RECORD_HEADER_SIZE)
                        return BAD("record header cut short");
                uint16_t tag = get16(q), flags = get16(q + 2);
                uint32_t n = get32(q + 4);
                const uint8_t *v = q + RECORD_HEADER_SIZE;
                if ((size_t)(end - v) < n)
                        return BAD("record %u longer than the manifest", tag);
                q = v + n;
                if (tag == 0 || tag > TAG_CHUNK_TABLE) {
                        if (flags & PAYLOAD_TAG_OPTIONAL)
                                continue;
                        log_debug("payload manifest: unknown critical record %u", tag);
                        return -EPROTONOSUPPORT;
                }
                if (tag < last_tag || (tag == last_tag && tag != TAG_IMAGE))
                        return BAD("record %u out of order or repeated", tag);
                last_tag = tag;
                seen[tag] = true;

                switch (tag) {
                case TAG_VERSION:
                case TAG_MIN_VERSION: {
                        char **s = tag == TAG_VERSION ? &m.version : &m.min_version;
                        r = dup_string(v, n, PAYLOAD_MAX_VERSION_LEN, is_print, s);
                        if (r == 0 && !version_valid(*s))
                                r = BAD("invalid version \"%s\"", *s);
                        break;
                }
                case TAG_CMDLINE:
                        r = dup_string(v, n, PAYLOAD_MAX_CMDLINE_LEN, is_print, &m.cmdline);
                        break;
                case TAG_VERITY_ROOTHASH:
                        r = dup_string(v, n, PAYLOAD_MAX_ROOTHASH_LEN, is_lower_hex,
                                       &m.verity_roothash);
                        if (r == 0 && (n < 64 || n % 2))
                                r = BAD("verity root hash of %u hex digits", n);
                        break;
                case TAG_KEY_ID:
                        if (n != PAYLOAD_KEY_ID_SIZE)
                                r = BAD("key id of %u bytes", n);
                        else
                                memcpy(m.key_id, v, n);
                        break;
                case TAG_CHUNK_SIZE:
                        if (n != 4)
                                r = BAD("chunk size record of %u bytes", n);
                        else
                                m.chunk_size = get32(v);
                        if (r == 0 && (m.chunk_size < PAYLOAD_MIN_CHUNK_SIZE ||
                                       m.chunk_size > PAYLOAD_MAX_CHUNK_SIZE ||
                                       (m.chunk_size & (m.chunk_size - 1))))
                                r = BAD("chunk size %u", m.chunk_size);
                        break;
                case TAG_COMPRESSION:
                        if (n != 4)
                                r = BAD("compression record of %u bytes", n);
                        else
                                compression = get32(v);
                        if (r == 0 && compression != COMPRESSION_ZSTD) {
                                log_debug("payload manifest: unknown compression %u", compression);
                                r = -EPROTONOSUPPORT;
                        }
                        break;
                case TAG_IMAGE: {
                        if (n != IMAGE_RECORD_SIZE || n_images >= PAYLOAD_IMAGE_MAX) {
                                r = BAD("bad or extra image record");
                                break;
                        }
                        uint32_t type = get32(v);
                        if (type >= PAYLOAD_IMAGE_MAX || m.images[type].n_chunks) {
                                r = BAD("image type %u unknown or repeated", type);
                                break;
                        }
                        struct payload_image *img = &m.images[type];
                        img->n_chunks = get32(v + 4);
                        img->size = get64(v + 8);
                        memcpy(img->sha256, v + 16, 32);
                        if (m.chunk_size == 0 || img->size == 0 ||
                            img->n_chunks != (img->size - 1) / m.chunk_size + 1) {
                                r = BAD("image %s: size %" PRIu64 " in %u chunks",
                                        payload_image_name(type), img->size, img->n_chunks);
                                break;
                        }
                        image_order[n_images++] = (uint8_t)type;
                        break;
                }
                case TAG_CHUNK_TABLE:
                        if (n != sizeof(m.chunk_table_sha256))
                                r = BAD("chunk table hash of %u bytes", n);
                        else
                                memcpy(m.chunk_table_sha256, v, n);
                        break;
                }
                if (r < 0)
                        return r;
        }

        for (unsigned t = TAG_VERSION; t <= TAG_CHUNK_TABLE; t++)
                if (!seen[t])
                        return BAD("record %u missing", t);
        if (n_images != PAYLOAD_IMAGE_MAX)
                return BAD("%u images, want %u", n_images, PAYLOAD_IMAGE_MAX);
        _cleanup_free_ char *cmdline_hash = NULL;
        r = payload_cmdline_roothash(m.cmdline, &cmdline_hash);
        if (r == -ENOMEM)
                return r;
        if (r == -EBADMSG)
                return BAD("the command line names a verity root hash more than once");
        if (r == 0 && strcasecmp(cmdline_hash, m.verity_roothash) != 0)
                return BAD("the command line names another verity root hash");

        /* Images own consecutive runs of chunks, in the order of their records. */
        uint64_t total_chunks = 0;
        for (unsigned i = 0; i < n_images; i++) {
                struct payload_image *img = &m.images[image_order[i]];
                img->first_chunk = (uint32_t)total_chunks;
                total_chunks += img->n_chunks;
        }
        if (total_chunks > PAYLOAD_MAX_CHUNKS)
                return BAD("%" PRIu64 " chunks", total_chunks);
        m.n_chunks = (uint32_t)total_chunks;
        m.manifest_size = manifest_size;
        m.table_offset = payload_prefix_size(manifest_size);
        uint64_t table_size = (uint64_t)m.n_chunks * PAYLOAD_CHUNK_RECORD_SIZE;
        /* After the table, at least a byte per chunk; at most what a 64-bit offset holds. */
        if (header_data_size < table_size + m.n_chunks || header_data_size > (UINT64_C(1) << 62))
                return BAD("%" PRIu64 " bytes after the signature for %u chunks",
                           header_data_size, m.n_chunks);
        m.data_offset = m.table_offset + table_size;
        m.data_size = header_data_size - table_size;
        m.payload_size = m.data_offset + m.data_size;
        *ret = m;
        m = (struct payload_manifest){0};
        return 0;
}

int payload_chunk_record_parse(const struct payload_manifest *m, uint32_t index, uint64_t offset,
                               const void *rec, struct payload_chunk *ret) {
        const uint8_t *p = rec;
        unsigned type = 0;
        while (type < PAYLOAD_IMAGE_MAX &&
               !(index >= m->images[type].first_chunk &&
                 index - m->images[type].first_chunk < m->images[type].n_chunks))
                type++;
        if (type == PAYLOAD_IMAGE_MAX)
                return BAD("chunk %u of %u", index, m->n_chunks);
        const struct payload_image *img = &m->images[type];
        uint32_t k = index - img->first_chunk;
        struct payload_chunk c = {
                .offset = offset,
                .image_offset = (uint64_t)k * m->chunk_size,
                .size = get32(p),
                .raw_size = get32(p + 4),
                .image = (uint8_t)type,
        };
        memcpy(c.sha256, p + 8, 32);
        memcpy(c.raw_sha256, p + 40, 32);
        uint64_t want = k + 1 < img->n_chunks ? m->chunk_size : img->size - c.image_offset;
        if (c.raw_size != want)
                return BAD("chunk %u: raw size %u, want %" PRIu64, index, c.raw_size, want);
        if (c.size == 0 || c.size > payload_max_compressed(c.raw_size))
                return BAD("chunk %u: compressed size %u", index, c.size);
        if (offset < m->data_offset || offset > m->payload_size ||
            c.size > m->payload_size - offset)
                return BAD("chunk %u runs past the end of the payload", index);
        if (index + 1 == m->n_chunks && offset + c.size != m->payload_size)
                return BAD("chunks hold %" PRIu64 " bytes, header says %" PRIu64,
                           offset + c.size - m->data_offset, m->data_size);
        *ret = c;
        return 0;
}

int payload_chunk_table_parse(const struct payload_manifest *m, const void *table, size_t len,
                              struct payload_chunk **ret) {
        if (len != (uint64_t)m->n_chunks * PAYLOAD_CHUNK_RECORD_SIZE)
                return BAD("chunk table of %zu bytes for %u chunks", len, m->n_chunks);
        _cleanup_free_ struct payload_chunk *chunks = calloc(m->n_chunks, sizeof(*chunks));
        if (!chunks)
                return -ENOMEM;
        uint64_t offset = m->data_offset;
        for (uint32_t i = 0; i < m->n_chunks; i++) {
                int r = payload_chunk_record_parse(
                        m, i, offset, (const uint8_t *)table + (size_t)i * PAYLOAD_CHUNK_RECORD_SIZE,
                        &chunks[i]);
                if (r < 0)
                        return r;
                offset += chunks[i].size;
        }
        *ret = TAKE_PTR(chunks);
        return 0;
}

/* --- Keys and signatures ---------------------------------------------------------------- */

struct payload_key {
        EVP_PKEY *pkey;
        bool private;
};

void payload_key_free(struct payload_key *key) {
        if (!key)
                return;
        EVP_PKEY_free(key->pkey);
        free(key);
}

void payload_key_freep(struct payload_key **key) {
        payload_key_free(*key);
        *key = NULL;
}

static int key_load(const char *path, bool private, struct payload_key **ret) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return negative_errno();
        EVP_PKEY *pkey = private ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
                                 : PEM_read_PUBKEY(f, NULL, NULL, NULL);
        if (!pkey)
                return -ENOKEY;
        if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
                EVP_PKEY_free(pkey);
                return -ENOKEY;
        }
        struct payload_key *k = calloc(1, sizeof(*k));
        if (!k) {
                EVP_PKEY_free(pkey);
                return -ENOMEM;
        }
        k->pkey = pkey;
        k->private = private;
        *ret = k;
        return 0;
}

int payload_key_load_public(const char *path, struct payload_key **ret) {
        return key_load(path, false, ret);
}

int payload_key_load_private(const char *path, struct payload_key **ret) {
        return key_load(path, true, ret);
}

void payload_key_id(const struct payload_key *key, uint8_t ret[PAYLOAD_KEY_ID_SIZE]) {
        uint8_t raw[32], digest[32];
        size_t n = sizeof(raw);
        memset(ret, 0, PAYLOAD_KEY_ID_SIZE);
        if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &n) != 1 || n != sizeof(raw))
                return;
        SHA256(raw, n, digest);
        memcpy(ret, digest, PAYLOAD_KEY_ID_SIZE);
}

static int write_pem(const char *path, mode_t mode, const struct payload_key *key, bool private) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd < 0)
                return negative_errno();
        FILE *f = fdopen(fd, "w");
        if (!f) {
                int r = negative_errno();
                unlink(path);
                return r;
        }
        TAKE_FD(fd);
        int ok = private ? PEM_write_PrivateKey(f, key->pkey, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_PUBKEY(f, key->pkey);
        if (fflush(f) != 0 || fsync(fileno(f)) != 0)
                ok = 0;
        if (fclose(f) != 0)
                ok = 0;
        if (ok != 1) {
                unlink(path);
                return -EIO;
        }
        return 0;
}

int payload_key_write_public(const struct payload_key *key, const char *public_path) {
        return write_pem(public_path, 0644, key, false);
}

int payload_keygen(const char *private_path, const char *public_path) {
        struct payload_key key = {.pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"),
                                  .private = true};
        if (!key.pkey)
                return -EIO;
        int r = write_pem(private_path, 0600, &key, true);
        if (r == 0 && public_path) {
                r = write_pem(public_path, 0644, &key, false);
                if (r < 0)
                        unlink(private_path);
        }
        EVP_PKEY_free(key.pkey);
        return r;
}

static int sign(const struct payload_key *key, const void *msg, size_t len,
                uint8_t sig[PAYLOAD_SIGNATURE_SIZE]) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        size_t n = PAYLOAD_SIGNATURE_SIZE;
        int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
                 EVP_DigestSign(ctx, sig, &n, msg, len) == 1 && n == PAYLOAD_SIGNATURE_SIZE;
        EVP_MD_CTX_free(ctx);
        return ok ? 0 : -EIO;
}

int payload_verify_signature(const void *buf, size_t len, const struct payload_manifest *m,
                             const struct payload_key *key) {
        uint64_t signed_len = PAYLOAD_HEADER_SIZE + (uint64_t)m->manifest_size;
        if (len < signed_len + PAYLOAD_SIGNATURE_SIZE)
                return -EBADMSG;
        const uint8_t *sig = (const uint8_t *)buf + signed_len;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (!ctx)
                return -ENOMEM;
        int ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
                 EVP_DigestVerify(ctx, sig, PAYLOAD_SIGNATURE_SIZE, buf, signed_len) == 1;
        EVP_MD_CTX_free(ctx);
        return ok ? 0 : -EKEYREJECTED;
}

/* --- Chunks ------------------------------------------------------------------------------- */

struct payload_decoder {
        ZSTD_DCtx *dctx;
};

int payload_decoder_new(struct payload_decoder **ret) {
        struct payload_decoder *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->dctx = ZSTD_createDCtx();
        if (!d->dctx) {
                free(d);
                return -ENOMEM;
        }
        /* No window limit: a chunk is decompressed in one call straight into its raw_size
         * buffer (payload_chunk_decompress()), which needs no window memory whatever the
         * frame declares, and can write no more than raw_size. */
        *ret = d;
        return 0;
}

void payload_decoder_free(struct payload_decoder *d) {
        if (!d)
                return;
        ZSTD_freeDCtx(d->dctx);
        free(d);
}

void payload_decoder_freep(struct payload_decoder **d) {
        payload_decoder_free(*d);
        *d = NULL;
}

bool payload_chunk_check(const struct payload_chunk *c, const void *in) {
        uint8_t digest[32];
        SHA256(in, c->size, digest);
        return memcmp(digest, c->sha256, 32) == 0;
}

bool payload_chunk_table_check(const struct payload_manifest *m, const void *table) {
        uint8_t digest[32];
        SHA256(table, (size_t)m->n_chunks * PAYLOAD_CHUNK_RECORD_SIZE, digest);
        return memcmp(digest, m->chunk_table_sha256, 32) == 0;
}

bool payload_chunk_check_raw(const struct payload_chunk *c, const void *raw) {
        uint8_t digest[32];
        SHA256(raw, c->raw_size, digest);
        return memcmp(digest, c->raw_sha256, 32) == 0;
}

int payload_chunk_decompress(struct payload_decoder *d, const struct payload_chunk *c,
                             const void *in, void *out) {
        size_t n = ZSTD_decompressDCtx(d->dctx, out, c->raw_size, in, c->size);
        if (ZSTD_isError(n) || n != c->raw_size) {
                log_debug("payload: chunk does not decompress: %s",
                          ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size");
                return -EBADMSG;
        }
        return 0;
}

int payload_chunk_decode(struct payload_decoder *d, const struct payload_chunk *c,
                         const void *in, void *out, bool check_raw) {
        if (!payload_chunk_check(c, in))
                return -EILSEQ;
        int r = payload_chunk_decompress(d, c, in, out);
        if (r < 0)
                return r;
        if (check_raw && !payload_chunk_check_raw(c, out))
                return -EILSEQ;
        return 0;
}

/* --- Files -------------------------------------------------------------------------------- */

static int read_full(int fd, void *buf, size_t len, uint64_t offset) {
        uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pread(fd, p, len, (off_t)offset);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        return -ENODATA; /* the file ends early */
                p += n, len -= (size_t)n, offset += (uint64_t)n;
        }
        return 0;
}

static int write_full(int fd, const void *buf, size_t len, uint64_t offset) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pwrite(fd, p, len, (off_t)offset);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n, len -= (size_t)n, offset += (uint64_t)n;
        }
        return 0;
}

static int read_chunk_table(int fd, struct payload_manifest *m) {
        size_t len = (size_t)m->n_chunks * PAYLOAD_CHUNK_RECORD_SIZE;
        _cleanup_free_ uint8_t *table = malloc(len);
        if (!table)
                return -ENOMEM;
        int r = read_full(fd, table, len, m->table_offset);
        if (r < 0)
                return r == -ENODATA ? -EBADMSG : r;
        if (!payload_chunk_table_check(m, table)) {
                log_debug("payload: the chunk table does not match its SHA-256");
                return -EILSEQ;
        }
        return payload_chunk_table_parse(m, table, len, &m->chunks);
}

int payload_open_file(const char *path, const struct payload_key *key,
                      struct payload_manifest *ret, int *ret_fd) {
        uint8_t header[PAYLOAD_HEADER_SIZE];
        uint32_t manifest_size;
        struct stat st;
        int r;

        memset(ret, 0, sizeof(*ret));
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        r = read_full(fd, header, sizeof(header), 0);
        if (r == -ENODATA)
                return -EBADMSG;
        if (r < 0)
                return r;
        r = payload_header_parse(header, sizeof(header), &manifest_size);
        if (r < 0)
                return r;
        size_t prefix = (size_t)payload_prefix_size(manifest_size);
        _cleanup_free_ uint8_t *buf = malloc(prefix);
        if (!buf)
                return -ENOMEM;
        r = read_full(fd, buf, prefix, 0);
        if (r == -ENODATA)
                return -EBADMSG;
        if (r < 0)
                return r;
        r = payload_manifest_parse(buf, prefix, ret);
        if (r < 0)
                return r;
        if (key)
                r = payload_verify_signature(buf, prefix, ret, key);
        if (r == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < ret->payload_size) {
                log_debug("payload: file has %" PRIu64 " of %" PRIu64 " bytes",
                          (uint64_t)st.st_size, ret->payload_size);
                r = -ENODATA;
        }
        if (r == 0)
                r = read_chunk_table(fd, ret);
        if (r < 0) {
                payload_manifest_done(ret);
                return r;
        }
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 0;
}

struct md_set {
        EVP_MD_CTX *md[PAYLOAD_IMAGE_MAX];
};

static void md_set_done(struct md_set *s) {
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++)
                EVP_MD_CTX_free(s->md[t]);
}

int payload_verify_data(int fd, const struct payload_manifest *m,
                        void (*progress)(void *userdata, uint64_t done, uint64_t total),
                        void *userdata) {
        _cleanup_(payload_decoder_freep) struct payload_decoder *d = NULL;
        _cleanup_free_ uint8_t *in = malloc(payload_max_compressed(m->chunk_size));
        _cleanup_free_ uint8_t *out = malloc(m->chunk_size);
        _cleanup_(md_set_done) struct md_set s = {0};
        int r;

        if (!in || !out)
                return -ENOMEM;
        r = payload_decoder_new(&d);
        if (r < 0)
                return r;
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++) {
                s.md[t] = EVP_MD_CTX_new();
                if (!s.md[t] || EVP_DigestInit_ex(s.md[t], EVP_sha256(), NULL) != 1)
                        return -ENOMEM;
        }
        for (uint32_t i = 0; i < m->n_chunks; i++) {
                const struct payload_chunk *c = &m->chunks[i];
                r = read_full(fd, in, c->size, c->offset);
                if (r < 0)
                        return r;
                r = payload_chunk_decode(d, c, in, out, true);
                if (r < 0) {
                        log_debug("payload: chunk %u (%s at %" PRIu64 ") is bad", i,
                                  payload_image_name(c->image), c->image_offset);
                        return r;
                }
                EVP_DigestUpdate(s.md[c->image], out, c->raw_size);
                if (progress)
                        progress(userdata, c->offset + c->size - m->data_offset, m->data_size);
        }
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++) {
                uint8_t digest[32];
                EVP_DigestFinal_ex(s.md[t], digest, NULL);
                if (memcmp(digest, m->images[t].sha256, 32) != 0) {
                        log_debug("payload: image %s does not match its SHA-256",
                                  payload_image_name(t));
                        return -EILSEQ;
                }
        }
        return 0;
}

int payload_cmdline_roothash(const char *cmdline, char **ret) {
        static const char key[] = "pivot.verity.roothash=";
        const char *found = NULL;
        size_t found_len = 0;
        for (const char *p = cmdline; p && *p;) {
                p += strspn(p, " \t\n");
                size_t n = strcspn(p, " \t\n");
                if (n >= strlen(key) && strncmp(p, key, strlen(key)) == 0) {
                        /* The initramfs takes the last, a check of the first would pass a
                         * second hash: named twice, it is refused. */
                        if (found)
                                return -EBADMSG;
                        found = p + strlen(key), found_len = n - strlen(key);
                }
                p += n;
        }
        if (!found || found_len == 0)
                return -ENOENT;
        char *s = strndup(found, found_len);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* --- Writing ------------------------------------------------------------------------------ */

struct create_chunk {
        uint8_t *buf; /* compressed */
        size_t size;
        uint32_t raw_size;
        uint8_t sha256[32], raw_sha256[32];
        uint8_t *raw; /* kept for the image hash, which must be taken in order */
        int error;
};

struct create_batch {
        int fd;
        uint64_t image_offset;
        uint32_t chunk_size;
        uint64_t image_size;
        int level;
        struct create_chunk *chunks;
        unsigned n;
        atomic_uint next;
};

struct create_worker {
        pthread_t thread;
        ZSTD_CCtx *cctx;
        struct create_batch *batch;
};

static void compress_one(struct create_worker *w, struct create_chunk *c, uint64_t offset) {
        struct create_batch *b = w->batch;
        uint64_t left = b->image_size - offset;
        c->raw_size = (uint32_t)(left < b->chunk_size ? left : b->chunk_size);
        c->error = read_full(b->fd, c->raw, c->raw_size, offset);
        if (c->error == -ENODATA)
                c->error = -EIO; /* the file shrank while we read it */
        if (c->error < 0)
                return;
        ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_and_parameters);
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, b->level);
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 0);
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
        size_t n = ZSTD_compress2(w->cctx, c->buf, ZSTD_compressBound(b->chunk_size), c->raw,
                                  c->raw_size);
        if (ZSTD_isError(n)) {
                c->error = -EIO;
                return;
        }
        c->size = n;
        SHA256(c->buf, n, c->sha256);
        SHA256(c->raw, c->raw_size, c->raw_sha256);
}

static void *create_worker_run(void *arg) {
        struct create_worker *w = arg;
        struct create_batch *b = w->batch;
        for (;;) {
                unsigned i = atomic_fetch_add(&b->next, 1);
                if (i >= b->n)
                        return NULL;
                compress_one(w, &b->chunks[i], b->image_offset + (uint64_t)i * b->chunk_size);
        }
}

static size_t record(uint8_t *p, uint16_t tag, const void *v, uint32_t n) {
        if (p) {
                put16(p, tag);
                put16(p + 2, 0);
                put32(p + 4, n);
                if (n)
                        memcpy(p + RECORD_HEADER_SIZE, v, n);
        }
        return RECORD_HEADER_SIZE + n;
}

/* The order images are stored in: the small ones first, so a reader has staged the boot files
 * before it starts on the slot. */
static const uint8_t create_order[PAYLOAD_IMAGE_MAX] = {PAYLOAD_IMAGE_KERNEL, PAYLOAD_IMAGE_INITRD,
                                                        PAYLOAD_IMAGE_ROOT};

/* Encodes the manifest into buf (or only measures it with buf NULL); returns its size.
 * m->chunks must be in stored order. */
static size_t encode_manifest(uint8_t *buf, const struct payload_manifest *m) {
        size_t n = 0;
        uint8_t v[IMAGE_RECORD_SIZE];
#define AT (buf ? buf + n : NULL)
        n += record(AT, TAG_VERSION, m->version, (uint32_t)strlen(m->version));
        n += record(AT, TAG_MIN_VERSION, m->min_version, (uint32_t)strlen(m->min_version));
        n += record(AT, TAG_CMDLINE, m->cmdline, (uint32_t)strlen(m->cmdline));
        n += record(AT, TAG_VERITY_ROOTHASH, m->verity_roothash,
                    (uint32_t)strlen(m->verity_roothash));
        n += record(AT, TAG_KEY_ID, m->key_id, PAYLOAD_KEY_ID_SIZE);
        put32(v, m->chunk_size);
        n += record(AT, TAG_CHUNK_SIZE, v, 4);
        put32(v, COMPRESSION_ZSTD);
        n += record(AT, TAG_COMPRESSION, v, 4);
        for (unsigned i = 0; i < PAYLOAD_IMAGE_MAX; i++) {
                const struct payload_image *img = &m->images[create_order[i]];
                put32(v, create_order[i]);
                put32(v + 4, img->n_chunks);
                put64(v + 8, img->size);
                memcpy(v + 16, img->sha256, 32);
                n += record(AT, TAG_IMAGE, v, IMAGE_RECORD_SIZE);
        }
        n += record(AT, TAG_CHUNK_TABLE, m->chunk_table_sha256, sizeof(m->chunk_table_sha256));
#undef AT
        return n;
}

/* Encodes the chunk table (m->chunks, in stored order) into buf. */
static void encode_chunk_table(uint8_t *buf, const struct payload_manifest *m) {
        for (uint32_t i = 0; i < m->n_chunks; i++, buf += PAYLOAD_CHUNK_RECORD_SIZE) {
                put32(buf, m->chunks[i].size);
                put32(buf + 4, m->chunks[i].raw_size);
                memcpy(buf + 8, m->chunks[i].sha256, 32);
                memcpy(buf + 40, m->chunks[i].raw_sha256, 32);
        }
}

static void free_batch_buffers(struct create_chunk *chunks, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                free(chunks[i].buf);
                free(chunks[i].raw);
        }
        free(chunks);
}

static unsigned online_cpus(void) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

static int create_data(const struct payload_create_params *p, int out_fd,
                       struct payload_manifest *m, const int *image_fds) {
        unsigned threads = p->threads ? p->threads : online_cpus();
        unsigned batch_n = threads * 2;
        struct create_worker *workers = calloc(threads, sizeof(*workers));
        struct create_chunk *chunks = calloc(batch_n, sizeof(*chunks));
        uint64_t offset = m->data_offset, done_raw = 0, total_raw = 0;
        uint32_t idx = 0;
        int r = 0;

        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++)
                total_raw += m->images[t].size;
        if (!workers || !chunks) {
                free(workers);
                free(chunks);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < batch_n; i++) {
                chunks[i].buf = malloc(ZSTD_compressBound(m->chunk_size));
                chunks[i].raw = malloc(m->chunk_size);
                if (!chunks[i].buf || !chunks[i].raw)
                        r = -ENOMEM;
        }
        for (unsigned i = 0; i < threads && r == 0; i++)
                if (!(workers[i].cctx = ZSTD_createCCtx()))
                        r = -ENOMEM;

        for (unsigned o = 0; o < PAYLOAD_IMAGE_MAX && r == 0; o++) {
                unsigned type = create_order[o];
                struct payload_image *img = &m->images[type];
                EVP_MD_CTX *md = EVP_MD_CTX_new();
                if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
                        EVP_MD_CTX_free(md);
                        r = -ENOMEM;
                        break;
                }
                img->first_chunk = idx;
                for (uint32_t k = 0; k < img->n_chunks && r == 0; k += batch_n) {
                        struct create_batch b = {
                                .fd = image_fds[type],
                                .image_offset = (uint64_t)k * m->chunk_size,
                                .chunk_size = m->chunk_size,
                                .image_size = img->size,
                                .level = p->level ? p->level : PAYLOAD_DEFAULT_LEVEL,
                                .chunks = chunks,
                                .n = img->n_chunks - k < batch_n ? img->n_chunks - k : batch_n,
                        };
                        atomic_init(&b.next, 0);
                        unsigned started = 0;
                        for (unsigned i = 0; i < threads; i++) {
                                workers[i].batch = &b;
                                if (pthread_create(&workers[i].thread, NULL, create_worker_run,
                                                   &workers[i]) != 0)
                                        break;
                                started++;
                        }
                        if (started == 0)
                                create_worker_run(&workers[0]);
                        for (unsigned i = 0; i < started; i++)
                                pthread_join(workers[i].thread, NULL);
                        for (unsigned i = 0; i < b.n && r == 0; i++) {
                                struct create_chunk *c = &chunks[i];
                                struct payload_chunk *pc = &m->chunks[idx];
                                if (c->error < 0) {
                                        r = c->error;
                                        break;
                                }
                                EVP_DigestUpdate(md, c->raw, c->raw_size);
                                r = write_full(out_fd, c->buf, c->size, offset);
                                pc->offset = offset;
                                pc->image_offset = (uint64_t)(k + i) * m->chunk_size;
                                pc->size = (uint32_t)c->size;
                                pc->raw_size = c->raw_size;
                                pc->image = (uint8_t)type;
                                memcpy(pc->sha256, c->sha256, 32);
                                memcpy(pc->raw_sha256, c->raw_sha256, 32);
                                offset += c->size;
                                done_raw += c->raw_size;
                                idx++;
                        }
                        if (!p->quiet)
                                fprintf(stderr, "\rpivot-payload: compressing %3u%%",
                                        (unsigned)(done_raw * 100 / total_raw));
                }
                EVP_DigestFinal_ex(md, img->sha256, NULL);
                EVP_MD_CTX_free(md);
        }
        if (!p->quiet)
                fputc('\n', stderr);
        for (unsigned i = 0; i < threads; i++)
                ZSTD_freeCCtx(workers[i].cctx);
        free(workers);
        free_batch_buffers(chunks, batch_n);
        m->data_size = offset - m->data_offset;
        m->payload_size = offset;
        return r;
}

struct image_fds {
        int fd[PAYLOAD_IMAGE_MAX];
};

static void image_fds_done(struct image_fds *f) {
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++)
                closep(&f->fd[t]);
}

/* Removes a temporary file unless its name was taken back (set to NULL) after a rename. */
static void unlink_and_freep(char **path) {
        if (*path) {
                unlink(*path);
                free(*path);
        }
}

static int create_roothash(const struct payload_create_params *p, const char *cmdline,
                           char **ret) {
        _cleanup_free_ char *roothash = NULL;
        int r = payload_cmdline_roothash(cmdline, &roothash);
        if (r < 0 && r != -ENOENT)
                return r;
        if (p->verity_roothash) {
                if (roothash && strcasecmp(roothash, p->verity_roothash) != 0) {
                        log_debug("payload: --verity-roothash differs from the command line's");
                        return -ENOTUNIQ;
                }
                free(roothash);
                roothash = strdup(p->verity_roothash);
                if (!roothash)
                        return -ENOMEM;
        }
        if (!roothash)
                return -ENOENT;
        size_t n = strlen(roothash);
        for (size_t i = 0; i < n; i++)
                roothash[i] = (char)tolower((unsigned char)roothash[i]);
        if (n < 64 || n > PAYLOAD_MAX_ROOTHASH_LEN || n % 2 ||
            strspn(roothash, "0123456789abcdef") != n)
                return -EINVAL;
        *ret = TAKE_PTR(roothash);
        return 0;
}

int payload_create(const struct payload_create_params *p) {
        struct payload_manifest m = {0};
        _cleanup_(image_fds_done) struct image_fds fds = {{-1, -1, -1}};
        _cleanup_free_ char *roothash = NULL, *cmdline = NULL;
        _cleanup_free_ struct payload_chunk *chunks = NULL;
        _cleanup_free_ uint8_t *prefix = NULL;
        _cleanup_(unlink_and_freep) char *tmp = NULL;
        _cleanup_close_ int out_fd = -1;
        int r;

        if (!p->key || !p->out_path || !p->cmdline || !version_valid(p->version) ||
            (p->min_version && !version_valid(p->min_version)))
                return -EINVAL;
        uint32_t chunk_size = p->chunk_size ? p->chunk_size : PAYLOAD_DEFAULT_CHUNK_SIZE;
        if (chunk_size < PAYLOAD_MIN_CHUNK_SIZE || chunk_size > PAYLOAD_MAX_CHUNK_SIZE ||
            (chunk_size & (chunk_size - 1)))
                return -EINVAL;
        if (p->level < 0 || p->level > ZSTD_maxCLevel())
                return -EINVAL;

        cmdline = strdup(p->cmdline);
        if (!cmdline)
                return -ENOMEM;
        cmdline[strcspn(cmdline, "\n")] = 0;
        if (!*cmdline || strlen(cmdline) > PAYLOAD_MAX_CMDLINE_LEN)
                return -EINVAL;
        for (const char *c = cmdline; *c; c++)
                if (!is_print((unsigned char)*c))
                        return -EINVAL;
        r = create_roothash(p, cmdline, &roothash);
        if (r < 0)
                return r;

        m.version = (char *)p->version;
        m.min_version = (char *)(p->min_version ? p->min_version : "0.0.0");
        m.cmdline = cmdline;
        m.verity_roothash = roothash;
        m.chunk_size = chunk_size;
        payload_key_id(p->key, m.key_id);

        uint64_t total_chunks = 0;
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++) {
                struct stat st;
                if (!p->image_paths[t])
                        return -EINVAL;
                fds.fd[t] = open(p->image_paths[t], O_RDONLY | O_CLOEXEC);
                if (fds.fd[t] < 0 || fstat(fds.fd[t], &st) < 0) {
                        r = negative_errno();
                        log_debug("payload: %s: %m", p->image_paths[t]);
                        return r;
                }
                if (!S_ISREG(st.st_mode) || st.st_size == 0) {
                        log_debug("payload: %s is empty or not a regular file",
                                  p->image_paths[t]);
                        return -EINVAL;
                }
                m.images[t].size = (uint64_t)st.st_size;
                m.images[t].n_chunks = (uint32_t)((m.images[t].size - 1) / chunk_size + 1);
                total_chunks += m.images[t].n_chunks;
        }
        if (total_chunks > PAYLOAD_MAX_CHUNKS)
                return -EFBIG;
        m.n_chunks = (uint32_t)total_chunks;
        m.chunks = chunks = calloc(m.n_chunks, sizeof(*m.chunks));
        if (!chunks)
                return -ENOMEM;
        m.manifest_size = (uint32_t)encode_manifest(NULL, &m);
        m.table_offset = payload_prefix_size(m.manifest_size);
        m.data_offset = m.table_offset + (uint64_t)m.n_chunks * PAYLOAD_CHUNK_RECORD_SIZE;

        char *t;
        if (asprintf(&t, "%s.tmp", p->out_path) < 0)
                return -ENOMEM;
        tmp = t;
        out_fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd < 0)
                return negative_errno();
        r = create_data(p, out_fd, &m, fds.fd);
        if (r < 0)
                return r;

        /* Everything before chunk 0: the header, the manifest with the table's hash, the
         * signature, the table. */
        prefix = calloc(1, m.data_offset);
        if (!prefix)
                return -ENOMEM;
        encode_chunk_table(prefix + m.table_offset, &m);
        SHA256(prefix + m.table_offset, m.data_offset - m.table_offset, m.chunk_table_sha256);
        memcpy(prefix, PAYLOAD_MAGIC, 8);
        put32(prefix + 8, PAYLOAD_FORMAT_VERSION);
        put32(prefix + 12, PAYLOAD_HEADER_SIZE);
        put32(prefix + 16, m.manifest_size);
        put32(prefix + 20, PAYLOAD_SIGNATURE_SIZE);
        put64(prefix + 24, m.payload_size - m.table_offset);
        encode_manifest(prefix + PAYLOAD_HEADER_SIZE, &m);
        r = sign(p->key, prefix, PAYLOAD_HEADER_SIZE + m.manifest_size,
                 prefix + PAYLOAD_HEADER_SIZE + m.manifest_size);
        if (r < 0)
                return r;
        r = write_full(out_fd, prefix, m.data_offset, 0);
        if (r < 0)
                return r;
        if (ftruncate(out_fd, (off_t)m.payload_size) < 0 || fsync(out_fd) < 0 ||
            rename(tmp, p->out_path) < 0)
                return negative_errno();
        free(TAKE_PTR(tmp));
        return 0;
}

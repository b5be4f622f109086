/* The update payload: one signed file that carries everything a root slot needs.
 *
 *   header (32 bytes) | manifest | Ed25519 signature (64 bytes) | chunk table | zstd chunks ...
 *
 * The manifest names the version, the oldest version it may update from, the kernel command
 * line and dm-verity root hash, and three images (root, kernel, initrd), each cut into chunks
 * of chunk_size bytes that are compressed independently. The chunk table after the signature
 * has a record per chunk with the SHA-256 of its compressed and of its uncompressed bytes, so a
 * reader verifies each chunk before it decompresses it, can resume at any chunk boundary and
 * can tell which chunks it already holds. The manifest holds the table's SHA-256, and the
 * signature covers the header and the manifest, and so every byte. The signed part stays a few
 * hundred bytes whatever the image size: a streaming reader checks it first, then takes the
 * table a record at a time, and never needs the whole table in memory.
 * docs/payload-format.md is the byte-level description.
 *
 * Two layers:
 *   - decoding (payload_header_parse, payload_manifest_parse, accessors) touches only memory
 *     and libc: safe on hostile input, and what the fuzz target drives;
 *   - keys, signatures, hashing and (de)compression use OpenSSL (libcrypto) and libzstd.
 * Nothing here speaks HTTP.
 *
 * Functions return 0 or a negative errno:
 *   -EBADMSG   malformed header or manifest (bad magic, lengths, values, missing fields)
 *   -EPROTONOSUPPORT  a format version or a critical manifest field this reader does not know
 *   -EKEYREJECTED     the signature does not verify with the given key
 *   -EILSEQ    a chunk or image whose bytes do not match their SHA-256
 *   -EFBIG     a size beyond the limits below
 *   -ENOMEM, -EIO, and the errno of a failed system call. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "version.h"

#define PAYLOAD_MAGIC "PIVOTPAY"         /* 8 bytes, no NUL */
#define PAYLOAD_FORMAT_VERSION 2u
#define PAYLOAD_HEADER_SIZE 32u
#define PAYLOAD_SIGNATURE_SIZE 64u       /* Ed25519 */
#define PAYLOAD_KEY_ID_SIZE 8u           /* first bytes of SHA-256(raw public key) */
#define PAYLOAD_MAX_MANIFEST (1u << 20)  /* bytes */
#define PAYLOAD_CHUNK_RECORD_SIZE 72u    /* one chunk's entry in the chunk table */
#define PAYLOAD_MAX_CHUNKS (1u << 22)    /* 1 TiB of images in 256 KiB chunks */
#define PAYLOAD_MIN_CHUNK_SIZE (64u << 10)
#define PAYLOAD_MAX_CHUNK_SIZE (4u << 20)
/* Upper bound for one compressed chunk of raw bytes: above zstd's own bound for incompressible
 * input. A chunk record that claims more is refused. */
static inline uint64_t payload_max_compressed(uint64_t raw) {
        return raw + raw / 128 + 4096;
}
/* 256 KiB chunks at zstd level 9: a reader's buffers stay small (a few chunks in flight), and
 * the payload is within 2% of 1 MiB chunks at level 6 (a 1 GiB root file system: 403.4 MB
 * against 397.1 MB; 416.0 MB at level 6). Decompression costs the same. */
#define PAYLOAD_DEFAULT_CHUNK_SIZE (256u << 10)
#define PAYLOAD_DEFAULT_LEVEL 9
#define PAYLOAD_MAX_VERSION_LEN VERSION_MAX_LEN
#define PAYLOAD_MAX_CMDLINE_LEN 4096u
#define PAYLOAD_MAX_ROOTHASH_LEN 128u /* hex characters */

enum payload_image_type {
        PAYLOAD_IMAGE_ROOT = 0,   /* written to the start of the slot partition */
        PAYLOAD_IMAGE_KERNEL = 1, /* ESP \pivot\<slot>\vmlinuz */
        PAYLOAD_IMAGE_INITRD = 2, /* ESP \pivot\<slot>\initrd */
        PAYLOAD_IMAGE_MAX,
};

struct payload_image {
        uint64_t size;       /* uncompressed bytes */
        uint8_t sha256[32];  /* of the uncompressed bytes */
        uint32_t first_chunk;
        uint32_t n_chunks;
};

struct payload_chunk {
        uint64_t offset;       /* of the compressed bytes, from the start of the payload file */
        uint64_t image_offset; /* of the uncompressed bytes, from the start of its image */
        uint32_t size;         /* compressed bytes: one zstd frame */
        uint32_t raw_size;     /* uncompressed bytes: chunk_size, less for an image's last chunk */
        uint8_t image;         /* enum payload_image_type */
        uint8_t sha256[32];    /* of the compressed bytes */
        uint8_t raw_sha256[32];/* of the uncompressed bytes */
};

struct payload_manifest {
        char *version;         /* the version this payload installs, e.g. "1.2.3" */
        char *min_version;     /* the oldest running version it may update from */
        char *cmdline;         /* kernel command line for the slot */
        char *verity_roothash; /* lowercase hex */
        uint32_t chunk_size;
        uint8_t key_id[PAYLOAD_KEY_ID_SIZE]; /* which key signed it (informative until verified) */
        struct payload_image images[PAYLOAD_IMAGE_MAX];
        uint8_t chunk_table_sha256[32];
        uint32_t n_chunks;     /* the images' chunks together: records in the chunk table */
        struct payload_chunk *chunks; /* the whole table: only from payload_open_file() */
        /* Derived from the header and the images: */
        uint32_t manifest_size;
        uint64_t table_offset; /* header + manifest + signature: where the chunk table starts */
        uint64_t data_offset;  /* table_offset + n_chunks records: where chunk 0 starts */
        uint64_t data_size;    /* sum of the compressed chunk sizes */
        uint64_t payload_size; /* data_offset + data_size: the whole file */
};

/* --- Decoding (libc only) ----------------------------------------------------------------- */

/* Parses the fixed header. len must be at least PAYLOAD_HEADER_SIZE. On success
 * *ret_manifest_size is the manifest's size, and the signature follows it. */
int payload_header_parse(const void *buf, size_t len, uint32_t *ret_manifest_size);

/* Bytes from the start of the file up to and including the signature, for a manifest of this
 * size: what a streaming reader must hold before it can check anything. The chunk table
 * follows. */
static inline uint64_t payload_prefix_size(uint32_t manifest_size) {
        return (uint64_t)PAYLOAD_HEADER_SIZE + manifest_size + PAYLOAD_SIGNATURE_SIZE;
}

/* Decodes header and manifest from buf, which holds at least the header and the manifest
 * (the signature is not looked at: see payload_verify_signature()). Checks every field and
 * the consistency of the images and sizes; on failure *ret is left zeroed. The chunk table is
 * not read: see below. */
int payload_manifest_parse(const void *buf, size_t len, struct payload_manifest *ret);
void payload_manifest_done(struct payload_manifest *m);

/* Decodes record `index` of the chunk table (PAYLOAD_CHUNK_RECORD_SIZE bytes at rec) for chunk
 * data starting at `offset` in the file, and checks it against the manifest: its image and
 * place in it, its sizes, and, for the last chunk, that the chunks end where the file does.
 * A reader walks the table in order from chunk 0 at m->data_offset, each chunk starting where
 * the one before ended; the table's bytes must have matched m->chunk_table_sha256 first. */
int payload_chunk_record_parse(const struct payload_manifest *m, uint32_t index, uint64_t offset,
                               const void *rec, struct payload_chunk *ret);

/* The whole table (len bytes at table, all n_chunks records) decoded with the above into a new
 * array. The hash is not looked at: see payload_chunk_table_check(). */
int payload_chunk_table_parse(const struct payload_manifest *m, const void *table, size_t len,
                              struct payload_chunk **ret);

const char *payload_image_name(enum payload_image_type type); /* "root", "kernel", "initrd" */


/* --- Keys and signatures (libcrypto) ------------------------------------------------------ */

struct payload_key; /* an Ed25519 public or private key */

/* PEM files as `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write them.
 * -ENOKEY when the file holds no Ed25519 key of the wanted kind. */
int payload_key_load_public(const char *path, struct payload_key **ret);
int payload_key_load_private(const char *path, struct payload_key **ret);
void payload_key_free(struct payload_key *key);
void payload_key_freep(struct payload_key **key);
void payload_key_id(const struct payload_key *key, uint8_t ret[PAYLOAD_KEY_ID_SIZE]);
/* Makes a new key pair and writes it (private file mode 0600). Existing files are an error
 * (-EEXIST). */
int payload_keygen(const char *private_path, const char *public_path);
/* Writes the public half of a private key file as PEM. */
int payload_key_write_public(const struct payload_key *key, const char *public_path);

/* Verifies the signature after the manifest. buf holds the prefix (payload_prefix_size()
 * bytes). -EKEYREJECTED when it does not verify. */
int payload_verify_signature(const void *buf, size_t len, const struct payload_manifest *m,
                             const struct payload_key *key);

/* --- Chunks (libcrypto, libzstd) ---------------------------------------------------------- */

struct payload_decoder; /* a reusable zstd context, bounded to PAYLOAD_MAX_CHUNK_SIZE windows */
int payload_decoder_new(struct payload_decoder **ret);
void payload_decoder_free(struct payload_decoder *d);
void payload_decoder_freep(struct payload_decoder **d);

/* Checks the compressed SHA-256 of chunk c (in, c->size bytes), then decompresses it into out
 * (at least c->raw_size bytes). -EILSEQ on a hash mismatch, -EBADMSG when the frame does not
 * decode to exactly raw_size bytes. With check_raw it also hashes the output. */
int payload_chunk_decode(struct payload_decoder *d, const struct payload_chunk *c,
                         const void *in, void *out, bool check_raw);

/* Decompresses chunk c without checking its hash (for a caller that already did):
 * -EBADMSG unless the frame decodes to exactly raw_size bytes. */
int payload_chunk_decompress(struct payload_decoder *d, const struct payload_chunk *c,
                             const void *in, void *out);

bool payload_chunk_check(const struct payload_chunk *c, const void *in);         /* compressed */
/* Whether the chunk table's bytes (m->n_chunks records) match the manifest's hash of them. */
bool payload_chunk_table_check(const struct payload_manifest *m, const void *table);
bool payload_chunk_check_raw(const struct payload_chunk *c, const void *raw);    /* uncompressed */

/* --- Files -------------------------------------------------------------------------------- */

/* Opens a payload file and reads its header, manifest and chunk table (into ret->chunks, after
 * checking the table's hash). With key non-NULL the signature is verified too; with key NULL
 * the manifest is unauthenticated (fine for showing it, or for a server that only needs sizes
 * and versions). *ret_fd (if not NULL) gets the open file. */
int payload_open_file(const char *path, const struct payload_key *key,
                      struct payload_manifest *ret, int *ret_fd);

/* Reads every chunk of an opened payload and checks both hashes of each, and each image's
 * SHA-256. progress (may be NULL) is called after each chunk. */
int payload_verify_data(int fd, const struct payload_manifest *m,
                        void (*progress)(void *userdata, uint64_t done, uint64_t total),
                        void *userdata);

struct payload_create_params {
        const char *image_paths[PAYLOAD_IMAGE_MAX]; /* root, kernel, initrd: all required */
        const char *version;
        const char *min_version;    /* NULL: "0.0.0" */
        const char *cmdline;        /* the text, trailing newline stripped */
        const char *verity_roothash;/* NULL: taken from cmdline's pivot.verity.roothash= */
        uint32_t chunk_size;        /* 0: PAYLOAD_DEFAULT_CHUNK_SIZE */
        int level;                  /* zstd level; 0: PAYLOAD_DEFAULT_LEVEL */
        unsigned threads;           /* 0: one per online CPU */
        const struct payload_key *key; /* private */
        const char *out_path;
        bool quiet;                 /* no progress on stderr */
};

/* Writes a payload. The output depends only on the inputs and the key: two runs give the same
 * bytes. The file is written under a temporary name and renamed into place. */
int payload_create(const struct payload_create_params *p);

/* Finds "pivot.verity.roothash=HEX" in a command line; *ret is malloc'd. -ENOENT if absent
 * (or empty), -EBADMSG if named more than once. */
int payload_cmdline_roothash(const char *cmdline, char **ret);

/* Installing a payload into the passive slot, in one stream:
 *
 *   passive slot to priority 0 (before the first byte is fetched)
 *     -> source (HTTP or file): header, manifest, signature, checked before anything is written
 *     -> the chunk table: to the state directory, checked against the signed manifest's hash
 *     -> per chunk: SHA-256 of the compressed bytes checked, then decompressed and written
 *        (root: into the slot with large aligned O_DIRECT writes; kernel, initrd: staged in the
 *        state directory), then read back from the disk and its uncompressed SHA-256 checked
 *     -> once the kernel and initrd chunks are all checked (they come first), beside the rest
 *        of the stream: the slot's kernel, initrd and command line go to the ESP (temporary
 *        names, sync, read-back, rename)
 *     -> the whole file's SHA-256 and size checked against what the server announced
 *     -> the flip: the slot gets priority above the running one, `tries` tries, not successful.
 *
 * The receiving thread and seven workers (each taking a chunk through decompression, the write,
 * the read-back and the check) overlap the network, the CPUs and the disk; memory is a few
 * chunks whatever the image size. Progress is checkpointed in the state directory: an
 * interrupted install (dropped connection, or the agent restarted) resumes at a chunk boundary
 * with an HTTP Range request, after re-checking the chunks it already holds. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "payload.h"
#include "target.h"

/* Update engine error codes reported to the Omaha server (type 3, result 0, errorcode=N). */
enum {
        UPDATE_ERROR_GENERIC = 1,
        UPDATE_ERROR_POSTINSTALL = 5,         /* ESP write or GPT flip failed */
        UPDATE_ERROR_DOWNLOAD_TRANSFER = 9,   /* network: dropped, stalled, truncated */
        UPDATE_ERROR_PAYLOAD_HASH = 10,       /* a chunk or the file does not match its SHA-256 */
        UPDATE_ERROR_PAYLOAD_SIZE = 11,       /* the file's size differs from the announced one */
        UPDATE_ERROR_PAYLOAD_VERIFY = 12,     /* malformed header or manifest */
        UPDATE_ERROR_WRITE = 14,              /* writing the slot or staging files failed */
        UPDATE_ERROR_ROOTFS_VERIFY = 15,      /* read back from the slot, it differs */
        UPDATE_ERROR_SIGNATURE = 18,          /* signature does not verify with the pinned key */
        UPDATE_ERROR_OMAHA_XML = 31,          /* the response is not well-formed XML */
        UPDATE_ERROR_OMAHA_INVALID = 34,      /* the response makes no sense */
        UPDATE_ERROR_POLICY = 35,             /* refused: older than running, or too old to apply */
        UPDATE_ERROR_ROLLED_BACK = 44,        /* the new version did not come up */
        UPDATE_ERROR_HTTP_BASE = 2000,        /* + HTTP status */
};

/* Where payload bytes come from. fetch() delivers bytes [offset, end) (end 0: to the end of
 * the file) in order to sink, and returns 0 when it got them all (or the file ended), or a
 * negative errno; *ret_http (if not NULL) gets an HTTP status for errors that have one. A sink
 * returning < 0 aborts the transfer, and fetch() returns that value. */
typedef int (*install_sink_fn)(void *userdata, const void *data, size_t len);
struct install_source {
        int (*fetch)(struct install_source *s, uint64_t offset, uint64_t end, install_sink_fn sink,
                     void *userdata, int *ret_http);
        bool retryable; /* a failure may be transient: retry with a Range request */
        /* Bytes received and dropped before the offset asked for (a server that ignored or
         * widened the Range): downloaded all the same, and counted in bytes_fetched. */
        uint64_t bytes_dropped;
        const char *name; /* for messages: URL or path */
};

/* A local payload file as a source. */
struct install_file_source {
        struct install_source source;
        int fd;
};
int install_file_source_open(const char *path, struct install_file_source *ret);
void install_file_source_close(struct install_file_source *s);

enum install_phase {
        INSTALL_PHASE_DOWNLOAD,   /* done/total: payload bytes */
        INSTALL_PHASE_VERIFY,     /* done/total: chunks read back and checked */
        INSTALL_PHASE_BOOT_FILES, /* kernel, initrd, command line to the ESP */
        INSTALL_PHASE_FLIP,
};
const char *install_phase_name(enum install_phase p);

struct install_params {
        struct target *target;
        int slot;                      /* where to write; -1: target_passive() */
        const struct payload_key *key; /* the pinned public key */
        const char *running_version;   /* for the version checks */
        const char *expect_version;    /* what the server said this is (NULL: no check) */
        bool allow_downgrade;          /* accept a version older than the running one */
        bool ignore_min_version;       /* accept a payload whose min version we are below */
        bool has_expect_sha256;        /* what the server announced for the whole file */
        uint8_t expect_sha256[32];
        uint64_t expect_size;          /* 0: not announced */
        unsigned tries;                /* boot attempts after the flip (1..15) */
        bool no_flip;                  /* write and verify, but leave the GPT (tests, staging) */
        const char *work_dir;          /* staging files and the resume checkpoint */
        unsigned retries;              /* resumed attempts after a transfer error */
        unsigned retry_delay_ms;       /* before the first retry; doubled each time */
        struct install_source *source;
        volatile int *cancel;          /* set non-zero (e.g. by SIGTERM) to stop; resumable */
        uint64_t checkpoint_bytes;     /* 0: 64 MiB between resume checkpoints */
        void (*progress)(void *userdata, enum install_phase phase, uint64_t done, uint64_t total);
        /* Right before the flip, with the slot written and verified: the caller records the
         * update as installed. Recorded after the flip, a power cut between the two would boot
         * the new slot with no record of it, and how it boots would never be reported. A
         * negative errno (the record could not be saved) stops the install before the flip. */
        int (*before_flip)(void *userdata, int slot, const char *version);
        /* Once the slot is at priority 0, before its first byte is written: whatever it held
         * (an update installed and waiting for a reboot) is gone. Not called when the install
         * refuses the slot or stops before touching it. */
        void (*slot_disabled)(void *userdata, int slot);
        void *userdata;
};

struct install_result {
        int error_code;       /* UPDATE_ERROR_* when install_run() failed, else 0 */
        int http_status;      /* the last HTTP error status, if any */
        char version[PAYLOAD_MAX_VERSION_LEN + 1];
        int slot;
        bool resumed;         /* continued from a checkpoint */
        uint64_t bytes_fetched; /* payload bytes received in this run (dropped ones too) */
        uint64_t payload_size;  /* the whole payload's, once its manifest is checked */
};

/* Runs the whole install. Logs what went wrong once; returns 0 or a negative errno, and fills
 * *ret (error_code says what to report to the server). On failure the slot keeps priority 0:
 * never bootable half-written. */
int install_run(const struct install_params *p, struct install_result *ret);

/* Forgets a checkpoint (e.g. when the server now offers another version). */
void install_discard_checkpoint(const char *work_dir);

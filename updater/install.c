/* The install engine: one stream from the source to a verified, flipped slot.
 *
 * Threads:
 *   receiver (the caller's thread, inside the source's fetch): collects the signed prefix and
 *     checks it, stores the chunk table in the work directory as it streams past (hashed, and
 *     read back a few records at a time: memory does not grow with the image), collects each
 *     chunk's compressed bytes, hashes the whole file, hands the chunk on with its table
 *     record;
 *   workers (seven): each takes the next chunk all the way: checks its compressed SHA-256,
 *     decompresses it into its own aligned buffer, writes it (slot: O_DIRECT, whole aligned
 *     chunks; boot files: staged), reads it back from the disk into the same buffer and checks
 *     its uncompressed SHA-256; chunks are counted as verified in order, and now and then a
 *     checkpoint records how far.
 * While one worker waits for the disk, another decompresses or hashes, so the two CPUs and the
 * disk stay busy together. The hand-offs are small and bounded: memory is a few chunks
 * whatever the image size, and a slow disk slows the download rather than filling memory. */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_CTX: its state goes into the checkpoint */
#include "install.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "chunk-ring.h"
#include "log.h"
#include "state.h"
#include "util.h"

#define ALIGN 4096u
#define CHECKPOINT_BYTES (64ull << 20)  /* uncompressed bytes between checkpoints ... */
#define CHECKPOINT_SECONDS 5            /* ... or this long, whichever comes first */

static inline uint64_t round_up(uint64_t v, uint64_t a) {
        return (v + a - 1) / a * a;
}

const char *install_phase_name(enum install_phase p) {
        static const char *const names[] = {
                [INSTALL_PHASE_DOWNLOAD] = "downloading",
                [INSTALL_PHASE_VERIFY] = "verifying",
                [INSTALL_PHASE_BOOT_FILES] = "installing boot files",
                [INSTALL_PHASE_FLIP] = "switching slots",
        };
        return (unsigned)p < ELEMENTSOF(names) ? names[p] : "?";
}

/* --- Checkpoint ---------------------------------------------------------------------------- */

#define CHECKPOINT_MAGIC "PIVOTCKP"
#define CHECKPOINT_FORMAT 2
struct checkpoint {
        char magic[8];
        uint32_t format;
        uint32_t next_chunk;
        uint64_t next_offset;
        uint64_t head_size;        /* bytes before chunk 0: prefix and chunk table */
        uint8_t prefix_sha256[32]; /* which payload: SHA-256 of header, manifest, signature */
        char slot_uuid[40];        /* which slot it is being written to */
        char crypto_version[64];   /* the SHA256_CTX below is only meaningful to this libcrypto */
        SHA256_CTX file_ctx;       /* whole-file hash over bytes [0, next_offset) */
        uint8_t self_sha256[32];   /* over everything above */
};

static void checkpoint_path(const char *work_dir, char *buf, size_t size) {
        snprintf(buf, size, "%s/checkpoint", work_dir);
}

void install_discard_checkpoint(const char *work_dir) {
        char path[4096];
        checkpoint_path(work_dir, path, sizeof(path));
        unlink(path);
}

static bool checkpoint_load(const char *work_dir, struct checkpoint *ret) {
        char path[4096];
        uint8_t digest[32];
        checkpoint_path(work_dir, path, sizeof(path));
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, ret, sizeof(*ret)) != (ssize_t)sizeof(*ret))
                return false;
        SHA256((const uint8_t *)ret, offsetof(struct checkpoint, self_sha256), digest);
        return memcmp(ret->magic, CHECKPOINT_MAGIC, 8) == 0 && ret->format == CHECKPOINT_FORMAT &&
               memcmp(digest, ret->self_sha256, 32) == 0 &&
               strncmp(ret->crypto_version, OpenSSL_version(OPENSSL_VERSION),
                       sizeof(ret->crypto_version) - 1) == 0;
}

static int checkpoint_save(const char *work_dir, struct checkpoint *c) {
        char path[4096];
        memcpy(c->magic, CHECKPOINT_MAGIC, 8);
        c->format = CHECKPOINT_FORMAT;
        snprintf(c->crypto_version, sizeof(c->crypto_version), "%s",
                 OpenSSL_version(OPENSSL_VERSION));
        SHA256((const uint8_t *)c, offsetof(struct checkpoint, self_sha256), c->self_sha256);
        checkpoint_path(work_dir, path, sizeof(path));
        return write_file_atomic(path, c, sizeof(*c));
}

/* --- Chunk table ---------------------------------------------------------------------------- */

/* The chunk table as received into the work directory, read back a few records at a time
 * (from the page cache): the engine never holds the whole table. */
#define TABLE_READ_RECORDS 64
struct table_reader {
        int fd;
        uint32_t first, count; /* the records in buf */
        uint8_t buf[TABLE_READ_RECORDS * PAYLOAD_CHUNK_RECORD_SIZE];
};

static void table_path(const char *work_dir, char *buf, size_t size) {
        snprintf(buf, size, "%s/chunk-table", work_dir);
}

/* Chunk `index`, whose compressed bytes start at `offset`, decoded and checked against the
 * manifest. -EBADMSG for a record that does not fit it. */
static int table_record(const struct payload_manifest *m, struct table_reader *t, uint32_t index,
                        uint64_t offset, struct payload_chunk *ret) {
        if (index < t->first || index - t->first >= t->count) {
                uint32_t n = m->n_chunks - index < TABLE_READ_RECORDS ? m->n_chunks - index
                                                                     : TABLE_READ_RECORDS;
                size_t len = (size_t)n * PAYLOAD_CHUNK_RECORD_SIZE;
                ssize_t got = pread(t->fd, t->buf, len, (off_t)index * PAYLOAD_CHUNK_RECORD_SIZE);
                if (got < 0)
                        return negative_errno();
                if ((size_t)got != len)
                        return -ENODATA;
                t->first = index;
                t->count = n;
        }
        return payload_chunk_record_parse(
                m, index, offset, t->buf + (size_t)(index - t->first) * PAYLOAD_CHUNK_RECORD_SIZE, ret);
}

/* Where chunk `index`'s compressed bytes start: the sizes of the chunks before it. */
static int table_chunk_offset(const struct payload_manifest *m, struct table_reader *t,
                              uint32_t index, uint64_t *ret) {
        uint64_t offset = m->data_offset;
        for (uint32_t i = 0; i < index; i++) {
                struct payload_chunk c;
                int r = table_record(m, t, i, offset, &c);
                if (r < 0)
                        return r;
                offset += c.size;
        }
        *ret = offset;
        return 0;
}

/* --- Shared state -------------------------------------------------------------------------- */

/* A received chunk on its way to a worker, its compressed bytes in the ring (chunk-ring.h)
 * at the entry of the same index. It carries its table record, so that a worker looks up
 * nothing (only the chunks held from before a resume are read from the stored table).
 * The receiver runs ahead while workers wait for the disk (with two fixed chunk buffers
 * instead of a ring, it waited for a buffer while the workers waited for chunks; 11% slower on
 * a RAM disk). */
struct job {
        struct payload_chunk c;
        uint32_t chunk;
        SHA256_CTX file_ctx; /* whole-file hash after this chunk */
};

/* Workers: each takes the next received chunk all the way: checked, decompressed into its own
 * buffer, written, read back from the disk into the same buffer, checked. With more workers
 * than CPUs, one waiting for the disk leaves its CPU to another that decompresses or hashes; a
 * pipeline of one thread per step kept them waiting on each other (this is 4-8% faster on
 * the same memory). Each worker is a chunk the disk can have in flight, and costs 0.25 MiB.
 *
 * Workers and ring go together. A worker back from the disk finds work only if the receiver
 * ran ahead meanwhile, so more workers need a larger ring: with a ring of two of the largest
 * chunks (five or six of the usual size), six or eight workers were no faster than five. With
 * a ring of four (about eleven of the usual size), in interleaved trials on a disk (7 rounds,
 * medians), seven workers took 1.60 s where five with a ring of two took 1.87 s, and eight
 * 1.57 s for 0.3 MiB more; with a ring of three, seven were only 2-7% faster than five. On a
 * RAM disk seven were 3% faster. */
#define N_WORKERS 7
#define RING_LARGEST_CHUNKS 4
/* Chunks can finish out of order; `verified` counts only the unbroken run from chunk 0. A
 * worker does not start a chunk this far ahead of the first unfinished one, so the window of
 * finished-but-not-yet-counted chunks stays bounded. */
#define DONE_WINDOW 16
/* zstd contexts (94 KiB each), shared by the workers: two CPUs decompress two chunks at once
 * at most. */
#define N_DECODERS 2

struct done_slot {
        bool done;
        uint64_t end;        /* where the next chunk's compressed bytes start */
        uint32_t raw_size;
        uint8_t image;       /* enum payload_image */
        SHA256_CTX file_ctx; /* whole-file hash after this chunk */
};

struct worker {
        struct engine *e;
        pthread_t thread;
        bool started;
        uint8_t *buf; /* uncompressed, ALIGN-aligned, room for a whole padded chunk */
        /* Where the time goes (debug log), in microseconds. */
        uint64_t wait_us, cpu_decompress_us, cpu_write_us, cpu_read_us, cpu_verify_us;
        uint64_t runqueue_us; /* ready to run, waiting for a CPU */
};

#define THREAD_STACK (256u << 10)

struct engine {
        const struct install_params *p;
        struct install_result *result;
        struct payload_manifest m;
        int slot;
        const struct disk_partition *part;
        char slot_uuid[40];

        /* Files. */
        int slot_fd;          /* O_DIRECT when direct, else buffered */
        bool direct;
        int stage_fd[PAYLOAD_IMAGE_MAX]; /* kernel, initrd staging; -1 for root */
        char stage_path[PAYLOAD_IMAGE_MAX][4096];

        /* Queues and progress, all under one lock. */
        pthread_mutex_t lock;
        /* Workers wait for a chunk on c_worker and for a zstd context on c_decoder: one
         * condition for both, the wake-up for a new chunk could go to a worker waiting
         * for a context, and the chunk would wait while idle workers slept. */
        pthread_cond_t c_receiver, c_worker, c_decoder;
        uint8_t *ring_buf;          /* compressed chunks, placed by ring: */
        size_t raw_size;            /* bytes in each uncompressed buffer */
        struct chunk_ring ring;
        struct job jobs[CHUNK_RING_MAX]; /* by ring entry */
        unsigned full_head, n_full; /* received and waiting for a worker (oldest first) */
        struct worker workers[N_WORKERS];
        unsigned workers_running;
        struct payload_decoder *decoders[N_DECODERS];
        size_t n_free_decoders;
        bool receiving_done;
        int error, error_code; /* the first failure */
        uint32_t verified;     /* chunks read back and checked, from 0 */
        uint64_t verified_end; /* where the compressed bytes of chunk verified start */
        SHA256_CTX verified_ctx; /* whole-file hash at the end of chunk verified-1 */
        struct done_slot done[DONE_WINDOW]; /* chunks verified .. verified + DONE_WINDOW - 1 */
        uint32_t first_chunk;  /* where this run's writes start (resume) */
        uint32_t next_held;    /* chunks held from before a resume: the next one to check ... */
        uint64_t next_held_offset; /* ... and where its compressed bytes start */
        struct table_reader held_table;
        bool checkpointing;    /* a worker is writing a checkpoint */
        uint64_t since_ckpt;   /* uncompressed bytes verified since the last checkpoint */
        uint64_t last_ckpt_ms;

        /* Receiver state. */
        uint8_t *prefix;
        size_t prefix_len, prefix_size;
        bool have_manifest;    /* the prefix is checked */
        bool have_table;       /* so is the chunk table: chunks come next */
        uint8_t prefix_sha256[32];
        char table_path[4096];
        int table_fd;          /* the chunk table in the work directory */
        uint64_t table_len;    /* bytes of it received */
        SHA256_CTX table_ctx;
        struct table_reader table; /* the receiver's */
        bool resume_candidate;
        struct checkpoint ckpt;
        uint64_t pos;          /* absolute offset of the next byte expected */
        uint32_t chunk;        /* being received */
        struct payload_chunk cur_chunk; /* its record (once have_table, while chunk < n_chunks) */
        struct job *cur;       /* being filled: the newest job */
        uint8_t *cur_buf;      /* its bytes in the ring */
        uint32_t fill;
        SHA256_CTX file_ctx, chunk_start_ctx;
        uint64_t last_progress_ms;
        /* Where the time goes (debug log), in microseconds; the receiver's CPU time counts
         * from the first byte. */
        uint64_t wait_receiver_us, start_us, cpu_receiver_us, cpu_receiver_start_us;
        uint64_t runqueue_receiver_us, runqueue_receiver_start_us;
        bool prepared;         /* slot disabled, files opened, threads running */
        bool held_lost;        /* the first error: a chunk held from before a resume is gone */

        /* The boot files (kernel, initrd, command line) go to the ESP in a thread of their
         * own as soon as their chunks are verified. */
        uint64_t boot_bytes, boot_verified; /* their size; how much of it is verified */
        pthread_t boot_thread;
        bool boot_started, boot_joined, boot_installed;
        pthread_mutex_t progress_lock; /* progress comes from two threads then */
};

static uint64_t now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t thread_cpu_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* How long this thread has been ready to run but waiting for a CPU, in microseconds; 0 when
 * the kernel does not keep the figure. */
static uint64_t thread_runqueue_us(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/thread-self/schedstat", "re");
        unsigned long long on_cpu, waiting;
        if (!f || fscanf(f, "%llu %llu", &on_cpu, &waiting) != 2)
                return 0;
        return waiting / 1000u;
}

/* Wakes every thread (errors, the end); called with the lock held. */
static void wake_all(struct engine *e) {
        pthread_cond_broadcast(&e->c_receiver);
        pthread_cond_broadcast(&e->c_worker);
        pthread_cond_broadcast(&e->c_decoder);
}

/* Records the first failure (and whether it is a lost held chunk), logs it at level, wakes
 * everyone; returns r. */
__attribute__((format(printf, 6, 7))) static int fail_full(struct engine *e, enum log_level level,
                                                           bool held_lost, int r, int code,
                                                           const char *fmt, ...) {
        pthread_mutex_lock(&e->lock);
        bool first = e->error == 0;
        if (first) {
                e->error = r;
                e->error_code = code;
                e->held_lost = held_lost;
        }
        wake_all(e);
        pthread_mutex_unlock(&e->lock);
        if (first) {
                char msg[512];
                va_list ap;
                va_start(ap, fmt);
                int saved = errno;
                errno = -r;
                vsnprintf(msg, sizeof(msg), fmt, ap);
                errno = saved;
                va_end(ap);
                log_full_errno(level, 0, "%s", msg);
        }
        return r;
}

#define fail(e, r, code, ...) fail_full((e), LOG_LEVEL_ERROR, false, (r), (code), __VA_ARGS__)

/* A chunk verified before a resume does not read back as it was: the slot or a staged boot file
 * was written meanwhile, or the disk lost writes it had confirmed (flash that ignores flushes,
 * then a power cut). Nothing is wrong with the payload, and a failure report would count
 * against its rollout: the attempt stops, and install_run() starts the download over. */
static int held_chunk_lost(struct engine *e, const struct payload_chunk *c, uint32_t chunk,
                           const char *why) {
        return fail_full(e, LOG_LEVEL_WARNING, true, -ESTALE, UPDATE_ERROR_ROOTFS_VERIFY,
                         "%s chunk %u, verified before the download stopped, %s; downloading "
                         "again from the start", payload_image_name(c->image), chunk, why);
}

static int current_error(struct engine *e) {
        pthread_mutex_lock(&e->lock);
        int r = e->error;
        pthread_mutex_unlock(&e->lock);
        return r;
}

static void progress(struct engine *e, enum install_phase phase, uint64_t done, uint64_t total,
                     bool force) {
        if (!e->p->progress)
                return;
        pthread_mutex_lock(&e->progress_lock);
        uint64_t t = now_ms();
        if (force || t - e->last_progress_ms >= 250) {
                e->last_progress_ms = t;
                e->p->progress(e->p->userdata, phase, done, total);
        }
        pthread_mutex_unlock(&e->progress_lock);
}

/* --- I/O helpers --------------------------------------------------------------------------- */

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pwrite(fd, p, len, (off_t)off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        return -ENOSPC;
                p += n, len -= (size_t)n, off += (uint64_t)n;
        }
        return 0;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off) {
        uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pread(fd, p, len, (off_t)off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        return -ENODATA;
                p += n, len -= (size_t)n, off += (uint64_t)n;
        }
        return 0;
}

/* Before reading back what a buffered write put at [off, off+len): written out and dropped
 * from the page cache, so that the read comes from the disk. Whole pages: the kernel drops only
 * pages that lie wholly inside the range, and the first and last page of an unaligned range
 * would be read back from the cache. */
static int write_out_and_drop(int fd, size_t len, uint64_t off) {
        uint64_t start = off / ALIGN * ALIGN, end = round_up(off + len, ALIGN);
        if (sync_file_range(fd, (off_t)start, (off_t)(end - start),
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                    SYNC_FILE_RANGE_WAIT_AFTER) < 0)
                return negative_errno();
        (void)posix_fadvise(fd, (off_t)start, (off_t)(end - start), POSIX_FADV_DONTNEED);
        return 0;
}

static int chunk_destination(struct engine *e, const struct payload_chunk *c, int *ret_fd,
                             uint64_t *ret_off) {
        if (c->image == PAYLOAD_IMAGE_ROOT) {
                *ret_fd = e->slot_fd;
                *ret_off = e->part->offset + c->image_offset;
        } else {
                *ret_fd = e->stage_fd[c->image];
                *ret_off = c->image_offset;
        }
        return 0;
}

/* --- Workers ------------------------------------------------------------------------------ */

static int sync_outputs(struct engine *e) {
        if (fdatasync(e->slot_fd) < 0)
                return negative_errno();
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++)
                if (e->stage_fd[t] >= 0 && fdatasync(e->stage_fd[t]) < 0)
                        return negative_errno();
        return 0;
}

static int write_chunk(struct engine *e, const struct payload_chunk *c, uint32_t chunk, uint8_t *buf) {
        int fd;
        uint64_t off;
        chunk_destination(e, c, &fd, &off);
        size_t len = c->raw_size;
        if (fd == e->slot_fd && e->direct) {
                /* Whole aligned blocks; the slot has room (checked up front). */
                size_t padded = round_up(len, ALIGN);
                memset(buf + len, 0, padded - len);
                len = padded;
        }
        int r = pwrite_full(fd, buf, len, off);
        if (r < 0)
                return fail(e, r, UPDATE_ERROR_WRITE, "Cannot write %s chunk %u: %m",
                            payload_image_name(c->image), chunk);
        return 0;
}

/* Reads chunk c back from where it was written into buf, over what was written from there:
 * pread_full() fills every byte or fails. A buffered output is written out and dropped from
 * the page cache first, so that the bytes come from the disk. held: the chunk was written
 * before a resume (a staged file cut short is then a lost chunk, not a failed install). */
static int read_back(struct engine *e, const struct payload_chunk *c, uint32_t chunk, uint8_t *buf,
                     bool held) {
        int fd, r;
        uint64_t base;
        chunk_destination(e, c, &fd, &base);
        if (fd == e->slot_fd && e->direct)
                /* Whole aligned blocks: the writer padded the chunk, the slot has room. */
                r = pread_full(fd, buf, round_up(c->raw_size, ALIGN), base);
        else {
                r = write_out_and_drop(fd, c->raw_size, base);
                if (r == 0)
                        r = pread_full(fd, buf, c->raw_size, base);
        }
        if (r == -ENODATA && held)
                return held_chunk_lost(e, c, chunk, "is no longer there");
        if (r < 0)
                return fail(e, r, r == -ENODATA ? UPDATE_ERROR_ROOTFS_VERIFY : UPDATE_ERROR_WRITE,
                            "Cannot read back %s chunk %u: %m", payload_image_name(c->image), chunk);
        return 0;
}

/* --- Boot files ---------------------------------------------------------------------------- */

/* The staged kernel and initrd (each chunk of them verified) are checked against their whole
 * image hashes, the command line is written beside them, and the three go to the slot's
 * directory on the ESP. This runs in a thread of its own, started as soon as the last of their
 * chunks is verified - they come first in a payload - while the root image streams on. The
 * slot stays at priority 0 until the flip, which waits for this and for the root image: new
 * boot files beside a half-written root are never booted. A failure stops the install like
 * any other. */
static int install_boot_files(struct engine *e) {
        const struct install_params *p = e->p;
        struct target *t = p->target;
        uint8_t buf[32u << 10]; /* on the thread's stack: no heap of its own for this thread */
        const size_t piece = sizeof(buf);
        int r;

        for (unsigned i = 0; i < PAYLOAD_IMAGE_MAX; i++) {
                if (i == PAYLOAD_IMAGE_ROOT)
                        continue;
                uint8_t digest[32];
                SHA256_CTX ctx;
                SHA256_Init(&ctx);
                for (uint64_t off = 0; off < e->m.images[i].size;) {
                        uint64_t left = e->m.images[i].size - off;
                        size_t n = left < piece ? (size_t)left : piece;
                        r = pread_full(e->stage_fd[i], buf, n, off);
                        if (r < 0)
                                return fail(e, r, UPDATE_ERROR_WRITE, "Cannot read %s: %m",
                                            e->stage_path[i]);
                        SHA256_Update(&ctx, buf, n);
                        off += n;
                }
                SHA256_Final(digest, &ctx);
                if (memcmp(digest, e->m.images[i].sha256, 32) != 0)
                        return fail(e, -EILSEQ, UPDATE_ERROR_PAYLOAD_HASH,
                                    "The staged %s does not match its SHA-256", payload_image_name(i));
                if (ftruncate(e->stage_fd[i], (off_t)e->m.images[i].size) < 0)
                        return fail(e, negative_errno(), UPDATE_ERROR_WRITE, "Cannot truncate %s: %m",
                                    e->stage_path[i]);
        }

        char cmdline_path[4096];
        snprintf(cmdline_path, sizeof(cmdline_path), "%s/cmdline", p->work_dir);
        _cleanup_free_ char *cmdline = NULL;
        if (asprintf(&cmdline, "%s\n", e->m.cmdline) < 0)
                return fail(e, -ENOMEM, UPDATE_ERROR_GENERIC, "Out of memory");
        r = write_file_atomic(cmdline_path, cmdline, strlen(cmdline));
        if (r < 0)
                return fail(e, r, UPDATE_ERROR_WRITE, "Cannot write %s: %m", cmdline_path);

        r = current_error(e);
        if (r < 0)
                return r;
        progress(e, INSTALL_PHASE_BOOT_FILES, 0, 1, true);
        if (!t->esp.image)
                return fail(e, -ENOENT, UPDATE_ERROR_POSTINSTALL, "No ESP to put the boot files on");
        const struct payload_image *images = e->m.images;
        struct esp_file files[] = {
                /* The staged files were checked against these above. */
                {"vmlinuz", e->stage_path[PAYLOAD_IMAGE_KERNEL], images[PAYLOAD_IMAGE_KERNEL].sha256},
                {"initrd", e->stage_path[PAYLOAD_IMAGE_INITRD], images[PAYLOAD_IMAGE_INITRD].sha256},
                {"cmdline", cmdline_path, NULL},
        };
        r = esp_install_slot_files(&t->esp, target_slot_name(t, e->slot), files, ELEMENTSOF(files));
        if (r < 0)
                return fail(e, r, UPDATE_ERROR_POSTINSTALL,
                            "Cannot install the boot files of slot %s on the ESP",
                            target_slot_name(t, e->slot));
        pthread_mutex_lock(&e->lock);
        e->boot_installed = true;
        r = e->error; /* stopped meanwhile: the install is not going on */
        pthread_mutex_unlock(&e->lock);
        if (r == 0)
                progress(e, INSTALL_PHASE_BOOT_FILES, 1, 1, true);
        return 0;
}

static void *boot_files_run(void *arg) {
        install_boot_files(arg); /* its failure is the engine's error */
        return NULL;
}

static int start_boot_files(struct engine *e) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, THREAD_STACK);
        int r = pthread_create(&e->boot_thread, &attr, boot_files_run, e);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                pthread_mutex_lock(&e->lock);
                e->boot_started = false;
                pthread_mutex_unlock(&e->lock);
                return fail(e, -r, UPDATE_ERROR_GENERIC, "Cannot start a thread: %m");
        }
        pthread_setname_np(e->boot_thread, "pivot-boot");
        return 0;
}

/* Waits for the boot files' thread if it runs; from here on none starts. */
static void join_boot_files(struct engine *e) {
        pthread_mutex_lock(&e->lock);
        bool running = e->boot_started && !e->boot_joined;
        e->boot_joined = true;
        pthread_mutex_unlock(&e->lock);
        if (running)
                pthread_join(e->boot_thread, NULL);
}

/* Chunk `chunk` is on the disk and checked: count it once every chunk before it is, and now
 * and then sync the outputs and record how far the download got (only what is on the disk may
 * be recorded as done). file_ctx is NULL for a chunk held from before a resume. */
static int chunk_done(struct engine *e, uint32_t chunk, const struct payload_chunk *c,
                      const SHA256_CTX *file_ctx) {
        uint64_t every = e->p->checkpoint_bytes ? e->p->checkpoint_bytes : CHECKPOINT_BYTES;
        struct checkpoint ckpt;
        bool save = false;

        pthread_mutex_lock(&e->lock);
        struct done_slot *slot = &e->done[chunk % DONE_WINDOW];
        slot->done = true;
        slot->end = c->offset + c->size;
        slot->raw_size = c->raw_size;
        slot->image = (uint8_t)c->image;
        if (file_ctx)
                slot->file_ctx = *file_ctx;
        bool advanced = false;
        for (;;) {
                struct done_slot *d = &e->done[e->verified % DONE_WINDOW];
                if (!d->done)
                        break;
                d->done = false;
                if (e->verified >= e->first_chunk) {
                        e->verified_ctx = d->file_ctx;
                        e->since_ckpt += d->raw_size;
                }
                if (d->image != PAYLOAD_IMAGE_ROOT)
                        e->boot_verified += d->raw_size;
                e->verified_end = d->end;
                e->verified++;
                advanced = true;
        }
        bool start_boot = !e->boot_started && !e->boot_joined && !e->error &&
                          e->boot_verified == e->boot_bytes;
        if (start_boot)
                e->boot_started = true;
        if (advanced)
                pthread_cond_broadcast(&e->c_worker); /* the window moved */
        if (advanced && !e->error && !e->checkpointing && e->verified > e->first_chunk &&
            e->verified < e->m.n_chunks &&
            (e->since_ckpt >= every || now_ms() - e->last_ckpt_ms >= CHECKPOINT_SECONDS * 1000)) {
                e->checkpointing = save = true;
                e->since_ckpt = 0;
                e->last_ckpt_ms = now_ms();
                ckpt = e->ckpt;
                ckpt.next_chunk = e->verified;
                ckpt.next_offset = e->verified_end;
                ckpt.file_ctx = e->verified_ctx;
        }
        pthread_mutex_unlock(&e->lock);
        if (start_boot && start_boot_files(e) < 0)
                return -ECANCELED;
        if (!save)
                return 0;

        int r = sync_outputs(e);
        if (r < 0)
                return fail(e, r, UPDATE_ERROR_WRITE, "Cannot sync the slot: %m");
        r = checkpoint_save(e->p->work_dir, &ckpt);
        if (r < 0)
                log_warning_errno(r, "Cannot save the resume checkpoint: %m");
        pthread_mutex_lock(&e->lock);
        e->checkpointing = false;
        pthread_mutex_unlock(&e->lock);
        return 0;
}

/* A record of the stored chunk table that does not parse is the payload's fault; one that
 * cannot be read (an I/O error, the file cut short) is this machine's. */
static int malformed_table(struct engine *e, int r) {
        if (r == -EBADMSG)
                return fail(e, r, UPDATE_ERROR_PAYLOAD_VERIFY, "%s: malformed chunk table",
                            e->p->source->name);
        return fail(e, r, UPDATE_ERROR_WRITE, "Cannot read %s: %m", e->table_path);
}

/* What a worker takes next: a chunk held from before a resume (checked first, in order), else
 * the next received chunk; either only within the window. Called with the lock held; false
 * when there is nothing more to do. */
static bool take_next(struct engine *e, struct worker *w, struct job **ret_job,
                      struct payload_chunk *ret_held, uint32_t *ret_held_index) {
        uint64_t t0 = now_us();
        bool have = false;
        for (;;) {
                if (e->error)
                        break;
                if (e->next_held < e->first_chunk) {
                        if (e->next_held - e->verified < DONE_WINDOW) {
                                int r = table_record(&e->m, &e->held_table, e->next_held,
                                                     e->next_held_offset, ret_held);
                                if (r < 0) {
                                        pthread_mutex_unlock(&e->lock);
                                        malformed_table(e, r);
                                        pthread_mutex_lock(&e->lock);
                                        break;
                                }
                                *ret_held_index = e->next_held++;
                                e->next_held_offset += ret_held->size;
                                *ret_job = NULL;
                                have = true;
                                break;
                        }
                } else if (e->n_full > 0) {
                        struct job *job = &e->jobs[e->full_head];
                        if (job->chunk - e->verified < DONE_WINDOW) {
                                e->full_head = (e->full_head + 1) % CHUNK_RING_MAX;
                                e->n_full--;
                                *ret_job = job;
                                have = true;
                                break;
                        }
                } else if (e->receiving_done)
                        break;
                pthread_cond_wait(&e->c_worker, &e->lock);
        }
        w->wait_us += now_us() - t0;
        return have;
}

/* A job's compressed bytes are done with: their room goes back to the receiver. */
static void release_compressed(struct engine *e, int idx) {
        pthread_mutex_lock(&e->lock);
        chunk_ring_release(&e->ring, idx);
        pthread_cond_signal(&e->c_receiver);
        pthread_mutex_unlock(&e->lock);
}

static void *worker_run(void *arg) {
        struct worker *w = arg;
        struct engine *e = w->e;

        for (;;) {
                struct job *job = NULL;
                struct payload_chunk c = {0};
                uint32_t chunk = 0;
                SHA256_CTX file_ctx;
                int r;

                pthread_mutex_lock(&e->lock);
                bool have = take_next(e, w, &job, &c, &chunk);
                pthread_mutex_unlock(&e->lock);
                if (!have)
                        break;

                uint64_t t = thread_cpu_us(), t1;
                if (job) {
                        c = job->c;
                        chunk = job->chunk;
                        file_ctx = job->file_ctx;
                        int idx = (int)(job - e->jobs); /* its entry in the ring */
                        const uint8_t *in = e->ring_buf + chunk_ring_offset(&e->ring, idx);
                        /* Checked here rather than as it arrives: the receiver, the one thread
                         * every byte goes through, hashes the whole file already. */
                        if (!payload_chunk_check(&c, in)) {
                                release_compressed(e, idx);
                                fail(e, -EILSEQ, UPDATE_ERROR_PAYLOAD_HASH,
                                     "%s: chunk %u (%s) does not match its SHA-256",
                                     e->p->source->name, chunk, payload_image_name(c.image));
                                break;
                        }
                        t1 = thread_cpu_us(), w->cpu_verify_us += t1 - t, t = t1;
                        pthread_mutex_lock(&e->lock);
                        uint64_t t0 = now_us();
                        while (!e->error && e->n_free_decoders == 0)
                                pthread_cond_wait(&e->c_decoder, &e->lock);
                        w->wait_us += now_us() - t0;
                        /* No decoder means an error elsewhere: give the job back and stop. */
                        struct payload_decoder *d = e->error ? NULL : e->decoders[--e->n_free_decoders];
                        pthread_mutex_unlock(&e->lock);
                        r = d ? payload_chunk_decompress(d, &c, in, w->buf) : 0;
                        if (d) {
                                pthread_mutex_lock(&e->lock);
                                e->decoders[e->n_free_decoders++] = d;
                                pthread_cond_signal(&e->c_decoder);
                                pthread_mutex_unlock(&e->lock);
                        }
                        release_compressed(e, idx);
                        t1 = thread_cpu_us(), w->cpu_decompress_us += t1 - t, t = t1;
                        if (!d)
                                break;
                        if (r < 0) {
                                fail(e, r, UPDATE_ERROR_PAYLOAD_VERIFY,
                                     "Chunk %u does not decompress although its hash matches", chunk);
                                break;
                        }
                        if (write_chunk(e, &c, chunk, w->buf) < 0)
                                break;
                        t1 = thread_cpu_us(), w->cpu_write_us += t1 - t, t = t1;
                }
                if (read_back(e, &c, chunk, w->buf, !job) < 0)
                        break;
                t1 = thread_cpu_us(), w->cpu_read_us += t1 - t, t = t1;
                bool good = payload_chunk_check_raw(&c, w->buf);
                w->cpu_verify_us += thread_cpu_us() - t;
                if (!good && !job) {
                        held_chunk_lost(e, &c, chunk, "reads back different");
                        break;
                }
                if (!good) {
                        fail(e, -EIO, UPDATE_ERROR_ROOTFS_VERIFY,
                             "%s chunk %u reads back different from what was written",
                             payload_image_name(c.image), chunk);
                        break;
                }
                if (chunk_done(e, chunk, &c, job ? &file_ctx : NULL) < 0)
                        break;
        }
        w->runqueue_us = thread_runqueue_us();
        pthread_mutex_lock(&e->lock);
        e->workers_running--;
        pthread_cond_signal(&e->c_receiver);
        pthread_mutex_unlock(&e->lock);
        return NULL;
}

/* --- Receiver ------------------------------------------------------------------------------ */

static int check_manifest(struct engine *e) {
        const struct install_params *p = e->p;
        struct payload_manifest *m = &e->m;
        int r;

        r = payload_manifest_parse(e->prefix, e->prefix_len, m);
        if (r == -EPROTONOSUPPORT)
                return fail(e, r, UPDATE_ERROR_PAYLOAD_VERIFY,
                            "%s: payload format or field unknown to this agent", p->source->name);
        if (r < 0)
                return fail(e, r, UPDATE_ERROR_PAYLOAD_VERIFY,
                            "%s: malformed payload header or manifest", p->source->name);
        r = payload_verify_signature(e->prefix, e->prefix_len, m, p->key);
        if (r < 0) {
                uint8_t id[PAYLOAD_KEY_ID_SIZE];
                payload_key_id(p->key, id);
                if (memcmp(id, m->key_id, sizeof(id)) != 0)
                        return fail(e, r, UPDATE_ERROR_SIGNATURE,
                                    "%s: signed by another key than the one this system trusts",
                                    p->source->name);
                return fail(e, r, UPDATE_ERROR_SIGNATURE, "%s: bad signature", p->source->name);
        }
        if (p->expect_size && p->expect_size != m->payload_size)
                return fail(e, -EBADMSG, UPDATE_ERROR_PAYLOAD_SIZE,
                            "%s: payload of %" PRIu64 " bytes, the server announced %" PRIu64,
                            p->source->name, m->payload_size, p->expect_size);
        if (p->expect_version && version_compare(p->expect_version, m->version) != 0)
                return fail(e, -EBADMSG, UPDATE_ERROR_PAYLOAD_VERIFY,
                            "The server announced version %s but the payload is %s",
                            p->expect_version, m->version);
        if (!p->allow_downgrade && version_compare(m->version, p->running_version) < 0)
                return fail(e, -EPERM, UPDATE_ERROR_POLICY,
                            "Refusing %s: older than the running %s (downgrades must be allowed "
                            "explicitly)", m->version, p->running_version);
        if (!p->ignore_min_version && version_compare(p->running_version, m->min_version) < 0)
                return fail(e, -EPERM, UPDATE_ERROR_POLICY,
                            "Refusing %s: it updates from %s or later, this system runs %s",
                            m->version, m->min_version, p->running_version);
        uint64_t need = round_up(m->images[PAYLOAD_IMAGE_ROOT].size, ALIGN);
        if (need > e->part->size)
                return fail(e, -ENOSPC, UPDATE_ERROR_WRITE,
                            "Slot %s is too small: %" PRIu64 " bytes for a root image of %" PRIu64,
                            target_slot_name(p->target, e->slot), e->part->size,
                            m->images[PAYLOAD_IMAGE_ROOT].size);
        struct statvfs sv;
        uint64_t staged = m->images[PAYLOAD_IMAGE_KERNEL].size + m->images[PAYLOAD_IMAGE_INITRD].size +
                          (m->data_offset - m->table_offset);
        if (statvfs(p->work_dir, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < staged + (1u << 20))
                return fail(e, -ENOSPC, UPDATE_ERROR_WRITE,
                            "%s is full: %" PRIu64 " bytes needed for the kernel, initrd and "
                            "chunk table", p->work_dir, staged);
        snprintf(e->result->version, sizeof(e->result->version), "%s", m->version);
        return 0;
}

static int open_outputs(struct engine *e) {
        const char *disk = e->p->target->disk->path;
        e->direct = e->part->offset % ALIGN == 0;
        if (e->direct) {
                e->slot_fd = open(disk, O_RDWR | O_DIRECT | O_CLOEXEC);
                if (e->slot_fd < 0 && errno == EINVAL)
                        e->direct = false; /* a file system without O_DIRECT */
        }
        if (!e->direct)
                e->slot_fd = open(disk, O_RDWR | O_CLOEXEC);
        if (e->slot_fd < 0)
                return fail(e, negative_errno(), UPDATE_ERROR_WRITE, "Cannot open %s: %m", disk);
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++) {
                if (t == PAYLOAD_IMAGE_ROOT)
                        continue;
                snprintf(e->stage_path[t], sizeof(e->stage_path[t]), "%s/%s", e->p->work_dir,
                         payload_image_name(t));
                int flags = O_RDWR | O_CREAT | O_CLOEXEC | (e->first_chunk ? 0 : O_TRUNC);
                e->stage_fd[t] = open(e->stage_path[t], flags, 0600);
                if (e->stage_fd[t] < 0)
                        return fail(e, negative_errno(), UPDATE_ERROR_WRITE, "Cannot create %s: %m",
                                    e->stage_path[t]);
        }
        return 0;
}

/* The pipeline's buffers are mappings of their own: page-aligned (O_DIRECT), resident only
 * once touched, and given back to the system as soon as they are freed. */
static void *buf_alloc(size_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
}

static void buf_free(void *p, size_t size) {
        if (p)
                munmap(p, size);
}

static int start_worker(struct engine *e, struct worker *w) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        /* Each thread needs a few KiB of stack; not the default 8 MiB of address space. */
        pthread_attr_setstacksize(&attr, THREAD_STACK);
        pthread_mutex_lock(&e->lock);
        int r = pthread_create(&w->thread, &attr, worker_run, w);
        if (r == 0) {
                w->started = true;
                e->workers_running++;
        }
        pthread_mutex_unlock(&e->lock);
        pthread_attr_destroy(&attr);
        if (r != 0)
                return fail(e, -r, UPDATE_ERROR_GENERIC, "Cannot start a thread: %m");
        pthread_setname_np(w->thread, "pivot-install");
        return 0;
}

static int start_threads(struct engine *e) {
        /* What the Omaha exchange and the manifest check allocated and freed is still resident
         * in the heap: given back before the pipeline takes its share. */
        malloc_trim(0);
        chunk_ring_init(&e->ring, RING_LARGEST_CHUNKS * round_up(payload_max_compressed(e->m.chunk_size), ALIGN));
        e->raw_size = round_up(e->m.chunk_size, ALIGN);
        if (!(e->ring_buf = buf_alloc(e->ring.size)))
                return fail(e, -ENOMEM, UPDATE_ERROR_GENERIC, "Out of memory");
        for (size_t i = 0; i < N_WORKERS; i++) {
                e->workers[i].e = e;
                if (!(e->workers[i].buf = buf_alloc(e->raw_size)))
                        return fail(e, -ENOMEM, UPDATE_ERROR_GENERIC, "Out of memory");
        }
        for (size_t i = 0; i < N_DECODERS; i++) {
                if (payload_decoder_new(&e->decoders[i]) < 0)
                        return fail(e, -ENOMEM, UPDATE_ERROR_GENERIC, "Out of memory");
                e->n_free_decoders++;
        }
        for (unsigned i = 0; i < PAYLOAD_IMAGE_MAX; i++)
                if (i != PAYLOAD_IMAGE_ROOT)
                        e->boot_bytes += e->m.images[i].size;
        e->held_table = (struct table_reader){.fd = e->table_fd};
        e->next_held_offset = e->m.data_offset;
        e->last_ckpt_ms = now_ms();
        int r = 0;
        for (size_t i = 0; i < N_WORKERS && r == 0; i++)
                r = start_worker(e, &e->workers[i]);
        return r;
}

/* The whole prefix is here: check it; the chunk table comes next. */
static int prefix_complete(struct engine *e) {
        int r = check_manifest(e);
        if (r < 0)
                return r;
        e->have_manifest = true;
        e->result->payload_size = e->m.payload_size;
        SHA256(e->prefix, e->prefix_len, e->prefix_sha256);
        e->chunk_start_ctx = e->file_ctx;
        table_path(e->p->work_dir, e->table_path, sizeof(e->table_path));
        e->table_fd = open(e->table_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (e->table_fd < 0)
                return fail(e, negative_errno(), UPDATE_ERROR_WRITE, "Cannot create %s: %m",
                            e->table_path);
        e->table_len = 0;
        SHA256_Init(&e->table_ctx);
        return 0;
}

/* The chunk table is here and matches the signed manifest: decide where the chunks start
 * (a resume?), then get ready to write. */
static int table_complete(struct engine *e) {
        uint8_t digest[32];
        int r;

        SHA256_Final(digest, &e->table_ctx);
        if (memcmp(digest, e->m.chunk_table_sha256, 32) != 0)
                return fail(e, -EILSEQ, UPDATE_ERROR_PAYLOAD_HASH,
                            "%s: the chunk table does not match its SHA-256", e->p->source->name);
        e->have_table = true;
        e->table = (struct table_reader){.fd = e->table_fd};

        uint64_t saved_offset = 0;
        bool resume = e->resume_candidate && e->ckpt.head_size == e->m.data_offset &&
                      memcmp(e->prefix_sha256, e->ckpt.prefix_sha256, 32) == 0 &&
                      !strcmp(e->ckpt.slot_uuid, e->slot_uuid) &&
                      e->ckpt.next_chunk < e->m.n_chunks &&
                      table_chunk_offset(&e->m, &e->table, e->ckpt.next_chunk, &saved_offset) == 0 &&
                      e->ckpt.next_offset == saved_offset;
        if (e->resume_candidate && !resume) {
                log_info("The saved download is of another payload or slot; starting over");
                install_discard_checkpoint(e->p->work_dir);
        }
        e->resume_candidate = false;
        const struct checkpoint saved = e->ckpt; /* the one checked above */
        memset(&e->ckpt, 0, sizeof(e->ckpt));
        memcpy(e->ckpt.prefix_sha256, e->prefix_sha256, 32);
        e->ckpt.head_size = e->m.data_offset;
        snprintf(e->ckpt.slot_uuid, sizeof(e->ckpt.slot_uuid), "%s", e->slot_uuid);

        if (resume) {
                e->first_chunk = saved.next_chunk;
                e->chunk = saved.next_chunk;
                e->pos = saved.next_offset;
                e->file_ctx = saved.file_ctx;
                e->result->resumed = true;
                log_info("Resuming the download of %s at chunk %u of %u (%" PRIu64 " of %" PRIu64
                         " bytes)", e->m.version, e->chunk, e->m.n_chunks, e->pos,
                         e->m.payload_size);
        } else {
                e->chunk = 0;
        }
        e->chunk_start_ctx = e->file_ctx;
        r = table_record(&e->m, &e->table, e->chunk, e->pos, &e->cur_chunk);
        if (r < 0)
                return malformed_table(e, r);

        r = open_outputs(e);
        if (r < 0)
                return r;
        r = start_threads(e);
        if (r < 0)
                return r;
        e->prepared = true;
        return 0;
}

/* A stop was asked for (SIGTERM): not a failure of the payload; the checkpoint stays. */
static int stopped(struct engine *e) {
        return fail(e, -ECANCELED, UPDATE_ERROR_DOWNLOAD_TRANSFER,
                    "Download stopped; it resumes at the next start");
}

static int receive(void *userdata, const void *data, size_t len) {
        struct engine *e = userdata;
        const uint8_t *p = data;
        int r;

        if (e->p->cancel && *e->p->cancel)
                return stopped(e);
        e->result->bytes_fetched += len; /* not e->pos: a resume jumps over what it holds */
        while (len > 0) {
                if (!e->have_manifest) {
                        /* The header first, to learn the prefix size; then the rest of it. */
                        size_t want = e->prefix_size ? e->prefix_size : PAYLOAD_HEADER_SIZE;
                        size_t n = want - e->prefix_len < len ? want - e->prefix_len : len;
                        memcpy(e->prefix + e->prefix_len, p, n);
                        SHA256_Update(&e->file_ctx, p, n);
                        e->prefix_len += n, e->pos += n, p += n, len -= n;
                        if (e->prefix_len < want)
                                continue;
                        if (!e->prefix_size) {
                                uint32_t ms;
                                r = payload_header_parse(e->prefix, e->prefix_len, &ms);
                                if (r < 0)
                                        return fail(e, r, UPDATE_ERROR_PAYLOAD_VERIFY,
                                                    "%s: not a Pivot update payload",
                                                    e->p->source->name);
                                e->prefix_size = (size_t)payload_prefix_size(ms);
                                uint8_t *np = realloc(e->prefix, e->prefix_size);
                                if (!np)
                                        return fail(e, -ENOMEM, UPDATE_ERROR_GENERIC, "Out of memory");
                                e->prefix = np;
                                continue;
                        }
                        r = prefix_complete(e);
                        if (r < 0)
                                return r;
                        free(e->prefix); /* parsed, checked and hashed */
                        e->prefix = NULL;
                        continue;
                }
                if (!e->have_table) {
                        uint64_t want = e->m.data_offset - e->m.table_offset;
                        size_t n = want - e->table_len < len ? (size_t)(want - e->table_len) : len;
                        r = pwrite_full(e->table_fd, p, n, e->table_len);
                        if (r < 0)
                                return fail(e, r, UPDATE_ERROR_WRITE, "Cannot write %s: %m",
                                            e->table_path);
                        SHA256_Update(&e->table_ctx, p, n);
                        SHA256_Update(&e->file_ctx, p, n);
                        e->table_len += n, e->pos += n, p += n, len -= n;
                        if (e->table_len < want)
                                continue;
                        r = table_complete(e);
                        if (r < 0)
                                return r;
                        if (e->result->resumed)
                                return 0; /* the rest comes from a second, ranged fetch */
                        continue;
                }
                if (e->chunk >= e->m.n_chunks)
                        return fail(e, -EBADMSG, UPDATE_ERROR_PAYLOAD_VERIFY,
                                    "%s: more bytes than the manifest describes", e->p->source->name);
                if (!e->cur) {
                        pthread_mutex_lock(&e->lock);
                        uint64_t t0 = now_us();
                        int idx = -1;
                        while (!e->error &&
                               (idx = chunk_ring_reserve(&e->ring, e->cur_chunk.size)) < 0)
                                pthread_cond_wait(&e->c_receiver, &e->lock);
                        e->wait_receiver_us += now_us() - t0;
                        if (e->error) {
                                r = e->error;
                                pthread_mutex_unlock(&e->lock);
                                return r;
                        }
                        e->cur = &e->jobs[idx];
                        e->cur_buf = e->ring_buf + chunk_ring_offset(&e->ring, idx);
                        pthread_mutex_unlock(&e->lock);
                        e->fill = 0;
                        e->cur->chunk = e->chunk;
                        e->cur->c = e->cur_chunk;
                }
                const struct payload_chunk *c = &e->cur_chunk;
                uint8_t *buf = e->cur_buf;
                size_t n = c->size - e->fill < len ? c->size - e->fill : len;
                memcpy(buf + e->fill, p, n);
                SHA256_Update(&e->file_ctx, p, n);
                e->fill += (uint32_t)n, e->pos += n, p += n, len -= n;
                if (e->fill < c->size)
                        continue;
                e->cur->file_ctx = e->file_ctx;
                e->chunk_start_ctx = e->file_ctx;
                pthread_mutex_lock(&e->lock);
                e->n_full++; /* the newest job is next in the line of full ones */
                pthread_cond_signal(&e->c_worker);
                pthread_mutex_unlock(&e->lock);
                e->cur = NULL;
                e->chunk++;
                if (e->chunk < e->m.n_chunks) {
                        r = table_record(&e->m, &e->table, e->chunk, c->offset + c->size,
                                         &e->cur_chunk);
                        if (r < 0)
                                return malformed_table(e, r);
                }
        }
        if (e->have_manifest)
                progress(e, INSTALL_PHASE_DOWNLOAD, e->pos, e->m.payload_size, false);
        return current_error(e);
}

/* Where a retry starts: the last chunk boundary, or the start of the table or the file. */
static uint64_t retry_offset(const struct engine *e) {
        if (!e->have_manifest)
                return 0;
        if (!e->have_table)
                return e->m.table_offset;
        return e->chunk < e->m.n_chunks ? e->cur_chunk.offset : e->m.payload_size;
}

/* After a failed transfer: back to retry_offset(). */
static void rewind_receiver(struct engine *e) {
        e->pos = retry_offset(e);
        if (!e->have_manifest) {
                e->prefix_len = 0;
                e->prefix_size = 0;
                SHA256_Init(&e->file_ctx);
                return;
        }
        if (!e->have_table) {
                e->table_len = 0;
                SHA256_Init(&e->table_ctx);
                e->file_ctx = e->chunk_start_ctx;
                return;
        }
        if (e->cur) {
                pthread_mutex_lock(&e->lock);
                chunk_ring_unreserve(&e->ring);
                pthread_mutex_unlock(&e->lock);
                e->cur = NULL;
        }
        e->fill = 0;
        e->file_ctx = e->chunk_start_ctx;
}

static int fetch_all(struct engine *e) {
        const struct install_params *p = e->p;
        const unsigned first_delay = p->retry_delay_ms ? p->retry_delay_ms : 1000;
        unsigned attempt = 0, delay = first_delay;

        for (;;) {
                uint64_t from = e->pos, to = 0;
                /* A possible resume: the prefix and the table only, then a jump ahead. Also on a
                 * retry inside them: the bytes after the table are not the ones to resume with.
                 * table_complete() decides (and clears resume_candidate); a checkpoint whose
                 * head is not this payload's cannot resume. */
                if (e->resume_candidate && e->pos < e->ckpt.head_size &&
                    (!e->have_manifest || e->ckpt.head_size == e->m.data_offset))
                        to = e->ckpt.head_size;
                uint64_t before = e->pos, dropped = p->source->bytes_dropped;
                int http = 0;
                int r = p->source->fetch(p->source, from, to, receive, e, &http);
                e->result->bytes_fetched += p->source->bytes_dropped - dropped;
                int err = current_error(e);
                if (err < 0)
                        return err; /* not the network: already reported */
                if (r == -ECANCELED || (p->cancel && *p->cancel))
                        return stopped(e);
                /* Every chunk is here: an error after the last byte (a lost end of stream) does
                 * not matter, and a retry would ask for a range past the end. */
                if (e->have_table && e->chunk == e->m.n_chunks)
                        return 0;
                if (r == 0) {
                        /* The prefix and table alone were asked for (a possible resume) and came:
                         * the receiver has decided where the chunks start. Or the signed prefix is
                         * longer than the saved head: then it is another payload, and the rest of
                         * the prefix comes next (table_complete() starts over). A body that
                         * brought nothing (a server that ignores Range and sends less than the
                         * offset) counts as a failed attempt below, not as a reason to ask again
                         * at once. */
                        if (to && e->pos > before)
                                continue;
                        r = -ENODATA;
                }
                if (http)
                        e->result->http_status = http;
                /* Progress kept: the retry budget and the delay start again. Measured where the
                 * retry will start, not where the transfer stopped: a link that always drops
                 * 2 MiB into a long table or a large chunk keeps nothing, however far each try
                 * gets. That point only moves forward, so this cannot go on for ever. */
                if (retry_offset(e) > before) {
                        attempt = 0;
                        delay = first_delay;
                }
                /* 4xx will not change on a retry, except a timeout or a request to slow down. */
                bool client_error = http >= 400 && http < 500 && http != 408 && http != 429;
                if (!p->source->retryable || attempt >= p->retries || client_error) {
                        int code = http >= 400 ? UPDATE_ERROR_HTTP_BASE + http
                                                : UPDATE_ERROR_DOWNLOAD_TRANSFER;
                        if (r == -ENODATA)
                                return fail(e, r, code, "%s: truncated payload (%" PRIu64 " of %" PRIu64
                                            " bytes)", p->source->name, e->pos,
                                            e->have_manifest ? e->m.payload_size : 0);
                        if (http >= 400)
                                return fail(e, -EREMOTEIO, code, "%s: HTTP status %d",
                                            p->source->name, http);
                        return fail(e, r, code, "%s: download failed: %m", p->source->name);
                }
                attempt++;
                log_warning_errno(r, "Download interrupted at byte %" PRIu64 " (%s); retrying "
                                  "from the last chunk boundary in %u ms (%u/%u)", e->pos,
                                  http ? "HTTP error" : strerror(-r), delay, attempt, p->retries);
                rewind_receiver(e);
                struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (delay % 1000) * 1000000L};
                nanosleep(&ts, NULL);
                delay = delay * 2 > 60000 ? 60000 : delay * 2;
        }
}

static void join_threads(struct engine *e) {
        for (size_t i = 0; i < N_WORKERS; i++)
                if (e->workers[i].started) {
                        pthread_join(e->workers[i].thread, NULL);
                        e->workers[i].started = false;
                }
}

/* Waits for the workers; reports verification progress meanwhile. */
static int drain(struct engine *e) {
        progress(e, INSTALL_PHASE_DOWNLOAD, e->m.payload_size, e->m.payload_size, true);
        pthread_mutex_lock(&e->lock);
        e->receiving_done = true;
        pthread_cond_broadcast(&e->c_worker);
        pthread_mutex_unlock(&e->lock);
        for (;;) {
                pthread_mutex_lock(&e->lock);
                uint32_t v = e->verified;
                int err = e->error;
                bool done = e->workers_running == 0;
                pthread_mutex_unlock(&e->lock);
                progress(e, INSTALL_PHASE_VERIFY, v, e->m.n_chunks, false);
                if (err || done)
                        break;
                struct timespec ts = {.tv_nsec = 20 * 1000000L};
                nanosleep(&ts, NULL);
        }
        join_threads(e);
        e->cpu_receiver_us = thread_cpu_us() - e->cpu_receiver_start_us;
        e->runqueue_receiver_us = thread_runqueue_us() - e->runqueue_receiver_start_us;
        int r = current_error(e);
        uint64_t total = now_us() - e->start_us, wait = 0, dec = 0, wr = 0, rd = 0, ver = 0;
        uint64_t runqueue = 0;
        for (size_t i = 0; i < N_WORKERS; i++) {
                const struct worker *w = &e->workers[i];
                wait += w->wait_us, dec += w->cpu_decompress_us, wr += w->cpu_write_us;
                rd += w->cpu_read_us, ver += w->cpu_verify_us, runqueue += w->runqueue_us;
        }
        log_debug("install: %.2fs from the first byte; waiting: receiver %.2fs (for a free buffer), "
                  "%d workers %.2fs together (for a chunk); a ring of %zu KiB for compressed "
                  "chunks and a buffer of %zu KiB per worker; %s writes", (double)total / 1e6,
                  (double)e->wait_receiver_us / 1e6, N_WORKERS, (double)wait / 1e6,
                  e->ring.size >> 10, e->raw_size >> 10, e->direct ? "O_DIRECT" : "buffered");
        /* One line a script can read: CPU seconds per step (the workers' added up), then the
         * seconds the receiver and the workers (together) were ready to run but had no CPU. */
        log_debug("install cpu: receiver %.3f decompressor %.3f writer %.3f reader %.3f "
                  "verifier %.3f wall %.3f runqueue_receiver %.3f runqueue_workers %.3f workers %d",
                  (double)e->cpu_receiver_us / 1e6, (double)dec / 1e6, (double)wr / 1e6,
                  (double)rd / 1e6, (double)ver / 1e6, (double)total / 1e6,
                  (double)e->runqueue_receiver_us / 1e6, (double)runqueue / 1e6, N_WORKERS);
        if (r == 0 && e->verified != e->m.n_chunks)
                return fail(e, -EIO, UPDATE_ERROR_ROOTFS_VERIFY, "Only %u of %u chunks verified",
                            e->verified, e->m.n_chunks);
        progress(e, INSTALL_PHASE_VERIFY, e->verified, e->m.n_chunks, true);
        return r;
}

static void stop_threads(struct engine *e) {
        pthread_mutex_lock(&e->lock);
        bool any = e->boot_started && !e->boot_joined;
        pthread_mutex_unlock(&e->lock);
        for (size_t i = 0; i < N_WORKERS; i++)
                any |= e->workers[i].started;
        if (!any)
                return;
        fail(e, -ECANCELED, UPDATE_ERROR_GENERIC, "Install cancelled");
        join_threads(e);
        join_boot_files(e);
}

/* The pipeline's buffers, once its threads are gone. */
static void free_buffers(struct engine *e) {
        buf_free(e->ring_buf, e->ring.size);
        e->ring_buf = NULL;
        for (size_t i = 0; i < N_WORKERS; i++) {
                buf_free(e->workers[i].buf, e->raw_size);
                e->workers[i].buf = NULL;
        }
        for (size_t i = 0; i < N_DECODERS; i++)
                payload_decoder_freep(&e->decoders[i]);
        e->n_free_decoders = 0;
}

static int finish(struct engine *e) {
        const struct install_params *p = e->p;
        struct target *t = p->target;
        int r;

        /* The file as the server described it (transport integrity; trust comes from the
         * signature and the chunk hashes). */
        if (p->has_expect_sha256) {
                uint8_t digest[32];
                SHA256_Final(digest, &e->file_ctx);
                if (memcmp(digest, p->expect_sha256, 32) != 0)
                        return fail(e, -EILSEQ, UPDATE_ERROR_PAYLOAD_HASH,
                                    "%s: the payload's SHA-256 differs from the one the server "
                                    "announced", p->source->name);
        }
        r = sync_outputs(e);
        if (r < 0)
                return fail(e, r, UPDATE_ERROR_WRITE, "Cannot sync the slot: %m");

        /* What is left (waiting for the boot files, the GPT) needs none of the pipeline's
         * memory. */
        free_buffers(e);
        join_boot_files(e);
        r = current_error(e);
        if (r < 0)
                return r;
        /* The thread starts when the last kernel or initrd chunk is verified, and every chunk
         * was: without an error, it has run. */
        if (!e->boot_installed)
                return fail(e, -EIO, UPDATE_ERROR_POSTINSTALL,
                            "The boot files of slot %s were not installed",
                            target_slot_name(t, e->slot));

        if (!p->no_flip) {
                if (p->before_flip && (r = p->before_flip(p->userdata, e->slot, e->m.version)) < 0)
                        return fail(e, r, UPDATE_ERROR_POSTINSTALL, "Cannot record the install in "
                                    "the state directory: slot %s is not switched to",
                                    target_slot_name(t, e->slot));
                progress(e, INSTALL_PHASE_FLIP, 0, 1, true);
                r = target_slot_flip(t, e->slot, p->tries ? p->tries : 1);
                if (r < 0)
                        return fail(e, r, UPDATE_ERROR_POSTINSTALL, "Cannot switch to slot %s: %m",
                                    target_slot_name(t, e->slot));
                progress(e, INSTALL_PHASE_FLIP, 1, 1, true);
        }
        target_reload(t);
        return 0;
}

/* After a transfer error: record how far the slot is verified, so that the next run resumes
 * from there. */
static void save_final_checkpoint(struct engine *e) {
        stop_threads(e);
        if (e->verified == 0 || e->verified >= e->m.n_chunks || e->verified <= e->first_chunk ||
            sync_outputs(e) < 0)
                return;
        e->ckpt.next_chunk = e->verified;
        e->ckpt.next_offset = e->verified_end;
        e->ckpt.file_ctx = e->verified_ctx;
        if (checkpoint_save(e->p->work_dir, &e->ckpt) == 0)
                log_info("The download resumes from chunk %u of %u next time", e->verified,
                         e->m.n_chunks);
}

static void engine_done(struct engine *e) {
        stop_threads(e);
        if (e->slot_fd >= 0)
                close(e->slot_fd);
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++)
                if (e->stage_fd[t] >= 0)
                        close(e->stage_fd[t]);
        free_buffers(e);
        free(e->prefix);
        if (e->table_fd >= 0) {
                close(e->table_fd);
                unlink(e->table_path); /* every attempt receives it again */
        }
        payload_manifest_done(&e->m);
        pthread_mutex_destroy(&e->lock);
        pthread_cond_destroy(&e->c_receiver);
        pthread_cond_destroy(&e->c_worker);
        pthread_cond_destroy(&e->c_decoder);
        pthread_mutex_destroy(&e->progress_lock);
}

static int install_attempt(const struct install_params *p, struct install_result *ret,
                           bool *ret_held_lost) {
        _cleanup_(engine_done) struct engine e = {
                .p = p,
                .result = ret,
                .slot_fd = -1,
                .table_fd = -1,
                .stage_fd = {-1, -1, -1},
                .lock = PTHREAD_MUTEX_INITIALIZER,
                .c_receiver = PTHREAD_COND_INITIALIZER,
                .c_worker = PTHREAD_COND_INITIALIZER,
                .c_decoder = PTHREAD_COND_INITIALIZER,
                .progress_lock = PTHREAD_MUTEX_INITIALIZER,
        };
        int r;

        memset(ret, 0, sizeof(*ret));
        ret->error_code = UPDATE_ERROR_GENERIC; /* until it worked */
        e.slot = p->slot >= 0 ? p->slot : target_passive(p->target);
        if (e.slot < 0)
                return log_error_errno(-ENOENT, "No slot to install to");
        if (e.slot == p->target->booted)
                return log_error_errno(-EBUSY, "Refusing to write slot %s: it is the running one",
                                       target_slot_name(p->target, e.slot));
        if (target_slot_is_last_good(p->target, e.slot))
                return log_error_errno(-EBUSY, "Refusing to write slot %s: it is the only slot "
                                       "known to boot, and the running slot %s is still on "
                                       "trial; mark it good first (pivotctl mark-good)",
                                       target_slot_name(p->target, e.slot),
                                       target_slot_name(p->target, p->target->booted));
        ret->slot = e.slot;
        e.part = disk_slot_partition(p->target->disk, (size_t)e.slot);
        snprintf(e.slot_uuid, sizeof(e.slot_uuid), "%s", e.part->uuid);
        r = mkdir_p(p->work_dir, true);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", p->work_dir);
        /* From the first byte of an attempt until its flip, nothing may boot the slot: a
         * failed attempt (bad signature, truncated, power cut) leaves it at priority 0. */
        r = target_slot_disable(p->target, e.slot);
        if (r < 0) {
                ret->error_code = UPDATE_ERROR_WRITE;
                return log_error_errno(r, "Cannot set slot %s to priority 0: %m",
                                       target_slot_name(p->target, e.slot));
        }
        if (p->slot_disabled)
                p->slot_disabled(p->userdata, e.slot);

        e.prefix = malloc(PAYLOAD_HEADER_SIZE);
        if (!e.prefix)
                return log_error_errno(-ENOMEM, "Out of memory");
        SHA256_Init(&e.file_ctx);
        e.start_us = now_us();
        e.cpu_receiver_start_us = thread_cpu_us();
        e.runqueue_receiver_start_us = thread_runqueue_us();
        e.resume_candidate = checkpoint_load(p->work_dir, &e.ckpt) &&
                             !strcmp(e.ckpt.slot_uuid, e.slot_uuid);

        r = fetch_all(&e);
        if (r == 0)
                r = drain(&e);
        if (r == 0)
                r = finish(&e);
        if (r < 0) {
                ret->error_code = e.error_code ? e.error_code : UPDATE_ERROR_GENERIC;
                /* The threads first: a worker finishing a chunk could otherwise still save a
                 * checkpoint after the one below is discarded. */
                stop_threads(&e);
                *ret_held_lost = e.held_lost;
                /* A checkpoint stays for a transfer error or an HTTP error (resume later, or from
                 * another mirror: an expired URL, 404 on one of them); anything else means this
                 * payload or this slot is no good: start over next time. */
                if (!p->source->retryable || (ret->error_code != UPDATE_ERROR_DOWNLOAD_TRANSFER &&
                                               !(ret->error_code >= UPDATE_ERROR_HTTP_BASE + 400)))
                        install_discard_checkpoint(p->work_dir);
                else if (e.prepared)
                        save_final_checkpoint(&e);
                return r;
        }
        ret->error_code = 0;
        install_discard_checkpoint(p->work_dir);
        for (unsigned t = 0; t < PAYLOAD_IMAGE_MAX; t++)
                if (t != PAYLOAD_IMAGE_ROOT && e.stage_path[t][0])
                        unlink(e.stage_path[t]);
        return 0;
}

int install_run(const struct install_params *p, struct install_result *ret) {
        bool held_lost = false;
        int r = install_attempt(p, ret, &held_lost);
        if (r < 0 && held_lost && !(p->cancel && *p->cancel)) {
                /* The checkpoint is gone (not a transfer error): this attempt starts afresh. */
                uint64_t fetched = ret->bytes_fetched;
                r = install_attempt(p, ret, &held_lost);
                ret->bytes_fetched += fetched;
        }
        return r;
}

/* --- File source --------------------------------------------------------------------------- */

static int file_fetch(struct install_source *s, uint64_t offset, uint64_t end, install_sink_fn sink,
                      void *userdata, int *ret_http) {
        struct install_file_source *f = (struct install_file_source *)s;
        const size_t size = 256u << 10;
        _cleanup_free_ uint8_t *buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                size_t want = size;
                if (end && end - offset < want)
                        want = (size_t)(end - offset);
                if (want == 0)
                        return 0;
                ssize_t n = pread(f->fd, buf, want, (off_t)offset);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        return 0;
                int r = sink(userdata, buf, (size_t)n);
                if (r < 0)
                        return r;
                offset += (uint64_t)n;
        }
}

int install_file_source_open(const char *path, struct install_file_source *ret) {
        *ret = (struct install_file_source){
                .source = {.fetch = file_fetch, .retryable = false, .name = path},
                .fd = open(path, O_RDONLY | O_CLOEXEC),
        };
        if (ret->fd < 0)
                return negative_errno();
        (void)posix_fadvise(ret->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        return 0;
}

void install_file_source_close(struct install_file_source *s) {
        closep(&s->fd);
        s->fd = -1;
}

/* Small persistent key=value files in the agent's state directory (/var/lib/pivot on a device,
 * on STATE): what was installed and must be reported after the reboot, the version first
 * installed, versions that rolled back. Written atomically (temporary file, fsync, rename). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define STATE_MAX_KEYS 32

struct kv {
        char *keys[STATE_MAX_KEYS];
        char *values[STATE_MAX_KEYS];
        size_t n;
};

/* A missing file reads as empty. */
int kv_load(struct kv *kv, const char *path);
int kv_save(const struct kv *kv, const char *path);
/* Serialises read-modify-write cycles of one state file between processes (pivotctl beside
 * the daemon): an exclusive flock on PATH.lock, since the file itself is replaced by every
 * save and cannot carry a lock. Waits for the holder. Returns the descriptor that holds the
 * lock (close it to release) or a negative errno. */
int kv_lock(const char *path);
/* An exclusive flock on the file at path (created 0600 if missing): waits for the holder, or
 * with wait false returns -EBUSY while another holds it. The descriptor that holds the lock, or
 * a negative errno. */
int lock_file(const char *path, bool wait);
void kv_done(struct kv *kv);

const char *kv_get(const struct kv *kv, const char *key); /* NULL when absent */
int kv_set(struct kv *kv, const char *key, const char *value); /* value NULL: remove */

/* Writes a whole file atomically: PATH.tmp, fsync, rename, fsync of the directory. */
int write_file_atomic(const char *path, const void *data, size_t len);

/* mkdir -p with mode 0755 (0700 for the last component when private). */
int mkdir_p(const char *path, bool private);

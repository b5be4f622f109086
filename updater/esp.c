/* ESP access through mtools (mcopy, mmd, mmove, mdir) on DISK@@OFFSET. */
#include "esp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "run.h"
#include "util.h"

#define MTOOLS_TIMEOUT 300

int esp_open(const struct disk *d, struct esp *ret) {
        memset(ret, 0, sizeof(*ret));
        if (d->esp < 0)
                return -ENOENT;
        ret->disk_path = strdup(d->path);
        if (!ret->disk_path ||
            asprintf(&ret->image, "%s@@%" PRIu64, d->path, d->parts[d->esp].offset) < 0) {
                free(ret->disk_path);
                ret->image = ret->disk_path = NULL;
                return -ENOMEM;
        }
        /* mtools refuses images whose geometry it finds odd; the ESP is ours, skip the check. */
        setenv("MTOOLS_SKIP_CHECK", "1", 1);
        return 0;
}

void esp_done(struct esp *e) {
        free(e->disk_path);
        free(e->image);
        memset(e, 0, sizeof(*e));
}

/* Runs an mtools command; logs its stderr on failure. */
static int mtools(char *const argv[], size_t max_out, char **out, size_t *out_len) {
        _cleanup_free_ char *err = NULL;
        int r = run_program(argv, max_out, out, out_len, &err, MTOOLS_TIMEOUT);
        if (r == -ENOENT)
                return log_error_errno(r, "%s not found: mtools is needed to write the ESP",
                                       argv[0]);
        if (r < 0)
                return log_error_errno(r, "%s failed: %m", argv[0]);
        if (r > 0) {
                size_t n = err ? strlen(err) : 0;
                while (n > 0 && err[n - 1] == '\n')
                        err[--n] = 0;
                if (err && (strstr(err, "Disk full") || strstr(err, "No free") ||
                            strstr(err, "disk full")))
                        return -ENOSPC;
                if (err && (strstr(err, "not found") || strstr(err, "File not found")))
                        return -ENOENT;
                log_debug("%s exited with %d: %s", argv[0], r, err ? err : "");
                return -EIO;
        }
        return 0;
}

static int sync_disk(const struct esp *e, bool drop_cache) {
        _cleanup_close_ int fd = open(e->disk_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return negative_errno();
        /* Make the read-back come from the disk rather than from memory. */
        if (drop_cache)
                (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        return 0;
}

int esp_read_file(const struct esp *e, const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_free_ char *src = NULL;
        if (asprintf(&src, "::%s", path) < 0)
                return -ENOMEM;
        char *argv[] = {"mcopy", "-n", "-i", e->image, src, "-", NULL};
        return mtools(argv, max, ret, ret_len);
}

static int sha256_buffer(const void *p, size_t n, uint8_t out[32]) {
        return EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

static int sha256_file(const char *path, uint8_t out[32]) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(ctx);
                return -ENOMEM;
        }
        static __thread uint8_t buf[65536];
        int r = 0;
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = negative_errno();
                        break;
                }
                if (n == 0)
                        break;
                EVP_DigestUpdate(ctx, buf, (size_t)n);
        }
        if (r == 0)
                EVP_DigestFinal_ex(ctx, out, NULL);
        EVP_MD_CTX_free(ctx);
        return r;
}

static off_t file_size(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -1 : lseek(fd, 0, SEEK_END);
}

int esp_install_slot_files(const struct esp *e, const char *slot, const struct esp_file *files,
                           size_t n) {
        char dir[64], pivot_dir[] = "::/pivot";
        int r;

        snprintf(dir, sizeof(dir), "::/pivot/%s", slot);
        /* The directories exist on every Pivot disk; make them if someone removed them. */
        char *mdir_pivot[] = {"mdir", "-b", "-i", e->image, pivot_dir, NULL};
        if (mtools(mdir_pivot, 1 << 16, NULL, NULL) < 0) {
                char *mmd[] = {"mmd", "-i", e->image, pivot_dir, NULL};
                if ((r = mtools(mmd, 0, NULL, NULL)) < 0)
                        return log_error_errno(r, "Cannot create %s on the ESP", pivot_dir);
        }
        char *mdir_slot[] = {"mdir", "-b", "-i", e->image, dir, NULL};
        if (mtools(mdir_slot, 1 << 16, NULL, NULL) < 0) {
                char *mmd[] = {"mmd", "-i", e->image, dir, NULL};
                if ((r = mtools(mmd, 0, NULL, NULL)) < 0)
                        return log_error_errno(r, "Cannot create %s on the ESP", dir);
        }

        /* 1. Copies under temporary names. */
        for (size_t i = 0; i < n; i++) {
                char tmp[128];
                snprintf(tmp, sizeof(tmp), "%s/%s.new", dir, files[i].name);
                char *argv[] = {"mcopy", "-o", "-i", e->image, (char *)files[i].local_path, tmp,
                                NULL};
                r = mtools(argv, 0, NULL, NULL);
                if (r == -ENOSPC)
                        return log_error_errno(r, "The ESP is full: no room for %s", tmp + 2);
                if (r < 0)
                        return log_error_errno(r, "Cannot copy %s to the ESP", files[i].name);
        }
        /* 2. On the disk. */
        if ((r = sync_disk(e, true)) < 0)
                return log_error_errno(r, "Cannot sync %s: %m", e->disk_path);
        /* 3. Read back and compared. */
        for (size_t i = 0; i < n; i++) {
                char tmp[128];
                uint8_t want[32], got[32];
                snprintf(tmp, sizeof(tmp), "/pivot/%s/%s.new", slot, files[i].name);
                off_t size = file_size(files[i].local_path);
                if (size < 0 || sha256_file(files[i].local_path, want) < 0)
                        return log_error_errno(-EIO, "Cannot read %s", files[i].local_path);
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                r = esp_read_file(e, tmp, (size_t)size + 1, &data, &len);
                if (r < 0)
                        return log_error_errno(r, "Cannot read back %s from the ESP", tmp);
                sha256_buffer(data, len, got);
                if (len != (size_t)size || memcmp(want, got, 32) != 0)
                        return log_error_errno(-EIO, "%s on the ESP differs from what was written",
                                               tmp);
        }
        /* 4. Renamed into place. */
        for (size_t i = 0; i < n; i++) {
                char tmp[128], final[128];
                snprintf(tmp, sizeof(tmp), "%s/%s.new", dir, files[i].name);
                snprintf(final, sizeof(final), "%s/%s", dir, files[i].name);
                char *argv[] = {"mmove", "-D", "o", "-i", e->image, tmp, final, NULL};
                if ((r = mtools(argv, 0, NULL, NULL)) < 0)
                        return log_error_errno(r, "Cannot rename %s on the ESP", tmp + 2);
        }
        if ((r = sync_disk(e, false)) < 0)
                return log_error_errno(r, "Cannot sync %s: %m", e->disk_path);
        return 0;
}

char *cmdline_value(const char *cmdline, const char *key) {
        size_t kl = strlen(key);
        for (const char *p = cmdline; p && *p;) {
                p += strspn(p, " \t\n");
                size_t n = strcspn(p, " \t\n");
                if (n > kl && strncmp(p, key, kl) == 0 && p[kl] == '=')
                        return strndup(p + kl + 1, n - kl - 1);
                p += n;
        }
        return NULL;
}

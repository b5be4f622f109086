/* ESP access through mtools (mcopy, mmd, mmove, mdir) on DISK@@OFFSET. */
#include "esp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "run.h"
#include "util.h"

#define MTOOLS_TIMEOUT 300
#define ESP_LINK_DIR "esp-links"

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

/* Runs an mtools command; logs its stderr on failure. With on_out, stdout is streamed to it. */
static int mtools_full(char *const argv[], size_t max_out, char **out, size_t *out_len,
                       int (*on_out)(void *, const void *, size_t), void *userdata) {
        _cleanup_free_ char *err = NULL;
        int r = on_out ? run_program_stream(argv, on_out, userdata, &err, MTOOLS_TIMEOUT)
                       : run_program(argv, max_out, out, out_len, &err, MTOOLS_TIMEOUT);
        if (r == -ENOENT) /* the program; -ENOENT below is a file on the ESP */
                return log_error_errno(-ENOPKG, "%s not found: mtools is needed to write the ESP",
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

static int mtools(char *const argv[], size_t max_out, char **out, size_t *out_len) {
        return mtools_full(argv, max_out, out, out_len, NULL, NULL);
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

struct hashing {
        EVP_MD_CTX *md;
        uint64_t len;
};

static int hash_piece(void *userdata, const void *p, size_t n) {
        struct hashing *h = userdata;
        EVP_DigestUpdate(h->md, p, n);
        h->len += n;
        return 0;
}

/* SHA-256 and length of a file on the ESP, streamed (boot files can be large). */
static int esp_hash_file(const struct esp *e, const char *path, uint8_t out[32], uint64_t *ret_len) {
        _cleanup_free_ char *src = NULL;
        if (asprintf(&src, "::%s", path) < 0)
                return -ENOMEM;
        struct hashing h = {.md = EVP_MD_CTX_new()};
        if (!h.md || EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(h.md);
                return -ENOMEM;
        }
        char *argv[] = {"mcopy", "-n", "-i", e->image, src, "-", NULL};
        int r = mtools_full(argv, 0, NULL, NULL, hash_piece, &h);
        if (r == 0)
                EVP_DigestFinal_ex(h.md, out, NULL);
        EVP_MD_CTX_free(h.md);
        *ret_len = h.len;
        return r;
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
        _cleanup_free_ uint8_t *buf = malloc(65536);
        int r = 0;
        if (!buf) {
                EVP_MD_CTX_free(ctx);
                return -ENOMEM;
        }
        for (;;) {
                ssize_t n = read(fd, buf, 65536);
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

static int ensure_dirs(const struct esp *e, const char *dir) {
        char pivot_dir[] = "::/pivot";
        int r;
        /* The directories exist on every Pivot disk; make them if someone removed them. */
        char *mdir_slot[] = {"mdir", "-b", "-i", e->image, (char *)dir, NULL};
        if (mtools(mdir_slot, 1 << 16, NULL, NULL) == 0)
                return 0;
        char *mdir_pivot[] = {"mdir", "-b", "-i", e->image, pivot_dir, NULL};
        if (mtools(mdir_pivot, 1 << 16, NULL, NULL) < 0) {
                char *mmd[] = {"mmd", "-i", e->image, pivot_dir, NULL};
                if ((r = mtools(mmd, 0, NULL, NULL)) < 0)
                        return log_error_errno(r, "Cannot create %s on the ESP", pivot_dir);
        }
        char *mmd[] = {"mmd", "-i", e->image, (char *)dir, NULL};
        if ((r = mtools(mmd, 0, NULL, NULL)) < 0)
                return log_error_errno(r, "Cannot create %s on the ESP", dir);
        return 0;
}

/* Empties and removes a link directory. It holds nothing but links: one left by an install
 * that was killed goes with the next. Never through a symbolic link. */
static void remove_links(const char *stage) {
        int fd = open(stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return;
        _cleanup_(closedirp) DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        struct dirent *de;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, ".."))
                        (void)unlinkat(dirfd(d), de->d_name, 0);
        rmdir(stage);
}

/* Link directories of earlier versions, "esp.XXXXXX" (mkdtemp), in the work directory. */
static void remove_old_link_dirs(const char *work_dir) {
        _cleanup_(closedirp) DIR *d = opendir(work_dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (strncmp(de->d_name, "esp.", 4) != 0 || strlen(de->d_name) != 10)
                        continue;
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", work_dir, de->d_name) >= 0)
                        remove_links(path);
        }
}

/* Copies the files to DIR/NAME.new. In one mcopy when they can be hard-linked under those
 * names next to the first of them (each mtools process costs a few tens of milliseconds),
 * else one by one. The links go to a directory of a fixed name there (the caller's work
 * directory, one install at a time), so that no run leaves one behind for good. */
static int copy_new(const struct esp *e, const char *dir, const struct esp_file *files, size_t n) {
        _cleanup_free_ char *stage = NULL;
        const char *slash = strrchr(files[0].local_path, '/');
        int r;
        if (asprintf(&stage, "%.*s%s" ESP_LINK_DIR, slash ? (int)(slash - files[0].local_path) : 0,
                     files[0].local_path, slash ? "/" : "") < 0)
                return -ENOMEM;
        remove_links(stage);
        {
                _cleanup_free_ char *work_dir = slash ? strndup(files[0].local_path,
                                                               (size_t)(slash - files[0].local_path))
                                                      : strdup(".");
                if (work_dir)
                        remove_old_link_dirs(work_dir);
        }
        bool made = mkdir(stage, 0700) == 0, linked = made;
        for (size_t i = 0; linked && i < n; i++) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s.new", stage, files[i].name);
                linked = link(files[i].local_path, path) == 0;
        }
        if (linked) {
                char target[128];
                snprintf(target, sizeof(target), "%s/", dir);
                char *argv[4 + ESP_FILES_MAX + 2] = {"mcopy", "-o", "-i", e->image};
                size_t k = 4;
                char paths[ESP_FILES_MAX][4096];
                for (size_t i = 0; i < n && i < ESP_FILES_MAX; i++) {
                        snprintf(paths[i], sizeof(paths[i]), "%s/%s.new", stage, files[i].name);
                        argv[k++] = paths[i];
                }
                argv[k++] = target;
                argv[k] = NULL;
                r = mtools(argv, 0, NULL, NULL);
                remove_links(stage);
                if (r == -ENOSPC)
                        return log_error_errno(r, "The ESP is full: no room for the boot files in %s",
                                               dir + 2);
                if (r < 0)
                        return log_error_errno(r, "Cannot copy the boot files to the ESP");
                return 0;
        }
        if (made)
                remove_links(stage);
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
        return 0;
}

/* One mdel for all the old files (each mtools process costs tens of milliseconds). When it
 * fails, some were missing (fine) or could not be removed (not fine: a set of boot files left
 * half old, half new); one listing of the folder tells which. */
static int remove_old_files(const struct esp *e, const char *dir, const struct esp_file *files,
                            size_t n) {
        char old[ESP_FILES_MAX][128];
        char *argv[3 + ESP_FILES_MAX + 1] = {"mdel", "-i", e->image};
        for (size_t i = 0; i < n; i++) {
                snprintf(old[i], sizeof(old[i]), "%s/%s", dir, files[i].name);
                argv[3 + i] = old[i];
        }
        argv[3 + n] = NULL;
        if (mtools(argv, 0, NULL, NULL) == 0)
                return 0;
        _cleanup_free_ char *listing = NULL;
        char *mdir[] = {"mdir", "-b", "-i", e->image, (char *)dir, NULL};
        int r = mtools(mdir, 1 << 16, &listing, NULL);
        if (r < 0)
                return log_error_errno(r, "Cannot list %s on the ESP", dir + 2);
        for (char *line = listing, *end; line && *line; line = end ? end + 1 : NULL) {
                end = strchr(line, '\n');
                size_t len = end ? (size_t)(end - line) : strlen(line);
                /* A folder of that name ("vmlinuz/") is in the way as much as a file. */
                while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' ||
                                   line[len - 1] == '/'))
                        len--;
                for (size_t i = 0; i < n; i++)
                        if (strlen(old[i]) == len && !strncasecmp(line, old[i], len))
                                return log_error_errno(-EIO, "Cannot remove %s from the ESP",
                                                       old[i] + 2);
        }
        return 0;
}

int esp_install_slot_files(const struct esp *e, const char *slot, const struct esp_file *files,
                           size_t n) {
        char dir[64];
        int r;

        if (n == 0 || n > ESP_FILES_MAX)
                return -EINVAL;
        snprintf(dir, sizeof(dir), "::/pivot/%s", slot);
        r = ensure_dirs(e, dir);
        if (r < 0)
                return r;

        /* 0. The slot cannot boot now (priority 0): its old files go first, so that a small
         *    ESP needs room for one set of boot files per slot, not two. */
        r = remove_old_files(e, dir, files, n);
        if (r < 0)
                return r;
        /* 1. Copies under temporary names. */
        r = copy_new(e, dir, files, n);
        if (r < 0)
                return r;
        /* 2. On the disk. */
        if ((r = sync_disk(e, true)) < 0)
                return log_error_errno(r, "Cannot sync %s: %m", e->disk_path);
        /* 3. Read back and compared (with the hash the caller already knows, if it does). */
        for (size_t i = 0; i < n; i++) {
                char tmp[128];
                uint8_t want[32], got[32];
                snprintf(tmp, sizeof(tmp), "/pivot/%s/%s.new", slot, files[i].name);
                off_t size = file_size(files[i].local_path);
                if (size < 0 || (files[i].sha256 ? (memcpy(want, files[i].sha256, 32), 0)
                                                 : sha256_file(files[i].local_path, want)) < 0)
                        return log_error_errno(-EIO, "Cannot read %s", files[i].local_path);
                uint64_t len = 0;
                r = esp_hash_file(e, tmp, got, &len);
                if (r < 0)
                        return log_error_errno(r, "Cannot read back %s from the ESP", tmp);
                if (len != (uint64_t)size || memcmp(want, got, 32) != 0)
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
        const char *value = NULL;
        size_t value_len = 0;
        for (const char *p = cmdline; p && *p;) {
                p += strspn(p, " \t\n");
                size_t n = strcspn(p, " \t\n");
                if (n > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
                        value = p + kl + 1;
                        value_len = n - kl - 1;
                }
                p += n;
        }
        return value ? strndup(value, value_len) : NULL;
}

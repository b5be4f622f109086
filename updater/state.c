/* Persistent key=value state files. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

void kv_done(struct kv *kv) {
        for (size_t i = 0; i < kv->n; i++) {
                free(kv->keys[i]);
                free(kv->values[i]);
        }
        memset(kv, 0, sizeof(*kv));
}

const char *kv_get(const struct kv *kv, const char *key) {
        for (size_t i = 0; i < kv->n; i++)
                if (!strcmp(kv->keys[i], key))
                        return kv->values[i];
        return NULL;
}

int kv_set(struct kv *kv, const char *key, const char *value) {
        /* One line per key: a newline in a value would make a line of its own, a key of
         * someone else's choosing (a value from a server). */
        if (!*key || strchr(key, '=') || strchr(key, '\n') || (value && strchr(value, '\n')))
                return -EINVAL;
        for (size_t i = 0; i < kv->n; i++) {
                if (strcmp(kv->keys[i], key) != 0)
                        continue;
                if (!value) {
                        free(kv->keys[i]);
                        free(kv->values[i]);
                        kv->n--;
                        kv->keys[i] = kv->keys[kv->n];
                        kv->values[i] = kv->values[kv->n];
                        return 0;
                }
                char *v = strdup(value);
                if (!v)
                        return -ENOMEM;
                free(kv->values[i]);
                kv->values[i] = v;
                return 0;
        }
        if (!value)
                return 0;
        if (kv->n >= STATE_MAX_KEYS)
                return -E2BIG;
        char *k = strdup(key), *v = strdup(value);
        if (!k || !v) {
                free(k);
                free(v);
                return -ENOMEM;
        }
        kv->keys[kv->n] = k;
        kv->values[kv->n] = v;
        kv->n++;
        return 0;
}

int kv_load(struct kv *kv, const char *path) {
        memset(kv, 0, sizeof(*kv));
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? 0 : negative_errno();
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        ssize_t n;
        while ((n = getline(&line, &size, f)) >= 0) {
                if (n > 0 && line[n - 1] == '\n')
                        line[--n] = 0;
                char *eq = strchr(line, '=');
                if (!eq || line[0] == '#')
                        continue;
                *eq = 0;
                /* A line that cannot be kept must not vanish: saved again, the state would
                 * lose it (an install record, a queued report). */
                int r = kv_set(kv, line, eq + 1);
                if (r < 0 && r != -EINVAL) {
                        kv_done(kv);
                        return r;
                }
        }
        /* getline() stops at the end of the file, or at an error (I/O, no memory). */
        if (!feof(f)) {
                int r = ferror(f) ? -EIO : -ENOMEM;
                kv_done(kv);
                return r;
        }
        return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len) {
        _cleanup_free_ char *tmp = NULL, *dir = strdup(path);
        if (!dir || asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return negative_errno();
        const char *p = data;
        while (len > 0) {
                ssize_t w = write(fd, p, len);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        int r = negative_errno();
                        unlink(tmp);
                        return r;
                }
                p += w, len -= (size_t)w;
        }
        if (fsync(fd) < 0 || rename(tmp, path) < 0) {
                int r = negative_errno();
                unlink(tmp);
                return r;
        }
        _cleanup_close_ int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
                (void)fsync(dfd);
        return 0;
}

int kv_save(const struct kv *kv, const char *path) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        /* A line lost (no memory) would save a state without it: an install record gone. */
        bool lost = false;
        for (size_t i = 0; i < kv->n; i++)
                lost |= fprintf(f, "%s=%s\n", kv->keys[i], kv->values[i]) < 0;
        if (fclose(f) != 0 || lost)
                return -ENOMEM;
        return write_file_atomic(path, buf ? buf : "", len);
}

int lock_file(const char *path, bool wait) {
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return negative_errno();
        while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0)
                if (errno != EINTR)
                        return errno == EWOULDBLOCK ? -EBUSY : negative_errno();
        return TAKE_FD(fd);
}

int kv_lock(const char *path) {
        _cleanup_free_ char *lock = NULL;
        if (asprintf(&lock, "%s.lock", path) < 0)
                return -ENOMEM;
        return lock_file(lock, true);
}

int mkdir_p(const char *path, bool private) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
                *s = '/';
        }
        if (mkdir(p, private ? 0700 : 0755) == 0)
                return 0;
        if (errno != EEXIST)
                return negative_errno();
        /* Something that is there already must be a folder (or lead to one). */
        struct stat st;
        if (stat(p, &st) < 0)
                return negative_errno();
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

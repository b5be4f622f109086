/* Small helpers every hosted (libc) part of Pivot uses: cleanup attributes and errno-style
 * returns. Not for the UEFI selector, which has no libc. */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) {
        free(*(void **)p);
}
static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno; /* close() in a cleanup must not clobber the caller's errno */
                close(*fd);
                errno = saved;
        }
}

static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}
static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Hands ownership out of a cleanup variable: `return TAKE_PTR(buf);` */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) take_ptr_ = (p);                                                     \
                (p) = NULL;                                                                        \
                take_ptr_;                                                                         \
        })
#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int take_fd_ = (fd);                                                               \
                (fd) = -1;                                                                         \
                take_fd_;                                                                          \
        })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* errno as a negative return value, never 0 even when errno was not set. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

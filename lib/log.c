#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static enum log_level max_level = LOG_LEVEL_INFO;
static const char *program = "pivot";

void log_set_level(enum log_level level) {
        max_level = level;
}

void log_set_program(const char *name) {
        program = name;
}

int log_full_errno(enum log_level level, int error, const char *fmt, ...) {
        static const char *const prefix[] = {
                [LOG_LEVEL_ERROR] = "error: ",
                [LOG_LEVEL_WARNING] = "warning: ",
                [LOG_LEVEL_INFO] = "",
                [LOG_LEVEL_DEBUG] = "debug: ",
        };
        int saved = errno;
        va_list ap;

        if (error < 0)
                errno = -error;
        if (level <= max_level) {
                fprintf(stderr, "%s: %s", program, prefix[level]);
                va_start(ap, fmt);
                vfprintf(stderr, fmt, ap);
                va_end(ap);
                fputc('\n', stderr);
        }
        errno = saved;
        return error < 0 ? error : -EIO;
}

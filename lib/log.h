/* Logging. Log once, where an error is handled:
 *
 *   if (r < 0)
 *           return log_error_errno(r, "Failed to open %s: %m", path);
 *
 * log_*_errno() sets errno from r so "%m" prints its message, and returns r (always
 * negative), so logging and returning is one line. */
#pragma once

#include <stdarg.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_level(enum log_level level);
void log_set_program(const char *name);
int log_full_errno(enum log_level level, int error, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_error(...) log_full_errno(LOG_LEVEL_ERROR, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_debug(...) log_full_errno(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)
#define log_error_errno(r, ...) log_full_errno(LOG_LEVEL_ERROR, (r), __VA_ARGS__)
#define log_warning_errno(r, ...) log_full_errno(LOG_LEVEL_WARNING, (r), __VA_ARGS__)

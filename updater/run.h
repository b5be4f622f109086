/* Running helper programs (mtools, health checks, reboot) without a shell in between. */
#pragma once

#include <stddef.h>

/* Runs argv[0] (PATH lookup) with argv. stdout goes to *ret_out (NUL-terminated, at most
 * max_out bytes kept; NULL ret_out: discarded), stderr to *ret_err (at most 4 KiB; NULL:
 * discarded). timeout 0: none; otherwise the child is killed after that many seconds.
 * Returns the exit status (0..255), or a negative errno: -ENOENT when the program does not
 * exist, -ETIMEDOUT when it was killed for taking too long, -EINTR for another signal. */
int run_program(char *const argv[], size_t max_out, char **ret_out, size_t *ret_out_len,
                char **ret_err, unsigned timeout);

/* Like run_program(), with stdout handed piece by piece to on_out (which returns 0, or < 0 to
 * stop reading; the child then gets SIGPIPE) instead of being kept. */
int run_program_stream(char *const argv[], int (*on_out)(void *userdata, const void *p, size_t n),
                       void *userdata, char **ret_err, unsigned timeout);

/* /bin/sh -c COMMAND, same conventions. */
int run_shell(const char *command, char **ret_err, unsigned timeout);

/* \pivot\selector.conf: the boot selector's settings. Format in README.md. No libc: parsed in
 * the UEFI selector and tested on the host.
 *
 * A broken line or an unknown key is reported through the warn callback and skipped; nothing
 * in this file can stop a boot. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define SELECTOR_CONF_VALUE_MAX 1024
#define SELECTOR_CONF_MAX_BYTES 8192 /* larger files are read up to here, with a warning */

struct selector_conf {
        char cmdline_extra[SELECTOR_CONF_VALUE_MAX]; /* appended after the slot's cmdline */
        char console[SELECTOR_CONF_VALUE_MAX];       /* space-separated; each becomes console=... */
        unsigned reset_delay;                        /* seconds before resetting when stuck */
        bool verbose;                                /* print the command line and the steps */
};

#define SELECTOR_CONF_DEFAULT_CONSOLE "ttyS0,115200"
#define SELECTOR_CONF_DEFAULT_RESET_DELAY 5
#define SELECTOR_CONF_MAX_RESET_DELAY 300

void selector_conf_defaults(struct selector_conf *conf);

/* Called for each problem: `line` is 1-based, `what` a fixed message, `detail` the offending
 * key or value (may be empty). */
typedef void (*selector_conf_warn_fn)(void *ctx, unsigned line, const char *what,
                                      const char *detail);

/* Applies the settings in text[0..len) over *conf. Returns the number of warnings. */
unsigned selector_conf_parse(struct selector_conf *conf, const char *text, size_t len,
                             selector_conf_warn_fn warn, void *ctx);

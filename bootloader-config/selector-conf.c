/* selector.conf parser: `key = value` lines, `#` comments, blank lines. */
#include "selector-conf.h"

#include <stdint.h>

static void str_set(char *dst, size_t size, const char *src, size_t len) {
        if (len >= size)
                len = size - 1;
        for (size_t i = 0; i < len; i++)
                dst[i] = src[i];
        dst[len] = '\0';
}

/* a (alen bytes, which may hold a NUL) equals the string b. */
static bool str_eq(const char *a, size_t alen, const char *b) {
        size_t i;
        for (i = 0; i < alen; i++)
                if (b[i] == '\0' || b[i] != a[i])
                        return false;
        return b[i] == '\0';
}

void selector_conf_defaults(struct selector_conf *conf) {
        static const char console[] = SELECTOR_CONF_DEFAULT_CONSOLE;
        conf->cmdline_extra[0] = '\0';
        str_set(conf->console, sizeof(conf->console), console, sizeof(console) - 1);
        conf->reset_delay = SELECTOR_CONF_DEFAULT_RESET_DELAY;
        conf->verbose = false;
}

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\r';
}

/* Unsigned decimal, at most `max`. */
static bool parse_uint(const char *s, size_t len, unsigned max, unsigned *ret) {
        uint64_t v = 0;
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (uint64_t)(s[i] - '0');
                if (v > max)
                        return false;
        }
        *ret = (unsigned)v;
        return true;
}

static bool parse_bool(const char *s, size_t len, bool *ret) {
        if (str_eq(s, len, "1") || str_eq(s, len, "yes") || str_eq(s, len, "true") ||
            str_eq(s, len, "on")) {
                *ret = true;
                return true;
        }
        if (str_eq(s, len, "0") || str_eq(s, len, "no") || str_eq(s, len, "false") ||
            str_eq(s, len, "off")) {
                *ret = false;
                return true;
        }
        return false;
}

/* Reports with a NUL-terminated copy of the offending text. */
static void report(selector_conf_warn_fn warn, void *ctx, unsigned line, const char *what,
                   const char *s, size_t len) {
        char detail[64];
        if (!warn)
                return;
        str_set(detail, sizeof(detail), s, len);
        warn(ctx, line, what, detail);
}

unsigned selector_conf_parse(struct selector_conf *conf, const char *text, size_t len,
                             selector_conf_warn_fn warn, void *ctx) {
        unsigned warnings = 0, line = 0;
        size_t pos = 0;

        while (pos < len) {
                size_t start = pos, end, eq, ks, ke, vs, ve;

                line++;
                while (pos < len && text[pos] != '\n')
                        pos++;
                end = pos;
                pos++; /* past the newline */

                ks = start;
                while (ks < end && is_space(text[ks]))
                        ks++;
                if (ks == end || text[ks] == '#')
                        continue;

                for (eq = ks; eq < end && text[eq] != '='; eq++)
                        ;
                if (eq == end) {
                        report(warn, ctx, line, "line without '=' ignored", text + ks, end - ks);
                        warnings++;
                        continue;
                }
                ke = eq;
                while (ke > ks && is_space(text[ke - 1]))
                        ke--;
                vs = eq + 1;
                while (vs < end && is_space(text[vs]))
                        vs++;
                ve = end;
                while (ve > vs && is_space(text[ve - 1]))
                        ve--;
                /* A value may be quoted to make its edges visible; the quotes are not part of it. */
                if (ve - vs >= 2 && text[vs] == '"' && text[ve - 1] == '"') {
                        vs++;
                        ve--;
                }
                for (size_t i = vs; i < ve; i++) {
                        unsigned char c = (unsigned char)text[i];
                        if (c < 0x20 || c > 0x7e) {
                                report(warn, ctx, line, "non-printable or non-ASCII value ignored",
                                       text + ks, ke - ks);
                                warnings++;
                                goto next;
                        }
                }

                char *dst = NULL;
                if (str_eq(text + ks, ke - ks, "cmdline_extra"))
                        dst = conf->cmdline_extra;
                else if (str_eq(text + ks, ke - ks, "console"))
                        dst = conf->console;

                if (dst) {
                        if (ve - vs >= SELECTOR_CONF_VALUE_MAX) {
                                report(warn, ctx, line, "value too long, ignored", text + ks,
                                       ke - ks);
                                warnings++;
                                continue;
                        }
                        str_set(dst, SELECTOR_CONF_VALUE_MAX, text + vs, ve - vs);
                } else if (str_eq(text + ks, ke - ks, "reset_delay")) {
                        if (!parse_uint(text + vs, ve - vs, SELECTOR_CONF_MAX_RESET_DELAY,
                                        &conf->reset_delay)) {
                                report(warn, ctx, line, "reset_delay wants seconds (0-300)",
                                       text + vs, ve - vs);
                                warnings++;
                        }
                } else if (str_eq(text + ks, ke - ks, "verbose")) {
                        if (!parse_bool(text + vs, ve - vs, &conf->verbose)) {
                                report(warn, ctx, line, "verbose wants 0 or 1", text + vs, ve - vs);
                                warnings++;
                        }
                } else {
                        report(warn, ctx, line, "unknown key ignored", text + ks, ke - ks);
                        warnings++;
                }
        next:;
        }
        return warnings;
}

/* Tiny helpers for printing JSON by hand: strings escaped, hashes as hex. */
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "hex.h"

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when it is not one. */
static inline size_t utf8_sequence_length(const unsigned char *p) {
        size_t n;
        uint32_t c, min;
        if (p[0] < 0x80)
                return 1;
        if ((p[0] & 0xe0) == 0xc0)
                n = 2, c = p[0] & 0x1f, min = 0x80;
        else if ((p[0] & 0xf0) == 0xe0)
                n = 3, c = p[0] & 0x0f, min = 0x800;
        else if ((p[0] & 0xf8) == 0xf0)
                n = 4, c = p[0] & 0x07, min = 0x10000;
        else
                return 0;
        for (size_t i = 1; i < n; i++) { /* stops at the NUL too: it is no continuation byte */
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                c = c << 6 | (p[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        return n;
}

/* A C string as a JSON string. Bytes that are not UTF-8 (a version or a path from a disk
 * image can hold anything) become U+FFFD, so that the output stays valid JSON. */
static inline void json_string(FILE *f, const char *s) {
        if (!s) {
                fputs("null", f);
                return;
        }
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                size_t n = utf8_sequence_length(p);
                if (n == 0) {
                        fputs("\\ufffd", f);
                        p++;
                } else if (n > 1) {
                        fwrite(p, 1, n, f);
                        p += n;
                } else {
                        if (*p == '"' || *p == '\\')
                                fprintf(f, "\\%c", *p);
                        else if (*p < 0x20 || *p == 0x7f)
                                fprintf(f, "\\u%04x", *p);
                        else
                                fputc(*p, f);
                        p++;
                }
        }
        fputc('"', f);
}

static inline void json_hex(FILE *f, const uint8_t *b, size_t n) {
        char buf[2 * 64 + 1];
        hex_encode(b, n > 64 ? 64 : n, buf);
        fprintf(f, "\"%s\"", buf);
}

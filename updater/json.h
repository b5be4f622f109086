/* Tiny helpers for printing JSON by hand: strings escaped, hashes as hex. */
#pragma once

#include <stdint.h>
#include <stdio.h>

static inline void json_string(FILE *f, const char *s) {
        if (!s) {
                fputs("null", f);
                return;
        }
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

static inline void hex_string(char *out, const uint8_t *b, size_t n) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[b[i] >> 4];
                out[2 * i + 1] = digits[b[i] & 15];
        }
        out[2 * n] = 0;
}

static inline void json_hex(FILE *f, const uint8_t *b, size_t n) {
        char buf[2 * 64 + 1];
        hex_string(buf, b, n > 64 ? 64 : n);
        fprintf(f, "\"%s\"", buf);
}

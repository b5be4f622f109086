/* Standard base64 (RFC 4648, with padding), both ways: what Omaha carries SHA-1 and SHA-256
 * digests in. Header-only, like hex.h. */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static const char base64_digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* n bytes as base64 and a NUL: out holds (n + 2) / 3 * 4 + 1 characters. */
static inline void base64_encode(const uint8_t *in, size_t n, char *out) {
        size_t i, o = 0;
        for (i = 0; i + 2 < n; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
                out[o++] = base64_digits[v >> 18 & 63];
                out[o++] = base64_digits[v >> 12 & 63];
                out[o++] = base64_digits[v >> 6 & 63];
                out[o++] = base64_digits[v & 63];
        }
        if (i < n) {
                uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
                out[o++] = base64_digits[v >> 18 & 63];
                out[o++] = base64_digits[v >> 12 & 63];
                out[o++] = i + 1 < n ? base64_digits[v >> 6 & 63] : '=';
                out[o++] = '=';
        }
        out[o] = 0;
}

static inline int base64_value(char c) {
        const char *p = c ? strchr(base64_digits, c) : NULL;
        return p ? (int)(p - base64_digits) : -1;
}

/* Decodes exactly n bytes of standard base64 (padding required). */
static inline int base64_decode_exact(const char *s, uint8_t *out, size_t n) {
        size_t len = strlen(s);
        if (len != (n + 2) / 3 * 4)
                return -EBADMSG;
        size_t o = 0;
        for (size_t i = 0; i < len; i += 4) {
                int v[4];
                for (int k = 0; k < 4; k++) {
                        v[k] = s[i + k] == '=' && i + 4 == len && k >= 2 ? 0 : base64_value(s[i + k]);
                        if (v[k] < 0)
                                return -EBADMSG;
                }
                uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
                uint8_t bytes[3] = { w >> 16, w >> 8 & 255, w & 255 };
                for (int k = 0; k < 3 && o < n; k++)
                        out[o++] = bytes[k];
        }
        /* The padding must be exactly what n implies. */
        size_t pad = (3 - n % 3) % 3;
        for (size_t k = 0; k < 2; k++)
                if ((s[len - 1 - k] == '=') != (k < pad))
                        return -EBADMSG;
        return 0;
}

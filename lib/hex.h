/* Hexadecimal digits, both ways. Header-only and free of libc, so that the UEFI selector and
 * the initramfs can use it as well as the programs. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The value of one hex digit (either case), or -1. */
static inline int hex_digit_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static inline char hex_digit(unsigned v) {
        return "0123456789abcdef"[v & 15];
}

/* n bytes as 2n lowercase digits and a NUL: out holds 2n + 1 characters. */
static inline void hex_encode(const uint8_t *in, size_t n, char *out) {
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = hex_digit(in[i] >> 4);
                out[2 * i + 1] = hex_digit(in[i]);
        }
        out[2 * n] = '\0';
}

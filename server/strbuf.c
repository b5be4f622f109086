#include "strbuf.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool grow(struct strbuf *b, size_t more) {
        if (b->oom)
                return false;
        if (b->len + more + 1 <= b->size)
                return true;
        size_t size = b->size ? b->size : 512;
        while (size < b->len + more + 1)
                size *= 2;
        char *p = realloc(b->data, size);
        if (!p) {
                b->oom = true;
                return false;
        }
        b->data = p;
        b->size = size;
        return true;
}

void strbuf_put(struct strbuf *b, const char *s, size_t n) {
        if (!grow(b, n))
                return;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = 0;
}

void strbuf_puts(struct strbuf *b, const char *s) {
        strbuf_put(b, s, strlen(s));
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...) {
        va_list ap;
        char small[256];

        va_start(ap, fmt);
        int n = vsnprintf(small, sizeof(small), fmt, ap);
        va_end(ap);
        if (n < 0) {
                b->oom = true;
                return;
        }
        if ((size_t)n < sizeof(small)) {
                strbuf_put(b, small, n);
                return;
        }
        if (!grow(b, n))
                return;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, n + 1, fmt, ap);
        va_end(ap);
        b->len += n;
}

void strbuf_json_str(struct strbuf *b, const char *s) {
        if (!s) {
                strbuf_puts(b, "null");
                return;
        }
        strbuf_put(b, "\"", 1);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                switch (*p) {
                case '"': strbuf_puts(b, "\\\""); break;
                case '\\': strbuf_puts(b, "\\\\"); break;
                case '\n': strbuf_puts(b, "\\n"); break;
                case '\r': strbuf_puts(b, "\\r"); break;
                case '\t': strbuf_puts(b, "\\t"); break;
                default:
                        if (*p < 0x20)
                                strbuf_printf(b, "\\u%04x", *p);
                        else
                                strbuf_put(b, (const char *)p, 1);
                }
        }
        strbuf_put(b, "\"", 1);
}

void strbuf_html(struct strbuf *b, const char *s) {
        if (!s)
                return;
        for (const char *p = s; *p; p++) {
                switch (*p) {
                case '&': strbuf_puts(b, "&amp;"); break;
                case '<': strbuf_puts(b, "&lt;"); break;
                case '>': strbuf_puts(b, "&gt;"); break;
                case '"': strbuf_puts(b, "&quot;"); break;
                case '\'': strbuf_puts(b, "&#39;"); break;
                default: strbuf_put(b, p, 1);
                }
        }
}

char *strbuf_take(struct strbuf *b, size_t *ret_len) {
        if (b->oom || !grow(b, 0)) {
                strbuf_done(b);
                return NULL;
        }
        char *p = b->data;
        if (ret_len)
                *ret_len = b->len;
        *b = (struct strbuf){};
        return p;
}

void strbuf_done(struct strbuf *b) {
        free(b->data);
        *b = (struct strbuf){};
}

char *str_strip(char *s) {
        while (isspace((unsigned char)*s))
                s++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1]))
                n--;
        s[n] = 0;
        return s;
}

/* A growing string buffer for the server's responses (JSON, HTML, Prometheus text), and the
 * string helpers pivot-server and pivot-admin share.
 * Out of memory is sticky: every append after it does nothing and strbuf_take() returns NULL. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
        char *data;
        size_t len, size;
        bool oom;
};

void strbuf_put(struct strbuf *b, const char *s, size_t n);
void strbuf_puts(struct strbuf *b, const char *s);
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal, quotes included; NULL gives null. */
void strbuf_json_str(struct strbuf *b, const char *s);
/* s escaped for HTML text and attribute values. */
void strbuf_html(struct strbuf *b, const char *s);
/* Hands the data out (NUL-terminated, or NULL after an allocation failure). */
char *strbuf_take(struct strbuf *b, size_t *ret_len);
void strbuf_done(struct strbuf *b);

/* s without the whitespace around it: ends it early in place, returns where it starts. */
char *str_strip(char *s);

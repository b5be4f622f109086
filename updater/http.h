/* HTTP(S) through libcurl: Omaha POSTs and ranged, streaming payload downloads.
 *
 * TLS is verified against the system CA store, or against ca_file alone when set; redirects
 * never go from https to http. Proxies come from the
 * usual environment variables (http_proxy, https_proxy, no_proxy; libcurl's rules). */
#pragma once

#include <stddef.h>

#include "install.h"

struct http_options {
        const char *ca_file;       /* NULL: system store */
        unsigned connect_timeout;  /* seconds */
        unsigned stall_timeout;    /* seconds without a byte before giving up */
        unsigned total_timeout;    /* seconds for a whole request (POST only; 0: none) */
        const char *user_agent;
        volatile int *cancel;      /* set (by a signal handler): the transfer stops (-ECANCELED) */
};

void http_global_init(void);

/* POSTs body (Content-Type text/xml) and returns the answer, at most max_response bytes
 * (-EMSGSIZE beyond that). *ret_status gets the HTTP status. Errors: -ETIMEDOUT (connect or
 * stall), -ECONNREFUSED, -EHOSTUNREACH (resolve), -EPROTO (TLS), -EREMOTEIO (status >= 400,
 * body still returned), -ECONNRESET (dropped). */
int http_post(const struct http_options *o, const char *url, const char *body, size_t len,
              size_t max_response, char **ret, size_t *ret_len, int *ret_status);

/* An install_source reading a URL with Range requests. */
struct http_source {
        struct install_source source;
        char *url;
        struct http_options opts;
        /* The server (or a cache before it) answered a Range request with bytes that cannot be
         * placed, or refused it (416): later requests ask for the whole file and skip to the
         * offset, as for a server that ignores Range. */
        bool ranges_broken;
};
int http_source_init(struct http_source *s, const char *url, const struct http_options *o);
void http_source_done(struct http_source *s);

/* libcurl wrappers. */
#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "log.h"
#include "util.h"

/* Debian's libcurl links librtmp, and librtmp and libldap link GnuTLS, which initialises itself
 * in a library constructor as soon as it is loaded: crypto back ends, the system priority file,
 * PKCS#11 modules through p11-kit - about 0.8 MiB of resident memory in every agent. Nothing
 * here uses GnuTLS (TLS is libcurl's OpenSSL back end; libcurl is told http and https only), and
 * GnuTLS lets a program skip that initialisation by defining this function (it must be in the
 * dynamic symbol table: module.mk exports it). */
__attribute__((visibility("default"), used)) int _gnutls_global_init_skip(void);
int _gnutls_global_init_skip(void) {
        return 1;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void global_init(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

void http_global_init(void) {
        pthread_once(&once, global_init);
}

static void curl_cleanupp(CURL **c) {
        if (*c)
                curl_easy_cleanup(*c);
}

static int map_curl_error(CURLcode c, const char *errbuf, const char *url) {
        int r;
        switch (c) {
        case CURLE_OK: return 0;
        case CURLE_OPERATION_TIMEDOUT: r = -ETIMEDOUT; break;
        case CURLE_COULDNT_CONNECT: r = -ECONNREFUSED; break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY: r = -EHOSTUNREACH; break;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE: r = -EPROTO; break;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT: r = -EINVAL; break;
        case CURLE_TOO_MANY_REDIRECTS: r = -ELOOP; break;
        case CURLE_ABORTED_BY_CALLBACK: r = -ECANCELED; break;
        default: r = -ECONNRESET; break;
        }
        log_debug("%s: %s%s%s", url, curl_easy_strerror(c), errbuf && *errbuf ? ": " : "",
                  errbuf ? errbuf : "");
        if (r == -EPROTO || r == -EINVAL)
                log_warning("%s: %s", url, errbuf && *errbuf ? errbuf : curl_easy_strerror(c));
        return r;
}

/* libcurl's sockets would otherwise go to every program the agent starts meanwhile (mtools
 * runs while a download streams): close-on-exec. */
static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *a) {
        int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
        return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* A stop asked for (SIGTERM) ends a transfer even while no byte arrives. */
static int transfer_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                             curl_off_t ultotal, curl_off_t ulnow) {
        volatile int *cancel = userdata;
        return cancel && *cancel ? 1 : 0;
}

static void common_options(CURL *c, const struct http_options *o, const char *url, char *errbuf) {
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        /* Never from https down to http: the Omaha request would go out in clear. */
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR,
                         strncasecmp(url, "https://", 8) == 0 ? "https" : "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
        if (o->ca_file) {
                /* That CA alone: libcurl would also take the system's directory of CAs. */
                curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
                curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
        }
        if (o->cancel) {
                curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, transfer_progress);
                curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)o->cancel);
                curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        }
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(o->connect_timeout ? o->connect_timeout : 30));
        /* A connection that delivers nothing for stall_timeout seconds is dropped. */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(o->stall_timeout ? o->stall_timeout : 60));
        curl_easy_setopt(c, CURLOPT_USERAGENT, o->user_agent ? o->user_agent : "pivot-agent");
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, NULL);
}

struct post_buf {
        char *data;
        size_t len, max;
        bool too_big;
};

static size_t post_write(char *p, size_t size, size_t n, void *userdata) {
        struct post_buf *b = userdata;
        size_t len = size * n;
        if (b->len + len > b->max) {
                b->too_big = true;
                return 0; /* aborts the transfer */
        }
        char *d = realloc(b->data, b->len + len + 1);
        if (!d)
                return 0;
        memcpy(d + b->len, p, len);
        b->data = d;
        b->len += len;
        d[b->len] = 0;
        return len;
}

int http_post(const struct http_options *o, const char *url, const char *body, size_t len,
              size_t max_response, char **ret, size_t *ret_len, int *ret_status) {
        _cleanup_(curl_cleanupp) CURL *c = NULL;
        struct curl_slist *headers = NULL;
        struct post_buf b = {.max = max_response};
        char errbuf[CURL_ERROR_SIZE] = "";
        long status = 0;

        http_global_init();
        *ret = NULL;
        *ret_status = 0;
        c = curl_easy_init();
        if (!c)
                return -ENOMEM;
        common_options(c, o, url, errbuf);
        headers = curl_slist_append(headers, "Content-Type: text/xml; charset=utf-8");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        /* A server moved (301, 302: http to https, a new path) gets the request again. By
         * default libcurl would follow with a GET, without the body. A 303 asks for a GET. */
        curl_easy_setopt(c, CURLOPT_POSTREDIR, (long)(CURL_REDIR_POST_301 | CURL_REDIR_POST_302));
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, post_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        if (o->total_timeout)
                curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)o->total_timeout);
        CURLcode cc = curl_easy_perform(c);
        curl_slist_free_all(headers);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        *ret_status = (int)status;
        if (b.too_big) {
                free(b.data);
                return -EMSGSIZE;
        }
        if (cc != CURLE_OK) {
                free(b.data);
                return map_curl_error(cc, errbuf, url);
        }
        if (!b.data)
                b.data = calloc(1, 1);
        if (!b.data)
                return -ENOMEM;
        *ret = b.data;
        if (ret_len)
                *ret_len = b.len;
        return status >= 400 ? -EREMOTEIO : 0;
}

/* --- Ranged download ----------------------------------------------------------------------- */

struct fetch_state {
        CURL *curl;
        uint64_t skip;     /* bytes to drop first (a server that ignored the Range) */
        uint64_t *dropped; /* the source's count of them */
        uint64_t left;     /* bytes still wanted; UINT64_MAX: to the end */
        uint64_t offset;
        bool checked;      /* status looked at */
        bool complete;     /* got all that was asked for */
        bool unplaceable;  /* a 206 whose bytes cannot be placed */
        long status;
        int sink_error;
        install_sink_fn sink;
        void *userdata;
};

/* A 206 says in Content-Range where its bytes start. A cache or proxy may send more than was
 * asked for (a range widened to its block size): the bytes before the offset are dropped. One
 * that starts after the offset, or says nothing usable, cannot be placed: taking its bytes as
 * the requested ones would fail the next chunk's hash and throw away a good checkpoint. */
static int range_start_skip(struct fetch_state *f) {
        struct curl_header *h = NULL;
        unsigned long long first, last;
        int n = 0;
        if (curl_easy_header(f->curl, "Content-Range", 0, CURLH_HEADER, -1, &h) != CURLHE_OK ||
            sscanf(h->value, "bytes %llu-%llu/%n", &first, &last, &n) != 2 || n == 0 || first > last) {
                log_warning("The server answered a Range request with 206 but no usable "
                            "Content-Range (%s)", h ? h->value : "none");
                return -EPROTO;
        }
        uint64_t start = first;
        if (start > f->offset) {
                log_warning("The server sent bytes from %" PRIu64 ", not from %" PRIu64 " as asked",
                            start, f->offset);
                return -EPROTO;
        }
        if (start < f->offset)
                log_debug("The server sent bytes from %" PRIu64 "; skipping %" PRIu64 " to reach %" PRIu64,
                          start, f->offset - start, f->offset);
        f->skip = f->offset - start;
        return 0;
}

static size_t fetch_write(char *p, size_t size, size_t n, void *userdata) {
        struct fetch_state *f = userdata;
        size_t len = size * n, total = len;
        if (!f->checked) {
                f->checked = true;
                curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &f->status);
                if (f->status >= 400)
                        return 0;
                if (f->status == 200 && f->offset > 0) {
                        log_debug("The server ignored the Range request; skipping %" PRIu64 " bytes",
                                  f->offset);
                        f->skip = f->offset;
                }
                if (f->status == 206) {
                        if (range_start_skip(f) < 0) {
                                f->unplaceable = true;
                                return 0;
                        }
                }
        }
        if (f->skip) {
                size_t s = f->skip < len ? (size_t)f->skip : len;
                f->skip -= s, p += s, len -= s;
                *f->dropped += s;
        }
        if (len > f->left)
                len = (size_t)f->left;
        if (len > 0) {
                int r = f->sink(f->userdata, p, len);
                if (r < 0) {
                        f->sink_error = r;
                        return 0;
                }
                if (f->left != UINT64_MAX)
                        f->left -= len;
        }
        if (f->left == 0) {
                f->complete = true;
                return 0; /* all we wanted: stop here */
        }
        return total;
}

static int http_fetch(struct install_source *s, uint64_t offset, uint64_t end, install_sink_fn sink,
                      void *userdata, int *ret_http) {
        struct http_source *h = (struct http_source *)s;
        _cleanup_(curl_cleanupp) CURL *c = NULL;
        char errbuf[CURL_ERROR_SIZE] = "", range[64];
        struct fetch_state f = {
                .dropped = &s->bytes_dropped,
                .left = end ? end - offset : UINT64_MAX,
                .offset = offset,
                .sink = sink,
                .userdata = userdata,
        };

        http_global_init();
        c = curl_easy_init();
        if (!c)
                return -ENOMEM;
        f.curl = c;
        common_options(c, &h->opts, h->url, errbuf);
        curl_easy_setopt(c, CURLOPT_URL, h->url);
        const bool ranged = (offset || end) && !h->ranges_broken;
        if (ranged) {
                if (end)
                        snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, offset, end - 1);
                else
                        snprintf(range, sizeof(range), "%" PRIu64 "-", offset);
                curl_easy_setopt(c, CURLOPT_RANGE, range);
        }
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 64L * 1024);
        CURLcode cc = curl_easy_perform(c);
        if (!f.checked)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &f.status);
        if (ranged && (f.unplaceable || f.status == 416)) {
                /* Retries of this download will not depend on ranges: a cache that cannot serve
                 * them would otherwise fail every resume, for ever. */
                log_warning("%s: the server cannot serve this Range (HTTP %ld); asking for the "
                            "whole file from now on", h->url, f.status);
                h->ranges_broken = true;
                return -EPROTO;
        }
        if (f.unplaceable)
                return -EPROTO; /* a 206 to a request without Range */
        if (f.sink_error)
                return f.sink_error;
        if (f.complete)
                return 0;
        if (f.status >= 400) {
                if (ret_http)
                        *ret_http = (int)f.status;
                return -EREMOTEIO;
        }
        if (cc == CURLE_OK && f.status == 206 && f.left != UINT64_MAX && f.left > 0)
                return -ENODATA;
        if (cc != CURLE_OK)
                return map_curl_error(cc, errbuf, h->url);
        return 0;
}

int http_source_init(struct http_source *s, const char *url, const struct http_options *o) {
        *s = (struct http_source){
                .source = {.fetch = http_fetch, .retryable = true},
                .opts = *o,
        };
        s->url = strdup(url);
        if (!s->url)
                return -ENOMEM;
        s->source.name = s->url;
        return 0;
}

void http_source_done(struct http_source *s) {
        free(s->url);
        s->url = NULL;
}

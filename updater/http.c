/* HTTP/1.1 over TCP, and over TLS with OpenSSL's libssl.
 *
 * What the agent needs and nothing more: a POST with a bounded answer, and GETs with a Range
 * streamed into a callback. One request per connection (Connection: close); the answer is
 * delimited by Content-Length, chunked transfer coding or the end of the connection; redirects
 * (301, 302, 303, 307, 308) are followed up to five times; Basic authentication from a URL's
 * user:password; proxies from the environment with libcurl's rules (http_proxy for http://,
 * https_proxy or HTTPS_PROXY for https://, else all_proxy or ALL_PROXY; no_proxy or NO_PROXY
 * lists hosts, domain suffixes, addresses and address/prefix ranges to reach directly, `*`
 * all of them); plain-HTTP proxies only, https:// through them with CONNECT. No HTTP/2, no
 * content codings (none is asked for), no cookies.
 *
 * A library such as libcurl would do all this and much more, but costs the agent about 5 MiB of
 * resident memory in shared-library pages (libcurl and the two dozen libraries it links); the
 * agent's whole budget is 16 MiB. libssl is only initialised when a URL is https://. */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "util.h"

#define RECV_BUFFER (64u << 10)      /* also the limit for a response's status line and headers */
#define MAX_LINE (16u << 10)         /* one status or header line */
#define MAX_REDIRECTS 5
#define MAX_URL 8192
#define DEFAULT_PROXY_PORT 1080      /* libcurl's */
#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define SYSTEM_CA_DIR "/etc/ssl/certs"

void http_global_init(void) {
        /* Nothing to set up: libssl initialises itself when a URL is https://. */
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- URLs ---------------------------------------------------------------------------------- */

struct url {
        bool tls;
        char host[256];      /* a name or an address, IPv6 without its brackets */
        char authority[320]; /* for Host: and CONNECT: host or [v6], with :port unless default */
        uint16_t port;
        char *path;          /* path and query, from '/'; NULL for a proxy */
        char *auth;          /* "user:password", percent-decoded, or NULL */
};

static void url_done(struct url *u) {
        free(u->path);
        free(u->auth);
        u->path = u->auth = NULL;
}

static bool host_is_address(const char *host) {
        uint8_t a[16];
        return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static int hexval(int c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
               c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static char *percent_decode(const char *s, size_t n) {
        char *out = malloc(n + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
                        *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                        i += 2;
                } else
                        *o++ = s[i];
        }
        *o = 0;
        return out;
}

/* Parses scheme://[user:password@]host[:port][/path][?query][#fragment]. For a proxy the
 * scheme may be left out (http) and the path is ignored. -EINVAL for anything else. */
static int url_parse(const char *s, bool proxy, struct url *ret) {
        struct url u = {0};
        size_t len = strlen(s);
        if (len == 0 || len > MAX_URL)
                return -EINVAL;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
                        return -EINVAL; /* no spaces or control characters: nothing to smuggle */
        const char *p = strstr(s, "://");
        if (p) {
                size_t n = (size_t)(p - s);
                if (n == 4 && !strncasecmp(s, "http", 4))
                        u.tls = false;
                else if (n == 5 && !strncasecmp(s, "https", 5) && !proxy)
                        u.tls = true;
                else
                        return -EPROTONOSUPPORT;
                p += 3;
        } else if (proxy)
                p = s;
        else
                return -EINVAL;

        size_t alen = strcspn(p, "/?#");
        const char *rest = p + alen;
        const char *at = memrchr(p, '@', alen);
        if (at) {
                u.auth = percent_decode(p, (size_t)(at - p));
                if (!u.auth)
                        return -ENOMEM;
                alen -= (size_t)(at + 1 - p);
                p = at + 1;
        }
        const char *port = NULL;
        size_t hlen;
        if (alen > 0 && p[0] == '[') {
                const char *close = memchr(p, ']', alen);
                if (!close)
                        goto invalid;
                hlen = (size_t)(close - p - 1);
                if (hlen == 0 || hlen >= sizeof(u.host))
                        goto invalid;
                memcpy(u.host, p + 1, hlen);
                u.host[hlen] = 0;
                struct in6_addr a6;
                if (inet_pton(AF_INET6, u.host, &a6) != 1)
                        goto invalid;
                if (close + 1 < p + alen) {
                        if (close[1] != ':')
                                goto invalid;
                        port = close + 2;
                }
        } else {
                const char *colon = memchr(p, ':', alen);
                hlen = colon ? (size_t)(colon - p) : alen;
                if (hlen == 0 || hlen >= sizeof(u.host))
                        goto invalid;
                memcpy(u.host, p, hlen);
                u.host[hlen] = 0;
                for (size_t i = 0; i < hlen; i++)
                        if (!isalnum((unsigned char)u.host[i]) && !strchr("-._~", u.host[i]))
                                goto invalid;
                if (colon)
                        port = colon + 1;
        }
        u.port = proxy ? DEFAULT_PROXY_PORT : u.tls ? 443 : 80;
        if (port && port < p + alen) {
                unsigned long v = 0;
                for (const char *q = port; q < p + alen; q++) {
                        if (!isdigit((unsigned char)*q) || (v = v * 10 + (unsigned long)(*q - '0')) > 65535)
                                goto invalid;
                }
                if (v == 0)
                        goto invalid;
                u.port = (uint16_t)v;
        }
        bool v6 = strchr(u.host, ':') != NULL;
        bool default_port = u.port == (u.tls ? 443 : 80);
        snprintf(u.authority, sizeof(u.authority), "%s%s%s", v6 ? "[" : "", u.host, v6 ? "]" : "");
        if (!default_port)
                snprintf(u.authority + strlen(u.authority), sizeof(u.authority) - strlen(u.authority),
                         ":%u", u.port);
        if (!proxy) {
                size_t plen = strcspn(rest, "#");
                bool slash = plen > 0 && rest[0] == '/';
                if (asprintf(&u.path, "%s%.*s", slash ? "" : "/", (int)plen, rest) < 0) {
                        u.path = NULL;
                        url_done(&u);
                        return -ENOMEM;
                }
        }
        *ret = u;
        return 0;
invalid:
        url_done(&u);
        return -EINVAL;
}

/* Resolves a Location header against the URL b it came from. */
static char *url_resolve(const struct url *b, const char *loc) {
        const char *scheme = b->tls ? "https" : "http";
        char *out = NULL;
        int r;
        if (strstr(loc, "://"))
                return strdup(loc);
        if (loc[0] == '/' && loc[1] == '/')
                r = asprintf(&out, "%s:%s", scheme, loc);
        else if (loc[0] == '/')
                r = asprintf(&out, "%s://%s%s", scheme, b->authority, loc);
        else {
                /* Relative to the base path's directory. */
                size_t dir = strcspn(b->path, "?");
                while (dir > 0 && b->path[dir - 1] != '/')
                        dir--;
                r = asprintf(&out, "%s://%s%.*s%s", scheme, b->authority, (int)dir, b->path, loc);
        }
        return r < 0 ? NULL : out;
}

/* host:port for CONNECT, with brackets around an IPv6 address. */
static void host_port(const struct url *u, char *buf, size_t size) {
        bool v6 = strchr(u->host, ':') != NULL;
        snprintf(buf, size, "%s%s%s:%u", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
}

/* --- Proxies from the environment ------------------------------------------------------- */

static const char *env_nonempty(const char *name) {
        const char *v = getenv(name);
        return v && *v ? v : NULL;
}

/* Does a no_proxy entry (address, address/prefix) match the address host? */
static bool address_matches(const char *host, const char *entry, size_t n) {
        char buf[64];
        if (n >= sizeof(buf))
                return false;
        memcpy(buf, entry, n);
        buf[n] = 0;
        unsigned prefix = 0;
        char *slash = strchr(buf, '/');
        if (slash) {
                char *end;
                unsigned long v = strtoul(slash + 1, &end, 10);
                if (*end || slash[1] == 0 || v > 128)
                        return false;
                prefix = (unsigned)v;
                *slash = 0;
        }
        uint8_t a[16], b[16];
        int family = strchr(host, ':') ? AF_INET6 : AF_INET;
        size_t bits = family == AF_INET6 ? 128 : 32;
        if (inet_pton(family, host, a) != 1 || inet_pton(family, buf, b) != 1)
                return false;
        if (!slash)
                prefix = (unsigned)bits;
        if (prefix > bits)
                return false;
        for (unsigned i = 0; i < prefix; i++) {
                unsigned byte = i / 8, bit = 7 - i % 8;
                if (((a[byte] >> bit) & 1) != ((b[byte] >> bit) & 1))
                        return false;
        }
        return true;
}

static bool no_proxy_for(const char *host) {
        const char *list = env_nonempty("no_proxy");
        if (!list)
                list = env_nonempty("NO_PROXY");
        if (!list)
                return false;
        bool address = host_is_address(host);
        size_t hl = strlen(host);
        while (hl > 0 && host[hl - 1] == '.')
                hl--;
        for (const char *p = list; *p;) {
                p += strspn(p, ", \t");
                size_t n = strcspn(p, ", \t");
                const char *e = p;
                p += n;
                if (n == 0)
                        continue;
                if (n == 1 && e[0] == '*')
                        return true;
                if (address) {
                        if (address_matches(host, e, n))
                                return true;
                        continue;
                }
                while (n > 0 && e[0] == '.')
                        e++, n--;
                while (n > 0 && e[n - 1] == '.')
                        n--;
                if (n == 0 || n > hl)
                        continue;
                if (!strncasecmp(host + hl - n, e, n) && (n == hl || host[hl - n - 1] == '.'))
                        return true;
        }
        return false;
}

/* The proxy URL for a request to u, or NULL. */
static const char *proxy_for(const struct url *u) {
        const char *p = u->tls ? (env_nonempty("https_proxy") ? env_nonempty("https_proxy")
                                                               : env_nonempty("HTTPS_PROXY"))
                               : env_nonempty("http_proxy"); /* not HTTP_PROXY: see "httpoxy" */
        if (!p)
                p = env_nonempty("all_proxy") ? env_nonempty("all_proxy") : env_nonempty("ALL_PROXY");
        if (!p || no_proxy_for(u->host))
                return NULL;
        return p;
}

/* --- Connections ------------------------------------------------------------------------- */

struct conn {
        int fd;
        SSL_CTX *ctx;
        SSL *ssl;
        uint8_t *buf;         /* RECV_BUFFER bytes; unread data is buf[pos, end) */
        size_t pos, end;
        bool eof;
        unsigned stall_ms;    /* no byte for this long: -ETIMEDOUT */
        uint64_t deadline;    /* now_ms() limit for the whole request; 0: none */
        char what[300];       /* host:port, for messages */
};

static void conn_close(struct conn *c) {
        if (c->ssl)
                SSL_free(c->ssl);
        if (c->ctx)
                SSL_CTX_free(c->ctx);
        if (c->fd >= 0)
                close(c->fd);
        free(c->buf);
        *c = (struct conn){.fd = -1};
}

/* Waits until fd is ready for events, at most the stall time and never past until/the
 * request's deadline. */
static int conn_wait(struct conn *c, short events, uint64_t until) {
        uint64_t limit = now_ms() + c->stall_ms;
        if (until && until < limit)
                limit = until;
        if (c->deadline && c->deadline < limit)
                limit = c->deadline;
        for (;;) {
                uint64_t now = now_ms();
                if (limit <= now)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = c->fd, .events = events};
                int n = poll(&p, 1, (int)(limit - now > INT32_MAX ? INT32_MAX : limit - now));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n > 0)
                        return 0;
        }
}

static int connect_one(const struct addrinfo *ai, uint64_t until, struct conn *c) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
                return negative_errno();
        c->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                if (errno != EINPROGRESS) {
                        int r = negative_errno();
                        close(fd);
                        c->fd = -1;
                        return r;
                }
                int r = conn_wait(c, POLLOUT, until);
                int err = 0;
                socklen_t len = sizeof(err);
                if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        r = negative_errno();
                else if (r == 0 && err)
                        r = -err;
                if (r < 0) {
                        close(fd);
                        c->fd = -1;
                        return r;
                }
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return 0;
}

/* Resolves host within the connect time limit: getaddrinfo() alone may wait for DNS much
 * longer (and would not let SIGTERM stop the agent meanwhile). */
static int resolve(const char *host, uint16_t port, uint64_t until, struct addrinfo **ret) {
        struct lookup {
                struct gaicb cb;
                struct addrinfo hints;
                char host[256], service[8];
        } *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->hints = (struct addrinfo){.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                     .ai_flags = AI_NUMERICSERV};
        snprintf(q->host, sizeof(q->host), "%.255s", host);
        snprintf(q->service, sizeof(q->service), "%u", port);
        if (host_is_address(host)) {
                q->hints.ai_flags |= AI_NUMERICHOST;
                int g = getaddrinfo(q->host, q->service, &q->hints, ret);
                free(q);
                return g == 0 ? 0 : -EHOSTUNREACH;
        }
        q->cb = (struct gaicb){.ar_name = q->host, .ar_service = q->service, .ar_request = &q->hints};
        struct gaicb *list[1] = {&q->cb};
        if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0) {
                free(q);
                return -EHOSTUNREACH;
        }
        int g;
        while ((g = gai_error(&q->cb)) == EAI_INPROGRESS) {
                uint64_t now = now_ms();
                if (now >= until)
                        break;
                struct timespec ts = {.tv_sec = (time_t)((until - now) / 1000),
                                      .tv_nsec = (long)((until - now) % 1000) * 1000000L};
                (void)gai_suspend((const struct gaicb *const *)list, 1, &ts);
        }
        if (g == EAI_INPROGRESS) {
                log_debug("%s: no answer from the name service in time", host);
                /* Still in use by the resolver unless cancelled: then it is left behind. */
                if (gai_cancel(&q->cb) == EAI_CANCELED)
                        free(q);
                return -ETIMEDOUT;
        }
        if (g != 0) {
                log_debug("%s: cannot resolve: %s", host, gai_strerror(g));
                free(q);
                return -EHOSTUNREACH;
        }
        *ret = q->cb.ar_result;
        free(q);
        return 0;
}

/* TCP to host:port, each address in turn (all but the last get half the time left), until
 * `until`. */
static int conn_open(struct conn *c, const char *host, uint16_t port, uint64_t until) {
        struct addrinfo *res = NULL;
        int r = resolve(host, port, until, &res);
        if (r < 0)
                return r;
        r = -ECONNREFUSED;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                uint64_t now = now_ms();
                if (now >= until) {
                        r = -ETIMEDOUT;
                        break;
                }
                uint64_t limit = ai->ai_next ? now + (until - now) / 2 : until;
                r = connect_one(ai, limit, c);
                if (r == 0 || (r == -ETIMEDOUT && !ai->ai_next))
                        break;
        }
        freeaddrinfo(res);
        if (r < 0 && r != -ETIMEDOUT) {
                log_debug("%s: cannot connect: %s", c->what, strerror(-r));
                r = -ECONNREFUSED;
        }
        return r;
}

static void log_tls_errors(void) {
        unsigned long e;
        char buf[256];
        while ((e = ERR_get_error()) != 0) {
                ERR_error_string_n(e, buf, sizeof(buf));
                log_debug("TLS: %s", buf);
        }
}

/* Could c anchor the server's chain: is it named as the issuer of the server's certificate or
 * of one sent along, or is it one of them (a trusted intermediate or a pinned certificate)? */
static bool names_match(const X509_NAME *subject, X509 *x) {
        return X509_NAME_cmp(subject, X509_get_issuer_name(x)) == 0 ||
               X509_NAME_cmp(subject, X509_get_subject_name(x)) == 0;
}

static bool issues_any(X509 *c, X509 *leaf, STACK_OF(X509) *sent) {
        const X509_NAME *subject = X509_get_subject_name(c);
        if (leaf && names_match(subject, leaf))
                return true;
        for (int i = 0; i < sk_X509_num(sent); i++)
                if (names_match(subject, sk_X509_value(sent, i)))
                        return true;
        return false;
}

/* Certificate verification with the CA bundle read on demand: only the certificates that
 * could issue what the server sent go into the trust store, then OpenSSL verifies as usual
 * (chain, dates, host name or address). Loading the whole system bundle instead costs about
 * 1 MiB of heap, and leaves it fragmented once freed. */
static int verify_with_bundle(X509_STORE_CTX *x, void *arg) {
        const char *bundle = arg;
        X509_STORE *store = X509_STORE_CTX_get0_store(x);
        X509 *leaf = X509_STORE_CTX_get0_cert(x);
        STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(x);
        BIO *b = bundle ? BIO_new_file(bundle, "r") : NULL;
        if (b) {
                X509 *c;
                while ((c = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
                        if (issues_any(c, leaf, sent))
                                X509_STORE_add_cert(store, c);
                        X509_free(c);
                }
                BIO_free(b);
        }
        ERR_clear_error(); /* the end of the file */
        return X509_verify_cert(x);
}

/* TLS over the open connection, for host (name or address), verified against ca_file or the
 * system's store (where Debian's libcurl looks: the bundle, and the hashed directory if there
 * is one; a device's image has only the bundle). */
static int tls_start(struct conn *c, const char *host, const char *ca_file, uint64_t until) {
        ERR_clear_error();
        const char *bundle = ca_file ? ca_file : SYSTEM_CA_FILE;
        bool have_bundle = access(bundle, R_OK) == 0;
        bool have_dir = !ca_file && access(SYSTEM_CA_DIR, X_OK) == 0;
        if (!have_bundle && !have_dir) {
                log_warning("%s: cannot read the CA certificates in %s: %m", c->what, bundle);
                return -EPROTO;
        }
        c->ctx = SSL_CTX_new(TLS_client_method());
        if (!c->ctx)
                return -ENOMEM;
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        /* A server that closes without close_notify: the framing (and the payload's hashes)
         * tells whether anything is missing. */
        SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
        if (have_dir && SSL_CTX_load_verify_dir(c->ctx, SYSTEM_CA_DIR) != 1)
                log_tls_errors();
        SSL_CTX_set_cert_verify_callback(c->ctx, verify_with_bundle,
                                         have_bundle ? (void *)bundle : NULL);
        c->ssl = SSL_new(c->ctx);
        if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
                return -ENOMEM;
        /* As libcurl does: a trusted intermediate anchors a chain too. */
        X509_VERIFY_PARAM_set_flags(SSL_get0_param(c->ssl), X509_V_FLAG_PARTIAL_CHAIN);
        if (host_is_address(host)) {
                if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1)
                        return -EINVAL;
        } else if (SSL_set_tlsext_host_name(c->ssl, host) != 1 || SSL_set1_host(c->ssl, host) != 1)
                return -ENOMEM;
        for (;;) {
                int n = SSL_connect(c->ssl);
                if (n == 1)
                        return 0;
                int e = SSL_get_error(c->ssl, n);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                        int r = conn_wait(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, until);
                        if (r < 0)
                                return r;
                        continue;
                }
                long v = SSL_get_verify_result(c->ssl);
                if (v != X509_V_OK)
                        log_warning("%s: TLS: the server's certificate does not verify: %s", c->what,
                                    X509_verify_cert_error_string(v));
                else {
                        unsigned long err = ERR_peek_error();
                        char buf[256] = "connection closed";
                        if (err)
                                ERR_error_string_n(err, buf, sizeof(buf));
                        log_warning("%s: TLS handshake failed: %s", c->what, buf);
                }
                log_tls_errors();
                return -EPROTO;
        }
}

static int conn_write(struct conn *c, const void *data, size_t len) {
        const uint8_t *p = data;
        while (len > 0) {
                ssize_t n;
                int want = 0;
                if (c->ssl) {
                        ERR_clear_error();
                        int k = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
                        if (k > 0)
                                n = k;
                        else {
                                int e = SSL_get_error(c->ssl, k);
                                if (e == SSL_ERROR_WANT_READ)
                                        want = POLLIN;
                                else if (e == SSL_ERROR_WANT_WRITE)
                                        want = POLLOUT;
                                else
                                        return -ECONNRESET;
                                n = -1;
                        }
                } else {
                        n = send(c->fd, p, len, MSG_NOSIGNAL);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                want = POLLOUT;
                        else if (n < 0)
                                return -ECONNRESET;
                }
                if (want) {
                        int r = conn_wait(c, (short)want, 0);
                        if (r < 0)
                                return r;
                        continue;
                }
                p += n, len -= (size_t)n;
        }
        return 0;
}

/* Reads more into the buffer (compacting it first). Returns the number of new bytes, 0 at the
 * end of the connection, or an error (-ETIMEDOUT: nothing for the stall time). */
static int conn_fill(struct conn *c) {
        if (c->eof)
                return 0;
        if (c->pos == c->end)
                c->pos = c->end = 0;
        else if (c->pos > 0 && c->end == RECV_BUFFER) {
                memmove(c->buf, c->buf + c->pos, c->end - c->pos);
                c->end -= c->pos;
                c->pos = 0;
        }
        if (c->end == RECV_BUFFER)
                return -ENOBUFS;
        for (;;) {
                size_t room = RECV_BUFFER - c->end;
                int want;
                if (c->ssl) {
                        ERR_clear_error();
                        int k = SSL_read(c->ssl, c->buf + c->end, (int)room);
                        if (k > 0) {
                                c->end += (size_t)k;
                                return k;
                        }
                        int e = SSL_get_error(c->ssl, k);
                        if (e == SSL_ERROR_ZERO_RETURN) {
                                c->eof = true;
                                return 0;
                        }
                        if (e == SSL_ERROR_WANT_READ)
                                want = POLLIN;
                        else if (e == SSL_ERROR_WANT_WRITE)
                                want = POLLOUT;
                        else {
                                log_tls_errors();
                                return -ECONNRESET;
                        }
                } else {
                        ssize_t n = recv(c->fd, c->buf + c->end, room, 0);
                        if (n > 0) {
                                c->end += (size_t)n;
                                return (int)n;
                        }
                        if (n == 0) {
                                c->eof = true;
                                return 0;
                        }
                        if (errno != EAGAIN && errno != EINTR)
                                return -ECONNRESET;
                        want = POLLIN;
                }
                int r = conn_wait(c, (short)want, 0);
                if (r < 0)
                        return r;
        }
}

/* One line (up to LF; CR LF or LF) into line, NUL-terminated, without its end. -EBADMSG when
 * longer than size-1 bytes or when the connection ends first. */
static int conn_line(struct conn *c, char *line, size_t size) {
        size_t n = 0;
        for (;;) {
                while (c->pos < c->end) {
                        char ch = (char)c->buf[c->pos++];
                        if (ch == '\n') {
                                if (n > 0 && line[n - 1] == '\r')
                                        n--;
                                line[n] = 0;
                                return 0;
                        }
                        if (n + 1 >= size)
                                return -EBADMSG;
                        line[n++] = ch;
                }
                int r = conn_fill(c);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -EBADMSG;
        }
}

/* --- Requests and responses ------------------------------------------------------------- */

struct response {
        int status;
        int64_t content_length; /* -1: not given */
        bool chunked;
        bool has_range;
        uint64_t range_start;   /* Content-Range: bytes START-... */
        char *location;
};

static bool parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        if (!isdigit((unsigned char)*s))
                return false;
        for (; isdigit((unsigned char)*s); s++) {
                if (v > (UINT64_MAX - 9) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        while (*s == ' ' || *s == '\t')
                s++;
        *ret = v;
        return *s == 0 || *s == '-' || *s == '/';
}

/* Status line and headers; 1xx answers are skipped. */
static int read_response_head(struct conn *c, struct response *resp) {
        char *line = malloc(MAX_LINE);
        if (!line)
                return -ENOMEM;
        int r;
        size_t total;
again:
        total = 0;
        *resp = (struct response){.content_length = -1};
        r = conn_line(c, line, MAX_LINE);
        if (r < 0)
                goto done;
        /* HTTP/1.x SP 3DIGIT [SP reason] */
        if (strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) || line[8] != ' ' ||
            !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
            !isdigit((unsigned char)line[11]) || (line[12] && line[12] != ' ') || line[9] == '0') {
                log_debug("%s: not an HTTP/1 response: \"%.80s\"", c->what, line);
                r = -EBADMSG;
                goto done;
        }
        int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
        resp->status = status;
        for (;;) {
                r = conn_line(c, line, MAX_LINE);
                if (r < 0)
                        goto done;
                total += strlen(line) + 2;
                if (total > RECV_BUFFER) {
                        r = -EBADMSG;
                        goto done;
                }
                if (!*line)
                        break;
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                *colon = 0;
                char *v = colon + 1;
                v += strspn(v, " \t");
                size_t vl = strlen(v);
                while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                        v[--vl] = 0;
                if (!strcasecmp(line, "Content-Length")) {
                        uint64_t n;
                        if (!parse_u64(v, &n) || n > INT64_MAX ||
                            (resp->content_length >= 0 && (uint64_t)resp->content_length != n)) {
                                r = -EBADMSG;
                                goto done;
                        }
                        resp->content_length = (int64_t)n;
                } else if (!strcasecmp(line, "Transfer-Encoding")) {
                        /* The last coding must be chunked; no other one was asked for. */
                        const char *last = strrchr(v, ',');
                        last = last ? last + 1 + strspn(last + 1, " \t") : v;
                        if (strcasecmp(last, "chunked") != 0 || last != v) {
                                log_debug("%s: unsupported transfer coding \"%s\"", c->what, v);
                                r = -EBADMSG;
                                goto done;
                        }
                        resp->chunked = true;
                } else if (!strcasecmp(line, "Content-Range")) {
                        if (!strncasecmp(v, "bytes ", 6) && parse_u64(v + 6, &resp->range_start))
                                resp->has_range = true;
                } else if (!strcasecmp(line, "Location")) {
                        free(resp->location);
                        resp->location = strdup(v);
                        if (!resp->location) {
                                r = -ENOMEM;
                                goto done;
                        }
                }
        }
        if (status >= 100 && status < 200 && status != 101) {
                free(resp->location);
                goto again;
        }
        if (resp->chunked)
                resp->content_length = -1; /* chunked wins (RFC 9112 6.3) */
        r = 0;
done:
        free(line);
        if (r < 0) {
                free(resp->location);
                resp->location = NULL;
        }
        return r;
}

/* The body, piece by piece. */
struct body {
        struct conn *c;
        bool chunked, started, done;
        uint64_t left;          /* in this chunk, or of the Content-Length */
        bool until_close;
};

static void body_init(struct body *b, struct conn *c, const struct response *resp, bool head_only) {
        *b = (struct body){.c = c, .chunked = resp->chunked};
        if (head_only || resp->status == 204 || resp->status == 304)
                b->done = true;
        else if (!resp->chunked && resp->content_length >= 0) {
                b->left = (uint64_t)resp->content_length;
                b->done = b->left == 0;
        } else if (!resp->chunked)
                b->until_close = true;
}

/* Next piece: *p and *n (at most max bytes); *n == 0 at the end. -ECONNRESET when the
 * connection ends before the body does, -EBADMSG for a broken chunked coding. */
static int body_next(struct body *b, size_t max, const uint8_t **p, size_t *n) {
        struct conn *c = b->c;
        *n = 0;
        if (b->done)
                return 0;
        if (b->chunked && b->left == 0) {
                char line[128];
                int r;
                if (b->started) {
                        r = conn_line(c, line, sizeof(line)); /* the CRLF after a chunk's data */
                        if (r < 0 || *line)
                                return r < 0 && r != -EBADMSG ? r : -ECONNRESET;
                }
                b->started = true;
                r = conn_line(c, line, sizeof(line));
                if (r < 0)
                        return r == -EBADMSG ? -ECONNRESET : r;
                uint64_t size = 0;
                size_t i = 0;
                for (; hexval(line[i]) >= 0; i++) {
                        if (size >> 58)
                                return -EBADMSG;
                        size = size * 16 + (uint64_t)hexval(line[i]);
                }
                if (i == 0 || (line[i] && line[i] != ';' && line[i] != ' ' && line[i] != '\t'))
                        return -EBADMSG;
                if (size == 0) {
                        /* Trailers, up to the empty line. */
                        for (;;) {
                                char t[1024];
                                r = conn_line(c, t, sizeof(t));
                                if (r < 0)
                                        return r == -EBADMSG ? -ECONNRESET : r;
                                if (!*t)
                                        break;
                        }
                        b->done = true;
                        return 0;
                }
                b->left = size;
        }
        if (c->pos == c->end) {
                int r = conn_fill(c);
                if (r < 0)
                        return r;
                if (r == 0) {
                        if (b->until_close) {
                                b->done = true;
                                return 0;
                        }
                        return -ECONNRESET;
                }
        }
        size_t avail = c->end - c->pos;
        if (avail > max)
                avail = max;
        if (!b->until_close && avail > b->left)
                avail = (size_t)b->left;
        *p = c->buf + c->pos;
        *n = avail;
        c->pos += avail;
        if (!b->until_close) {
                b->left -= avail;
                if (!b->chunked && b->left == 0)
                        b->done = true;
        }
        return 0;
}

struct request {
        const struct http_options *o;
        const char *method;  /* GET or POST */
        const char *body;    /* POST */
        size_t body_len;
        const char *range;   /* "bytes=A-B" or NULL */
        uint64_t deadline;   /* now_ms() limit for all of it; 0: none */
};

static char *basic_auth(const char *header, const char *userpass) {
        size_t n = strlen(userpass);
        _cleanup_free_ unsigned char *b64 = malloc(4 * ((n + 2) / 3) + 1);
        char *out = NULL;
        if (!b64)
                return NULL;
        EVP_EncodeBlock(b64, (const unsigned char *)userpass, (int)n);
        if (asprintf(&out, "%s: Basic %s\r\n", header, b64) < 0)
                return NULL;
        return out;
}

static void url_donep(struct url *u) {
        url_done(u);
}

/* Connects for u (through its proxy, if any), sends the request and reads the answer's head.
 * On success the body is next on *c. */
static int send_request(const struct request *rq, const struct url *u, struct conn *c,
                        struct response *resp) {
        const struct http_options *o = rq->o;
        const char *ua = o->user_agent ? o->user_agent : "pivot-agent";
        const char *proxy_url = proxy_for(u);
        _cleanup_(url_donep) struct url proxy = {0};
        char target[320];
        int r;

        *c = (struct conn){.fd = -1, .stall_ms = 1000u * (o->stall_timeout ? o->stall_timeout : 60),
                           .deadline = rq->deadline};
        c->buf = malloc(RECV_BUFFER);
        if (!c->buf)
                return -ENOMEM;
        if (proxy_url) {
                r = url_parse(proxy_url, true, &proxy);
                if (r < 0) {
                        log_warning("Proxy \"%s\": %s", proxy_url,
                                    r == -EPROTONOSUPPORT ? "only http:// proxies are supported"
                                                          : "not a valid proxy URL");
                        return -EPROTO;
                }
        }
        const struct url *to = proxy_url ? &proxy : u;
        snprintf(c->what, sizeof(c->what), "%s%.255s:%u", proxy_url ? "proxy " : "", to->host, to->port);
        uint64_t until = now_ms() + 1000u * (o->connect_timeout ? o->connect_timeout : 30);
        r = conn_open(c, to->host, to->port, until);
        if (r < 0)
                return r;
        if (proxy_url && u->tls) {
                /* A tunnel through the proxy, then TLS end to end. */
                _cleanup_free_ char *pa = proxy.auth ? basic_auth("Proxy-Authorization", proxy.auth)
                                                     : NULL, *req = NULL;
                host_port(u, target, sizeof(target));
                if (asprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%sUser-Agent: %s\r\n\r\n",
                             target, target, pa ? pa : "", ua) < 0)
                        return -ENOMEM;
                r = conn_write(c, req, strlen(req));
                struct response pr;
                uint64_t saved = c->deadline;
                c->deadline = saved && saved < until ? saved : until;
                if (r == 0)
                        r = read_response_head(c, &pr);
                c->deadline = saved;
                if (r < 0)
                        return r;
                free(pr.location);
                if (pr.status != 200) {
                        log_warning("%s: CONNECT %s refused with HTTP status %d", c->what, target,
                                    pr.status);
                        return -ECONNREFUSED;
                }
                if (c->pos != c->end)
                        return -EBADMSG;
        }
        if (u->tls) {
                snprintf(c->what, sizeof(c->what), "%.255s:%u", u->host, u->port);
                r = tls_start(c, u->host, o->ca_file, until);
                if (r < 0)
                        return r;
        }

        /* The request: through a plain proxy, with the absolute URL. */
        _cleanup_free_ char *auth = u->auth ? basic_auth("Authorization", u->auth) : NULL;
        _cleanup_free_ char *pauth = proxy_url && !u->tls && proxy.auth
                                             ? basic_auth("Proxy-Authorization", proxy.auth) : NULL;
        _cleanup_free_ char *head = NULL;
        char range[96] = "", length[48] = "";
        if (rq->range)
                snprintf(range, sizeof(range), "Range: %s\r\n", rq->range);
        if (rq->body)
                snprintf(length, sizeof(length), "Content-Length: %zu\r\n", rq->body_len);
        bool absolute = proxy_url && !u->tls;
        if (asprintf(&head,
                     "%s %s%s%s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "User-Agent: %s\r\n"
                     "Accept: */*\r\n"
                     "%s%s%s%s%s"
                     "Connection: close\r\n\r\n",
                     rq->method, absolute ? "http://" : "", absolute ? u->authority : "", u->path,
                     u->authority, ua, auth ? auth : "", pauth ? pauth : "", range,
                     rq->body ? "Content-Type: text/xml; charset=utf-8\r\n" : "", length) < 0) {
                head = NULL;
                return -ENOMEM;
        }
        r = conn_write(c, head, strlen(head));
        if (r == 0 && rq->body && rq->body_len)
                r = conn_write(c, rq->body, rq->body_len);
        if (r == 0)
                r = read_response_head(c, resp);
        return r;
}

static int report(int r, const char *url) {
        switch (r) {
        case -ETIMEDOUT:
                log_debug("%s: timed out", url);
                break;
        case -EHOSTUNREACH:
                log_debug("%s: cannot resolve the host name", url);
                break;
        case -ECONNREFUSED:
                log_debug("%s: cannot connect", url);
                break;
        case -EPROTO:
                break; /* logged where it happened */
        case -EINVAL:
                log_warning("%s: not a valid http:// or https:// URL", url);
                break;
        case -ELOOP:
                log_debug("%s: more than %d redirects", url, MAX_REDIRECTS);
                break;
        case -EBADMSG:
                log_debug("%s: malformed HTTP response", url);
                r = -ECONNRESET;
                break;
        case -ENOBUFS:
                log_debug("%s: HTTP response head too large", url);
                r = -ECONNRESET;
                break;
        case -ECONNRESET:
                log_debug("%s: connection dropped", url);
                break;
        default:
                break;
        }
        return r;
}

/* Sends rq to url, following redirects; on success *c holds the final answer's body. */
static int request_open(struct request rq, const char *url, struct conn *c, struct response *resp) {
        _cleanup_free_ char *cur = strdup(url);
        if (!cur)
                return -ENOMEM;
        for (int hops = 0;; hops++) {
                struct url u;
                int r = url_parse(cur, false, &u);
                if (r < 0)
                        return report(r == -EPROTONOSUPPORT ? -EINVAL : r, cur);
                r = send_request(&rq, &u, c, resp);
                if (r < 0) {
                        url_done(&u);
                        conn_close(c);
                        return report(r, cur);
                }
                bool redirect = resp->location && (resp->status == 301 || resp->status == 302 ||
                                                   resp->status == 303 || resp->status == 307 ||
                                                   resp->status == 308);
                if (!redirect) {
                        url_done(&u);
                        free(resp->location);
                        resp->location = NULL;
                        return 0;
                }
                char *next = url_resolve(&u, resp->location);
                url_done(&u);
                free(resp->location);
                resp->location = NULL;
                conn_close(c);
                if (!next)
                        return -ENOMEM;
                free(cur);
                cur = next;
                if (hops + 1 > MAX_REDIRECTS)
                        return report(-ELOOP, url);
                log_debug("%s: redirected to %s", url, cur);
                /* As libcurl does: 301, 302 and 303 turn a POST into a GET. */
                if (resp->status != 307 && resp->status != 308 && !strcmp(rq.method, "POST")) {
                        rq.method = "GET";
                        rq.body = NULL;
                        rq.body_len = 0;
                }
        }
}

/* SIGPIPE would kill the process when a TLS peer goes away mid-write (libssl writes with
 * write(2)): ignored while a request runs, as libcurl does. */
static void sigpipe_ignore(struct sigaction *old) {
        struct sigaction ign = {.sa_handler = SIG_IGN};
        sigaction(SIGPIPE, &ign, old);
}

static void sigpipe_restore(struct sigaction *old) {
        sigaction(SIGPIPE, old, NULL);
}

int http_post(const struct http_options *o, const char *url, const char *body, size_t len,
              size_t max_response, char **ret, size_t *ret_len, int *ret_status) {
        struct request rq = {.o = o, .method = "POST", .body = body, .body_len = len};
        struct conn c = {.fd = -1};
        struct response resp;
        struct sigaction old;
        char *data = NULL;
        size_t dlen = 0;
        int r;

        *ret = NULL;
        *ret_status = 0;
        if (o->total_timeout)
                rq.deadline = now_ms() + 1000u * o->total_timeout;
        sigpipe_ignore(&old);
        r = request_open(rq, url, &c, &resp);
        if (r < 0)
                goto out;
        *ret_status = resp.status;
        if (resp.content_length > 0 && (uint64_t)resp.content_length > max_response) {
                r = -EMSGSIZE;
                goto out;
        }
        struct body b;
        body_init(&b, &c, &resp, false);
        for (;;) {
                const uint8_t *p;
                size_t n;
                r = body_next(&b, SIZE_MAX, &p, &n);
                if (r < 0) {
                        r = report(r, url);
                        goto out;
                }
                if (n == 0)
                        break;
                if (n > max_response - dlen) {
                        r = -EMSGSIZE;
                        goto out;
                }
                char *d = realloc(data, dlen + n + 1);
                if (!d) {
                        r = -ENOMEM;
                        goto out;
                }
                data = d;
                memcpy(data + dlen, p, n);
                dlen += n;
                data[dlen] = 0;
        }
        if (!data && !(data = calloc(1, 1))) {
                r = -ENOMEM;
                goto out;
        }
        *ret = TAKE_PTR(data);
        if (ret_len)
                *ret_len = dlen;
        r = resp.status >= 400 ? -EREMOTEIO : 0;
out:
        free(data);
        conn_close(&c);
        sigpipe_restore(&old);
        return r;
}

/* --- Ranged download ----------------------------------------------------------------------- */

static int http_fetch(struct install_source *s, uint64_t offset, uint64_t end, install_sink_fn sink,
                      void *userdata, int *ret_http) {
        struct http_source *h = (struct http_source *)s;
        struct request rq = {.o = &h->opts, .method = "GET"};
        struct conn c = {.fd = -1};
        struct response resp;
        struct sigaction old;
        char range[64];
        uint64_t left = end ? end - offset : UINT64_MAX, skip = 0;
        int r;

        if (offset || end) {
                if (end)
                        snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, offset, end - 1);
                else
                        snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", offset);
                rq.range = range;
        }
        sigpipe_ignore(&old);
        r = request_open(rq, h->url, &c, &resp);
        if (r < 0)
                goto out;
        if (resp.status >= 400) {
                if (ret_http)
                        *ret_http = resp.status;
                r = -EREMOTEIO;
                goto out;
        }
        if (resp.status == 200 && offset > 0) {
                log_debug("The server ignored the Range request; skipping %" PRIu64 " bytes", offset);
                skip = offset;
        } else if (resp.status == 206 && resp.has_range && resp.range_start != offset) {
                log_warning("%s: asked for bytes from %" PRIu64 ", the server sent them from %" PRIu64,
                            h->url, offset, resp.range_start);
                r = -ECONNRESET;
                goto out;
        }
        struct body b;
        body_init(&b, &c, &resp, false);
        for (;;) {
                const uint8_t *p;
                size_t n;
                r = body_next(&b, skip ? (skip < SIZE_MAX ? (size_t)skip : SIZE_MAX)
                                       : (left < SIZE_MAX ? (size_t)left : SIZE_MAX), &p, &n);
                if (r < 0) {
                        r = report(r, h->url);
                        goto out;
                }
                if (n == 0)
                        break;
                if (skip) {
                        skip -= n;
                        continue;
                }
                r = sink(userdata, p, n);
                if (r < 0)
                        goto out;
                if (left != UINT64_MAX) {
                        left -= n;
                        if (left == 0)
                                goto out; /* all that was asked for */
                }
        }
        r = resp.status == 206 && left != UINT64_MAX && left > 0 ? -ENODATA : 0;
out:
        conn_close(&c);
        sigpipe_restore(&old);
        return r;
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

/* pivot-server's HTTP front (libmicrohttpd): reads request bodies within their limits,
 * routes, checks the admin token, serves payload files with Range support. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/evp.h>

#include "http.h"
#include "hex.h"
#include "log.h"
#include "server.h"
#include "util.h"

/* Each connection's memory pool (request headers, read buffer, response headers), which
 * libmicrohttpd zeroes for every request: 32 KiB by default, more than requests need. */
#ifndef HTTP_CONNECTION_MEMORY
#define HTTP_CONNECTION_MEMORY (16 * 1024)
#endif

/* Seconds a connection may stay without a byte received or sent. Every byte starts it over, so
 * against a client that trickles its requests only the per-address limit helps; this frees
 * connections left idle sooner. Short for machines, whose requests are a few hundred bytes
 * and whose downloads resume with Range; an upload is given longer, since its last byte is
 * followed by an fsync() of up to 16 GiB before the answer. */
#define HTTP_IDLE_TIMEOUT 15
#define HTTP_UPLOAD_IDLE_TIMEOUT 300

#if MHD_VERSION < 0x00097002
typedef int MHD_RESULT;
#else
typedef enum MHD_Result MHD_RESULT;
#endif

void reply_set(struct reply *r, unsigned status, const char *content_type, char *body, size_t len) {
        reply_done(r);
        r->status = status;
        r->content_type = content_type;
        r->body = body;
        r->len = len;
        r->body_static = false;
}

void reply_static(struct reply *r, unsigned status, const char *content_type, const char *body) {
        reply_done(r);
        r->status = status;
        r->content_type = content_type;
        r->body = (char *)body;
        r->len = strlen(body);
        r->body_static = true;
}

void reply_error_json(struct reply *r, unsigned status, const char *fmt, ...) {
        char msg[512], *body = NULL;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* msg is ours, but escape it anyway: it may quote a name from the request. */
        size_t n = 0;
        char esc[1100];
        for (const char *p = msg; *p && n < sizeof(esc) - 7; p++) {
                if (*p == '"' || *p == '\\')
                        esc[n++] = '\\';
                if ((unsigned char)*p < 0x20)
                        continue;
                esc[n++] = *p;
        }
        esc[n] = 0;
        int l = asprintf(&body, "{\"error\":\"%s\"}\n", esc);
        if (l < 0)
                reply_static(r, 500, "text/plain", "out of memory\n");
        else
                reply_set(r, status, "application/json", body, l);
}

void reply_done(struct reply *r) {
        if (!r->body_static)
                free(r->body);
        free(r->extra_header);
        *r = (struct reply){};
}

/* --- per-connection state --- */

enum route {
        ROUTE_OMAHA,
        ROUTE_ADMIN,
        ROUTE_UPLOAD,
        ROUTE_OTHER,
};

struct conn {
        enum route route;
        bool refused;          /* answered already (too large, unauthorized) */
        bool too_large;        /* a body without Content-Length passed the limit: 413 at the end */
        size_t expected;       /* Content-Length, when given and within the limit */
        uint64_t drained;
        char *body;
        size_t len, size, limit;
        /* uploads */
        int fd;
        char *tmp_path;
        uint64_t written;
        EVP_MD_CTX *sha256;
        int upload_error;
};

static void conn_free(struct conn *c) {
        if (!c)
                return;
        free(c->body);
        if (c->fd >= 0)
                close(c->fd);
        if (c->tmp_path) {
                unlink(c->tmp_path);
                free(c->tmp_path);
        }
        if (c->sha256)
                EVP_MD_CTX_free(c->sha256);
        free(c);
}

static void completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
        conn_free(*con_cls);
        *con_cls = NULL;
}

static MHD_RESULT send_reply(struct MHD_Connection *connection, struct reply *r) {
        struct MHD_Response *resp;
        if (r->body_static)
                resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_PERSISTENT);
        else {
                resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
                r->body = NULL;
        }
        if (!resp)
                return MHD_NO;
        if (r->content_type)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
        if (r->extra_header) {
                char *colon = strchr(r->extra_header, ':');
                if (colon) {
                        *colon = 0;
                        MHD_add_response_header(resp, r->extra_header, colon + 1 + strspn(colon + 1, " "));
                }
        }
        MHD_RESULT ret = MHD_queue_response(connection, r->status, resp);
        MHD_destroy_response(resp);
        reply_done(r);
        return ret;
}

static MHD_RESULT send_static(struct MHD_Connection *connection, unsigned status, const char *type,
                              const char *body) {
        struct reply r = {};
        reply_static(&r, status, type, body);
        return send_reply(connection, &r);
}

static bool token_ok(struct server *srv, struct MHD_Connection *connection) {
        const char *auth = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
                return false;
        const char *t = auth + 7;
        t += strspn(t, " ");
        size_t n = strlen(srv->token), m = strcspn(t, " \t\r\n");
        /* main() refuses to start without a token; an empty one must match nothing anyway. */
        if (n == 0 || m == 0)
                return false;
        /* Compare in constant time over the stored token's length. */
        unsigned char diff = m != n;
        for (size_t i = 0; i < n; i++)
                diff |= (unsigned char)srv->token[i] ^ (unsigned char)(i < m ? t[i] : 0);
        return diff == 0;
}

/* --- payload files (GET/HEAD /v1/payloads/APP/VERSION/NAME), stored by content (payloads.c) --- */

/* Parses one "bytes=" range against size. 0: whole file; 1: range in *first..*last;
 * -1: unsatisfiable or unsupported (several ranges). */
static int parse_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last) {
        if (!h)
                return 0;
        if (strncmp(h, "bytes=", 6) != 0)
                return 0; /* unknown unit: ignore, send everything */
        h += 6;
        if (strchr(h, ','))
                return -1;
        char *end;
        if (*h == '-') {
                unsigned long long n = strtoull(h + 1, &end, 10);
                if (end == h + 1 || *end || n == 0 || size == 0)
                        return -1;
                *first = n >= size ? 0 : size - n;
                *last = size - 1;
                return 1;
        }
        unsigned long long a = strtoull(h, &end, 10);
        if (end == h || *end != '-')
                return -1;
        const char *b = end + 1;
        unsigned long long z = size ? size - 1 : 0;
        if (*b) {
                z = strtoull(b, &end, 10);
                if (*end)
                        return -1;
                if (z >= size)
                        z = size - 1;
        }
        if (a >= size || a > z)
                return -1;
        *first = a;
        *last = z;
        return 1;
}

static MHD_RESULT serve_payload(struct server *srv, struct MHD_Connection *connection, const char *url,
                                bool head) {
        char app[128], version[128], name[256];
        /* url: /v1/payloads/APP/VERSION/NAME */
        const char *p = url + strlen("/v1/payloads/");
        if (sscanf(p, "%127[^/]/%127[^/]/%255[^/]", app, version, name) != 3 || !safe_name(app) || !safe_name(version) ||
            !safe_name(name) || strlen(p) != strlen(app) + strlen(version) + strlen(name) + 2)
                return send_static(connection, 404, "text/plain", "not found\n");

        char sha256[65];
        int r = payload_find(srv, app, version, name, sha256);
        if (r == -ENOENT)
                return send_static(connection, 404, "text/plain", "not found\n");
        if (r < 0)
                return send_static(connection, 500, "text/plain", "internal error\n");
        _cleanup_free_ char *path = NULL;
        if (payload_path(srv, sha256, &path) < 0)
                return MHD_NO;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return send_static(connection, 404, "text/plain", "not found\n");

        uint64_t size = st.st_size, first = 0, last = size ? size - 1 : 0;
        const char *range = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
        int k = parse_range(range, size, &first, &last);
        if (k < 0) {
                struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
                char cr[64];
                snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
                MHD_RESULT ret = MHD_queue_response(connection, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
                MHD_destroy_response(resp);
                return ret;
        }
        uint64_t len = size ? last - first + 1 : 0;
        /* For HEAD, libmicrohttpd sends the headers (with this length) and no body. */
        struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, first);
        if (!resp)
                return MHD_NO;
        fd = -1; /* the response owns it now */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
        char etag[68];
        snprintf(etag, sizeof(etag), "\"%s\"", sha256); /* the bytes behind a URL never change */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
        if (k > 0) {
                char cr[96];
                snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)first, (unsigned long long)last,
                         (unsigned long long)size);
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        }
        if (!head)
                atomic_fetch_add(&srv->metrics.payload_bytes, len);
        MHD_RESULT ret = MHD_queue_response(connection, k > 0 ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* --- uploads (PUT /api/v1/payloads/APP/VERSION/NAME) ---
 *
 * The path names the release the file is meant for, as the URL machines will download it
 * from; the file itself goes to the path of its content, so an upload never changes the bytes
 * behind a published release's URL. */

static int upload_start(struct server *srv, struct conn *c, const char *url) {
        char app[128], version[128], name[256];
        const char *p = url + strlen("/api/v1/payloads/");
        if (sscanf(p, "%127[^/]/%127[^/]/%255[^/]", app, version, name) != 3 || !safe_name(app) ||
            !safe_name(version) || !safe_name(name) || strlen(p) != strlen(app) + strlen(version) + strlen(name) + 2)
                return -EINVAL;
        _cleanup_free_ char *dir = NULL;
        int r = payload_path(srv, NULL, &dir);
        if (r < 0)
                return r;
        /* In the same directory, for rename(); a dot never starts a content name. */
        if (asprintf(&c->tmp_path, "%s/.upload-XXXXXX", dir) < 0)
                return -ENOMEM;
        c->fd = mkostemp(c->tmp_path, O_CLOEXEC);
        if (c->fd < 0) {
                r = negative_errno();
                free(c->tmp_path);
                c->tmp_path = NULL;
                return log_error_errno(r, "Cannot create an upload file in %s: %m", dir);
        }
        c->sha256 = EVP_MD_CTX_new();
        if (!c->sha256 || !EVP_DigestInit_ex(c->sha256, EVP_sha256(), NULL))
                return -ENOMEM;
        return 0;
}

static void upload_data(struct conn *c, const char *data, size_t n) {
        if (c->upload_error)
                return;
        if (c->written + n > MAX_UPLOAD) {
                c->upload_error = -EFBIG;
                return;
        }
        EVP_DigestUpdate(c->sha256, data, n);
        while (n) {
                ssize_t w = write(c->fd, data, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        c->upload_error = negative_errno();
                        return;
                }
                data += w;
                n -= w;
                c->written += w;
        }
}

static void upload_finish(struct server *srv, struct conn *c, struct MHD_Connection *connection, struct reply *out) {
        if (c->upload_error) {
                reply_error_json(out, c->upload_error == -EFBIG ? 413 : 500, "upload failed: %s",
                                 strerror(-c->upload_error));
                return;
        }
        unsigned char md[32];
        unsigned mdlen = 0;
        char hex[65];
        EVP_DigestFinal_ex(c->sha256, md, &mdlen);
        hex_encode(md, sizeof(md), hex);
        const char *want = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Pivot-SHA256");
        if (want && strcasecmp(want, hex) != 0) {
                reply_error_json(out, 422, "upload corrupted: SHA-256 %s, expected %s", hex, want);
                return;
        }
        /* The same content uploaded again replaces its file with the same bytes: harmless even
         * to a download under way. */
        _cleanup_free_ char *path = NULL;
        if (payload_path(srv, hex, &path) < 0) {
                reply_static(out, 500, "text/plain", "out of memory\n");
                return;
        }
        if (fsync(c->fd) < 0 || rename(c->tmp_path, path) < 0) {
                reply_error_json(out, 500, "cannot store the upload: %s", strerror(errno));
                return;
        }
        free(c->tmp_path);
        c->tmp_path = NULL;
        char *body = NULL;
        int l = asprintf(&body, "{\"size\":%llu,\"sha256\":\"%s\"}\n", (unsigned long long)c->written, hex);
        if (l < 0)
                reply_static(out, 500, "text/plain", "out of memory\n");
        else
                reply_set(out, 201, "application/json", body, l);
}

/* --- the request handler --- */

static MHD_RESULT handler(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                          const char *version, const char *upload_data_buf, size_t *upload_data_size,
                          void **con_cls) {
        struct server *srv = cls;
        struct conn *c = *con_cls;

        if (!c) {
                /* First call: headers only. Decide the route and the body limit now, so an
                 * oversized body is refused before it is read. */
                c = calloc(1, sizeof(*c));
                if (!c)
                        return MHD_NO;
                c->fd = -1;
                *con_cls = c;
                const char *cl = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                unsigned long long content_length = cl ? strtoull(cl, NULL, 10) : 0;

                if (strcmp(url, "/v1/update/") == 0 || strcmp(url, "/v1/update") == 0) {
                        c->route = ROUTE_OMAHA;
                        c->limit = MAX_OMAHA_BODY;
                } else if (strncmp(url, "/api/", 5) == 0) {
                        atomic_fetch_add(&srv->metrics.admin_requests, 1);
                        if (!token_ok(srv, connection)) {
                                atomic_fetch_add(&srv->metrics.admin_unauthorized, 1);
                                c->refused = true;
                                struct reply r = {};
                                reply_error_json(&r, 401, "missing or wrong admin token");
                                r.extra_header = strdup("WWW-Authenticate: Bearer realm=\"pivot-admin\"");
                                return send_reply(connection, &r);
                        }
                        if (strcmp(method, "PUT") == 0 && strncmp(url, "/api/v1/payloads/", 17) == 0) {
                                c->route = ROUTE_UPLOAD;
                                MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT,
                                                          (unsigned)HTTP_UPLOAD_IDLE_TIMEOUT);
                                int r = upload_start(srv, c, url);
                                if (r < 0) {
                                        c->refused = true;
                                        struct reply rep = {};
                                        reply_error_json(&rep, r == -EINVAL ? 400 : 500, "cannot accept upload: %s",
                                                         strerror(-r));
                                        return send_reply(connection, &rep);
                                }
                                return MHD_YES;
                        }
                        c->route = ROUTE_ADMIN;
                        c->limit = MAX_ADMIN_BODY;
                } else {
                        c->route = ROUTE_OTHER;
                        c->limit = 0;
                }
                if (content_length > c->limit) {
                        c->refused = true;
                        atomic_fetch_add(&srv->metrics.bad_requests, 1);
                        return send_static(connection, 413, "text/plain", "request body too large\n");
                }
                c->expected = content_length;
                return MHD_YES;
        }

        if (*upload_data_size) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                if (c->refused)
                        return MHD_YES; /* drain and drop */
                if (c->too_large) {
                        /* Drain a little so the client can read its 413; a peer that goes
                         * on sending is cut off. */
                        c->drained += n;
                        return c->drained > (1u << 20) ? MHD_NO : MHD_YES;
                }
                if (c->route == ROUTE_UPLOAD) {
                        upload_data(c, upload_data_buf, n);
                        return MHD_YES;
                }
                if (c->len + n > c->limit) {
                        /* Chunked bodies have no Content-Length: the limit applies here too. */
                        c->too_large = true;
                        atomic_fetch_add(&srv->metrics.bad_requests, 1);
                        free(c->body);
                        c->body = NULL;
                        c->len = c->size = 0;
                        return MHD_YES;
                }
                if (c->len + n > c->size) {
                        /* Sized for the announced body when there is one (most are under a
                         * kilobyte), else from 4 KiB up. */
                        size_t size = c->size ? c->size : c->expected ? c->expected : 4096;
                        while (size < c->len + n)
                                size *= 2;
                        char *b = realloc(c->body, size);
                        if (!b)
                                return MHD_NO;
                        c->body = b;
                        c->size = size;
                }
                memcpy(c->body + c->len, upload_data_buf, n);
                c->len += n;
                return MHD_YES;
        }
        if (c->refused)
                return MHD_YES;
        if (c->too_large)
                return send_static(connection, 413, "text/plain", "request body too large\n");

        struct reply out = {};
        switch (c->route) {
        case ROUTE_OMAHA:
                if (strcmp(method, "POST") != 0)
                        return send_static(connection, 405, "text/plain", "POST an Omaha request here\n");
                omaha_handle(srv, c->body ? c->body : "", c->len,
                             MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST), &out);
                break;
        case ROUTE_UPLOAD:
                upload_finish(srv, c, connection, &out);
                break;
        case ROUTE_ADMIN:
                admin_handle(srv, method, url, connection, c->body ? c->body : "", c->len, &out);
                break;
        default:
                if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
                        return send_static(connection, 405, "text/plain", "method not allowed\n");
                if (strncmp(url, "/v1/payloads/", 13) == 0)
                        return serve_payload(srv, connection, url, strcmp(method, "HEAD") == 0);
                if (strcmp(url, "/") == 0)
                        dashboard_handle(srv, &out);
                else if (strcmp(url, "/metrics") == 0)
                        metrics_handle(srv, &out);
                else if (strcmp(url, "/healthz") == 0)
                        reply_static(&out, 200, "text/plain", "ok\n");
                else
                        reply_static(&out, 404, "text/plain", "not found\n");
        }
        if (!out.status)
                reply_static(&out, 500, "text/plain", "internal error\n");
        return send_reply(connection, &out);
}

struct MHD_Daemon *http_start(struct server *srv, const struct sockaddr *addr, unsigned threads, unsigned per_ip) {
        return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO |
                                        (addr->sa_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                                0, NULL, NULL, handler, srv, MHD_OPTION_SOCK_ADDR, addr,
                                MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)HTTP_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
                                MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
}

void http_stop(struct MHD_Daemon *d) {
        if (d)
                MHD_stop_daemon(d);
}

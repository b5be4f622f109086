/* What every part of pivot-server shares: its configuration, the store and the counters. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define MAX_OMAHA_BODY (64 * 1024)       /* = OMAHA_MAX_DOCUMENT */
#define MAX_ADMIN_BODY (1024 * 1024)     /* JSON requests */
#define MAX_UPLOAD (16ULL << 30)         /* payload uploads */

/* Counters since this process started (Prometheus counters are per process). */
enum { METRIC_EVENT_TYPES = 4, METRIC_EVENT_RESULTS = 5 };
struct metrics {
        atomic_uint_fast64_t checkins, updatechecks, updates_granted, noupdates, unknown_app, unknown_channel;
        atomic_uint_fast64_t bad_requests, safe_mode_halts, payload_bytes, admin_requests, admin_unauthorized;
        /* events by type (3, 13, 14, other) and result (0, 1, 2, 9, other) */
        atomic_uint_fast64_t events[METRIC_EVENT_TYPES][METRIC_EVENT_RESULTS];
        atomic_uint_fast64_t refusals[8]; /* by enum policy_verdict */
};

/* The admin token: the text of DATA/admin.token without the whitespace around it (hex digits
 * when the server made it). */
#define ADMIN_TOKEN_MIN 32
#define ADMIN_TOKEN_MAX 64

struct server {
        struct store *store;
        const char *data_dir;
        const char *public_url;  /* NULL: from the request's Host header */
        char token[ADMIN_TOKEN_MAX + 1];
        struct metrics metrics;
};

/* An HTTP answer a handler produced: body (malloc'd or static), status, content type. */
struct reply {
        unsigned status;
        const char *content_type;
        char *body;
        size_t len;
        bool body_static;
        char *extra_header;  /* "Name: value" or NULL, malloc'd */
};

void reply_set(struct reply *r, unsigned status, const char *content_type, char *body, size_t len);
void reply_static(struct reply *r, unsigned status, const char *content_type, const char *body);
void reply_error_json(struct reply *r, unsigned status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void reply_done(struct reply *r);

/* POST /v1/update/ */
void omaha_handle(struct server *srv, const char *body, size_t len, const char *host, struct reply *out);
/* /api/v1/... (the token is checked by the caller) */
void admin_handle(struct server *srv, const char *method, const char *url, void *connection,
                  const char *body, size_t len, struct reply *out);
/* GET / */
void dashboard_handle(struct server *srv, struct reply *out);
/* GET /metrics */
void metrics_handle(struct server *srv, struct reply *out);

/* Hosted payload files, stored by content (payloads.c). Creates the store's directory and moves
 * the files of releases published before into it. */
int payloads_init(struct server *srv);
/* DATA/payloads/sha256/SHA256, the file of that content; with sha256 NULL, the directory.
 * -EINVAL unless sha256 is 64 lowercase hex digits. */
int payload_path(const struct server *srv, const char *sha256, char **ret);
/* The SHA-256 of the hosted release of app (as in URLs: without braces) whose version and
 * package name these are; -ENOENT when there is none. */
int payload_find(struct server *srv, const char *app_name, const char *version, const char *name,
                 char sha256[static 65]);
/* The app part of payload URLs: the id without braces. */
void app_url_name(const char *app, char *out, size_t size);
/* Names that may become path components: [A-Za-z0-9._+-], not starting with '.'. */
bool safe_name(const char *s);
/* s is n lowercase hex digits. */
bool is_hex(const char *s, size_t n);

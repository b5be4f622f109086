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

struct server {
        struct store *store;
        const char *data_dir;
        const char *public_url;  /* NULL: from the request's Host header */
        char token[65];          /* admin bearer token, hex */
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

/* The directory an application's payloads live in: DATA/payloads/<appid without braces>. */
int payload_dir(const struct server *srv, const char *app, const char *version, char **ret);
/* The app part of payload URLs: the id without braces. */
void app_url_name(const char *app, char *out, size_t size);
/* Names that may become path components: [A-Za-z0-9._+-], not starting with '.'. */
bool safe_name(const char *s);

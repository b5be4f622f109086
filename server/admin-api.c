/* The admin API: HTTP + JSON under /api/v1/, behind the bearer token (checked in http.c).
 *
 *   GET  /api/v1/status                       channels with release, rollout, machines, failures
 *   GET  /api/v1/machines[?app=&channel=&limit=]
 *   GET  /api/v1/events[?app=&machine=&limit=]
 *   GET  /api/v1/releases[?app=]
 *   POST /api/v1/releases                     {version, package_name, size, sha1, sha256, [app],
 *                                              [base_url], [manifest], [channel], [rollout]}
 *   PUT  /api/v1/payloads/APP/VERSION/NAME    raw payload upload (http.c)
 *   POST /api/v1/apps                         {id, name}
 *   POST /api/v1/channels                     {name, [app]}
 *   GET  /api/v1/channels/NAME[?app=]
 *   POST /api/v1/channels/NAME/rollout        {percent}
 *   POST /api/v1/channels/NAME/pause | resume
 *   POST /api/v1/channels/NAME/policy         {[max_inflight], [inflight_timeout],
 *                                              [safe_min_failures], [safe_failure_ratio]}
 * The application is the "app" member, else the ?app= parameter, else the default one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "log.h"
#include "server.h"
#include "util.h"

#define _cleanup_json_ _cleanup_(json_decrefp)

#define Q(s, sql, ret, ...)                                                                        \
        ({                                                                                         \
                const struct db_param q_params_[] = { __VA_ARGS__ };                               \
                store_query((s), (sql), q_params_, ELEMENTSOF(q_params_), (ret));                 \
        })

static void reply_json(struct reply *out, unsigned status, json_t *j) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        if (!s) {
                reply_static(out, 500, "text/plain", "out of memory\n");
                return;
        }
        size_t n = strlen(s);
        char *t = realloc(s, n + 2);
        if (t) {
                t[n] = '\n';
                t[n + 1] = 0;
                s = t;
                n++;
        }
        reply_set(out, status, "application/json", s, n);
}

static void reply_store_error(struct reply *out, int r, const char *what) {
        switch (r) {
        case -ENOENT: reply_error_json(out, 404, "%s: not found", what); break;
        case -EEXIST: reply_error_json(out, 409, "%s: exists with different content", what); break;
        case -EINVAL: reply_error_json(out, 400, "%s: invalid value", what); break;
        default: reply_error_json(out, 500, "%s: %s", what, strerror(-r));
        }
}

static json_t *str_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

/* --- status --- */

static json_t *count_map(struct store *s, const char *sql, const char *app, const char *channel) {
        _cleanup_rows_ struct db_rows rows = {};
        json_t *m = json_object();
        if (Q(s, sql, &rows, DB_TEXT(app), DB_TEXT(channel)) < 0)
                return m;
        for (size_t i = 0; i < rows.n_rows; i++)
                json_object_set_new(m, db_cell(&rows, i, 0) ? db_cell(&rows, i, 0) : "unknown",
                                    json_integer(db_cell_int(&rows, i, 1)));
        return m;
}

json_t *admin_channel_json(struct server *srv, const char *app, const char *name);

json_t *admin_channel_json(struct server *srv, const char *app, const char *name) {
        _cleanup_(channel_done) struct channel c = {};
        if (store_channel_get(srv->store, app, name, &c) < 0)
                return NULL;
        json_t *j = json_object();
        json_object_set_new(j, "app", json_string(app));
        json_object_set_new(j, "name", json_string(name));
        if (c.has_release) {
                const struct release *r = &c.release;
                json_t *rel = json_object();
                json_object_set_new(rel, "version", json_string(r->version));
                json_object_set_new(rel, "package_name", json_string(r->package_name));
                json_object_set_new(rel, "size", json_integer(r->size));
                json_object_set_new(rel, "sha1", json_string(r->sha1));
                json_object_set_new(rel, "sha256", json_string(r->sha256));
                json_object_set_new(rel, "base_url", str_or_null(r->base_url));
                json_object_set_new(rel, "hosted", json_boolean(!r->base_url));
                json_object_set_new(rel, "created", json_integer(r->created));
                json_t *man = r->manifest ? json_loads(r->manifest, 0, NULL) : NULL;
                json_object_set_new(rel, "manifest", man ? man : json_null());
                json_object_set_new(j, "release", rel);
        } else
                json_object_set_new(j, "release", json_null());

        json_t *ro = json_object();
        json_object_set_new(ro, "percent", json_real(c.policy.percent));
        json_object_set_new(ro, "paused", json_boolean(c.policy.paused));
        json_object_set_new(ro, "halted", json_boolean(c.policy.halted));
        json_object_set_new(ro, "halt_reason", str_or_null(c.halt_reason));
        json_object_set_new(ro, "max_inflight", json_integer(c.policy.max_inflight));
        json_object_set_new(ro, "inflight_timeout", json_integer(c.policy.inflight_timeout));
        json_object_set_new(ro, "safe_min_failures", json_integer(c.policy.safe_min_failures));
        json_object_set_new(ro, "safe_failure_ratio", json_real(c.policy.safe_failure_ratio));
        json_object_set_new(j, "rollout", ro);

        json_t *m = json_object();
        json_object_set_new(m, "by_version",
                            count_map(srv->store,
                                      "SELECT version, COUNT(*) FROM machines WHERE app = $1 AND channel = $2"
                                      " GROUP BY version ORDER BY version",
                                      app, name));
        json_object_set_new(m, "by_state",
                            count_map(srv->store,
                                      "SELECT state, COUNT(*) FROM machines WHERE app = $1 AND channel = $2"
                                      " GROUP BY state ORDER BY state",
                                      app, name));
        int64_t total = 0;
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(m, "by_version"), k, v) total += json_integer_value(v);
        json_object_set_new(m, "total", json_integer(total));
        json_object_set_new(j, "machines", m);

        json_t *att = json_object();
        if (c.has_release) {
                _cleanup_rows_ struct db_rows rows = {};
                if (Q(srv->store,
                      "SELECT COUNT(*), COALESCE(SUM(failed), 0),"
                      " COALESCE(SUM(CASE WHEN state = 'complete' THEN 1 ELSE 0 END), 0),"
                      " COALESCE(SUM(CASE WHEN state IN " IN_FLIGHT_STATES " THEN 1 ELSE 0 END), 0),"
                      " COALESCE(SUM(CASE WHEN state = 'rolledback' THEN 1 ELSE 0 END), 0),"
                      " COALESCE(SUM(CASE WHEN failed > 0 OR state = 'complete' THEN 1 ELSE 0 END), 0)"
                      " FROM attempts WHERE app = $1 AND channel = $2 AND version = $3",
                      &rows, DB_TEXT(app), DB_TEXT(name), DB_TEXT(c.release_version)) >= 0) {
                        json_object_set_new(att, "granted", json_integer(db_cell_int(&rows, 0, 0)));
                        json_object_set_new(att, "failed", json_integer(db_cell_int(&rows, 0, 1)));
                        json_object_set_new(att, "complete", json_integer(db_cell_int(&rows, 0, 2)));
                        json_object_set_new(att, "inflight", json_integer(db_cell_int(&rows, 0, 3)));
                        json_object_set_new(att, "rolledback", json_integer(db_cell_int(&rows, 0, 4)));
                        json_object_set_new(att, "finished", json_integer(db_cell_int(&rows, 0, 5)));
                }
        }
        json_object_set_new(j, "attempts", att);
        return j;
}

static void handle_status(struct server *srv, struct reply *out) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = store_query(srv->store, "SELECT app, name FROM channels ORDER BY app, name", NULL, 0, &rows);
        if (r < 0)
                return reply_store_error(out, r, "status");
        _cleanup_json_ json_t *j = json_object();
        json_t *chs = json_array();
        for (size_t i = 0; i < rows.n_rows; i++) {
                json_t *c = admin_channel_json(srv, db_cell(&rows, i, 0), db_cell(&rows, i, 1));
                if (c)
                        json_array_append_new(chs, c);
        }
        json_object_set_new(j, "channels", chs);
        json_object_set_new(j, "engine", json_string(store_engine(srv->store)));
        json_object_set_new(j, "time", json_integer(time(NULL)));
        reply_json(out, 200, j);
}

static int64_t query_limit(const char *s, int64_t def) {
        if (!s)
                return def;
        long long v = strtoll(s, NULL, 10);
        return v > 0 && v <= 100000 ? v : def;
}

static void handle_machines(struct server *srv, const char *app, const char *channel, const char *limit,
                            struct reply *out) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = Q(srv->store,
                  "SELECT id, app, channel, version, state, target_version, last_error, last_checkin, first_seen,"
                  " aleph, oem FROM machines WHERE app = $1 AND ($2 = '' OR channel = $2)"
                  " ORDER BY last_checkin DESC, id LIMIT $3",
                  &rows, DB_TEXT(app), DB_TEXT(channel ? channel : ""), DB_INT(query_limit(limit, 1000)));
        if (r < 0)
                return reply_store_error(out, r, "machines");
        _cleanup_json_ json_t *j = json_object(), *arr = json_array();
        static const char *const cols[] = { "id", "app", "channel", "version", "state", "target_version",
                                            "last_error", "last_checkin", "first_seen", "aleph", "oem" };
        for (size_t i = 0; i < rows.n_rows; i++) {
                json_t *m = json_object();
                for (size_t k = 0; k < ELEMENTSOF(cols); k++) {
                        const char *v = db_cell(&rows, i, k);
                        if (k == 6 || k == 7 || k == 8)
                                json_object_set_new(m, cols[k], v ? json_integer(strtoll(v, NULL, 10)) : json_null());
                        else
                                json_object_set_new(m, cols[k], str_or_null(v));
                }
                json_array_append_new(arr, m);
        }
        json_object_set(j, "machines", arr);
        reply_json(out, 200, j);
}

static void handle_events(struct server *srv, const char *app, const char *machine, const char *limit,
                          struct reply *out) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = Q(srv->store,
                  "SELECT machine, channel, version, target_version, type, result, error_code, previous_version, time"
                  " FROM events WHERE app = $1 AND ($2 = '' OR machine = $2) ORDER BY time DESC, id DESC LIMIT $3",
                  &rows, DB_TEXT(app), DB_TEXT(machine ? machine : ""), DB_INT(query_limit(limit, 100)));
        if (r < 0)
                return reply_store_error(out, r, "events");
        _cleanup_json_ json_t *j = json_object();
        json_t *arr = json_array();
        for (size_t i = 0; i < rows.n_rows; i++) {
                json_t *e = json_object();
                json_object_set_new(e, "machine", str_or_null(db_cell(&rows, i, 0)));
                json_object_set_new(e, "channel", str_or_null(db_cell(&rows, i, 1)));
                json_object_set_new(e, "version", str_or_null(db_cell(&rows, i, 2)));
                json_object_set_new(e, "target_version", str_or_null(db_cell(&rows, i, 3)));
                json_object_set_new(e, "type", json_integer(db_cell_int(&rows, i, 4)));
                json_object_set_new(e, "result", json_integer(db_cell_int(&rows, i, 5)));
                json_object_set_new(e, "error_code", json_integer(db_cell_int(&rows, i, 6)));
                json_object_set_new(e, "previous_version", str_or_null(db_cell(&rows, i, 7)));
                json_object_set_new(e, "time", json_integer(db_cell_int(&rows, i, 8)));
                json_array_append_new(arr, e);
        }
        json_object_set_new(j, "events", arr);
        reply_json(out, 200, j);
}

static void handle_releases(struct server *srv, const char *app, struct reply *out) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = Q(srv->store,
                  "SELECT version, package_name, size, sha256, base_url, created FROM releases WHERE app = $1"
                  " ORDER BY created DESC, version",
                  &rows, DB_TEXT(app));
        if (r < 0)
                return reply_store_error(out, r, "releases");
        _cleanup_json_ json_t *j = json_object();
        json_t *arr = json_array();
        for (size_t i = 0; i < rows.n_rows; i++) {
                json_t *e = json_object();
                json_object_set_new(e, "version", str_or_null(db_cell(&rows, i, 0)));
                json_object_set_new(e, "package_name", str_or_null(db_cell(&rows, i, 1)));
                json_object_set_new(e, "size", json_integer(db_cell_int(&rows, i, 2)));
                json_object_set_new(e, "sha256", str_or_null(db_cell(&rows, i, 3)));
                json_object_set_new(e, "base_url", str_or_null(db_cell(&rows, i, 4)));
                json_object_set_new(e, "created", json_integer(db_cell_int(&rows, i, 5)));
                json_array_append_new(arr, e);
        }
        json_object_set_new(j, "releases", arr);
        reply_json(out, 200, j);
}

/* --- changes --- */

static const char *jstr(json_t *body, const char *key) {
        return json_string_value(json_object_get(body, key));
}

static void handle_publish(struct server *srv, const char *app, json_t *body, struct reply *out) {
        struct release rel = {
                .app = (char *)app,
                .version = (char *)jstr(body, "version"),
                .package_name = (char *)jstr(body, "package_name"),
                .sha1 = (char *)jstr(body, "sha1"),
                .sha256 = (char *)jstr(body, "sha256"),
                .base_url = (char *)jstr(body, "base_url"),
        };
        json_t *size = json_object_get(body, "size");
        if (!rel.version || !safe_name(rel.version) || !rel.package_name || !safe_name(rel.package_name) ||
            !json_is_integer(size) || json_integer_value(size) < 0 || !is_hex(rel.sha1, 40) || !is_hex(rel.sha256, 64))
                return reply_error_json(out, 400,
                                        "a release needs version, package_name, size, sha1 and sha256 (lowercase hex)");
        if (rel.base_url && strncmp(rel.base_url, "http://", 7) != 0 && strncmp(rel.base_url, "https://", 8) != 0)
                return reply_error_json(out, 400, "base_url must be an http:// or https:// URL");
        rel.size = json_integer_value(size);
        _cleanup_free_ char *manifest = NULL;
        json_t *m = json_object_get(body, "manifest");
        if (m)
                manifest = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
        rel.manifest = manifest;

        if (!rel.base_url) {
                /* Hosted here: the file of that content must have been uploaded. */
                _cleanup_free_ char *path = NULL;
                struct stat st;
                if (payload_path(srv, rel.sha256, &path) < 0)
                        return reply_error_json(out, 500, "out of memory");
                if (stat(path, &st) < 0)
                        return reply_error_json(out, 409,
                                                "no payload with SHA-256 %s uploaded for %s/%s (PUT /api/v1/payloads/...)",
                                                rel.sha256, rel.version, rel.package_name);
                if ((uint64_t)st.st_size != rel.size)
                        return reply_error_json(out, 409, "uploaded payload has %lld bytes, release says %llu",
                                                (long long)st.st_size, (unsigned long long)rel.size);
        }

        const char *channel = jstr(body, "channel");
        json_t *rollout = json_object_get(body, "rollout");
        double percent = rollout && json_is_number(rollout) ? json_number_value(rollout) : -1;
        if (rollout && !(percent >= 0 && percent <= 100))
                return reply_error_json(out, 400, "rollout must be a percentage, 0 to 100");
        if (channel && !safe_name(channel))
                return reply_error_json(out, 400, "bad channel name");

        int r = store_release_add(srv->store, &rel);
        if (r < 0)
                return reply_store_error(out, r, "release");
        if (channel) {
                r = store_channel_create(srv->store, app, channel);
                if (r < 0 && r != -EEXIST)
                        return reply_store_error(out, r, "channel");
                r = store_channel_set_release(srv->store, app, channel, rel.version, percent);
                if (r < 0)
                        return reply_store_error(out, r, "channel");
                log_info("published %s to channel %s of %s%s", rel.version, channel, app,
                         percent >= 0 ? " with a new rollout percentage" : "");
                json_t *c = admin_channel_json(srv, app, channel);
                if (!c)
                        return reply_error_json(out, 500, "channel vanished");
                _cleanup_json_ json_t *j = c;
                return reply_json(out, 201, j);
        }
        _cleanup_json_ json_t *j = json_pack("{s:s,s:s}", "app", app, "version", rel.version);
        reply_json(out, 201, j);
}

static void handle_channel_action(struct server *srv, const char *app, const char *name, const char *action,
                                  json_t *body, struct reply *out) {
        int r;
        if (!safe_name(name))
                return reply_error_json(out, 400, "bad channel name");
        if (!strcmp(action, "rollout")) {
                json_t *p = json_object_get(body, "percent");
                if (!json_is_number(p))
                        return reply_error_json(out, 400, "rollout needs {\"percent\": 0..100}");
                r = store_channel_set_percent(srv->store, app, name, json_number_value(p));
        } else if (!strcmp(action, "pause"))
                r = store_channel_set_paused(srv->store, app, name, true);
        else if (!strcmp(action, "resume"))
                r = store_channel_resume(srv->store, app, name);
        else if (!strcmp(action, "policy")) {
                struct policy p = {};
                unsigned mask = 0;
                json_t *v;
                if ((v = json_object_get(body, "max_inflight"))) {
                        if (!json_is_integer(v))
                                return reply_error_json(out, 400, "max_inflight must be an integer");
                        p.max_inflight = json_integer_value(v);
                        mask |= POLICY_MAX_INFLIGHT;
                }
                if ((v = json_object_get(body, "inflight_timeout"))) {
                        if (!json_is_integer(v))
                                return reply_error_json(out, 400, "inflight_timeout must be an integer");
                        p.inflight_timeout = json_integer_value(v);
                        mask |= POLICY_INFLIGHT_TIMEOUT;
                }
                if ((v = json_object_get(body, "safe_min_failures"))) {
                        if (!json_is_integer(v))
                                return reply_error_json(out, 400, "safe_min_failures must be an integer");
                        p.safe_min_failures = json_integer_value(v);
                        mask |= POLICY_SAFE_MIN_FAILURES;
                }
                if ((v = json_object_get(body, "safe_failure_ratio"))) {
                        if (!json_is_number(v))
                                return reply_error_json(out, 400, "safe_failure_ratio must be a number");
                        p.safe_failure_ratio = json_number_value(v);
                        mask |= POLICY_SAFE_FAILURE_RATIO;
                }
                r = store_channel_set_policy(srv->store, app, name, &p, mask);
        } else
                return reply_error_json(out, 404, "unknown channel action %s", action);
        if (r < 0)
                return reply_store_error(out, r, name);
        json_t *c = admin_channel_json(srv, app, name);
        if (!c)
                return reply_error_json(out, 404, "%s: not found", name);
        _cleanup_json_ json_t *j = c;
        reply_json(out, 200, j);
}

static const char *arg(void *connection, const char *name) {
        return MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, name);
}

static void admin_route(struct server *srv, const char *method, const char *url, void *connection,
                        const char *body, size_t len, struct reply *out);

void admin_handle(struct server *srv, const char *method, const char *url, void *connection,
                  const char *body, size_t len, struct reply *out) {
        /* What it lists includes the check-ins this process has queued. */
        (void)store_flush(srv->store);
        admin_route(srv, method, url, connection, body, len, out);
        /* A change the admin was told about must survive a crash right after. */
        if (strcmp(method, "GET") != 0 && store_sync(srv->store) < 0 && out->status < 300)
                reply_error_json(out, 500, "cannot commit the change");
}

static void admin_route(struct server *srv, const char *method, const char *url, void *connection,
                        const char *body, size_t len, struct reply *out) {
        const char *query_app = arg(connection, "app");
        _cleanup_json_ json_t *j = NULL;
        bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");

        if (post) {
                json_error_t err;
                j = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &err) : json_object();
                if (!j || !json_is_object(j))
                        return reply_error_json(out, 400, "body is not a JSON object: %s", j ? "" : err.text);
        }
        const char *app = (j ? jstr(j, "app") : NULL) ?: query_app ?: DEFAULT_APP_ID;
        if (strlen(app) > 100)
                return reply_error_json(out, 400, "application id too long");

        const char *path = url + strlen("/api/v1");
        if (strncmp(url, "/api/v1/", 8) != 0)
                return reply_error_json(out, 404, "unknown API path");

        if (get && !strcmp(path, "/status"))
                return handle_status(srv, out);
        if (get && !strcmp(path, "/machines"))
                return handle_machines(srv, app, arg(connection, "channel"), arg(connection, "limit"), out);
        if (get && !strcmp(path, "/releases"))
                return handle_releases(srv, app, out);
        if (get && !strcmp(path, "/events"))
                return handle_events(srv, app, arg(connection, "machine"), arg(connection, "limit"), out);
        if (post && !strcmp(path, "/releases"))
                return handle_publish(srv, app, j, out);
        if (post && !strcmp(path, "/apps")) {
                const char *id = jstr(j, "id"), *name = jstr(j, "name");
                if (!id || !*id || strlen(id) > 100)
                        return reply_error_json(out, 400, "an application needs an id");
                int r = store_app_create(srv->store, id, name ? name : id);
                if (r < 0 && r != -EEXIST)
                        return reply_store_error(out, r, id);
                _cleanup_json_ json_t *a = json_pack("{s:s,s:b}", "id", id, "created", r >= 0);
                return reply_json(out, r >= 0 ? 201 : 200, a);
        }
        if (post && !strcmp(path, "/channels")) {
                const char *name = jstr(j, "name");
                if (!name || !safe_name(name))
                        return reply_error_json(out, 400, "a channel needs a name of [A-Za-z0-9._+-]");
                int r = store_channel_create(srv->store, app, name);
                if (r < 0 && r != -EEXIST)
                        return reply_store_error(out, r, app);
                json_t *c = admin_channel_json(srv, app, name);
                if (!c)
                        return reply_error_json(out, 500, "channel vanished");
                _cleanup_json_ json_t *cj = c;
                return reply_json(out, r >= 0 ? 201 : 200, cj);
        }
        if (!strncmp(path, "/channels/", 10)) {
                char name[128], action[32];
                const char *rest = path + 10;
                const char *slash = strchr(rest, '/');
                size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
                if (n == 0 || n >= sizeof(name))
                        return reply_error_json(out, 404, "unknown channel");
                memcpy(name, rest, n);
                name[n] = 0;
                if (!slash && get) {
                        json_t *c = admin_channel_json(srv, app, name);
                        if (!c)
                                return reply_error_json(out, 404, "%s: not found", name);
                        _cleanup_json_ json_t *cj = c;
                        return reply_json(out, 200, cj);
                }
                if (slash && post && strlen(slash + 1) < sizeof(action)) {
                        strcpy(action, slash + 1);
                        return handle_channel_action(srv, app, name, action, j, out);
                }
        }
        reply_error_json(out, 404, "no such API call: %s %s", method, url);
}

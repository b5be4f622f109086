/* The store's model on top of db.h. Every query is written once for both engines. */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "policy.h"
#include "util.h"

/* The schema's version, in meta ('schema'): a database of an older version is brought up to
 * this one at start (migrations below), one of a newer version is refused. */
#define SCHEMA_VERSION 2

static const char meta_table[] = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS apps (\n"
        "  id TEXT PRIMARY KEY, name TEXT NOT NULL, created BIGINT NOT NULL);\n"
        "CREATE TABLE IF NOT EXISTS releases (\n"
        "  app TEXT NOT NULL REFERENCES apps(id), version TEXT NOT NULL,\n"
        "  package_name TEXT NOT NULL, size BIGINT NOT NULL, sha1 TEXT NOT NULL, sha256 TEXT NOT NULL,\n"
        "  base_url TEXT, manifest TEXT, created BIGINT NOT NULL,\n"
        "  PRIMARY KEY (app, version));\n"
        "CREATE TABLE IF NOT EXISTS channels (\n"
        "  app TEXT NOT NULL REFERENCES apps(id), name TEXT NOT NULL, release_version TEXT,\n"
        "  rollout_percent DOUBLE PRECISION NOT NULL DEFAULT 100,\n"
        "  paused INTEGER NOT NULL DEFAULT 0, halted INTEGER NOT NULL DEFAULT 0, halt_reason TEXT,\n"
        "  max_inflight BIGINT NOT NULL DEFAULT 0, inflight_timeout BIGINT NOT NULL DEFAULT 3600,\n"
        "  safe_min_failures BIGINT NOT NULL DEFAULT 5,\n"
        "  safe_failure_ratio DOUBLE PRECISION NOT NULL DEFAULT 0.2,\n"
        "  updated BIGINT NOT NULL,\n"
        "  PRIMARY KEY (app, name));\n"
        "CREATE TABLE IF NOT EXISTS machines (\n"
        "  app TEXT NOT NULL, id TEXT NOT NULL, channel TEXT, version TEXT, aleph TEXT, oem TEXT,\n"
        "  bootid TEXT, state TEXT NOT NULL DEFAULT 'idle', target_version TEXT, last_error INTEGER,\n"
        "  first_seen BIGINT NOT NULL, last_checkin BIGINT NOT NULL, state_changed BIGINT NOT NULL,\n"
        "  PRIMARY KEY (app, id));\n"
        "CREATE INDEX IF NOT EXISTS machines_channel ON machines (app, channel, target_version, state);\n"
        "CREATE TABLE IF NOT EXISTS attempts (\n"
        "  app TEXT NOT NULL, channel TEXT NOT NULL, version TEXT NOT NULL, machine TEXT NOT NULL,\n"
        "  state TEXT NOT NULL, failed INTEGER NOT NULL DEFAULT 0, error_code INTEGER,\n"
        "  started BIGINT NOT NULL, updated BIGINT NOT NULL,\n"
        "  PRIMARY KEY (app, channel, version, machine));\n";

/* The events, with the id each engine numbers itself (the driver's serial_key, %s): the order
 * they were recorded, which the per-machine limit keeps the newest of, and a key that batched
 * deletes find rows by. events_time serves the age limit and the dashboard's last 24 hours,
 * events_machine the per-machine limit and a machine's listing. */
#define EVENTS_TABLE                                                                                \
        "CREATE TABLE IF NOT EXISTS events (\n"                                                     \
        "  id %s,\n"                                                                                \
        "  app TEXT NOT NULL, channel TEXT, machine TEXT NOT NULL, version TEXT,\n"                 \
        "  target_version TEXT, type INTEGER NOT NULL, result INTEGER NOT NULL,\n"                  \
        "  error_code INTEGER NOT NULL, previous_version TEXT, time BIGINT NOT NULL);\n"            \
        "CREATE INDEX IF NOT EXISTS events_time ON events (time);\n"                                \
        "CREATE INDEX IF NOT EXISTS events_machine ON events (app, machine, id);\n"

/* Version 1 to 2: events get their id. Neither engine adds a key to a filled table in place
 * the same way, so the table is made anew and the rows copied, oldest first (their ids follow
 * their times), in one transaction: a failure leaves the database as it was. The old indexes
 * go first, as PostgreSQL would keep their names on the renamed table. */
#define MIGRATE_1_TO_2                                                                              \
        "BEGIN;\n"                                                                                  \
        "DROP INDEX IF EXISTS events_time;\n"                                                       \
        "DROP INDEX IF EXISTS events_machine;\n"                                                    \
        "ALTER TABLE events RENAME TO events_v1;\n"                                                 \
        EVENTS_TABLE                                                                                \
        "INSERT INTO events (app, channel, machine, version, target_version, type, result,\n"       \
        "  error_code, previous_version, time)\n"                                                   \
        "  SELECT app, channel, machine, version, target_version, type, result, error_code,\n"      \
        "  previous_version, time FROM events_v1 ORDER BY time;\n"                                  \
        "DROP TABLE events_v1;\n"                                                                   \
        "UPDATE meta SET value = '2' WHERE key = 'schema';\n"                                       \
        "COMMIT;\n"

/* A channel row as the Omaha path reads it: shared, read-only, freed by its last user. */
struct channel_snapshot {
        struct channel channel;
        atomic_uint refs;
        uint64_t generation;   /* of the store when it was read */
        int64_t loaded;        /* CLOCK_MONOTONIC, ms */
};

#define CHANNEL_CACHE_SLOTS 32

struct store {
        const struct db_driver *driver;
        char *target;
        pthread_key_t key;
        pthread_mutex_t lock;
        struct db **all;       /* every connection opened, closed by store_close() */
        size_t n_all;
        /* Bumped by every write to apps, channels and releases through this store. */
        atomic_uint_fast64_t generation;
        pthread_mutex_t grant_lock; /* store_grant_within_limit() on a single-process engine */
        pthread_mutex_t cache_lock;
        struct channel_snapshot *cache[CHANNEL_CACHE_SLOTS];
        unsigned cache_next;   /* the slot a new channel takes when all are used */
        struct checkin_writer *writer; /* batched check-ins, for engines without a write queue */
        struct event_pruner *pruner;   /* the thread that deletes old events */
};

static void pruner_stop(struct store *s);
static void writer_stop(struct store *s);
static int writer_start(struct store *s);
static int writer_queue(struct store *s, const struct machine_checkin *c);

const char *store_engine(const struct store *s) {
        return s->driver->name;
}

struct db *store_db(struct store *s) {
        struct db *db = s->driver->shared && s->n_all ? s->all[0] : pthread_getspecific(s->key);
        if (db)
                return db;
        if (s->driver->open(s->target, &db) < 0)
                return NULL;
        pthread_mutex_lock(&s->lock);
        struct db **all = realloc(s->all, (s->n_all + 1) * sizeof(*all));
        if (all) {
                s->all = all;
                s->all[s->n_all++] = db;
        }
        pthread_mutex_unlock(&s->lock);
        if (!all) {
                s->driver->close(db);
                return NULL;
        }
        pthread_setspecific(s->key, db);
        return db;
}

int store_query(struct store *s, const char *sql, const struct db_param *params, size_t n,
                struct db_rows *ret) {
        struct db *db = store_db(s);
        if (!db)
                return -EIO;
        return s->driver->query(db, sql, params, n, ret);
}

#define Q(s, sql, ret, ...)                                                                        \
        ({                                                                                         \
                const struct db_param q_params_[] = { __VA_ARGS__ };                               \
                store_query((s), (sql), q_params_, ELEMENTSOF(q_params_), (ret));                 \
        })

int store_sync(struct store *s) {
        struct db *db = store_db(s);
        return db ? s->driver->sync(db) : -EIO;
}

/* Brings a database of an older schema version up to this one, then creates what is missing. */
static int schema_setup(struct store *s, struct db *db) {
        _cleanup_rows_ struct db_rows rows = {};
        _cleanup_free_ char *events = NULL, *migration = NULL;
        char version_text[16];

        int r = s->driver->exec_script(db, meta_table);
        if (r >= 0)
                r = store_query(s, "SELECT value FROM meta WHERE key = 'schema'", NULL, 0, &rows);
        if (r < 0)
                return r;
        /* Without a version the database is new, and made as this version's. */
        const char *v = db_cell(&rows, 0, 0);
        long version = v ? strtol(v, NULL, 10) : SCHEMA_VERSION;
        if (version > SCHEMA_VERSION) {
                log_error("The database is of schema version %ld, newer than this pivot-server's (%d)", version,
                          SCHEMA_VERSION);
                return -EPROTONOSUPPORT;
        }
        if (asprintf(&events, EVENTS_TABLE, s->driver->serial_key) < 0)
                return -ENOMEM;
        if (version == 1) {
                log_info("updating the %s database from schema version 1 to 2 (events get an id)", s->driver->name);
                if (asprintf(&migration, MIGRATE_1_TO_2, s->driver->serial_key) < 0)
                        return -ENOMEM;
                r = s->driver->exec_script(db, migration);
                if (r < 0)
                        return r;
        }
        r = s->driver->exec_script(db, schema);
        if (r >= 0)
                r = s->driver->exec_script(db, events);
        if (r < 0)
                return r;
        snprintf(version_text, sizeof(version_text), "%d", SCHEMA_VERSION);
        return Q(s, "INSERT INTO meta (key, value) VALUES ('schema', $1) ON CONFLICT (key) DO NOTHING", NULL,
                 DB_TEXT(version_text));
}

int store_open(const char *data_dir, const char *db_url, struct store **ret) {
        return store_open_with(data_dir, db_url, 0, ret);
}

int store_open_with(const char *data_dir, const char *db_url, unsigned flags, struct store **ret) {
        struct store *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->driver = db_url ? &db_postgres_driver : &db_sqlite_driver;
        s->target = strdup(db_url ? db_url : data_dir);
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->grant_lock, NULL);
        pthread_mutex_init(&s->cache_lock, NULL);
        if (!s->target || pthread_key_create(&s->key, NULL) != 0) {
                free(s->target);
                free(s);
                return -ENOMEM;
        }
        struct db *db = store_db(s);
        if (!db) {
                store_close(s);
                return -EIO;
        }
        /* Several processes may start at once on one PostgreSQL: serialize the schema setup. */
        if (db_url)
                (void)s->driver->exec_script(db, "SELECT pg_advisory_lock(7201)");
        r = schema_setup(s, db);
        /* Every check-in rewrites its machine's row. On PostgreSQL an update can stay on the
         * row's page, without new index entries, only when the page has room for the new
         * version: leave a fifth of each page free (new pages only; SQLite updates in place).
         * Set once, so that later starts take no table lock for it. */
        if (r >= 0 && db_url)
                r = s->driver->exec_script(
                        db, "DO $$ BEGIN\n"
                            "  IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = 'machines'::regclass\n"
                            "                 AND reloptions @> ARRAY['fillfactor=80']) THEN\n"
                            "    ALTER TABLE machines SET (fillfactor = 80);\n"
                            "  END IF;\n"
                            "END $$");
        if (r >= 0)
                r = store_app_create(s, DEFAULT_APP_ID, "Pivot");
        if (r == -EEXIST)
                r = 0;
        if (db_url)
                (void)s->driver->exec_script(db, "SELECT pg_advisory_unlock(7201)");
        if (r >= 0 && (!s->driver->defer || (flags & STORE_BATCHED_CHECKINS)))
                r = writer_start(s);
        if (r < 0) {
                const char *engine = s->driver->name;
                store_close(s);
                return log_error_errno(r, "Failed to set up the %s database: %m", engine);
        }
        *ret = s;
        return 0;
}

static void snapshot_unref(struct channel_snapshot *c);

void store_close(struct store *s) {
        if (!s)
                return;
        pruner_stop(s);
        writer_stop(s);
        for (size_t i = 0; i < CHANNEL_CACHE_SLOTS; i++)
                if (s->cache[i])
                        snapshot_unref(s->cache[i]);
        for (size_t i = 0; i < s->n_all; i++)
                s->driver->close(s->all[i]);
        free(s->all);
        pthread_key_delete(s->key);
        free(s->target);
        free(s);
}

/* --- applications and channels --- */

/* After a write to apps, channels or releases: cached channel rows are stale. */
static int changed_config(struct store *s, int r) {
        atomic_fetch_add(&s->generation, 1);
        return r;
}

int store_app_exists(struct store *s, const char *app) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = Q(s, "SELECT 1 FROM apps WHERE id = $1", &rows, DB_TEXT(app));
        if (r < 0)
                return r;
        return rows.n_rows ? 0 : -ENOENT;
}

int store_app_create(struct store *s, const char *app, const char *name) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = changed_config(s, Q(s, "INSERT INTO apps (id, name, created) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING id",
                                    &rows, DB_TEXT(app), DB_TEXT(name), DB_INT(time(NULL))));
        if (r < 0)
                return r;
        return rows.n_rows ? 0 : -EEXIST;
}

void release_done(struct release *r) {
        free(r->app);
        free(r->version);
        free(r->package_name);
        free(r->sha1);
        free(r->sha256);
        free(r->base_url);
        free(r->manifest);
        *r = (struct release){};
}

void channel_done(struct channel *c) {
        free(c->app);
        free(c->name);
        free(c->release_version);
        free(c->halt_reason);
        release_done(&c->release);
        *c = (struct channel){};
}

static char *dup_cell(const struct db_rows *r, size_t row, size_t col) {
        const char *s = db_cell(r, row, col);
        return s ? strdup(s) : NULL;
}

int store_channel_get(struct store *s, const char *app, const char *name, struct channel *ret) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = Q(s,
                  "SELECT c.release_version, c.rollout_percent, c.paused, c.halted, c.halt_reason, c.max_inflight,"
                  " c.inflight_timeout, c.safe_min_failures, c.safe_failure_ratio,"
                  " r.package_name, r.size, r.sha1, r.sha256, r.base_url, r.manifest, r.created"
                  " FROM channels c LEFT JOIN releases r ON r.app = c.app AND r.version = c.release_version"
                  " WHERE c.app = $1 AND c.name = $2",
                  &rows, DB_TEXT(app), DB_TEXT(name));
        if (r < 0)
                return r;
        if (!rows.n_rows)
                return -ENOENT;
        struct channel c = {
                .app = strdup(app),
                .name = strdup(name),
                .release_version = dup_cell(&rows, 0, 0),
                .policy = {
                        .percent = db_cell_double(&rows, 0, 1),
                        .paused = db_cell_int(&rows, 0, 2),
                        .halted = db_cell_int(&rows, 0, 3),
                        .max_inflight = db_cell_int(&rows, 0, 5),
                        .inflight_timeout = db_cell_int(&rows, 0, 6),
                        .safe_min_failures = db_cell_int(&rows, 0, 7),
                        .safe_failure_ratio = db_cell_double(&rows, 0, 8),
                },
                .halt_reason = dup_cell(&rows, 0, 4),
        };
        if (c.release_version && db_cell(&rows, 0, 9)) {
                c.has_release = true;
                c.release = (struct release){
                        .app = strdup(app),
                        .version = strdup(c.release_version),
                        .package_name = dup_cell(&rows, 0, 9),
                        .size = db_cell_int(&rows, 0, 10),
                        .sha1 = dup_cell(&rows, 0, 11),
                        .sha256 = dup_cell(&rows, 0, 12),
                        .base_url = dup_cell(&rows, 0, 13),
                        .manifest = dup_cell(&rows, 0, 14),
                        .created = db_cell_int(&rows, 0, 15),
                };
        }
        *ret = c;
        return 0;
}

static int64_t monotonic_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void snapshot_unref(struct channel_snapshot *c) {
        if (atomic_fetch_sub(&c->refs, 1) == 1) {
                channel_done(&c->channel);
                free(c);
        }
}

static bool snapshot_is(const struct channel_snapshot *c, const char *app, const char *name) {
        return strcmp(c->channel.name, name) == 0 && strcmp(c->channel.app, app) == 0;
}

int store_channel_lookup(struct store *s, const char *app, const char *name, const struct channel **ret) {
        int64_t now = monotonic_ms();

        pthread_mutex_lock(&s->cache_lock);
        uint64_t generation = atomic_load(&s->generation);
        for (size_t i = 0; i < CHANNEL_CACHE_SLOTS; i++) {
                struct channel_snapshot *c = s->cache[i];
                /* Another process can change the channel only when there can be another. */
                if (c && c->generation == generation &&
                    (s->driver->single_process || now - c->loaded < CHANNEL_CACHE_MS) &&
                    snapshot_is(c, app, name)) {
                        atomic_fetch_add(&c->refs, 1);
                        pthread_mutex_unlock(&s->cache_lock);
                        *ret = &c->channel;
                        return 0;
                }
        }
        pthread_mutex_unlock(&s->cache_lock);

        /* Read it: tagged with the generation from before the read, a row a write overtakes
         * is read again next time. A channel that does not exist is not remembered. */
        struct channel_snapshot *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        int r = store_channel_get(s, app, name, &c->channel);
        if (r < 0) {
                free(c);
                return r;
        }
        c->generation = generation;
        c->loaded = now;
        atomic_init(&c->refs, 2); /* the caller's and the cache's */

        pthread_mutex_lock(&s->cache_lock);
        size_t slot = CHANNEL_CACHE_SLOTS;
        for (size_t i = 0; i < CHANNEL_CACHE_SLOTS && slot == CHANNEL_CACHE_SLOTS; i++)
                if (s->cache[i] && snapshot_is(s->cache[i], app, name))
                        slot = i;
        for (size_t i = 0; i < CHANNEL_CACHE_SLOTS && slot == CHANNEL_CACHE_SLOTS; i++)
                if (!s->cache[i])
                        slot = i;
        if (slot == CHANNEL_CACHE_SLOTS)
                slot = s->cache_next++ % CHANNEL_CACHE_SLOTS;
        struct channel_snapshot *old = s->cache[slot];
        s->cache[slot] = c;
        pthread_mutex_unlock(&s->cache_lock);
        if (old)
                snapshot_unref(old);
        *ret = &c->channel;
        return 0;
}

void store_channel_put(const struct channel *c) {
        if (c)
                snapshot_unref((struct channel_snapshot *)c);
}

int store_channel_create(struct store *s, const char *app, const char *name) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = store_app_exists(s, app);
        if (r < 0)
                return r;
        r = changed_config(s, Q(s, "INSERT INTO channels (app, name, updated) VALUES ($1, $2, $3) ON CONFLICT (app, name) DO NOTHING RETURNING name",
                                &rows, DB_TEXT(app), DB_TEXT(name), DB_INT(time(NULL))));
        if (r < 0)
                return r;
        return rows.n_rows ? 0 : -EEXIST;
}

static int changed(struct store *s, int r, const struct db_rows *rows) {
        changed_config(s, r);
        if (r < 0)
                return r;
        return rows->n_rows ? 0 : -ENOENT;
}

int store_channel_set_percent(struct store *s, const char *app, const char *name, double percent) {
        _cleanup_rows_ struct db_rows rows = {};
        if (!(percent >= 0 && percent <= 100))
                return -EINVAL;
        int r = Q(s, "UPDATE channels SET rollout_percent = $1, updated = $2 WHERE app = $3 AND name = $4 RETURNING name",
                  &rows, DB_DOUBLE(percent), DB_INT(time(NULL)), DB_TEXT(app), DB_TEXT(name));
        return changed(s, r, &rows);
}

int store_channel_set_paused(struct store *s, const char *app, const char *name, bool paused) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = Q(s, "UPDATE channels SET paused = $1, updated = $2 WHERE app = $3 AND name = $4 RETURNING name",
                  &rows, DB_INT(paused), DB_INT(time(NULL)), DB_TEXT(app), DB_TEXT(name));
        return changed(s, r, &rows);
}

int store_channel_resume(struct store *s, const char *app, const char *name) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = Q(s,
                  "UPDATE channels SET paused = 0, halted = 0, halt_reason = NULL, updated = $1"
                  " WHERE app = $2 AND name = $3 RETURNING name",
                  &rows, DB_INT(time(NULL)), DB_TEXT(app), DB_TEXT(name));
        return changed(s, r, &rows);
}

int store_channel_set_policy(struct store *s, const char *app, const char *name, const struct policy *p,
                             unsigned mask) {
        struct channel c = {};
        int r = store_channel_get(s, app, name, &c);
        if (r < 0)
                return r;
        struct policy n = c.policy;
        channel_done(&c);
        if (mask & POLICY_MAX_INFLIGHT)
                n.max_inflight = p->max_inflight;
        if (mask & POLICY_INFLIGHT_TIMEOUT)
                n.inflight_timeout = p->inflight_timeout;
        if (mask & POLICY_SAFE_MIN_FAILURES)
                n.safe_min_failures = p->safe_min_failures;
        if (mask & POLICY_SAFE_FAILURE_RATIO)
                n.safe_failure_ratio = p->safe_failure_ratio;
        if (n.max_inflight < 0 || n.inflight_timeout <= 0 || n.safe_min_failures < 1 ||
            !(n.safe_failure_ratio >= 0 && n.safe_failure_ratio <= 1))
                return -EINVAL;
        _cleanup_rows_ struct db_rows rows = {};
        r = Q(s,
              "UPDATE channels SET max_inflight = $1, inflight_timeout = $2, safe_min_failures = $3,"
              " safe_failure_ratio = $4, updated = $5 WHERE app = $6 AND name = $7 RETURNING name",
              &rows, DB_INT(n.max_inflight), DB_INT(n.inflight_timeout), DB_INT(n.safe_min_failures),
              DB_DOUBLE(n.safe_failure_ratio), DB_INT(time(NULL)), DB_TEXT(app), DB_TEXT(name));
        return changed(s, r, &rows);
}

int store_channel_set_release(struct store *s, const char *app, const char *name, const char *version,
                              double percent) {
        _cleanup_rows_ struct db_rows rows = {};
        int r;
        if (percent > 100)
                return -EINVAL;
        /* A new release starts with a clean slate; the same one published again keeps its halt
         * (only `resume` clears that). */
        if (percent < 0)
                r = Q(s,
                      "UPDATE channels SET"
                      " halted = CASE WHEN release_version = $1 THEN halted ELSE 0 END,"
                      " halt_reason = CASE WHEN release_version = $1 THEN halt_reason ELSE NULL END,"
                      " release_version = $1, updated = $2"
                      " WHERE app = $3 AND name = $4 RETURNING name",
                      &rows, DB_TEXT(version), DB_INT(time(NULL)), DB_TEXT(app), DB_TEXT(name));
        else
                r = Q(s,
                      "UPDATE channels SET"
                      " halted = CASE WHEN release_version = $1 THEN halted ELSE 0 END,"
                      " halt_reason = CASE WHEN release_version = $1 THEN halt_reason ELSE NULL END,"
                      " release_version = $1, updated = $2, rollout_percent = $3"
                      " WHERE app = $4 AND name = $5 RETURNING name",
                      &rows, DB_TEXT(version), DB_INT(time(NULL)), DB_DOUBLE(percent), DB_TEXT(app),
                      DB_TEXT(name));
        return changed(s, r, &rows);
}

/* --- releases --- */

static bool same(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int store_release_get(struct store *s, const char *app, const char *version, struct release *ret) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = Q(s,
                  "SELECT package_name, size, sha1, sha256, base_url, manifest, created FROM releases"
                  " WHERE app = $1 AND version = $2",
                  &rows, DB_TEXT(app), DB_TEXT(version));
        if (r < 0)
                return r;
        if (!rows.n_rows)
                return -ENOENT;
        *ret = (struct release){
                .app = strdup(app),
                .version = strdup(version),
                .package_name = dup_cell(&rows, 0, 0),
                .size = db_cell_int(&rows, 0, 1),
                .sha1 = dup_cell(&rows, 0, 2),
                .sha256 = dup_cell(&rows, 0, 3),
                .base_url = dup_cell(&rows, 0, 4),
                .manifest = dup_cell(&rows, 0, 5),
                .created = db_cell_int(&rows, 0, 6),
        };
        return 0;
}

int store_release_add(struct store *s, const struct release *rel) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = store_app_exists(s, rel->app);
        if (r < 0)
                return r;
        r = Q(s,
              "INSERT INTO releases (app, version, package_name, size, sha1, sha256, base_url, manifest, created)"
              " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (app, version) DO NOTHING RETURNING version",
              &rows, DB_TEXT(rel->app), DB_TEXT(rel->version), DB_TEXT(rel->package_name), DB_INT(rel->size),
              DB_TEXT(rel->sha1), DB_TEXT(rel->sha256), DB_TEXT(rel->base_url), DB_TEXT(rel->manifest),
              DB_INT(time(NULL)));
        changed_config(s, r);
        if (r < 0)
                return r;
        if (rows.n_rows)
                return 0;
        /* It exists: publishing the same thing again is fine, anything else is a conflict. */
        _cleanup_(release_done) struct release old = {};
        r = store_release_get(s, rel->app, rel->version, &old);
        if (r < 0)
                return r;
        if (old.size != rel->size || !same(old.sha256, rel->sha256) || !same(old.package_name, rel->package_name) ||
            !same(old.base_url, rel->base_url))
                return -EEXIST;
        return 0;
}

/* --- machines, attempts, events --- */

void machine_state_done(struct machine_state *m) {
        free(m->state);
        free(m->target_version);
        *m = (struct machine_state){};
}

/* A machine that moves to another channel leaves its update in flight behind: that attempt
 * was granted by the old channel's rollout, and the old channel's in-flight limit stops
 * counting it. In the new one it starts again, under that channel's pause, percentage and
 * limit. A rollback stays (the version it rolled back is not offered again). Used in the
 * ON CONFLICT updates below, where machines.* is the row before the move. */
#define MOVED "machines.channel IS DISTINCT FROM excluded.channel AND machines.state IN " IN_FLIGHT_STATES
#define MOVE_RESETS_STATE                                                                          \
        " state = CASE WHEN " MOVED " THEN 'idle' ELSE machines.state END,"                       \
        " target_version = CASE WHEN " MOVED " THEN NULL ELSE machines.target_version END,"       \
        " state_changed = CASE WHEN " MOVED " THEN excluded.last_checkin ELSE machines.state_changed END,"

int store_machine_checkin(struct store *s, const struct machine_checkin *c, struct machine_state *ret) {
        _cleanup_rows_ struct db_rows rows = {};
        /* The update leaves the indexed columns alone, so a plain check-in rewrites one row and
         * no index entry; a channel switch (rare) is a second statement. */
        int r = Q(s,
                  "INSERT INTO machines (app, id, channel, version, aleph, oem, bootid, first_seen, last_checkin,"
                  " state_changed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8)"
                  " ON CONFLICT (app, id) DO UPDATE SET version = excluded.version,"
                  " aleph = excluded.aleph, oem = excluded.oem, bootid = excluded.bootid,"
                  " last_checkin = excluded.last_checkin"
                  " RETURNING state, target_version, channel, state_changed",
                  &rows, DB_TEXT(c->app), DB_TEXT(c->id), DB_TEXT(c->channel), DB_TEXT(c->version),
                  DB_TEXT(c->aleph), DB_TEXT(c->oem), DB_TEXT(c->bootid), DB_INT(c->now));
        if (r < 0)
                return r;
        const char *channel = db_cell(&rows, 0, 2);
        if (c->channel && (!channel || strcmp(channel, c->channel) != 0)) {
                _cleanup_rows_ struct db_rows moved = {};
                /* An upsert of a row that exists, for the ON CONFLICT rule it shares with the
                 * batched check-ins. */
                r = Q(s,
                      "INSERT INTO machines (app, id, channel, first_seen, last_checkin, state_changed)"
                      " VALUES ($1, $2, $3, $4, $4, $4)"
                      " ON CONFLICT (app, id) DO UPDATE SET" MOVE_RESETS_STATE " channel = excluded.channel"
                      " RETURNING state, target_version, channel, state_changed",
                      &moved, DB_TEXT(c->app), DB_TEXT(c->id), DB_TEXT(c->channel), DB_INT(c->now));
                if (r < 0)
                        return r;
                if (ret)
                        *ret = (struct machine_state){ .state = dup_cell(&moved, 0, 0),
                                                       .target_version = dup_cell(&moved, 0, 1),
                                                       .state_changed = db_cell_int(&moved, 0, 3) };
                return 0;
        }
        if (ret)
                *ret = (struct machine_state){ .state = dup_cell(&rows, 0, 0), .target_version = dup_cell(&rows, 0, 1),
                                               .state_changed = db_cell_int(&rows, 0, 3) };
        return 0;
}

/* The check-in of store_machine_checkin() as one statement for the common case, a machine
 * already known on the same channel: a row update by primary key that leaves the indexed
 * channel column alone ... */
static const char checkin_known[] =
        "UPDATE machines SET version = $1, aleph = $2, oem = $3, bootid = $4, last_checkin = $5"
        " WHERE app = $6 AND id = $7 AND channel IS NOT DISTINCT FROM $8";
/* ... and, when that changed nothing, the one for a new machine or one that moved channel. */
static const char checkin_new_or_moved[] =
        "INSERT INTO machines (version, aleph, oem, bootid, last_checkin, app, id, channel, first_seen,"
        " state_changed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $5, $5)"
        " ON CONFLICT (app, id) DO UPDATE SET" MOVE_RESETS_STATE " channel = excluded.channel,"
        " version = excluded.version, aleph = excluded.aleph, oem = excluded.oem, bootid = excluded.bootid,"
        " last_checkin = excluded.last_checkin";

int store_machine_checkin_deferred(struct store *s, const struct machine_checkin *c) {
        if (s->writer)
                return writer_queue(s, c);
        struct db *db = store_db(s);
        if (!db)
                return -EIO;
        const struct db_param params[] = {
                DB_TEXT(c->version), DB_TEXT(c->aleph), DB_TEXT(c->oem), DB_TEXT(c->bootid), DB_INT(c->now),
                DB_TEXT(c->app), DB_TEXT(c->id), DB_TEXT(c->channel),
        };
        return s->driver->defer(db, checkin_known, checkin_new_or_moved, params, ELEMENTSOF(params));
}

/* --- batched check-ins (PostgreSQL) ---
 *
 * An engine without a write queue of its own gets this one: check-ins are queued in the
 * process and a writer thread, on a connection of its own, applies them in batches every
 * WRITER_MS (sooner at WRITER_BATCH), a few statements for hundreds of machines instead of
 * one round trip each. They become visible to other connections and processes up to
 * WRITER_MS late, as a SQLite check-in becomes durable up to its group-commit period late.
 * The writes cannot overtake each other badly: a batch never moves a machine's last
 * check-in backwards (another process may have written a newer one meanwhile), never touches
 * the update state (events and grants are written at once), and within a batch only a
 * machine's latest check-in counts. Check-ins are timed in whole seconds, so a batch moves a
 * machine to another channel only with a check-in of a later second than the one written:
 * one queued on channel A must not undo a move to B that a request of the same second wrote
 * at once (and that move's grant with it). A move queued in the second of an earlier check-in
 * then waits for the machine's next one. */

#define WRITER_MS 100
#define WRITER_BATCH 512
#define WRITER_MAX 20000      /* queued check-ins past which request threads write at once */
#define CHECKIN_FIELDS 8

struct writer_item {
        struct writer_item *next;
        uint64_t seq;
        const char *f[CHECKIN_FIELDS - 1]; /* the text fields in statement order, without now */
        int64_t now;
        char strings[];
};

/* Statement sizes (rows per statement); a batch is cut into chunks of these. */
static const size_t writer_sizes[] = { 256, 64, 16, 4, 1 };
#define WRITER_SIZES ELEMENTSOF(writer_sizes)

struct checkin_writer {
        pthread_mutex_t lock;
        pthread_cond_t wake, done;
        struct writer_item *head, **tail;
        size_t n;
        uint64_t queued, applied;  /* sequence numbers: everything up to applied is written */
        bool stop;
        pthread_t thread;
        char *update_sql[WRITER_SIZES], *insert_sql[WRITER_SIZES];
};

/* The text fields of a check-in in statement order ($1..$8, now being the fifth). */
static void checkin_fields(const struct machine_checkin *c, const char *f[CHECKIN_FIELDS - 1]) {
        const char *v[] = { c->version, c->aleph, c->oem, c->bootid, c->app, c->id, c->channel };
        memcpy(f, v, sizeof(v));
}

static int writer_queue(struct store *s, const struct machine_checkin *c) {
        struct checkin_writer *w = s->writer;
        const char *f[CHECKIN_FIELDS - 1];
        size_t size = sizeof(struct writer_item);

        checkin_fields(c, f);
        for (size_t i = 0; i < ELEMENTSOF(f); i++)
                if (f[i])
                        size += strlen(f[i]) + 1;
        struct writer_item *it = malloc(size);
        if (!it)
                return -ENOMEM;
        *it = (struct writer_item){ .now = c->now };
        char *p = it->strings;
        for (size_t i = 0; i < ELEMENTSOF(f); i++)
                if (f[i]) {
                        size_t l = strlen(f[i]) + 1;
                        memcpy(p, f[i], l);
                        it->f[i] = p;
                        p += l;
                }

        pthread_mutex_lock(&w->lock);
        if (w->n >= WRITER_MAX || w->stop) {
                /* The writer falls behind (or stops): write this one at once, on this thread's
                 * own connection, as without a queue. A queued older check-in of the same
                 * machine cannot undo it. */
                pthread_mutex_unlock(&w->lock);
                free(it);
                return store_machine_checkin(s, c, NULL);
        }
        it->seq = ++w->queued;
        *w->tail = it;
        w->tail = &it->next;
        if (++w->n == WRITER_BATCH)
                pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        return 0;
}

static int item_key_cmp(const void *a, const void *b) {
        const struct writer_item *x = *(const struct writer_item *const *)a, *y = *(const struct writer_item *const *)b;
        int c = strcmp(x->f[4] ? x->f[4] : "", y->f[4] ? y->f[4] : "");  /* app */
        if (!c)
                c = strcmp(x->f[5] ? x->f[5] : "", y->f[5] ? y->f[5] : ""); /* id */
        if (!c)
                c = x->seq < y->seq ? -1 : x->seq > y->seq;
        return c;
}

/* By machine only: for the batch, where each machine is there once. */
static int machine_cmp(const void *a, const void *b) {
        const struct writer_item *x = *(const struct writer_item *const *)a, *y = *(const struct writer_item *const *)b;
        int c = strcmp(x->f[4], y->f[4]);
        return c ? c : strcmp(x->f[5], y->f[5]);
}

static bool same_machine(const struct writer_item *x, const struct writer_item *y) {
        return strcmp(x->f[4], y->f[4]) == 0 && strcmp(x->f[5], y->f[5]) == 0;
}

/* Runs statement sql over items[0..n) (n one of writer_sizes); with ret, the rows it returns. */
static int writer_statement(struct store *s, const char *sql, struct writer_item **items, size_t n,
                            struct db_rows *ret) {
        _cleanup_free_ struct db_param *params = calloc(n * CHECKIN_FIELDS, sizeof(*params));
        if (!params)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct db_param *p = params + i * CHECKIN_FIELDS;
                const struct writer_item *it = items[i];
                for (size_t k = 0; k < 4; k++)
                        p[k] = DB_TEXT(it->f[k]);
                p[4] = DB_INT(it->now);
                for (size_t k = 4; k < CHECKIN_FIELDS - 1; k++)
                        p[k + 1] = DB_TEXT(it->f[k]);
        }
        return store_query(s, sql, params, n * CHECKIN_FIELDS, ret);
}

static int writer_pick(size_t n) {
        for (size_t k = 0; k < WRITER_SIZES; k++)
                if (writer_sizes[k] <= n)
                        return (int)k;
        return -1;
}

/* Applies items (sorted by machine, one per machine): the update of known machines on the
 * same channel, then the insert (or channel move) of the others. */
static void writer_apply(struct store *s, struct writer_item **items, size_t n) {
        struct checkin_writer *w = s->writer;
        _cleanup_free_ struct writer_item **rest = malloc(n * sizeof(*rest));
        size_t n_rest = 0;
        if (!rest)
                return;
        for (size_t done = 0; done < n;) {
                int k = writer_pick(n - done);
                size_t m = writer_sizes[k];
                struct db_rows rows = {};
                int r = writer_statement(s, w->update_sql[k], items + done, m, &rows);
                /* RETURNING comes in any order: mark what was updated, in the sorted items. */
                bool updated[256] = {};
                for (size_t row = 0; r >= 0 && row < rows.n_rows; row++) {
                        struct writer_item key = { .f[4] = db_cell(&rows, row, 0), .f[5] = db_cell(&rows, row, 1) };
                        struct writer_item *kp = &key;
                        if (!key.f[4] || !key.f[5])
                                continue;
                        struct writer_item **hit = bsearch(&kp, items + done, m, sizeof(*items), machine_cmp);
                        if (hit)
                                updated[hit - (items + done)] = true;
                }
                db_rows_done(&rows);
                for (size_t i = 0; i < m; i++)
                        if (r < 0 || !updated[i])
                                rest[n_rest++] = items[done + i];
                done += m;
        }
        for (size_t done = 0; done < n_rest;) {
                int k = writer_pick(n_rest - done);
                size_t m = writer_sizes[k];
                int r = writer_statement(s, w->insert_sql[k], rest + done, m, NULL);
                if (r < 0)
                        log_error_errno(r, "Could not record %zu check-ins: %m", m);
                done += m;
        }
}

static void *writer_main(void *userdata) {
        struct store *s = userdata;
        struct checkin_writer *w = s->writer;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                if (!w->n && w->stop)
                        break;
                if (w->n < WRITER_BATCH && !w->stop && w->applied == w->queued) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += WRITER_MS * 1000000L;
                        if (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        pthread_cond_timedwait(&w->wake, &w->lock, &ts);
                }
                struct writer_item *list = w->head;
                size_t n = w->n;
                uint64_t upto = w->queued;
                w->head = NULL;
                w->tail = &w->head;
                w->n = 0;
                pthread_mutex_unlock(&w->lock);

                if (n) {
                        /* One check-in per machine, its latest. */
                        struct writer_item **items = malloc(n * sizeof(*items));
                        if (items) {
                                size_t i = 0;
                                for (struct writer_item *it = list; it; it = it->next)
                                        items[i++] = it;
                                qsort(items, n, sizeof(*items), item_key_cmp);
                                size_t m = 0;
                                for (i = 0; i < n; i++) {
                                        if (!items[i]->f[4] || !items[i]->f[5])
                                                continue;
                                        if (i + 1 < n && items[i + 1]->f[4] && items[i + 1]->f[5] &&
                                            same_machine(items[i], items[i + 1]))
                                                continue; /* a later one of the same machine follows */
                                        items[m++] = items[i];
                                }
                                writer_apply(s, items, m);
                                free(items);
                        } else
                                log_error("Out of memory: %zu check-ins not recorded", n);
                        while (list) {
                                struct writer_item *next = list->next;
                                free(list);
                                list = next;
                        }
                }

                pthread_mutex_lock(&w->lock);
                w->applied = upto;
                pthread_cond_broadcast(&w->done);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

static char *writer_sql(size_t rows, bool update) {
        _cleanup_free_ char *values = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&values, &len);
        if (!f)
                return NULL;
        for (size_t i = 0; i < rows; i++) {
                size_t b = i * CHECKIN_FIELDS;
                if (update)
                        fprintf(f, "%s($%zu, $%zu, $%zu, $%zu, CAST($%zu AS BIGINT), $%zu, $%zu, $%zu)", i ? ", " : "",
                                b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8);
                else
                        fprintf(f, "%s($%zu, $%zu, $%zu, $%zu, $%zu, $%zu, $%zu, $%zu, $%zu, $%zu)", i ? ", " : "",
                                b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 5, b + 5);
        }
        if (fclose(f) != 0)
                return NULL;
        char *sql = NULL;
        int r;
        /* VALUES columns are column1..column8 in both engines: version, aleph, oem, bootid,
         * now, app, id, channel. */
        if (update)
                r = asprintf(&sql,
                             "UPDATE machines SET version = v.column1, aleph = v.column2, oem = v.column3,"
                             " bootid = v.column4, last_checkin = v.column5 FROM (VALUES %s) AS v"
                             " WHERE machines.app = v.column6 AND machines.id = v.column7"
                             " AND machines.channel IS NOT DISTINCT FROM v.column8 AND machines.last_checkin <= v.column5"
                             " RETURNING machines.app, machines.id",
                             values);
        else
                r = asprintf(&sql,
                             "INSERT INTO machines (version, aleph, oem, bootid, last_checkin, app, id, channel,"
                             " first_seen, state_changed) VALUES %s"
                             " ON CONFLICT (app, id) DO UPDATE SET" MOVE_RESETS_STATE " channel = excluded.channel,"
                             " version = excluded.version, aleph = excluded.aleph, oem = excluded.oem,"
                             " bootid = excluded.bootid, last_checkin = excluded.last_checkin"
                             " WHERE machines.last_checkin < excluded.last_checkin OR (machines.last_checkin ="
                             " excluded.last_checkin AND machines.channel IS NOT DISTINCT FROM excluded.channel)",
                             values);
        return r < 0 ? NULL : sql;
}

static int writer_start(struct store *s) {
        struct checkin_writer *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        pthread_cond_init(&w->done, NULL);
        w->tail = &w->head;
        s->writer = w;
        for (size_t k = 0; k < WRITER_SIZES; k++) {
                w->update_sql[k] = writer_sql(writer_sizes[k], true);
                w->insert_sql[k] = writer_sql(writer_sizes[k], false);
                if (!w->update_sql[k] || !w->insert_sql[k]) {
                        writer_stop(s);
                        return -ENOMEM;
                }
        }
        if (pthread_create(&w->thread, NULL, writer_main, s) != 0) {
                w->stop = true; /* no thread to join */
                writer_stop(s);
                return -ENOMEM;
        }
        return 0;
}

/* Writes what is queued and stops the thread. */
static void writer_stop(struct store *s) {
        struct checkin_writer *w = s->writer;
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        bool running = !w->stop;
        w->stop = true;
        pthread_cond_broadcast(&w->wake);
        pthread_cond_broadcast(&w->done);
        pthread_mutex_unlock(&w->lock);
        if (running && w->thread)
                pthread_join(w->thread, NULL);
        for (size_t k = 0; k < WRITER_SIZES; k++) {
                free(w->update_sql[k]);
                free(w->insert_sql[k]);
        }
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->done);
        pthread_mutex_destroy(&w->lock);
        free(w);
        s->writer = NULL;
}

int store_flush(struct store *s) {
        struct checkin_writer *w = s->writer;
        if (!w)
                return 0; /* SQLite: its queue runs ahead of any statement anyway */
        pthread_mutex_lock(&w->lock);
        uint64_t upto = w->queued;
        pthread_cond_signal(&w->wake);
        while (w->applied < upto && !w->stop)
                pthread_cond_wait(&w->done, &w->lock);
        pthread_mutex_unlock(&w->lock);
        return 0;
}

int store_count_inflight(struct store *s, const char *app, const char *channel, const char *version,
                         int64_t since, int64_t *ret) {
        _cleanup_rows_ struct db_rows rows = {};
        int r = Q(s,
                  "SELECT COUNT(*) FROM machines WHERE app = $1 AND channel = $2 AND target_version = $3"
                  " AND state IN " IN_FLIGHT_STATES " AND state_changed >= $4",
                  &rows, DB_TEXT(app), DB_TEXT(channel), DB_TEXT(version), DB_INT(since));
        if (r < 0)
                return r;
        *ret = db_cell_int(&rows, 0, 0);
        return 0;
}

static int grant(struct store *s, const char *app, const char *channel, const char *machine,
                const char *version, int64_t now) {
        int r = Q(s,
                  "UPDATE machines SET state = 'granted', target_version = $1, state_changed = $2"
                  " WHERE app = $3 AND id = $4",
                  NULL, DB_TEXT(version), DB_INT(now), DB_TEXT(app), DB_TEXT(machine));
        if (r < 0)
                return r;
        return Q(s,
                 "INSERT INTO attempts (app, channel, version, machine, state, started, updated)"
                 " VALUES ($1, $2, $3, $4, 'granted', $5, $5)"
                 " ON CONFLICT (app, channel, version, machine) DO UPDATE SET"
                 " state = CASE WHEN attempts.state = 'complete' THEN attempts.state ELSE 'granted' END,"
                 " updated = excluded.updated",
                 NULL, DB_TEXT(app), DB_TEXT(channel), DB_TEXT(version), DB_TEXT(machine), DB_INT(now));
}

/* Counting the machines in flight and granting one more must be one step, or requests at the
 * same moment all see room under the limit. */
static int grant_under_limit(struct store *s, const char *app, const char *channel, const char *machine,
                             const char *version, int64_t now, int64_t max, int64_t since,
                             bool *ret_granted) {
        int64_t n = 0;
        int r = store_count_inflight(s, app, channel, version, since, &n);
        if (r < 0 || n >= max)
                return r;
        r = grant(s, app, channel, machine, version, now);
        if (r >= 0)
                *ret_granted = true;
        return r;
}

int store_grant_within_limit(struct store *s, const char *app, const char *channel, const char *machine,
                             const char *version, int64_t now, int64_t max, int64_t since,
                             bool *ret_granted) {
        int r;
        *ret_granted = false;
        if (max <= 0) {
                r = grant(s, app, channel, machine, version, now);
                *ret_granted = r >= 0;
                return r;
        }
        if (s->driver->single_process) {
                /* Every write to the database goes through this process. */
                pthread_mutex_lock(&s->grant_lock);
                r = grant_under_limit(s, app, channel, machine, version, now, max, since, ret_granted);
                pthread_mutex_unlock(&s->grant_lock);
                return r;
        }
        /* Other processes grant too (PostgreSQL): a transaction that first locks the channel's
         * row, so that a grant of another process waits for this one to commit, and counts
         * after it. Only engines that are not single-process run this (SQLite has no FOR
         * UPDATE, and needs none). */
        r = store_query(s, "BEGIN", NULL, 0, NULL);
        if (r >= 0)
                r = Q(s, "SELECT 1 FROM channels WHERE app = $1 AND name = $2 FOR UPDATE", NULL,
                      DB_TEXT(app), DB_TEXT(channel));
        if (r >= 0)
                r = grant_under_limit(s, app, channel, machine, version, now, max, since, ret_granted);
        if (r >= 0)
                r = store_query(s, "COMMIT", NULL, 0, NULL);
        if (r < 0) {
                (void)store_query(s, "ROLLBACK", NULL, 0, NULL);
                *ret_granted = false;
        }
        return r;
}

const char *event_state(int type, int result, int error_code) {
        if (type != 3 && type != 13 && type != 14)
                return NULL; /* not a step of an update (pings, and types an agent makes up) */
        if (result == 0) /* any failed step ends the attempt */
                return error_code == 44 ? STATE_ROLLEDBACK : STATE_ERROR;
        if (result != 1 && result != 2)
                return NULL; /* deferred and friends change nothing */
        switch (type) {
        case 13: return STATE_DOWNLOADING;
        case 14: return STATE_DOWNLOADED;
        case 3: return result == 2 ? STATE_COMPLETE : STATE_INSTALLED;
        default: return NULL;
        }
}

static int apply_safe_mode(struct store *s, const struct event_record *e, bool *ret_halted) {
        _cleanup_rows_ struct db_rows rows = {}, ch = {}, upd = {};
        int r = Q(s,
                  "SELECT COALESCE(SUM(failed), 0),"
                  " COALESCE(SUM(CASE WHEN failed > 0 OR state = 'complete' THEN 1 ELSE 0 END), 0)"
                  " FROM attempts WHERE app = $1 AND channel = $2 AND version = $3",
                  &rows, DB_TEXT(e->app), DB_TEXT(e->channel), DB_TEXT(e->target_version));
        if (r < 0)
                return r;
        int64_t failures = db_cell_int(&rows, 0, 0), finished = db_cell_int(&rows, 0, 1);
        r = Q(s,
              "SELECT safe_min_failures, safe_failure_ratio FROM channels WHERE app = $1 AND name = $2"
              " AND release_version = $3 AND halted = 0",
              &ch, DB_TEXT(e->app), DB_TEXT(e->channel), DB_TEXT(e->target_version));
        if (r < 0 || !ch.n_rows)
                return r;
        if (!policy_should_halt(failures, finished, db_cell_int(&ch, 0, 0), db_cell_double(&ch, 0, 1)))
                return 0;
        char reason[160];
        snprintf(reason, sizeof(reason), "safe mode: %lld of %lld finished attempts at %s failed",
                 (long long)failures, (long long)finished, e->target_version);
        r = Q(s,
              "UPDATE channels SET halted = 1, halt_reason = $1, updated = $2"
              " WHERE app = $3 AND name = $4 AND release_version = $5 AND halted = 0 RETURNING name",
              &upd, DB_TEXT(reason), DB_INT(e->now), DB_TEXT(e->app), DB_TEXT(e->channel),
              DB_TEXT(e->target_version));
        changed_config(s, r);
        if (r < 0)
                return r;
        if (upd.n_rows) {
                log_warning("channel %s of %s halted: %s", e->channel, e->app, reason);
                *ret_halted = true;
        }
        return 0;
}

/* Moves the machine's attempt at e->target_version to state; in_flight_only: only if the
 * attempt itself is still in flight. *ret_moved: it did. */
static int move_attempt(struct store *s, const struct event_record *e, const char *state, bool in_flight_only,
                        bool *ret_moved) {
        _cleanup_rows_ struct db_rows rows = {};
        bool failed = e->result == 0;
        /* A failure sticks (failed = 1) even if a retry later succeeds, so safe mode sees every
         * failure once per machine. A success sticks too (state 'complete'), through a later
         * grant of the same release (a machine reimaged, or rolled back by hand): taken back, it
         * would leave the failures counted against fewer finished attempts, and halt a rollout
         * early. */
        int r = Q(s,
                  "UPDATE attempts SET state = CASE WHEN state = 'complete' THEN state ELSE $1 END, updated = $2,"
                  " failed = CASE WHEN $3 > 0 THEN 1 ELSE failed END,"
                  " error_code = CASE WHEN $3 > 0 THEN $4 ELSE error_code END"
                  " WHERE app = $5 AND channel = $6 AND version = $7 AND machine = $8"
                  " AND ($9 = 0 OR state IN " IN_FLIGHT_STATES ") RETURNING machine",
                  &rows, DB_TEXT(state), DB_INT(e->now), DB_INT(failed), DB_INT(e->error_code), DB_TEXT(e->app),
                  DB_TEXT(e->channel), DB_TEXT(e->target_version), DB_TEXT(e->machine), DB_INT(in_flight_only));
        *ret_moved = r >= 0 && rows.n_rows > 0;
        return r;
}

int store_event(struct store *s, const struct event_record *e, bool *ret_halted) {
        int r = Q(s,
                  "INSERT INTO events (app, channel, machine, version, target_version, type, result, error_code,"
                  " previous_version, time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                  NULL, DB_TEXT(e->app), DB_TEXT(e->channel), DB_TEXT(e->machine), DB_TEXT(e->version),
                  DB_TEXT(e->target_version), DB_INT(e->type), DB_INT(e->result), DB_INT(e->error_code),
                  DB_TEXT(e->previous_version), DB_INT(e->now));
        if (r < 0)
                return r;
        const char *state = event_state(e->type, e->result, e->error_code);
        if (!state)
                return 0;
        /* Only an update in flight moves: an event from a machine that is not updating (a
         * failure an agent reports for a garbled answer, a report sent twice, one after the
         * attempt ended) is kept in the log but changes no state, and no count safe mode
         * reads. Otherwise one would turn a finished attempt into a failed one, or a rollback
         * into an error, after which the release it rolled back is offered again. */
        _cleanup_rows_ struct db_rows moved = {};
        r = Q(s,
              "UPDATE machines SET state = $1, last_error = $2, state_changed = $3 WHERE app = $4 AND id = $5"
              " AND state IN " IN_FLIGHT_STATES " AND target_version IS NOT DISTINCT FROM $6 RETURNING id",
              &moved, DB_TEXT(state), e->result == 0 ? DB_INT(e->error_code) : DB_TEXT(NULL), DB_INT(e->now),
              DB_TEXT(e->app), DB_TEXT(e->machine), DB_TEXT(e->target_version));
        if (r < 0)
                return r;
        if (!e->target_version || !e->channel)
                return moved.n_rows > 0;
        /* An event that names an attempt the machine has left behind (a rollback found at the
         * next boot, after the machine was granted a newer release) still ends that attempt, if
         * it is in flight, but not the machine's newer one. */
        bool attempt_moved = false;
        r = move_attempt(s, e, state, !moved.n_rows, &attempt_moved);
        if (r < 0)
                return r;
        if (attempt_moved && e->result == 0 && (r = apply_safe_mode(s, e, ret_halted)) < 0)
                return r;
        return moved.n_rows > 0;
}

/* --- event retention ---
 *
 * The events table is the log of what machines reported, kept for people: the admin API lists
 * it (pivot-admin events) and the dashboard charts its last 24 hours. Nothing the server
 * decides reads it. store_event() moves, in the same call, the machine's row (state,
 * last_error) and its attempt (state, and the failed flag and error code, which stick), and
 * every decision reads those rows: safe mode counts the failed and finished attempts at the
 * channel's release (apply_safe_mode()), the in-flight limit counts machines by state
 * (store_count_inflight()), a machine that rolled back is not offered the release again
 * because of its own row (policy_decide()), and the status, the dashboard's rollout chart and
 * the metrics count attempts and machines. So deleting an event, however recent and whichever
 * rollout it belongs to, never changes whether a rollout halts, what a machine is offered or
 * what the rollout counts show: a failure gone from the log still counts towards the halt of
 * its release for as long as that release is the channel's. What retention has to leave is
 * what people read: the dashboard's last 24 hours, which is why the age limit is in whole days.
 *
 * Two limits, each optional:
 * - age: events older than max_age go, oldest first (events_time);
 * - per machine: a machine keeps its per_machine newest events (by id: the order they were
 *   recorded). The Omaha endpoint takes events from anyone, up to 32 per <app> and 16 apps a
 *   request, so without this limit one client could fill the disk well within the age limit.
 *   A pass looks only at the machines that recorded events since the last pass that went
 *   through all of its machines (events_time again) and walks at most per_machine + 1 of each
 *   one's events (events_machine) to find the newest beyond the limit: its cost follows the
 *   events recorded since, not the size of the table. Between two passes a machine may go
 *   beyond the limit; an honest one stays far below it (an update is 4 or 5 events). A
 *   client that makes up a new machine id for each request is held by the age limit alone
 *   (and the machines it creates by nothing): that calls for a rate limit in front of the
 *   server.
 *
 * Deletes go PRUNE_BATCH rows a statement: on SQLite a statement holds the process's one
 * connection, and requests wait for a batch, never for a whole pass. Every process runs a
 * pass every interval; on a PostgreSQL that several share, the first one claims it in meta
 * ('events_pruned': when the last pass started) and the others skip it. A pass that gets
 * through all its machines records when it started in meta ('events_capped'), and the next
 * pass looks for machines from that time on (less PRUNE_MARGIN): one that stopped half-way (a
 * signal, a crash, a database error) leaves it as it was, so the next pass looks at its
 * machines again, and neither a restart nor another process misses any. */

#define PRUNE_BATCH 1000
/* Seconds: how much earlier than a pass's start the events it did not see yet may be timed (a
 * request takes its time when it starts), and how far the clocks of the processes sharing a
 * PostgreSQL may disagree. */
#define PRUNE_MARGIN 300

struct event_pruner {
        pthread_mutex_t lock;
        pthread_cond_t wake;
        atomic_bool stop;
        pthread_t thread;
        struct event_retention retention;
};

static bool pruner_stopping(struct store *s) {
        return s->pruner && atomic_load(&s->pruner->stop);
}

static int64_t prune_interval_ms(const struct event_retention *r) {
        return r->interval_ms > 0 ? r->interval_ms : EVENT_PRUNE_INTERVAL_MS;
}

/* Runs sql, a DELETE that returns the rows it deletes, until one deletes fewer than
 * PRUNE_BATCH; adds them up in *count. A statement deletes a range of the index it searches,
 * up to the row at OFFSET PRUNE_BATCH - 1 (its last parameter): with a list of ids instead
 * ("id IN (SELECT id ... LIMIT)") PostgreSQL scans the whole table to join them whenever that
 * looks cheaper than a thousand lookups. */
static int prune_batches(struct store *s, const char *sql, const struct db_param *params, size_t n,
                         uint64_t *count) {
        while (!pruner_stopping(s)) {
                _cleanup_rows_ struct db_rows rows = {};
                int r = store_query(s, sql, params, n, &rows);
                if (r < 0)
                        return r;
                *count += rows.n_rows;
                if (rows.n_rows < PRUNE_BATCH)
                        break;
                /* A lock let go and taken again at once is seldom taken by a waiting thread in
                 * between: give the requests waiting for SQLite's connection their turn. */
                nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
        }
        return 0;
}

int store_events_prune(struct store *s, const struct event_retention *r, int64_t now, bool force,
                       struct event_prune_stats *ret) {
        _cleanup_rows_ struct db_rows last = {}, claim = {}, capped = {}, over = {};
        char now_text[24];
        int k;

        *ret = (struct event_prune_stats){};
        k = store_query(s, "SELECT value FROM meta WHERE key = 'events_pruned'", NULL, 0, &last);
        if (k < 0)
                return k;
        const char *prev = db_cell(&last, 0, 0);
        int64_t prev_time = prev ? strtoll(prev, NULL, 10) : 0;
        /* (A clock set back does not stop the passes.) */
        if (!force && prev && prev_time <= now && now - prev_time < prune_interval_ms(r) / 1000) {
                ret->skipped = true;
                return 0;
        }
        snprintf(now_text, sizeof(now_text), "%" PRId64, now);
        if (prev)
                k = Q(s, "UPDATE meta SET value = $1 WHERE key = 'events_pruned' AND value = $2 RETURNING key", &claim,
                      DB_TEXT(now_text), DB_TEXT(prev));
        else
                k = Q(s, "INSERT INTO meta (key, value) VALUES ('events_pruned', $1) ON CONFLICT (key) DO NOTHING"
                         " RETURNING key",
                      &claim, DB_TEXT(now_text));
        if (k < 0)
                return k;
        if (!claim.n_rows && !force) {
                ret->skipped = true; /* another process claimed it just now */
                return 0;
        }

        if (r->max_age > 0) {
                /* (Events of the same second as the last of a batch go with it.) */
                const struct db_param p[] = { DB_INT(now - r->max_age), DB_INT(PRUNE_BATCH - 1) };
                k = prune_batches(s,
                                  "DELETE FROM events WHERE time <= COALESCE((SELECT time FROM events"
                                  " WHERE time < $1 ORDER BY time LIMIT 1 OFFSET $2), $1 - 1) RETURNING id",
                                  p, ELEMENTSOF(p), &ret->expired);
                if (k < 0)
                        return k;
        }
        if (pruner_stopping(s))
                return -ECANCELED;
        if (r->per_machine <= 0)
                return 0;
        /* The machines with events since the last complete pass, each with the newest of its
         * events beyond the limit, when there is one. The first pass ever looks at all of them
         * (once in a database's life; about a second per million events). The events since
         * are found by time (events_time), apart (MATERIALIZED): otherwise SQLite scans all of
         * events_machine, which is in the order DISTINCT wants. */
        k = store_query(s, "SELECT value FROM meta WHERE key = 'events_capped'", NULL, 0, &capped);
        if (k < 0)
                return k;
        const char *done = db_cell(&capped, 0, 0);
        int64_t done_time = done ? strtoll(done, NULL, 10) : 0;
        /* (A clock set back does not make it skip machines.) */
        int64_t since = done ? (done_time < now ? done_time : now) - PRUNE_MARGIN : 0;
        k = Q(s,
              "WITH recent AS MATERIALIZED (SELECT app, machine FROM events WHERE time >= $1)"
              " SELECT app, machine, beyond FROM (SELECT a.app, a.machine,"
              " (SELECT e.id FROM events e WHERE e.app = a.app AND e.machine = a.machine"
              " ORDER BY e.id DESC LIMIT 1 OFFSET $2) AS beyond"
              " FROM (SELECT DISTINCT app, machine FROM recent) AS a) AS c"
              " WHERE beyond IS NOT NULL",
              &over, DB_INT(since), DB_INT(r->per_machine));
        if (k < 0)
                return k;
        for (size_t i = 0; i < over.n_rows && !pruner_stopping(s); i++) {
                const struct db_param p[] = {
                        DB_TEXT(db_cell(&over, i, 0)), DB_TEXT(db_cell(&over, i, 1)), DB_INT(db_cell_int(&over, i, 2)),
                        DB_INT(PRUNE_BATCH - 1),
                };
                k = prune_batches(s,
                                  "DELETE FROM events WHERE app = $1 AND machine = $2 AND id <= COALESCE((SELECT id"
                                  " FROM events WHERE app = $1 AND machine = $2 AND id <= $3 ORDER BY id"
                                  " LIMIT 1 OFFSET $4), $3) RETURNING id",
                                  p, ELEMENTSOF(p), &ret->capped);
                if (k < 0)
                        return k;
        }
        if (pruner_stopping(s))
                return -ECANCELED;
        /* Every machine with events up to now was looked at. (Two passes at once, which only a
         * forced one can make, may set it back: the next pass then looks at more machines.) */
        return Q(s, "INSERT INTO meta (key, value) VALUES ('events_capped', $1)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 NULL, DB_TEXT(now_text));
}

static void *pruner_main(void *userdata) {
        struct store *s = userdata;
        struct event_pruner *p = s->pruner;
        const struct event_retention *r = &p->retention;
        int64_t interval = prune_interval_ms(r);

        /* The first pass at once, whenever the last one was: a process that starts catches up
         * with what piled up while none ran, and with an age limit made shorter (a smaller
         * per-machine limit applies to a machine when it next reports). */
        for (bool first = true;; first = false) {
                struct event_prune_stats st;
                int k = store_events_prune(s, r, time(NULL), first, &st);
                if (k == -ECANCELED)
                        break; /* store_close() */
                if (k < 0)
                        log_warning_errno(k, "Could not prune events, trying again in %" PRId64 " ms: %m", interval);
                else if (st.expired || st.capped)
                        log_info("pruned events: %" PRIu64 " older than %" PRId64 " days, %" PRIu64
                                 " beyond the newest %" PRId64 " of their machine",
                                 st.expired, r->max_age / 86400, st.capped, r->per_machine);

                pthread_mutex_lock(&p->lock);
                if (!atomic_load(&p->stop)) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_sec += interval / 1000;
                        ts.tv_nsec += (interval % 1000) * 1000000L;
                        if (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        pthread_cond_timedwait(&p->wake, &p->lock, &ts);
                }
                bool stop = atomic_load(&p->stop);
                pthread_mutex_unlock(&p->lock);
                if (stop)
                        break;
        }
        return NULL;
}

int store_events_prune_start(struct store *s, const struct event_retention *r) {
        if (s->pruner)
                return -EBUSY;
        if (r->max_age <= 0 && r->per_machine <= 0)
                return 0; /* everything is kept */
        struct event_pruner *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->wake, NULL);
        p->retention = *r;
        s->pruner = p;
        if (pthread_create(&p->thread, NULL, pruner_main, s) != 0) {
                s->pruner = NULL;
                pthread_cond_destroy(&p->wake);
                pthread_mutex_destroy(&p->lock);
                free(p);
                return -EAGAIN;
        }
        return 0;
}

/* Stops the thread, within a batch when a pass is running. */
static void pruner_stop(struct store *s) {
        struct event_pruner *p = s->pruner;
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->stop, true);
        pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
        s->pruner = NULL;
}

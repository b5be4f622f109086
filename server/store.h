/* The release store: applications, channels with their rollout policy, releases, machines,
 * update attempts and events. All state lives in the database (SQLite in the data directory,
 * or PostgreSQL), so any number of server threads, or processes on one PostgreSQL, act as one
 * server.
 *
 * Functions return 0 or a negative errno (-ENOENT: no such app/channel/release, -EEXIST: a
 * conflicting record exists, -EIO: a database error, logged where it happened). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "db.h"

#define DEFAULT_APP_ID "{b9606f32-42ac-4029-aef4-20ed435e8c45}"
#define DEFAULT_CHANNEL "stable"

/* The rollout policy of a channel. */
struct policy {
        double percent;              /* 0..100: share of machines (by bucket) offered the release */
        bool paused;                 /* set by the admin */
        bool halted;                 /* set by safe mode */
        int64_t max_inflight;        /* 0: no limit on updates in flight */
        int64_t inflight_timeout;    /* seconds after which a silent in-flight update stops counting */
        int64_t safe_min_failures;   /* safe mode halts at >= this many failures ... */
        double safe_failure_ratio;   /* ... that are >= this share of finished attempts */
};

struct release {
        char *app, *version;
        char *package_name;          /* file name; URL = base + name */
        uint64_t size;
        char *sha1, *sha256;         /* lowercase hex of the whole file */
        char *base_url;              /* NULL: hosted by pivot-server under /v1/payloads/ */
        char *manifest;              /* JSON: what the signed manifest says */
        int64_t created;
};

struct channel {
        char *app, *name;
        char *release_version;       /* NULL: nothing published */
        struct policy policy;
        char *halt_reason;
        struct release release;      /* filled when release_version is set */
        bool has_release;
};

/* The state a machine reported last; the attempt states follow the same names. */
#define STATE_IDLE "idle"
#define STATE_GRANTED "granted"
#define STATE_DOWNLOADING "downloading"
#define STATE_DOWNLOADED "downloaded"
#define STATE_INSTALLED "installed"    /* written, waiting for its reboot */
#define STATE_COMPLETE "complete"      /* running the new version */
#define STATE_ERROR "error"
#define STATE_ROLLEDBACK "rolledback"  /* error code 44: the new version did not boot */
/* The states of an update in flight (granted .. installed), as an SQL list for IN. */
#define IN_FLIGHT_STATES "('" STATE_GRANTED "', '" STATE_DOWNLOADING "', '" STATE_DOWNLOADED "', '" STATE_INSTALLED "')"

struct machine_checkin {
        const char *app, *id, *channel, *version, *aleph, *oem, *bootid;
        int64_t now;
};

struct machine_state {
        char *state;
        char *target_version;
        int64_t state_changed; /* when state last changed */
};

struct store;

/* Opens the store: target is the data directory (SQLite) or a postgres:// URL. Creates the
 * schema and the default application when missing. */
int store_open(const char *data_dir, const char *db_url, struct store **ret);
/* The same with flags: STORE_BATCHED_CHECKINS queues check-ins for the batch writer that
 * PostgreSQL uses, whatever the engine (for the tests, on SQLite). */
enum { STORE_BATCHED_CHECKINS = 1 };
int store_open_with(const char *data_dir, const char *db_url, unsigned flags, struct store **ret);
void store_close(struct store *s);
const char *store_engine(const struct store *s);

/* The calling thread's connection (opened on first use). NULL on failure (logged). */
struct db *store_db(struct store *s);

/* Makes the writes so far durable (SQLite group-commits every few milliseconds otherwise). */
int store_sync(struct store *s);

/* --- applications and channels --- */
int store_app_exists(struct store *s, const char *app);
int store_app_create(struct store *s, const char *app, const char *name);
/* -ENOENT when the channel does not exist. */
int store_channel_get(struct store *s, const char *app, const char *name, struct channel *ret);
/* The channel for the Omaha path: a shared read-only copy. Writes through this store (admin
 * changes, safe-mode halts) drop every copy at once, so on SQLite, where every write goes
 * through this process, a copy is never stale; on PostgreSQL a copy is read again after
 * CHANNEL_CACHE_MS, so a change made by another process is seen up to that late. A channel
 * that does not exist is never cached. Give it back with store_channel_put(). */
#define CHANNEL_CACHE_MS 1000
int store_channel_lookup(struct store *s, const char *app, const char *name, const struct channel **ret);
void store_channel_put(const struct channel *c);
int store_channel_create(struct store *s, const char *app, const char *name);
int store_channel_set_percent(struct store *s, const char *app, const char *name, double percent);
int store_channel_set_paused(struct store *s, const char *app, const char *name, bool paused);
/* Clears the pause and a safe-mode halt. */
int store_channel_resume(struct store *s, const char *app, const char *name);
int store_channel_set_policy(struct store *s, const char *app, const char *name, const struct policy *p,
                             unsigned mask);
enum {
        POLICY_MAX_INFLIGHT = 1,
        POLICY_INFLIGHT_TIMEOUT = 2,
        POLICY_SAFE_MIN_FAILURES = 4,
        POLICY_SAFE_FAILURE_RATIO = 8,
};
/* Points the channel at a release (clearing any halt). percent < 0 keeps the current one. */
int store_channel_set_release(struct store *s, const char *app, const char *name, const char *version,
                              double percent);
void channel_done(struct channel *c);

/* --- releases --- */
/* Adds a release; -EEXIST when the version exists with other content (the same content again
 * is fine). */
int store_release_add(struct store *s, const struct release *r);
int store_release_get(struct store *s, const char *app, const char *version, struct release *ret);
void release_done(struct release *r);

/* --- machines, attempts, events --- */
/* Records a check-in; *ret gets the machine's update state. */
int store_machine_checkin(struct store *s, const struct machine_checkin *c, struct machine_state *ret);
/* Records a check-in without waiting for the write, for a caller that needs nothing back: on
 * SQLite it is queued (in order with every other write, ahead of any later statement, and
 * committed with the next group commit); on PostgreSQL it is written within 100 ms by a
 * writer thread, in batches (see store.c). */
int store_machine_checkin_deferred(struct store *s, const struct machine_checkin *c);
/* Waits until this process's queued check-ins are written (PostgreSQL; on SQLite every
 * statement sees them anyway). For readers that list machines. */
int store_flush(struct store *s);
void machine_state_done(struct machine_state *m);
/* Counts the updates of (app, channel, version) in flight, not older than since. */
int store_count_inflight(struct store *s, const char *app, const char *channel, const char *version,
                         int64_t since, int64_t *ret);
/* Marks machine as granted version (an attempt starts, or goes on), unless max > 0 and max
 * machines are in flight (store_count_inflight() from since): *ret_granted tells which. The
 * count and the grant are one step for every server process on the database, so that requests
 * at the same moment, to one process or to several, cannot pass the limit together. */
int store_grant_within_limit(struct store *s, const char *app, const char *channel, const char *machine,
                             const char *version, int64_t now, int64_t max, int64_t since,
                             bool *ret_granted);

struct event_record {
        const char *app, *channel, *machine, *version; /* version: what the machine runs */
        const char *target_version; /* the attempt it belongs to (the event's nextversion, else the
                                     * machine's target), or NULL */
        int type, result, error_code;
        const char *previous_version;
        int64_t now;
};
/* Stores an event and, when the machine is in flight for e->target_version, moves it and its
 * attempt to the state the event implies; when the machine has moved on to another release,
 * only the attempt, if still in flight. When that is a failure, applies safe mode to the
 * channel (*ret_halted: it halted the rollout just now). Returns 1 when the machine's state
 * moved, 0 when it did not, or a negative errno. */
int store_event(struct store *s, const struct event_record *e, bool *ret_halted);

/* Maps an event to the state it means, or NULL when it changes nothing. */
const char *event_state(int type, int result, int error_code);

/* --- event retention (see store.c for what may be deleted, and why) --- */
#define EVENT_RETENTION_DAYS 90
#define EVENTS_PER_MACHINE 1000
#define EVENT_PRUNE_INTERVAL_MS (60 * 1000)

struct event_retention {
        int64_t max_age;      /* seconds; 0: events are kept whatever their age */
        int64_t per_machine;  /* the newest events kept per machine; 0: no limit */
        int64_t interval_ms;  /* between passes; 0: EVENT_PRUNE_INTERVAL_MS */
};

struct event_prune_stats {
        uint64_t expired;     /* older than max_age */
        uint64_t capped;      /* beyond a machine's per_machine newest */
        bool skipped;         /* another process passed within the interval */
};

/* One pass at time now. Without force it is skipped when a pass (by any process on the same
 * database) started within the interval. -ECANCELED when store_close() stopped it half-way. */
int store_events_prune(struct store *s, const struct event_retention *r, int64_t now, bool force,
                       struct event_prune_stats *ret);
/* Starts the thread that prunes: a pass at once, then one every interval. store_close() stops
 * it. */
int store_events_prune_start(struct store *s, const struct event_retention *r);

/* --- queries for status, dashboard and metrics (all return rows; see store.c) --- */
int store_query(struct store *s, const char *sql, const struct db_param *params, size_t n,
                struct db_rows *ret);

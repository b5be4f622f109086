/* SQLite driver for the store: one database file in the data directory, WAL mode.
 *
 * The process has one connection for its statements, shared by all threads under a mutex
 * (a lock file held with flock() refuses a second server process on the same directory),
 * with the database memory-mapped. Writes are group-committed: the first write opens a
 * transaction that a background thread commits every GROUP_COMMIT_MS, so ten thousand
 * check-ins a second cost ten commits, not ten thousand. A crash of the process loses at most
 * the last GROUP_COMMIT_MS of check-ins and events; db_sync() (the admin API calls it before
 * answering) commits at once. SQLite is the engine for one server process; several processes
 * share PostgreSQL.
 *
 * Writes nobody waits for (the check-ins of machines the policy can answer without their
 * state) do not take the connection at all: they go to a queue, in order, that the background
 * thread runs every PENDING_BATCH writes and before each commit, and that any other statement
 * runs first, so every later statement, read or write, sees them. A request thread that only
 * queues never waits for the lock, nor for a commit.
 *
 * Checkpoints (copying the WAL back into the database, with its fsyncs) run on a second
 * connection, by the background thread after a commit once the WAL holds CHECKPOINT_FRAMES
 * pages, without the lock: no statement waits for that disk work (commits do, as they did
 * when SQLite checkpointed inside COMMIT). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "db.h"
#include "log.h"
#include "util.h"

#define STMT_CACHE 96
#define GROUP_COMMIT_MS 100
#define PENDING_BATCH 256      /* queued writes that wake the background thread */
#define PENDING_MAX 4096       /* queued writes past which a queueing thread runs a batch itself */
#define PENDING_HARD_MAX 262144 /* the same while a checkpoint runs (a few seconds of writes) */
#define CHECKPOINT_FRAMES 16384 /* WAL pages (64 MiB) after which a commit is followed by a checkpoint */

/* A queued write: its statements and a private copy of the parameters. */
struct pending {
        struct pending *next;
        const char *sql, *fallback;
        size_t n;
        struct db_param params[];
};

struct db {
        pthread_mutex_t lock;
        sqlite3 *conn;
        bool in_txn;
        pthread_t flusher;
        bool flusher_running, stop;
        pthread_cond_t wake;
        struct {
                const char *sql;
                sqlite3_stmt *stmt;
        } cache[STMT_CACHE];
        /* The queue: taken under queue_lock only, run under lock. */
        pthread_mutex_t queue_lock;
        struct pending *head, **tail;
        size_t n_pending;
        sqlite3 *ckpt_conn;    /* the checkpoints' own connection */
        bool ckpt_wanted;      /* set by wal_hook(), under lock */
        atomic_bool ckpt_running; /* a checkpoint copies without the lock */
        int lock_fd;           /* flock()ed: this directory's server is this process */
};

static int statement_locked(struct db *db, const char *sql, const struct db_param *params, size_t n,
                            struct db_rows *ret);
static void checkpoint_locked(struct db *db);
static int commit_locked(struct db *db);
static int commit_txn_locked(struct db *db);

static int sqlite_error(sqlite3 *conn, int rc, const char *what) {
        log_error("sqlite: %s: %s", what, conn ? sqlite3_errmsg(conn) : sqlite3_errstr(rc));
        return rc == SQLITE_CONSTRAINT ? -EEXIST : rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
}

/* Runs the first max queued writes (all: SIZE_MAX), in order; called with the lock held. A
 * failure is logged where it happens and costs that write only. */
static void run_pending_locked(struct db *db, size_t max) {
        pthread_mutex_lock(&db->queue_lock);
        struct pending *p = db->head, *last = NULL;
        size_t n = 0;
        for (struct pending *q = p; q && n < max; q = q->next, n++)
                last = q;
        if (last) {
                db->head = last->next;
                if (!db->head)
                        db->tail = &db->head;
                last->next = NULL;
                db->n_pending -= n;
        }
        pthread_mutex_unlock(&db->queue_lock);
        if (!last)
                return;
        while (p) {
                struct pending *next = p->next;
                if (statement_locked(db, p->sql, p->params, p->n, NULL) >= 0 && p->fallback &&
                    sqlite3_changes(db->conn) == 0)
                        (void)statement_locked(db, p->fallback, p->params, p->n, NULL);
                free(p);
                p = next;
        }
}

/* Commits the open group transaction, queued writes included; called with the lock held. */
static int commit_locked(struct db *db) {
        run_pending_locked(db, SIZE_MAX);
        return commit_txn_locked(db);
}

/* Commits the open transaction as it is. */
static int commit_txn_locked(struct db *db) {
        if (!db->in_txn)
                return 0;
        db->in_txn = false;
        int rc = sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                int r = sqlite_error(db->conn, rc, "COMMIT");
                sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
                return r;
        }
        return 0;
}

static void timespec_add_ms(struct timespec *ts, long ms) {
        ts->tv_nsec += ms * 1000000L;
        while (ts->tv_nsec >= 1000000000L) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000L;
        }
}

static bool timespec_passed(const struct timespec *t) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* The background thread: runs the queue when PENDING_BATCH writes are waiting, and commits
 * every GROUP_COMMIT_MS. */
static void *flusher_main(void *userdata) {
        struct db *db = userdata;
        struct timespec next;
        clock_gettime(CLOCK_REALTIME, &next);
        timespec_add_ms(&next, GROUP_COMMIT_MS);
        pthread_mutex_lock(&db->lock);
        while (!db->stop) {
                pthread_mutex_lock(&db->queue_lock);
                size_t queued = db->n_pending;
                pthread_mutex_unlock(&db->queue_lock);
                if (queued < PENDING_BATCH && !timespec_passed(&next))
                        pthread_cond_timedwait(&db->wake, &db->lock, &next);
                if (timespec_passed(&next)) {
                        (void)commit_locked(db);
                        if (db->ckpt_wanted && !db->in_txn)
                                checkpoint_locked(db);
                        clock_gettime(CLOCK_REALTIME, &next);
                        timespec_add_ms(&next, GROUP_COMMIT_MS);
                } else {
                        /* A batch at a time, letting the lock go in between. */
                        run_pending_locked(db, PENDING_BATCH);
                        pthread_mutex_unlock(&db->lock);
                        pthread_mutex_lock(&db->lock);
                }
        }
        pthread_mutex_unlock(&db->lock);
        return NULL;
}

/* After each commit, in the committing thread (lock held): asks the background thread for a
 * checkpoint once the WAL has grown enough. Replaces SQLite's own automatic checkpoint, which
 * would run right there, under the lock. */
static int wal_hook(void *userdata, sqlite3 *conn, const char *name, int frames) {
        struct db *db = userdata;
        if (frames >= CHECKPOINT_FRAMES)
                db->ckpt_wanted = true;
        return SQLITE_OK;
}

/* Copies the WAL into the database; called by the background thread right after a commit,
 * with the lock held. The copying and its fsyncs run on the second connection with the lock
 * released, so that statements go on meanwhile, and the queue just grows (queueing threads do
 * not run batches then, see sqlite_defer()). Then, with the lock again, whatever a statement
 * committed meanwhile is copied too, so that the next transaction starts the WAL over:
 * SQLite only does that when every frame has been copied, and otherwise the WAL would grow
 * without end under a steady load. */
static void checkpoint_locked(struct db *db) {
        db->ckpt_wanted = false;
        atomic_store(&db->ckpt_running, true);
        pthread_mutex_unlock(&db->lock);
        int rc = sqlite3_wal_checkpoint_v2(db->ckpt_conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                (void)sqlite_error(db->ckpt_conn, rc, "checkpoint");
        pthread_mutex_lock(&db->lock);
        atomic_store(&db->ckpt_running, false);
        /* A statement that could not wait (an event's) may have written meanwhile; what it
         * ran from the queue is in its transaction, the rest stays queued. */
        (void)commit_txn_locked(db);
        rc = sqlite3_wal_checkpoint_v2(db->ckpt_conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                (void)sqlite_error(db->ckpt_conn, rc, "checkpoint");
}

static void sqlite_close(struct db *db);

/* SQLite's process-wide settings, before its first use: no memory statistics (they take a
 * global mutex on every allocation, and nothing reads them). */
static void sqlite_setup(void) {
        (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int sqlite_open(const char *dir, struct db **ret) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        _cleanup_free_ char *path = NULL;
        struct db *db;
        int rc;

        pthread_once(&once, sqlite_setup);

        if (asprintf(&path, "%s/pivot.sqlite", dir) < 0)
                return -ENOMEM;
        db = calloc(1, sizeof(*db));
        if (!db)
                return -ENOMEM;
        db->lock_fd = -1;
        pthread_mutex_init(&db->lock, NULL);
        pthread_cond_init(&db->wake, NULL);
        pthread_mutex_init(&db->queue_lock, NULL);
        db->tail = &db->head;

        /* One server process per data directory: its caches and queue assume that every
         * write goes through it. */
        _cleanup_free_ char *lock_path = NULL;
        if (asprintf(&lock_path, "%s.lock", path) < 0) {
                sqlite_close(db);
                return -ENOMEM;
        }
        db->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (db->lock_fd < 0 || flock(db->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                if (db->lock_fd >= 0 && errno == EWOULDBLOCK)
                        log_error("sqlite: %s is in use by another process (one pivot-server per data "
                                  "directory; use PostgreSQL for several)", path);
                else
                        log_error("sqlite: cannot lock %s: %m", lock_path);
                sqlite_close(db);
                return -EBUSY;
        }

        rc = sqlite3_open_v2(path, &db->conn,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                log_error("sqlite: cannot open %s: %s", path, sqlite3_errstr(rc));
                sqlite_close(db);
                return -EIO;
        }
        sqlite3_busy_timeout(db->conn, 2000);
        /* WAL with synchronous=NORMAL: a power cut may lose the last commits but never
         * corrupts the database. */
        rc = sqlite3_exec(db->conn,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-65536;"
                          "PRAGMA mmap_size=1073741824; PRAGMA journal_size_limit=134217728;",
                          NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                sqlite_error(db->conn, rc, "setting up");
                sqlite_close(db);
                return -EIO;
        }
        sqlite3_wal_hook(db->conn, wal_hook, db);

        rc = sqlite3_open_v2(path, &db->ckpt_conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_busy_timeout(db->ckpt_conn, 2000);
                rc = sqlite3_exec(db->ckpt_conn, "PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
        }
        if (rc != SQLITE_OK) {
                sqlite_error(db->ckpt_conn, rc, "opening the checkpoint connection");
                sqlite_close(db);
                return -EIO;
        }
        if (pthread_create(&db->flusher, NULL, flusher_main, db) != 0) {
                sqlite_close(db);
                return -ENOMEM;
        }
        db->flusher_running = true;
        *ret = db;
        return 0;
}

static void sqlite_close(struct db *db) {
        if (!db)
                return;

        if (db->flusher_running) {
                pthread_mutex_lock(&db->lock);
                db->stop = true;
                pthread_cond_signal(&db->wake);
                pthread_mutex_unlock(&db->lock);
                pthread_join(db->flusher, NULL);
        }
        (void)commit_locked(db);
        sqlite3_close(db->ckpt_conn);
        for (size_t i = 0; i < STMT_CACHE; i++)
                sqlite3_finalize(db->cache[i].stmt);
        sqlite3_close(db->conn);
        pthread_cond_destroy(&db->wake);
        pthread_mutex_destroy(&db->lock);
        pthread_mutex_destroy(&db->queue_lock);
        if (db->lock_fd >= 0)
                close(db->lock_fd); /* after the last connection: the last one checkpoints */
        free(db);
}

static int prepare(struct db *db, const char *sql, sqlite3_stmt **ret) {
        size_t slot = ((uintptr_t)sql >> 3) % STMT_CACHE;
        for (size_t k = 0; k < STMT_CACHE; k++) {
                size_t i = (slot + k) % STMT_CACHE;
                if (db->cache[i].sql == sql) {
                        *ret = db->cache[i].stmt;
                        return 0;
                }
                if (!db->cache[i].sql) {
                        int rc = sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                                    &db->cache[i].stmt, NULL);
                        if (rc != SQLITE_OK)
                                return sqlite_error(db->conn, rc, "preparing a statement");
                        db->cache[i].sql = sql;
                        *ret = db->cache[i].stmt;
                        return 0;
                }
        }
        return log_error_errno(-ENOBUFS, "sqlite: statement cache full");
}

static int collect(sqlite3_stmt *stmt, int rc, struct db_rows *ret) {
        size_t n_cols = sqlite3_column_count(stmt), cap = 0;
        struct db_rows rows = { .n_cols = n_cols };

        while (rc == SQLITE_ROW) {
                if (ret) {
                        if (rows.n_rows == cap) {
                                cap = cap ? cap * 2 : 4;
                                char **c = realloc(rows.cells, cap * n_cols * sizeof(char *));
                                if (!c) {
                                        db_rows_done(&rows);
                                        return -ENOMEM;
                                }
                                rows.cells = c;
                        }
                        for (size_t i = 0; i < n_cols; i++) {
                                const unsigned char *t = sqlite3_column_text(stmt, i);
                                rows.cells[rows.n_rows * n_cols + i] = t ? strdup((const char *)t) : NULL;
                        }
                        rows.n_rows++;
                }
                rc = sqlite3_step(stmt);
        }
        if (rc != SQLITE_DONE) {
                db_rows_done(&rows);
                return rc == SQLITE_CONSTRAINT ? -EEXIST : -EIO;
        }
        if (ret)
                *ret = rows;
        return 0;
}

static int statement_locked(struct db *db, const char *sql, const struct db_param *params, size_t n,
                            struct db_rows *ret) {
        sqlite3_stmt *stmt = NULL;
        int r = prepare(db, sql, &stmt);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                int rc;
                switch (params[i].type) {
                case DB_TEXT: rc = sqlite3_bind_text(stmt, i + 1, params[i].s, -1, SQLITE_STATIC); break;
                case DB_INT: rc = sqlite3_bind_int64(stmt, i + 1, params[i].i); break;
                case DB_DOUBLE: rc = sqlite3_bind_double(stmt, i + 1, params[i].d); break;
                default: rc = sqlite3_bind_null(stmt, i + 1);
                }
                if (rc != SQLITE_OK) {
                        sqlite3_reset(stmt);
                        return sqlite_error(db->conn, rc, "binding a parameter");
                }
        }
        if (!db->in_txn && !sqlite3_stmt_readonly(stmt)) {
                int rc = sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL);
                if (rc != SQLITE_OK) {
                        sqlite3_reset(stmt);
                        sqlite3_clear_bindings(stmt);
                        return sqlite_error(db->conn, rc, "BEGIN");
                }
                db->in_txn = true;
        }
        r = collect(stmt, sqlite3_step(stmt), ret);
        if (r == -EIO)
                log_error("sqlite: %s", sqlite3_errmsg(db->conn));
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
        return r;
}

static int sqlite_query(struct db *db, const char *sql, const struct db_param *params, size_t n,
                        struct db_rows *ret) {
        pthread_mutex_lock(&db->lock);
        /* Whatever this statement reads or changes, the queued writes came first. */
        run_pending_locked(db, SIZE_MAX);
        int r = statement_locked(db, sql, params, n, ret);
        pthread_mutex_unlock(&db->lock);
        return r;
}

static int sqlite_defer(struct db *db, const char *sql, const char *fallback, const struct db_param *params,
                        size_t n) {
        size_t size = sizeof(struct pending) + n * sizeof(struct db_param);
        for (size_t i = 0; i < n; i++)
                if (params[i].type == DB_TEXT)
                        size += strlen(params[i].s) + 1;
        struct pending *p = malloc(size);
        if (!p)
                return -ENOMEM;
        *p = (struct pending){ .sql = sql, .fallback = fallback, .n = n };
        char *strings = (char *)&p->params[n];
        for (size_t i = 0; i < n; i++) {
                p->params[i] = params[i];
                if (params[i].type == DB_TEXT) {
                        size_t l = strlen(params[i].s) + 1;
                        memcpy(strings, params[i].s, l);
                        p->params[i].s = strings;
                        strings += l;
                }
        }
        pthread_mutex_lock(&db->queue_lock);
        *db->tail = p;
        db->tail = &p->next;
        size_t queued = ++db->n_pending;
        pthread_mutex_unlock(&db->queue_lock);
        if (queued == PENDING_BATCH)
                pthread_cond_signal(&db->wake);
        else if (queued >= PENDING_MAX && (queued >= PENDING_HARD_MAX || !atomic_load(&db->ckpt_running))) {
                /* The background thread falls behind: share its work, a batch at a time,
                 * rather than queue on (a statement that must wait for the whole queue, an
                 * event's, waits for PENDING_MAX writes at most). */
                pthread_mutex_lock(&db->lock);
                run_pending_locked(db, PENDING_BATCH);
                pthread_mutex_unlock(&db->lock);
        }
        return 0;
}

static int sqlite_exec_script(struct db *db, const char *sql) {
        char *err = NULL;
        pthread_mutex_lock(&db->lock);
        int r = commit_locked(db);
        int rc = r < 0 ? SQLITE_OK : sqlite3_exec(db->conn, sql, NULL, NULL, &err);
        pthread_mutex_unlock(&db->lock);
        if (rc != SQLITE_OK) {
                log_error("sqlite: %s", err ? err : sqlite3_errstr(rc));
                sqlite3_free(err);
                return -EIO;
        }
        return r;
}

static int sqlite_sync(struct db *db) {
        pthread_mutex_lock(&db->lock);
        int r = commit_locked(db);
        pthread_mutex_unlock(&db->lock);
        return r;
}

const struct db_driver db_sqlite_driver = {
        .name = "sqlite",
        .shared = true,
        .single_process = true,
        .serial_key = "INTEGER PRIMARY KEY", /* the rowid: the largest so far + 1 */
        .open = sqlite_open,
        .close = sqlite_close,
        .query = sqlite_query,
        .exec_script = sqlite_exec_script,
        .sync = sqlite_sync,
        .defer = sqlite_defer,
};

/* Shared by both drivers. */
int64_t db_cell_int(const struct db_rows *r, size_t row, size_t col) {
        const char *s = db_cell(r, row, col);
        return s ? strtoll(s, NULL, 10) : 0;
}

double db_cell_double(const struct db_rows *r, size_t row, size_t col) {
        const char *s = db_cell(r, row, col);
        return s ? strtod(s, NULL) : 0;
}

void db_rows_done(struct db_rows *r) {
        for (size_t i = 0; i < r->n_rows * r->n_cols; i++)
                free(r->cells[i]);
        free(r->cells);
        *r = (struct db_rows){};
}

/* SQLite driver for the store: a database file in the data directory, WAL mode.
 *
 * Every server thread has its own connection, so readers run in parallel. Writers are
 * serialized by a process-wide mutex rather than by SQLite's busy handler, whose sleeps would
 * cost milliseconds under load. One process owns a data directory (SQLite is not the engine
 * for several server processes: that is PostgreSQL's job). */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "db.h"
#include "log.h"
#include "util.h"

#define STMT_CACHE 64

struct db {
        sqlite3 *conn;
        bool in_txn;
        struct {
                const char *sql;
                sqlite3_stmt *stmt;
        } cache[STMT_CACHE];
};

static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

static int sqlite_error(sqlite3 *conn, int rc, const char *what) {
        log_error("sqlite: %s: %s", what, conn ? sqlite3_errmsg(conn) : sqlite3_errstr(rc));
        return rc == SQLITE_CONSTRAINT ? -EEXIST : rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
}

static int sqlite_open(const char *dir, struct db **ret) {
        _cleanup_free_ char *path = NULL;
        struct db *db;
        int rc;

        if (asprintf(&path, "%s/pivot.sqlite", dir) < 0)
                return -ENOMEM;
        db = calloc(1, sizeof(*db));
        if (!db)
                return -ENOMEM;
        rc = sqlite3_open_v2(path, &db->conn,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                log_error("sqlite: cannot open %s: %s", path, sqlite3_errstr(rc));
                sqlite3_close(db->conn);
                free(db);
                return -EIO;
        }
        sqlite3_busy_timeout(db->conn, 10000);
        /* WAL: readers never block the writer. synchronous=NORMAL: a power cut may lose the
         * last transactions but never corrupts the database. */
        rc = sqlite3_exec(db->conn,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                          "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16000;",
                          NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                int r = sqlite_error(db->conn, rc, "setting pragmas");
                sqlite3_close(db->conn);
                free(db);
                return r;
        }
        *ret = db;
        return 0;
}

static void sqlite_close(struct db *db) {
        if (!db)
                return;
        for (size_t i = 0; i < STMT_CACHE; i++)
                sqlite3_finalize(db->cache[i].stmt);
        sqlite3_close(db->conn);
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
                                char *s = t ? strdup((const char *)t) : NULL;
                                rows.cells[rows.n_rows * n_cols + i] = s;
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

static int sqlite_query(struct db *db, const char *sql, const struct db_param *params, size_t n,
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
        bool lock = !db->in_txn && !sqlite3_stmt_readonly(stmt);
        if (lock)
                pthread_mutex_lock(&write_lock);
        int rc = sqlite3_step(stmt);
        r = collect(stmt, rc, ret);
        if (r == -EIO)
                log_error("sqlite: %s", sqlite3_errmsg(db->conn));
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
        if (lock)
                pthread_mutex_unlock(&write_lock);
        return r;
}

static int sqlite_exec_script(struct db *db, const char *sql) {
        char *err = NULL;
        pthread_mutex_lock(&write_lock);
        int rc = sqlite3_exec(db->conn, sql, NULL, NULL, &err);
        pthread_mutex_unlock(&write_lock);
        if (rc != SQLITE_OK) {
                log_error("sqlite: %s", err ? err : sqlite3_errstr(rc));
                sqlite3_free(err);
                return -EIO;
        }
        return 0;
}

static int sqlite_begin(struct db *db) {
        pthread_mutex_lock(&write_lock);
        int rc = sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                pthread_mutex_unlock(&write_lock);
                return sqlite_error(db->conn, rc, "BEGIN");
        }
        db->in_txn = true;
        return 0;
}

static int sqlite_commit(struct db *db) {
        int rc = sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
                db->in_txn = false;
                pthread_mutex_unlock(&write_lock);
                return sqlite_error(db->conn, rc, "COMMIT");
        }
        db->in_txn = false;
        pthread_mutex_unlock(&write_lock);
        return 0;
}

static void sqlite_rollback(struct db *db) {
        if (!db->in_txn)
                return;
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
        db->in_txn = false;
        pthread_mutex_unlock(&write_lock);
}

const struct db_driver db_sqlite_driver = {
        .name = "sqlite",
        .open = sqlite_open,
        .close = sqlite_close,
        .query = sqlite_query,
        .exec_script = sqlite_exec_script,
        .begin = sqlite_begin,
        .commit = sqlite_commit,
        .rollback = sqlite_rollback,
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

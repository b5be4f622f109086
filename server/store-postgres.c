/* PostgreSQL driver for the store (libpq). Each server thread has its own connection; every
 * statement is prepared once per connection. Several pivot-server processes may share one
 * database: all state lives there. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "util.h"

#define STMT_CACHE 128
#define SMALL_PARAMS 32
#define MAX_PARAMS 65535 /* the protocol's limit */

struct db {
        PGconn *conn;
        unsigned n_prepared;
        const char *prepared[STMT_CACHE];
};

static void pg_clearp(PGresult **r) {
        if (*r)
                PQclear(*r);
}

static int pg_open(const char *url, struct db **ret) {
        struct db *db = calloc(1, sizeof(*db));
        if (!db)
                return -ENOMEM;
        db->conn = PQconnectdb(url);
        if (PQstatus(db->conn) != CONNECTION_OK) {
                log_error("postgres: cannot connect: %s", PQerrorMessage(db->conn));
                PQfinish(db->conn);
                free(db);
                return -ECONNREFUSED;
        }
        /* Quiet NOTICEs such as "relation already exists, skipping". A commit need not wait
         * for the WAL flush: a crash of PostgreSQL may lose the last fraction of a second of
         * check-ins (machines check in again), never consistency. */
        _cleanup_(pg_clearp) PGresult *res =
                PQexec(db->conn, "SET client_min_messages = warning; SET synchronous_commit = off");
        *ret = db;
        return 0;
}

static void pg_close(struct db *db) {
        if (!db)
                return;
        PQfinish(db->conn);
        free(db);
}

static int result_error(struct db *db, PGresult *res) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "23505") == 0) /* unique_violation */
                return -EEXIST;
        log_error("postgres: %s", PQerrorMessage(db->conn));
        if (PQstatus(db->conn) != CONNECTION_OK) {
                /* A new session: the prepared statements of the old one are gone. */
                PQreset(db->conn);
                db->n_prepared = 0;
        }
        return -EIO;
}

static int statement_name(struct db *db, const char *sql, char name[32], int n_params) {
        for (unsigned i = 0; i < db->n_prepared; i++)
                if (db->prepared[i] == sql) {
                        snprintf(name, 32, "s%u", i);
                        return 0;
                }
        if (db->n_prepared == STMT_CACHE)
                return log_error_errno(-ENOBUFS, "postgres: statement cache full");
        snprintf(name, 32, "s%u", db->n_prepared);
        _cleanup_(pg_clearp) PGresult *res = PQprepare(db->conn, name, sql, n_params, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return result_error(db, res);
        db->prepared[db->n_prepared++] = sql;
        return 0;
}

static int pg_query(struct db *db, const char *sql, const struct db_param *params, size_t n,
                    struct db_rows *ret) {
        char name[32], text_small[SMALL_PARAMS][32];
        const char *values_small[SMALL_PARAMS];
        _cleanup_free_ char (*text_big)[32] = NULL;
        _cleanup_free_ const char **values_big = NULL;
        char (*text)[32] = text_small;
        const char **values = values_small;
        int r;

        if (n > MAX_PARAMS)
                return -E2BIG;
        if (n > SMALL_PARAMS) {
                /* Batched writes: thousands of parameters, off the stack. */
                text = text_big = malloc(n * sizeof(*text_big));
                values = values_big = malloc(n * sizeof(*values_big));
                if (!text_big || !values_big)
                        return -ENOMEM;
        }
        r = statement_name(db, sql, name, (int)n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                switch (params[i].type) {
                case DB_TEXT: values[i] = params[i].s; break;
                case DB_INT:
                        snprintf(text[i], sizeof(text[i]), "%" PRId64, params[i].i);
                        values[i] = text[i];
                        break;
                case DB_DOUBLE:
                        snprintf(text[i], sizeof(text[i]), "%.17g", params[i].d);
                        values[i] = text[i];
                        break;
                default: values[i] = NULL;
                }
        }
        _cleanup_(pg_clearp) PGresult *res = PQexecPrepared(db->conn, name, (int)n, values, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
                return result_error(db, res);
        }
        if (!ret)
                return 0;
        struct db_rows rows = { .n_rows = PQntuples(res), .n_cols = PQnfields(res) };
        if (rows.n_rows && rows.n_cols) {
                rows.cells = calloc(rows.n_rows * rows.n_cols, sizeof(char *));
                if (!rows.cells)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < rows.n_rows; i++)
                for (size_t k = 0; k < rows.n_cols; k++)
                        if (!PQgetisnull(res, i, k))
                                rows.cells[i * rows.n_cols + k] = strdup(PQgetvalue(res, i, k));
        *ret = rows;
        return 0;
}

static int pg_exec_script(struct db *db, const char *sql) {
        _cleanup_(pg_clearp) PGresult *res = PQexec(db->conn, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
                return result_error(db, res);
        return 0;
}

static int pg_sync(struct db *db) {
        return 0; /* every statement commits by itself */
}

const struct db_driver db_postgres_driver = {
        .name = "postgres",
        .serial_key = "BIGSERIAL PRIMARY KEY",
        .open = pg_open,
        .close = pg_close,
        .query = pg_query,
        .exec_script = pg_exec_script,
        .sync = pg_sync,
};

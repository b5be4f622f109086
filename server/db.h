/* The SQL layer under the store: one small interface, two drivers (store-sqlite.c,
 * store-postgres.c). The store (store.c) writes every query once, in the SQL both engines
 * share, with $1, $2 ... placeholders used in ascending order of first appearance, so one
 * schema and one behaviour serve both.
 *
 * A struct db is one connection. PostgreSQL's is used by one thread at a time and the store
 * keeps one per server thread; SQLite's is shared by all threads and locks inside. Results come back as text (NULL for SQL NULL), which is what PostgreSQL's
 * text protocol gives and what SQLite converts to. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum db_type { DB_NULL, DB_TEXT, DB_INT, DB_DOUBLE };

struct db_param {
        enum db_type type;
        const char *s;
        int64_t i;
        double d;
};

static inline struct db_param db_text_param(const char *v) {
        return (struct db_param){ .type = v ? DB_TEXT : DB_NULL, .s = v };
}
#define DB_TEXT(v) db_text_param(v)
#define DB_INT(v) ((struct db_param){ .type = DB_INT, .i = (v) })
#define DB_DOUBLE(v) ((struct db_param){ .type = DB_DOUBLE, .d = (v) })

struct db_rows {
        size_t n_rows, n_cols;
        char **cells; /* n_rows * n_cols, row-major; NULL cells are SQL NULL */
};

static inline const char *db_cell(const struct db_rows *r, size_t row, size_t col) {
        return row < r->n_rows && col < r->n_cols ? r->cells[row * r->n_cols + col] : NULL;
}
int64_t db_cell_int(const struct db_rows *r, size_t row, size_t col); /* 0 for NULL */
double db_cell_double(const struct db_rows *r, size_t row, size_t col);
void db_rows_done(struct db_rows *r);
static inline void db_rowsp(struct db_rows *r) {
        db_rows_done(r);
}
/* Rows freed when they go out of scope. */
#define _cleanup_rows_ __attribute__((cleanup(db_rowsp)))

struct db;

struct db_driver {
        const char *name;
        bool shared;  /* one connection for all threads (it locks inside), not one per thread */
        bool single_process; /* the database is this process's alone: every write goes through it */
        /* The column definition of an integer key the engine numbers itself, ascending in the
         * order rows are inserted. */
        const char *serial_key;
        /* target: a directory (sqlite) or a postgres:// URL. */
        int (*open)(const char *target, struct db **ret);
        void (*close)(struct db *db);
        /* Runs one statement. sql must be a string that lives for the program's lifetime
         * (drivers cache prepared statements by its address). ret may be NULL. */
        int (*query)(struct db *db, const char *sql, const struct db_param *params, size_t n_params,
                     struct db_rows *ret);
        /* Runs a script of several statements without parameters (the schema). */
        int (*exec_script)(struct db *db, const char *sql);
        /* Makes every write so far durable before it returns. */
        int (*sync)(struct db *db);
        /* Queues a write nobody waits for: sql runs later with a copy of the parameters, and
         * when it changes no row, fallback (if not NULL) runs with the same parameters. The
         * queue keeps the order of the writes and runs before any later statement on the
         * connection, and within the group-commit period. NULL when the driver has no queue
         * (the store then writes at once). */
        int (*defer)(struct db *db, const char *sql, const char *fallback, const struct db_param *params,
                     size_t n_params);
};

extern const struct db_driver db_sqlite_driver;
extern const struct db_driver db_postgres_driver;

/* GET /metrics: Prometheus text format.
 *
 * Counters count what this process handled since it started (sum them over processes, as
 * Prometheus does); gauges come from the database and are the same from every process. */
#include <stdio.h>
#include <stdlib.h>

#include "policy.h"
#include "server.h"
#include "strbuf.h"
#include "util.h"

static void counter(struct strbuf *b, const char *name, const char *help, uint64_t v) {
        strbuf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

static void label(struct strbuf *b, const char *s) {
        strbuf_put(b, "\"", 1);
        for (const char *p = s ? s : ""; *p; p++) {
                if (*p == '"' || *p == '\\')
                        strbuf_put(b, "\\", 1);
                if (*p == '\n')
                        strbuf_puts(b, "\\n");
                else
                        strbuf_put(b, p, 1);
        }
        strbuf_put(b, "\"", 1);
}

void metrics_handle(struct server *srv, struct reply *out) {
        /* What it lists includes the check-ins this process has queued. */
        (void)store_flush(srv->store);
        struct metrics *m = &srv->metrics;
        struct strbuf b = {};

        counter(&b, "pivot_checkins_total", "Omaha app check-ins handled.", m->checkins);
        counter(&b, "pivot_update_checks_total", "Update checks answered.", m->updatechecks);
        counter(&b, "pivot_updates_granted_total", "Update checks answered with an update.", m->updates_granted);
        counter(&b, "pivot_noupdate_total", "Update checks answered with noupdate.", m->noupdates);
        counter(&b, "pivot_unknown_app_total", "Requests for an unknown application.", m->unknown_app);
        counter(&b, "pivot_unknown_channel_total", "Requests for an unknown channel.", m->unknown_channel);
        counter(&b, "pivot_bad_requests_total", "Omaha requests refused as malformed or too large.", m->bad_requests);
        counter(&b, "pivot_safe_mode_halts_total", "Rollouts halted by safe mode.", m->safe_mode_halts);
        counter(&b, "pivot_payload_bytes_total", "Payload bytes served.", m->payload_bytes);
        counter(&b, "pivot_admin_requests_total", "Admin API requests.", m->admin_requests);
        counter(&b, "pivot_admin_unauthorized_total", "Admin API requests without a valid token.", m->admin_unauthorized);

        strbuf_puts(&b, "# HELP pivot_noupdate_reasons_total Why update checks were answered with noupdate.\n"
                        "# TYPE pivot_noupdate_reasons_total counter\n");
        for (unsigned v = 1; v < ELEMENTSOF(m->refusals); v++)
                strbuf_printf(&b, "pivot_noupdate_reasons_total{reason=\"%s\"} %llu\n", policy_verdict_name(v),
                              (unsigned long long)m->refusals[v]);

        static const char *const types[] = { "update_complete", "download_started", "download_finished", "other" };
        static const char *const results[] = { "error", "success", "success_reboot", "deferred", "other" };
        strbuf_puts(&b, "# HELP pivot_events_total Omaha events received, by type and result.\n"
                        "# TYPE pivot_events_total counter\n");
        for (unsigned t = 0; t < METRIC_EVENT_TYPES; t++)
                for (unsigned r = 0; r < METRIC_EVENT_RESULTS; r++)
                        strbuf_printf(&b, "pivot_events_total{type=\"%s\",result=\"%s\"} %llu\n", types[t], results[r],
                                      (unsigned long long)m->events[t][r]);

        _cleanup_rows_ struct db_rows rows = {};
        /* The version is what machines say they run: any client can send any string, and each
         * one would be a series of its own in Prometheus. Versions the server has no release of
         * are counted together as "other". */
        strbuf_puts(&b, "# HELP pivot_machines Machines known, by channel, version (\"other\": one the server has"
                        " no release of) and update state.\n"
                        "# TYPE pivot_machines gauge\n");
        if (store_query(srv->store,
                        "SELECT app, channel, v, state, COUNT(*) FROM ("
                        "  SELECT m.app, m.channel, m.state, CASE WHEN EXISTS (SELECT 1 FROM releases r"
                        "   WHERE r.app = m.app AND r.version = m.version) THEN m.version ELSE 'other' END AS v"
                        "  FROM machines m) AS labelled"
                        " GROUP BY app, channel, v, state ORDER BY app, channel, v, state",
                        NULL, 0, &rows) >= 0)
                for (size_t i = 0; i < rows.n_rows; i++) {
                        strbuf_puts(&b, "pivot_machines{app=");
                        label(&b, db_cell(&rows, i, 0));
                        strbuf_puts(&b, ",channel=");
                        label(&b, db_cell(&rows, i, 1));
                        strbuf_puts(&b, ",version=");
                        label(&b, db_cell(&rows, i, 2));
                        strbuf_puts(&b, ",state=");
                        label(&b, db_cell(&rows, i, 3));
                        strbuf_printf(&b, "} %lld\n", (long long)db_cell_int(&rows, i, 4));
                }
        db_rows_done(&rows);
        strbuf_puts(&b, "# HELP pivot_rollout_percent Rollout percentage per channel.\n# TYPE pivot_rollout_percent gauge\n"
                        "# HELP pivot_rollout_halted 1 when safe mode halted the channel's rollout.\n"
                        "# TYPE pivot_rollout_halted gauge\n"
                        "# HELP pivot_rollout_paused 1 when the admin paused the channel.\n# TYPE pivot_rollout_paused gauge\n");
        if (store_query(srv->store, "SELECT app, name, rollout_percent, halted, paused FROM channels ORDER BY app, name",
                        NULL, 0, &rows) >= 0)
                for (size_t i = 0; i < rows.n_rows; i++) {
                        static const char *const names[] = { "pivot_rollout_percent", "pivot_rollout_halted",
                                                             "pivot_rollout_paused" };
                        for (unsigned k = 0; k < 3; k++) {
                                strbuf_printf(&b, "%s{app=", names[k]);
                                label(&b, db_cell(&rows, i, 0));
                                strbuf_puts(&b, ",channel=");
                                label(&b, db_cell(&rows, i, 1));
                                strbuf_printf(&b, "} %g\n", db_cell_double(&rows, i, 2 + k));
                        }
                }

        size_t len;
        char *text = strbuf_take(&b, &len);
        if (!text)
                return reply_static(out, 500, "text/plain", "out of memory\n");
        reply_set(out, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

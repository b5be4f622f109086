/* GET /: the fleet dashboard. One HTML page rendered here with inline SVG charts and inline
 * CSS: no scripts, no fonts, nothing fetched from anywhere.
 *
 *   versions across the fleet   horizontal bars, machines per version
 *   rollout per channel         a bar per channel: complete / in flight / failed against the
 *                               machines of the channel, with the rollout percentage marked
 *   failures over time          failed update events per hour over the last 24 hours, with
 *                               completed updates alongside */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"
#include "strbuf.h"
#include "util.h"

#define Q(s, sql, ret, ...)                                                                        \
        ({                                                                                         \
                const struct db_param q_params_[] = { __VA_ARGS__ };                               \
                store_query((s), (sql), q_params_, ELEMENTSOF(q_params_), (ret));                 \
        })

static const char *const palette[] = { "#2b6cb0", "#38a169", "#d69e2e", "#805ad5", "#dd6b20",
                                       "#319795", "#b83280", "#718096" };

static const char css[] =
        "body{font-family:DejaVu Sans,Liberation Sans,Arial,sans-serif;margin:24px;color:#1a202c;background:#f7fafc}"
        "h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:0 0 12px}"
        ".sub{color:#4a5568;font-size:13px;margin-bottom:18px}"
        ".card{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:16px;margin-bottom:18px}"
        ".row{display:flex;gap:18px;flex-wrap:wrap}.row .card{flex:1;min-width:420px}"
        "table{border-collapse:collapse;font-size:13px;width:100%}"
        "td,th{border-bottom:1px solid #e2e8f0;padding:6px 8px;text-align:left}"
        ".badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;color:#fff}"
        ".active{background:#38a169}.paused{background:#d69e2e}.halted{background:#e53e3e}.idle{background:#a0aec0}"
        "svg text{font-family:DejaVu Sans,Liberation Sans,Arial,sans-serif}"
        ".kpi{display:inline-block;margin-right:28px}.kpi b{font-size:22px;display:block}";

static void versions_chart(struct server *srv, struct strbuf *b) {
        _cleanup_rows_ struct db_rows rows = {};
        strbuf_puts(b, "<div class=\"card\"><h2>Versions across the fleet</h2>");
        if (store_query(srv->store,
                        "SELECT COALESCE(version, '?'), COUNT(*) FROM machines GROUP BY version ORDER BY COUNT(*) DESC, version"
                        " LIMIT 12",
                        NULL, 0, &rows) < 0 ||
            !rows.n_rows) {
                strbuf_puts(b, "<p>No machine has checked in yet.</p></div>");
                return;
        }
        int64_t max = 1, total = 0;
        for (size_t i = 0; i < rows.n_rows; i++) {
                int64_t n = db_cell_int(&rows, i, 1);
                max = n > max ? n : max;
                total += n;
        }
        unsigned h = 26 * rows.n_rows + 10, w = 560, label = 120, bar = w - label - 90;
        strbuf_printf(b, "<svg id=\"versions\" width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" role=\"img\">", w, h, w, h);
        for (size_t i = 0; i < rows.n_rows; i++) {
                int64_t n = db_cell_int(&rows, i, 1);
                unsigned y = 5 + 26 * i, len = (unsigned)(bar * n / max);
                strbuf_printf(b, "<text x=\"%u\" y=\"%u\" font-size=\"13\" text-anchor=\"end\">", label - 8, y + 15);
                strbuf_html(b, db_cell(&rows, i, 0));
                strbuf_printf(b, "</text><rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"18\" fill=\"%s\" rx=\"3\"/>"
                                 "<text x=\"%u\" y=\"%u\" font-size=\"12\" fill=\"#4a5568\">%lld (%.0f%%)</text>",
                              label, y, len ? len : 1, palette[i % ELEMENTSOF(palette)], label + len + 6, y + 14,
                              (long long)n, 100.0 * n / total);
        }
        strbuf_puts(b, "</svg></div>");
}

struct chan_row {
        const char *app, *name, *version, *halt_reason;
        double percent;
        bool paused, halted;
        int64_t machines, on_release, inflight, failed, granted;
};

static void rollout_chart(struct server *srv, struct strbuf *b) {
        _cleanup_rows_ struct db_rows rows = {};
        strbuf_puts(b, "<div class=\"card\"><h2>Rollout progress per channel</h2>");
        if (store_query(srv->store,
                        "SELECT c.app, c.name, c.release_version, c.rollout_percent, c.paused, c.halted, c.halt_reason,"
                        " (SELECT COUNT(*) FROM machines m WHERE m.app = c.app AND m.channel = c.name),"
                        " (SELECT COUNT(*) FROM machines m WHERE m.app = c.app AND m.channel = c.name"
                        "   AND m.version = c.release_version),"
                        " (SELECT COUNT(*) FROM attempts a WHERE a.app = c.app AND a.channel = c.name"
                        "   AND a.version = c.release_version AND a.state IN ('granted','downloading','downloaded','installed')),"
                        " (SELECT COUNT(*) FROM attempts a WHERE a.app = c.app AND a.channel = c.name"
                        "   AND a.version = c.release_version AND a.failed > 0),"
                        " (SELECT COUNT(*) FROM attempts a WHERE a.app = c.app AND a.channel = c.name"
                        "   AND a.version = c.release_version)"
                        " FROM channels c ORDER BY c.app, c.name",
                        NULL, 0, &rows) < 0 ||
            !rows.n_rows) {
                strbuf_puts(b, "<p>No channel yet: publish a release with pivot-admin.</p></div>");
                return;
        }
        unsigned w = 560, bar = 380, x0 = 150, h = 46 * rows.n_rows + 30;
        strbuf_printf(b, "<svg id=\"rollout\" width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" role=\"img\">", w, h, w, h);
        for (size_t i = 0; i < rows.n_rows; i++) {
                struct chan_row c = {
                        .name = db_cell(&rows, i, 1), .version = db_cell(&rows, i, 2),
                        .percent = db_cell_double(&rows, i, 3), .paused = db_cell_int(&rows, i, 4),
                        .halted = db_cell_int(&rows, i, 5), .machines = db_cell_int(&rows, i, 7),
                        .on_release = db_cell_int(&rows, i, 8), .inflight = db_cell_int(&rows, i, 9),
                        .failed = db_cell_int(&rows, i, 10),
                };
                unsigned y = 8 + 46 * i;
                int64_t total = c.machines > 0 ? c.machines : 1;
                unsigned done = bar * c.on_release / total, fly = bar * c.inflight / total, bad = bar * c.failed / total;
                if (done + fly + bad > bar)
                        fly = bar > done + bad ? bar - done - bad : 0;
                strbuf_printf(b, "<text x=\"%u\" y=\"%u\" font-size=\"13\" text-anchor=\"end\" font-weight=\"bold\">", x0 - 8,
                              y + 14);
                strbuf_html(b, c.name);
                strbuf_printf(b, "</text><text x=\"%u\" y=\"%u\" font-size=\"11\" text-anchor=\"end\" fill=\"%s\">%s</text>",
                              x0 - 8, y + 28, c.halted ? "#e53e3e" : c.paused ? "#b7791f" : "#4a5568",
                              c.halted ? "halted" : c.paused ? "paused" : c.version ? "rolling out" : "no release");
                strbuf_printf(b, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"20\" fill=\"#edf2f7\" rx=\"3\"/>", x0, y, bar);
                strbuf_printf(b, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"20\" fill=\"#38a169\"/>", x0, y, done);
                strbuf_printf(b, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"20\" fill=\"#63b3ed\"/>", x0 + done, y, fly);
                strbuf_printf(b, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"20\" fill=\"#e53e3e\"/>", x0 + done + fly, y, bad);
                unsigned mark = x0 + (unsigned)(bar * c.percent / 100.0);
                strbuf_printf(b, "<line x1=\"%u\" y1=\"%u\" x2=\"%u\" y2=\"%u\" stroke=\"#1a202c\" stroke-width=\"2\" "
                                 "stroke-dasharray=\"3,2\"/>",
                              mark, y - 3, mark, y + 23);
                strbuf_printf(b, "<text x=\"%u\" y=\"%u\" font-size=\"11\" fill=\"#4a5568\">", x0, y + 34);
                strbuf_html(b, c.version ? c.version : "-");
                strbuf_printf(b, ": %lld of %lld machines, %lld in flight, %lld failed; rollout %.4g%%</text>",
                              (long long)c.on_release, (long long)c.machines, (long long)c.inflight, (long long)c.failed,
                              c.percent);
        }
        unsigned ly = h - 14;
        strbuf_printf(b,
                      "<rect x=\"%u\" y=\"%u\" width=\"10\" height=\"10\" fill=\"#38a169\"/><text x=\"%u\" y=\"%u\" font-size=\"11\">on release</text>"
                      "<rect x=\"%u\" y=\"%u\" width=\"10\" height=\"10\" fill=\"#63b3ed\"/><text x=\"%u\" y=\"%u\" font-size=\"11\">in flight</text>"
                      "<rect x=\"%u\" y=\"%u\" width=\"10\" height=\"10\" fill=\"#e53e3e\"/><text x=\"%u\" y=\"%u\" font-size=\"11\">failed</text>"
                      "<line x1=\"%u\" y1=\"%u\" x2=\"%u\" y2=\"%u\" stroke=\"#1a202c\" stroke-width=\"2\" stroke-dasharray=\"3,2\"/>"
                      "<text x=\"%u\" y=\"%u\" font-size=\"11\">rollout percentage</text>",
                      x0, ly, x0 + 14, ly + 9, x0 + 90, ly, x0 + 104, ly + 9, x0 + 170, ly, x0 + 184, ly + 9, x0 + 240,
                      ly - 1, x0 + 240, ly + 11, x0 + 246, ly + 9);
        strbuf_puts(b, "</svg></div>");
}

static void failures_chart(struct server *srv, struct strbuf *b, int64_t now) {
        enum { HOURS = 24 };
        int64_t fails[HOURS] = {}, oks[HOURS] = {}, start = (now / 3600 - (HOURS - 1)) * 3600;
        _cleanup_rows_ struct db_rows rows = {};
        if (Q(srv->store,
              "SELECT time / 3600, SUM(CASE WHEN result = 0 THEN 1 ELSE 0 END),"
              " SUM(CASE WHEN type = 3 AND result = 2 THEN 1 ELSE 0 END)"
              " FROM events WHERE time >= $1 GROUP BY time / 3600",
              &rows, DB_INT(start)) >= 0)
                for (size_t i = 0; i < rows.n_rows; i++) {
                        int64_t k = db_cell_int(&rows, i, 0) - start / 3600;
                        if (k >= 0 && k < HOURS) {
                                fails[k] = db_cell_int(&rows, i, 1);
                                oks[k] = db_cell_int(&rows, i, 2);
                        }
                }
        int64_t max = 1, total_fail = 0;
        for (int i = 0; i < HOURS; i++) {
                max = fails[i] > max ? fails[i] : max;
                max = oks[i] > max ? oks[i] : max;
                total_fail += fails[i];
        }
        unsigned w = 560, h = 200, x0 = 40, y0 = 170, ch = 150, step = (w - x0 - 10) / HOURS;
        strbuf_printf(b, "<div class=\"card\"><h2>Failures over time (last 24 h, %lld failed events)</h2>",
                      (long long)total_fail);
        strbuf_printf(b, "<svg id=\"failures\" width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" role=\"img\">", w, h + 20, w,
                      h + 20);
        strbuf_printf(b, "<line x1=\"%u\" y1=\"%u\" x2=\"%u\" y2=\"%u\" stroke=\"#a0aec0\"/>", x0, y0, w - 10, y0);
        strbuf_printf(b, "<text x=\"%u\" y=\"%u\" font-size=\"11\" text-anchor=\"end\">%lld</text>", x0 - 4, y0 - ch + 4,
                      (long long)max);
        strbuf_printf(b, "<text x=\"%u\" y=\"%u\" font-size=\"11\" text-anchor=\"end\">0</text>", x0 - 4, y0 + 4);
        for (int i = 0; i < HOURS; i++) {
                unsigned x = x0 + i * step, fh = (unsigned)(ch * fails[i] / max), oh = (unsigned)(ch * oks[i] / max);
                if (oks[i])
                        strbuf_printf(b, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" fill=\"#9ae6b4\"/>", x + 1,
                                      y0 - oh, step / 2 - 1, oh);
                if (fails[i])
                        strbuf_printf(b, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" fill=\"#e53e3e\"/>",
                                      x + step / 2, y0 - fh, step / 2 - 1, fh);
                if (i % 4 == 3) {
                        time_t t = start + (int64_t)i * 3600;
                        struct tm tm;
                        gmtime_r(&t, &tm);
                        strbuf_printf(b, "<text x=\"%u\" y=\"%u\" font-size=\"10\" text-anchor=\"middle\">%02d:00</text>",
                                      x + step / 2, y0 + 14, tm.tm_hour);
                }
        }
        strbuf_printf(b,
                      "<rect x=\"%u\" y=\"%u\" width=\"10\" height=\"10\" fill=\"#e53e3e\"/><text x=\"%u\" y=\"%u\" font-size=\"11\">failed events</text>"
                      "<rect x=\"%u\" y=\"%u\" width=\"10\" height=\"10\" fill=\"#9ae6b4\"/><text x=\"%u\" y=\"%u\" font-size=\"11\">completed updates</text>",
                      x0, h + 4, x0 + 14, h + 13, x0 + 120, h + 4, x0 + 134, h + 13);
        strbuf_puts(b, "</svg></div>");
}

static void channel_table(struct server *srv, struct strbuf *b) {
        _cleanup_rows_ struct db_rows rows = {};
        strbuf_puts(b, "<div class=\"card\"><h2>Channels</h2><table><tr><th>application</th><th>channel</th><th>release</th>"
                       "<th>rollout</th><th>state</th><th>safe mode</th><th>in-flight limit</th></tr>");
        if (store_query(srv->store,
                        "SELECT a.name, c.name, c.release_version, c.rollout_percent, c.paused, c.halted, c.halt_reason,"
                        " c.safe_min_failures, c.safe_failure_ratio, c.max_inflight"
                        " FROM channels c JOIN apps a ON a.id = c.app ORDER BY a.name, c.name",
                        NULL, 0, &rows) >= 0)
                for (size_t i = 0; i < rows.n_rows; i++) {
                        bool paused = db_cell_int(&rows, i, 4), halted = db_cell_int(&rows, i, 5);
                        const char *ver = db_cell(&rows, i, 2);
                        strbuf_puts(b, "<tr><td>");
                        strbuf_html(b, db_cell(&rows, i, 0));
                        strbuf_puts(b, "</td><td>");
                        strbuf_html(b, db_cell(&rows, i, 1));
                        strbuf_puts(b, "</td><td>");
                        strbuf_html(b, ver ? ver : "-");
                        strbuf_printf(b, "</td><td>%.4g%%</td><td><span class=\"badge %s\">%s</span> ",
                                      db_cell_double(&rows, i, 3),
                                      halted ? "halted" : paused ? "paused" : ver ? "active" : "idle",
                                      halted ? "halted" : paused ? "paused" : ver ? "active" : "idle");
                        strbuf_html(b, db_cell(&rows, i, 6));
                        strbuf_printf(b, "</td><td>&ge; %lld failures and &ge; %.0f%%</td><td>",
                                      (long long)db_cell_int(&rows, i, 7), 100 * db_cell_double(&rows, i, 8));
                        if (db_cell_int(&rows, i, 9))
                                strbuf_printf(b, "%lld</td></tr>", (long long)db_cell_int(&rows, i, 9));
                        else
                                strbuf_puts(b, "none</td></tr>");
                }
        strbuf_puts(b, "</table></div>");
}

/* The page, rendered. */
static char *render(struct server *srv, size_t *ret_len) {
        /* What it lists includes the check-ins this process has queued. */
        (void)store_flush(srv->store);
        struct strbuf b = {};
        int64_t now = time(NULL);
        _cleanup_rows_ struct db_rows kpi = {};
        (void)store_query(srv->store,
                          "SELECT (SELECT COUNT(*) FROM machines), (SELECT COUNT(*) FROM channels),"
                          " (SELECT COUNT(*) FROM releases), (SELECT COUNT(*) FROM machines WHERE last_checkin >= $1)",
                          (struct db_param[]){ DB_INT(now - 3600) }, 1, &kpi);
        char when[64];
        struct tm tm;
        time_t t = now;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);

        strbuf_puts(&b, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                        "<meta http-equiv=\"refresh\" content=\"30\"><title>Pivot fleet</title><style>");
        strbuf_puts(&b, css);
        strbuf_printf(&b, "</style></head><body><h1>Pivot fleet</h1><div class=\"sub\">pivot-server, %s store, %s</div>",
                      store_engine(srv->store), when);
        strbuf_printf(&b,
                      "<div class=\"card\"><span class=\"kpi\"><b>%lld</b>machines</span>"
                      "<span class=\"kpi\"><b>%lld</b>seen in the last hour</span>"
                      "<span class=\"kpi\"><b>%lld</b>channels</span><span class=\"kpi\"><b>%lld</b>releases</span></div>",
                      (long long)db_cell_int(&kpi, 0, 0), (long long)db_cell_int(&kpi, 0, 3),
                      (long long)db_cell_int(&kpi, 0, 1), (long long)db_cell_int(&kpi, 0, 2));
        strbuf_puts(&b, "<div class=\"row\">");
        versions_chart(srv, &b);
        rollout_chart(srv, &b);
        strbuf_puts(&b, "</div>");
        failures_chart(srv, &b, now);
        channel_table(srv, &b);
        strbuf_puts(&b, "</body></html>\n");

        return strbuf_take(&b, ret_len);
}

/* The page needs no token, and each rendering runs aggregate queries over the whole fleet,
 * which hold SQLite's connection for a while on a large one. So one request at a time renders
 * it, outside the lock, and the others take the last page meanwhile and for PAGE_REUSE_SECONDS
 * after: however many ask, the queries run at most once in that time, and no request waits for
 * another's rendering (with libmicrohttpd's thread pool, a waiting request would hold up the
 * Omaha check-ins on its thread). Only the very first requests wait for a page. The page
 * refreshes itself every 30 s. */
#define PAGE_REUSE_SECONDS 5
static pthread_mutex_t page_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t page_rendered = PTHREAD_COND_INITIALIZER;
static char *page;
static size_t page_len;
static struct timespec page_time;
static bool page_rendering;

static double seconds_since(const struct timespec *t) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (double)(now.tv_sec - t->tv_sec) + (now.tv_nsec - t->tv_nsec) / 1e9;
}

void dashboard_handle(struct server *srv, struct reply *out) {
        pthread_mutex_lock(&page_lock);
        while (!page && page_rendering)
                pthread_cond_wait(&page_rendered, &page_lock);
        if (!page_rendering && (!page || seconds_since(&page_time) >= PAGE_REUSE_SECONDS)) {
                page_rendering = true;
                pthread_mutex_unlock(&page_lock);
                size_t len;
                char *html = render(srv, &len);
                pthread_mutex_lock(&page_lock);
                if (html) {
                        free(page);
                        page = html;
                        page_len = len;
                        clock_gettime(CLOCK_MONOTONIC, &page_time);
                }
                page_rendering = false;
                pthread_cond_broadcast(&page_rendered);
        }
        char *copy = page ? malloc(page_len + 1) : NULL;
        if (copy) {
                memcpy(copy, page, page_len);
                copy[page_len] = '\0';
        }
        size_t len = page_len;
        pthread_mutex_unlock(&page_lock);
        if (!copy)
                return reply_static(out, 500, "text/plain", "out of memory\n");
        reply_set(out, 200, "text/html; charset=utf-8", copy, len);
}

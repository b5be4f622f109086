/* Reading /etc/pivot/update.conf. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "util.h"

static const char *const strategy_names[] = {
        [REBOOT_STRATEGY_REBOOT] = "reboot",
        [REBOOT_STRATEGY_OFF] = "off",
        [REBOOT_STRATEGY_WINDOW] = "window",
};

const char *reboot_strategy_name(enum reboot_strategy s) {
        return (unsigned)s < ELEMENTSOF(strategy_names) ? strategy_names[s] : "unknown";
}

static int set_string(char **field, const char *value) {
        char *s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

void config_init(struct config *c) {
        *c = (struct config){
                .reboot_strategy = REBOOT_STRATEGY_REBOOT,
                .first_check_delay = 420,
                .poll_interval = 2700,
                .poll_jitter = 300,
                .retry_interval = 60,
                .retry_max = 3600,
                .stall_timeout = 60,
                .connect_timeout = 30,
                .download_retries = 5,
                .tries = 1,
                .health_timeout = 60,
                .window = {.days = 0x7f, .start = 3 * 60, .duration = 120},
        };
        /* Failing strdup here leaves NULLs that config_load() callers notice as missing. */
        set_string(&c->channel, CONFIG_DEFAULT_CHANNEL);
        set_string(&c->app_id, CONFIG_DEFAULT_APP_ID);
        set_string(&c->board, "amd64-usr");
        set_string(&c->public_key, CONFIG_DEFAULT_PUBLIC_KEY);
        set_string(&c->state_dir, CONFIG_DEFAULT_STATE_DIR);
        set_string(&c->run_dir, CONFIG_DEFAULT_RUN_DIR);
        set_string(&c->reboot_command, "/sbin/reboot");
}

void config_done(struct config *c) {
        free(c->server);
        free(c->channel);
        free(c->app_id);
        free(c->board);
        free(c->public_key);
        free(c->ca_file);
        free(c->state_dir);
        free(c->run_dir);
        free(c->reboot_command);
        free(c->debug_pause);
        for (unsigned i = 0; i < c->n_health_checks; i++)
                free(c->health_checks[i]);
        memset(c, 0, sizeof(*c));
}

int parse_duration(const char *s, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || !isdigit((unsigned char)*s))
                return -EINVAL;
        unsigned long long mul = 1;
        if (*end) {
                switch (*end++) {
                case 's': mul = 1; break;
                case 'm': mul = 60; break;
                case 'h': mul = 3600; break;
                case 'd': mul = 86400; break;
                default: return -EINVAL;
                }
                if (*end)
                        return -EINVAL;
        }
        if (v > UINT32_MAX / mul)
                return -ERANGE;
        *ret = (unsigned)(v * mul);
        return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || !isdigit((unsigned char)*s) || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcmp(s, "1") ||
            !strcasecmp(s, "on"))
                *ret = true;
        else if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcmp(s, "0") ||
                 !strcasecmp(s, "off"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

/* 0-6 for "Sun".."Sat" or "Sunday".."Saturday" (any case); -1 for anything else. */
static int day_index(const char *s) {
        static const char *const days[] = {"sunday",   "monday", "tuesday", "wednesday",
                                           "thursday", "friday", "saturday"};
        for (int i = 0; i < 7; i++)
                if ((strlen(s) == 3 && !strncasecmp(s, days[i], 3)) || !strcasecmp(s, days[i]))
                        return i;
        return -1;
}

int parse_reboot_window(const char *s, struct reboot_window *ret) {
        struct reboot_window w = {0};
        char buf[128];
        if (strlen(s) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, s);
        char *save = NULL, *tok = strtok_r(buf, " \t", &save);
        if (!tok)
                return -EINVAL;
        if (isalpha((unsigned char)tok[0])) {
                /* Day list: "Sun", "Mon,Thu", "Mon-Fri". */
                char *dsave = NULL;
                for (char *d = strtok_r(tok, ",", &dsave); d; d = strtok_r(NULL, ",", &dsave)) {
                        char *dash = strchr(d, '-');
                        if (dash)
                                *dash = 0;
                        int from = day_index(d), to = dash ? day_index(dash + 1) : -1;
                        if (from < 0 || (dash && to < 0))
                                return -EINVAL;
                        if (!dash)
                                to = from;
                        for (int i = from;; i = (i + 1) % 7) {
                                w.days |= (uint8_t)(1u << i);
                                if (i == to)
                                        break;
                        }
                }
                tok = strtok_r(NULL, " \t", &save);
                if (!tok)
                        return -EINVAL;
        } else
                w.days = 0x7f;
        unsigned hh, mm;
        int n = 0;
        if (sscanf(tok, "%2u:%2u%n", &hh, &mm, &n) != 2 || tok[n] || hh > 23 || mm > 59)
                return -EINVAL;
        w.start = hh * 60 + mm;
        tok = strtok_r(NULL, " \t", &save);
        unsigned secs;
        if (!tok || parse_duration(tok, &secs) < 0 || secs < 60 || secs > 7 * 86400 || secs % 60)
                return -EINVAL; /* whole minutes */
        w.duration = secs / 60;
        if (strtok_r(NULL, " \t", &save))
                return -EINVAL;
        *ret = w;
        return 0;
}

long reboot_window_wait(const struct reboot_window *w, long now) {
        time_t t = (time_t)now;
        struct tm today;
        localtime_r(&t, &today);
        long best = -1;
        /* Windows that opened up to 7 days ago may still be open; else the next one. Each
         * opening is a local time turned into a moment by mktime(), so that the wait is in
         * real seconds across a change to or from daylight saving time (counted in local
         * minutes, a window at 03:00 is an hour off on those nights). */
        for (int d = -7; d <= 7; d++) {
                struct tm tm = {
                        .tm_year = today.tm_year,
                        .tm_mon = today.tm_mon,
                        .tm_mday = today.tm_mday + d,
                        .tm_hour = (int)(w->start / 60),
                        .tm_min = (int)(w->start % 60),
                        .tm_isdst = -1,
                };
                time_t open = mktime(&tm);
                if (open == (time_t)-1 || !(w->days & (1u << tm.tm_wday)))
                        continue;
                time_t close = open + (time_t)w->duration * 60;
                if (open <= t && t < close)
                        return 0;
                if (open > t && (best < 0 || open - t < best))
                        best = (long)(open - t);
        }
        return best < 0 ? 7 * 86400L : best;
}

int config_set(struct config *c, const char *key, const char *value) {
        struct {
                const char *key;
                unsigned *field;
        } durations[] = {
                {"first_check_delay", &c->first_check_delay},
                {"poll_interval", &c->poll_interval},
                {"poll_jitter", &c->poll_jitter},
                {"retry_interval", &c->retry_interval},
                {"retry_max", &c->retry_max},
                {"stall_timeout", &c->stall_timeout},
                {"connect_timeout", &c->connect_timeout},
                {"health_timeout", &c->health_timeout},
        };
        struct {
                const char *key;
                char **field;
        } strings[] = {
                {"server", &c->server},
                {"channel", &c->channel},
                {"app_id", &c->app_id},
                {"board", &c->board},
                {"public_key", &c->public_key},
                {"ca_file", &c->ca_file},
                {"state_dir", &c->state_dir},
                {"run_dir", &c->run_dir},
                {"reboot_command", &c->reboot_command},
                {"debug_pause", &c->debug_pause},
        };
        for (size_t i = 0; i < ELEMENTSOF(durations); i++)
                if (!strcmp(key, durations[i].key)) {
                        unsigned v;
                        if (parse_duration(value, &v) < 0)
                                return -EINVAL;
                        /* Intervals and time limits of 0 would mean a busy loop or none. */
                        if (v == 0 && durations[i].field != &c->first_check_delay &&
                            durations[i].field != &c->poll_jitter)
                                return -EINVAL;
                        *durations[i].field = v;
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (!strcmp(key, strings[i].key)) {
                        if (!*value && strings[i].field == &c->ca_file) {
                                free(c->ca_file);
                                c->ca_file = NULL;
                                return 0;
                        }
                        if (!*value)
                                return -EINVAL;
                        return set_string(strings[i].field, value);
                }
        if (!strcmp(key, "reboot_strategy")) {
                for (size_t i = 0; i < ELEMENTSOF(strategy_names); i++)
                        if (!strcmp(value, strategy_names[i])) {
                                c->reboot_strategy = (enum reboot_strategy)i;
                                return 0;
                        }
                return -EINVAL;
        }
        if (!strcmp(key, "reboot_window"))
                return parse_reboot_window(value, &c->window);
        if (!strcmp(key, "tries"))
                return parse_uint(value, 1, 15, &c->tries);
        if (!strcmp(key, "download_retries"))
                return parse_uint(value, 0, 1000, &c->download_retries);
        if (!strcmp(key, "allow_downgrade"))
                return parse_bool(value, &c->allow_downgrade);
        if (!strcmp(key, "health_check")) {
                if (c->n_health_checks >= CONFIG_MAX_HEALTH_CHECKS)
                        return -E2BIG;
                if (!*value)
                        return -EINVAL;
                char *s = strdup(value);
                if (!s)
                        return -ENOMEM;
                c->health_checks[c->n_health_checks++] = s;
                return 0;
        }
        return -ENOENT;
}

static char *strip(char *s) {
        while (isspace((unsigned char)*s))
                s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
                s[--n] = 0;
        return s;
}

int config_load(struct config *c, const char *path, bool must_exist) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        unsigned lineno = 0;

        if (!f) {
                if (errno == ENOENT && !must_exist)
                        return 0;
                return log_error_errno(negative_errno(), "Cannot read %s: %m", path);
        }
        while (getline(&line, &size, f) >= 0) {
                lineno++;
                char *s = strip(line);
                if (!*s || *s == '#')
                        continue;
                char *eq = strchr(s, '=');
                if (!eq)
                        return log_error_errno(-EINVAL, "%s:%u: expected \"key = value\"", path,
                                               lineno);
                *eq = 0;
                char *key = strip(s), *value = strip(eq + 1);
                /* A '#' after a space starts a comment; values may be quoted to keep
                 * surrounding spaces or such a '#'. */
                if (value[0] == '"') {
                        char *end = strchr(value + 1, '"');
                        char *rest = end ? strip(end + 1) : NULL;
                        if (!end || (*rest && *rest != '#'))
                                return log_error_errno(-EINVAL, "%s:%u: unbalanced quotes", path,
                                                       lineno);
                        *end = 0;
                        value++;
                } else {
                        for (char *p = value; *p; p++)
                                if (*p == '#' && (p == value || isspace((unsigned char)p[-1]))) {
                                        *p = 0;
                                        break;
                                }
                        value = strip(value);
                }
                int r = config_set(c, key, value);
                if (r == -ENOENT)
                        log_warning("%s:%u: unknown key \"%s\", ignored", path, lineno, key);
                else if (r == -ENOMEM)
                        return log_error_errno(r, "Out of memory");
                else if (r < 0)
                        return log_error_errno(-EINVAL, "%s:%u: bad value for %s: \"%s\"", path,
                                               lineno, key, value);
        }
        return 0;
}

/* pivot-server: the Omaha endpoint, release store, rollout policy, admin API, dashboard and
 * metrics of a Pivot fleet. See server/README.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hex.h"
#include "http.h"
#include "log.h"
#include "omaha.h"
#include "server.h"
#include "strbuf.h"
#include "util.h"

static void usage(FILE *f) {
        fprintf(f,
                "usage: pivot-server --listen ADDR:PORT --data DIR [--db postgres://...] [options]\n"
                "\n"
                "Serves Omaha update checks (POST /v1/update/), payload files (/v1/payloads/),\n"
                "the admin API (/api/v1/, bearer token), a dashboard (/) and metrics (/metrics).\n"
                "\n"
                "  --listen ADDR:PORT   address to listen on, e.g. 127.0.0.1:8080 or [::1]:8080\n"
                "  --data DIR           data directory: admin.token, payloads/, and the SQLite\n"
                "                       database when --db is not given (created if missing)\n"
                "  --db URL             use PostgreSQL (postgres://user@host:port/db) instead of\n"
                "                       SQLite; several servers may share one database\n"
                "  --public-url URL     base URL machines reach this server at, for the payload\n"
                "                       URLs it hands out (default: from the request's Host header)\n"
                "  --threads N          worker threads (default: 2 per CPU)\n"
                "  --event-retention DAYS\n"
                "                       delete the events machines reported after DAYS days\n"
                "                       (default: %d; 0: keep them whatever their age)\n"
                "  --events-per-machine N\n"
                "                       keep the N newest events of each machine, delete older\n"
                "                       ones (default: %d; 0: no limit)\n"
                "  --connections-per-ip N\n"
                "                       connections one client address may hold open at once\n"
                "                       (default: %d, of %d in all; 0: no limit, for a proxy)\n"
                "  --verbose            log debug messages\n"
                "  --help               show this help\n"
                "\n"
                "The admin token is created at first start in DIR/admin.token (mode 0600).\n"
                "Exit status: 0 after SIGTERM/SIGINT, 1 on a runtime failure (also when\n"
                "DIR/admin.token holds no token of %d to %d characters), 2 on a usage error.\n",
                EVENT_RETENTION_DAYS, EVENTS_PER_MACHINE, HTTP_CONNECTIONS_PER_IP, HTTP_MAX_CONNECTIONS,
                ADMIN_TOKEN_MIN, ADMIN_TOKEN_MAX);
}

bool safe_name(const char *s) {
        if (!s || !*s || *s == '.' || strlen(s) > 100)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '.' || *p == '_' || *p == '-' || *p == '+'))
                        return false;
        return true;
}

bool is_hex(const char *s, size_t n) {
        if (!s || strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("0123456789abcdef", s[i]))
                        return false;
        return true;
}

void app_url_name(const char *app, char *out, size_t size) {
        size_t n = 0;
        for (const char *p = app; *p && n + 1 < size; p++)
                if (*p != '{' && *p != '}')
                        out[n++] = *p;
        out[n] = 0;
}

static int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = 0;
                        if (mkdir(p, mode) < 0 && errno != EEXIST)
                                return negative_errno();
                        *s = '/';
                }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

/* Reads DIR/admin.token, or creates it (mode 0600) with 32 random bytes in hex. The token is
 * the file's text without the whitespace around it (an editor's blank line would otherwise
 * make it empty), ADMIN_TOKEN_MIN to ADMIN_TOKEN_MAX visible characters; anything else stops
 * the server rather than leave the admin API behind a guessable token. */
static int load_token(const char *dir, char token[static ADMIN_TOKEN_MAX + 1]) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/admin.token", dir) < 0)
                return -ENOMEM;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                char text[4096];
                ssize_t n = read(fd, text, sizeof(text) - 1);
                if (n < 0)
                        return log_error_errno(negative_errno(), "Cannot read %s: %m", path);
                text[n] = 0;
                const char *t = str_strip(text);
                size_t len = strlen(t);
                bool visible = true;
                for (size_t i = 0; i < len; i++)
                        visible = visible && t[i] > ' ' && t[i] < 0x7f;
                if (len < ADMIN_TOKEN_MIN || len > ADMIN_TOKEN_MAX || !visible)
                        return log_error_errno(-EINVAL,
                                               "%s holds no admin token: it needs one line of %d to %d visible"
                                               " characters (remove the file to have a new token made)",
                                               path, ADMIN_TOKEN_MIN, ADMIN_TOKEN_MAX);
                memcpy(token, t, len + 1);
                return 0;
        }
        if (errno != ENOENT)
                return log_error_errno(negative_errno(), "Cannot read %s: %m", path);

        uint8_t raw[32];
        if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
                return log_error_errno(negative_errno(), "Cannot get random bytes: %m");
        hex_encode(raw, sizeof(raw), token);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
                if (errno == EEXIST) /* another server created it just now */
                        return load_token(dir, token);
                return log_error_errno(negative_errno(), "Cannot create %s: %m", path);
        }
        char line[66];
        snprintf(line, sizeof(line), "%s\n", token);
        if (write(fd, line, 65) != 65 || fsync(fd) < 0)
                return log_error_errno(negative_errno(), "Cannot write %s: %m", path);
        log_info("created admin token in %s", path);
        return 0;
}

/* A whole decimal number in [min, max], nothing after it. */
static int parse_number(const char *s, long min, long max, long *ret) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_listen(const char *s, struct sockaddr_storage *ss) {
        char host[128];
        const char *colon;
        memset(ss, 0, sizeof(*ss));
        if (*s == '[') {
                const char *end = strchr(s, ']');
                if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
                        return -EINVAL;
                memcpy(host, s + 1, end - s - 1);
                host[end - s - 1] = 0;
                colon = end + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || (size_t)(colon - s) >= sizeof(host))
                        return -EINVAL;
                memcpy(host, s, colon - s);
                host[colon - s] = 0;
        }
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535)
                return -EINVAL;
        struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        if (!*host || !strcmp(host, "0.0.0.0")) {
                in4->sin_family = AF_INET;
                in4->sin_addr.s_addr = htonl(INADDR_ANY);
                in4->sin_port = htons(port);
        } else if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons(port);
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
        } else
                return -EINVAL;
        return 0;
}

/* A numeric option's value, min to max; false (said) when it is not one. */
static bool number_option(const char *arg, const char *option, long min, long max, long *ret) {
        if (parse_number(arg, min, max, ret) == 0)
                return true;
        log_error("%s takes a number, %ld to %ld", option, min, max);
        return false;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "listen", required_argument, NULL, 'l' },
                { "data", required_argument, NULL, 'd' },
                { "db", required_argument, NULL, 'D' },
                { "public-url", required_argument, NULL, 'u' },
                { "threads", required_argument, NULL, 't' },
                { "event-retention", required_argument, NULL, 'R' },
                { "events-per-machine", required_argument, NULL, 'E' },
                { "connections-per-ip", required_argument, NULL, 'C' },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *listen_addr = NULL, *db_url = NULL;
        static struct server srv;
        long threads = 0, retention_days = EVENT_RETENTION_DAYS, per_machine = EVENTS_PER_MACHINE,
             per_ip = HTTP_CONNECTIONS_PER_IP;
        int c, r;

        log_set_program("pivot-server");
        while ((c = getopt_long(argc, argv, "l:d:D:u:t:R:E:C:vh", opts, NULL)) >= 0) {
                switch (c) {
                case 'l': listen_addr = optarg; break;
                case 'd': srv.data_dir = optarg; break;
                case 'D': db_url = optarg; break;
                case 'u': srv.public_url = optarg; break;
                case 't':
                        if (!number_option(optarg, "--threads", 1, 256, &threads))
                                return 2;
                        break;
                case 'R':
                        if (!number_option(optarg, "--event-retention (days)", 0, 36500, &retention_days))
                                return 2;
                        break;
                case 'E':
                        if (!number_option(optarg, "--events-per-machine", 0, 100000000, &per_machine))
                                return 2;
                        break;
                case 'C':
                        if (!number_option(optarg, "--connections-per-ip", 0, HTTP_MAX_CONNECTIONS, &per_ip))
                                return 2;
                        break;
                case 'v': log_set_level(LOG_LEVEL_DEBUG); break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind < argc || !listen_addr || !srv.data_dir) {
                log_error("--listen and --data are required (see --help)");
                return 2;
        }
        if (db_url && strncmp(db_url, "postgres://", 11) != 0 && strncmp(db_url, "postgresql://", 13) != 0) {
                log_error("--db takes a postgres:// URL");
                return 2;
        }
        struct sockaddr_storage addr;
        if (parse_listen(listen_addr, &addr) < 0) {
                log_error("cannot parse --listen %s: want ADDR:PORT", listen_addr);
                return 2;
        }
        if (!threads) {
                long cpus = sysconf(_SC_NPROCESSORS_ONLN);
                threads = cpus > 0 ? 2 * cpus : 2;
        }

        r = mkdir_p(srv.data_dir, 0700);
        if (r < 0) {
                log_error_errno(r, "Cannot create data directory %s: %m", srv.data_dir);
                return 1;
        }
        if (load_token(srv.data_dir, srv.token) < 0)
                return 1;
        omaha_init();

        /* Block the signals before the first thread starts (the store starts its writers), so
         * that every thread inherits the mask and only the main thread takes them, in
         * sigwait(): a thread that did not block them would die of a second SIGTERM during
         * the shutdown, and the process with it. One that comes during the start is taken
         * once it is done. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = store_open(srv.data_dir, db_url, &srv.store);
        if (r < 0)
                return 1;
        r = payloads_init(&srv);
        if (r < 0) {
                store_close(srv.store);
                return 1;
        }
        const struct event_retention retention = {
                .max_age = (int64_t)retention_days * 86400,
                .per_machine = per_machine,
        };
        r = store_events_prune_start(srv.store, &retention);
        if (r < 0) {
                log_error_errno(r, "Cannot start pruning events: %m");
                store_close(srv.store);
                return 1;
        }

        struct MHD_Daemon *d = http_start(&srv, (struct sockaddr *)&addr, threads, per_ip);
        if (!d) {
                log_error("cannot listen on %s: %m", listen_addr);
                store_close(srv.store);
                return 1;
        }
        log_info("listening on %s (%s store, %ld threads)", listen_addr, store_engine(srv.store), threads);
        int sig = 0;
        sigwait(&mask, &sig);
        log_info("stopping on signal %d", sig);
        http_stop(d);
        store_close(srv.store);
        return 0;
}

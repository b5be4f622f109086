/* Unit tests for the updater's small modules: configuration, maintenance windows, state files,
 * command-line values, child processes, the ring of received chunks, the slot bits' write and
 * JSON strings.
 * The install engine, disks and the network are covered end to end by updater/tests/run.sh. */
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chunk-ring.h"
#include "config.h"
#include "disk.h"
#include "esp.h"
#include "json.h"
#include "reboot.h"
#include "run.h"
#include "state.h"
#include "test/test.h"
#include "util.h"

static char *tmpfile_with(const char *text) {
        char *path = strdup("/tmp/test-updater.XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
                abort();
        close(fd);
        return path;
}

TEST(config_defaults) {
        struct config c;
        config_init(&c);
        CHECK_STREQ(c.app_id, "{b9606f32-42ac-4029-aef4-20ed435e8c45}");
        CHECK_STREQ(c.channel, "stable");
        CHECK_STREQ(c.public_key, "/usr/share/pivot/update-signing.pub");
        CHECK_EQ(c.poll_interval, 2700);
        CHECK_EQ(c.first_check_delay, 420);
        CHECK_EQ(c.tries, 1);
        CHECK_EQ(c.reboot_strategy, REBOOT_STRATEGY_REBOOT);
        CHECK(c.server == NULL);
        config_done(&c);
}

TEST(config_file) {
        _cleanup_free_ char *p = tmpfile_with(
                "# a comment\n"
                "server = https://updates.example.com/v1/update/\n"
                "  channel=beta  \n"
                "poll_interval = 45m\n"
                "poll_jitter = 30\n"
                "first_check_delay = 1h\n"
                "reboot_strategy = window\n"
                "reboot_window = \"Sun 03:00 2h\"\n"
                "tries = 3\n"
                "health_check = test -e /etc/hostname\n"
                "health_check = true\n"
                "allow_downgrade = yes\n"
                "ca_file = /etc/ssl/mine.pem\n"
                "board = amd64-usr  # a comment after a value\n"
                "app_id = \"{x}  # kept\"  # dropped\n"
                "retry_interval = 2m # two minutes\n"
                "no_such_key = 1\n");
        struct config c;
        config_init(&c);
        CHECK_EQ(config_load(&c, p, true), 0);
        CHECK_STREQ(c.server, "https://updates.example.com/v1/update/");
        CHECK_STREQ(c.channel, "beta");
        CHECK_EQ(c.poll_interval, 2700);
        CHECK_EQ(c.poll_jitter, 30);
        CHECK_EQ(c.first_check_delay, 3600);
        CHECK_EQ(c.reboot_strategy, REBOOT_STRATEGY_WINDOW);
        CHECK_EQ(c.window.days, 1);
        CHECK_EQ(c.window.start, 180);
        CHECK_EQ(c.window.duration, 120);
        CHECK_EQ(c.tries, 3);
        CHECK_EQ(c.n_health_checks, 2);
        CHECK_STREQ(c.health_checks[0], "test -e /etc/hostname");
        CHECK(c.allow_downgrade);
        CHECK_STREQ(c.ca_file, "/etc/ssl/mine.pem");
        CHECK_STREQ(c.board, "amd64-usr");
        CHECK_STREQ(c.app_id, "{x}  # kept");
        CHECK_EQ(c.retry_interval, 120);
        config_done(&c);
        unlink(p);
}

TEST(config_rejects) {
        const char *bad[] = {"tries = 0\n", "tries = 16\n", "poll_interval = soon\n",
                             "reboot_strategy = sometimes\n", "reboot_window = Sun\n",
                             "no equals sign\n", "allow_downgrade = perhaps\n", "server =\n",
                             "retry_interval = 0\n", "poll_interval = 0\n",
                             "reboot_window = Sunflower 03:00 1h\n", "reboot_window = Sun 03:00 90s\n",
                             "channel = \"beta\n", "channel = \"beta\" x\n"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *p = tmpfile_with(bad[i]);
                struct config c;
                config_init(&c);
                CHECK_EQ(config_load(&c, p, true), -EINVAL);
                config_done(&c);
                unlink(p);
        }
        struct config c;
        config_init(&c);
        CHECK_EQ(config_load(&c, "/nonexistent/update.conf", false), 0);
        CHECK(config_load(&c, "/nonexistent/update.conf", true) < 0);
        config_done(&c);
}

TEST(durations) {
        unsigned v;
        CHECK_EQ(parse_duration("45m", &v), 0);
        CHECK_EQ(v, 2700);
        CHECK_EQ(parse_duration("2h", &v), 0);
        CHECK_EQ(v, 7200);
        CHECK_EQ(parse_duration("1d", &v), 0);
        CHECK_EQ(v, 86400);
        CHECK_EQ(parse_duration("17", &v), 0);
        CHECK_EQ(v, 17);
        CHECK_EQ(parse_duration("", &v), -EINVAL);
        CHECK_EQ(parse_duration("-5", &v), -EINVAL);
        CHECK_EQ(parse_duration("5x", &v), -EINVAL);
        CHECK_EQ(parse_duration("5mm", &v), -EINVAL);
        CHECK_EQ(parse_duration("99999999999d", &v), -ERANGE);
}

TEST(reboot_windows) {
        struct reboot_window w;
        CHECK_EQ(parse_reboot_window("Sun 03:00 2h", &w), 0);
        CHECK_EQ(w.days, 1);
        CHECK_EQ(parse_reboot_window("Mon,Thu 22:30 90m", &w), 0);
        CHECK_EQ(w.days, (1 << 1) | (1 << 4));
        CHECK_EQ(w.start, 22 * 60 + 30);
        CHECK_EQ(w.duration, 90);
        CHECK_EQ(parse_reboot_window("Mon-Fri 01:00 1h", &w), 0);
        CHECK_EQ(w.days, 0x3e);
        CHECK_EQ(parse_reboot_window("Fri-Mon 01:00 1h", &w), 0);
        CHECK_EQ(w.days, (1 << 5) | (1 << 6) | (1 << 0) | (1 << 1));
        CHECK_EQ(parse_reboot_window("04:15 30m", &w), 0);
        CHECK_EQ(w.days, 0x7f);
        CHECK_EQ(parse_reboot_window("Sun 25:00 1h", &w), -EINVAL);
        CHECK_EQ(parse_reboot_window("Sun 03:00", &w), -EINVAL);
        CHECK_EQ(parse_reboot_window("Sun 03:00 30s", &w), -EINVAL);
        CHECK_EQ(parse_reboot_window("Someday 03:00 1h", &w), -EINVAL);
        CHECK_EQ(parse_reboot_window("Sun 03:00 1h extra", &w), -EINVAL);

        /* Waits, in local time: build "now" from a known local date (a Sunday). */
        setenv("TZ", "UTC", 1);
        tzset();
        struct tm tm = {.tm_year = 2024 - 1900, .tm_mon = 0, .tm_mday = 7, .tm_hour = 2,
                        .tm_min = 30}; /* Sunday 2024-01-07 02:30 */
        long sunday_0230 = (long)mktime(&tm);
        CHECK_EQ(parse_reboot_window("Sun 03:00 2h", &w), 0);
        CHECK_EQ(reboot_window_wait(&w, sunday_0230), 30 * 60);
        CHECK_EQ(reboot_window_wait(&w, sunday_0230 + 3600), 0);            /* 03:30: inside */
        CHECK_EQ(reboot_window_wait(&w, sunday_0230 + 9000), 7 * 86400 - 9000 + 1800); /* 05:00 */
        CHECK_EQ(parse_reboot_window("Sat 23:00 3h", &w), 0);                 /* over midnight */
        CHECK_EQ(reboot_window_wait(&w, sunday_0230 - 2 * 3600), 0);        /* Sun 00:30 */
        CHECK_EQ(parse_reboot_window("02:00 1h", &w), 0);
        CHECK_EQ(reboot_window_wait(&w, sunday_0230), 0);
        CHECK_EQ(reboot_window_wait(&w, sunday_0230 + 3600), 86400 - 3600 - 1800);

        /* Nights when the clocks change: the wait is in real seconds. Counted in local
         * minutes, it comes out an hour off, and a one-hour window is missed or entered an
         * hour early. Europe/Berlin: 2024-03-31 02:00 CET becomes 03:00 CEST; 2024-10-27
         * 03:00 CEST becomes 02:00 CET. */
        setenv("TZ", "Europe/Berlin", 1);
        tzset();
        CHECK_EQ(parse_reboot_window("Sun 03:00 1h", &w), 0);
        long spring_0100 = 1711843200; /* 2024-03-31 00:00 UTC = 01:00 CET */
        CHECK_EQ(reboot_window_wait(&w, spring_0100), 3600);
        CHECK_EQ(reboot_window_wait(&w, spring_0100 + 3600), 0); /* 03:00 CEST */
        CHECK_EQ(reboot_window_wait(&w, spring_0100 + 7200), 7 * 86400 - 3600); /* 04:00 CEST */
        long autumn_0100 = 1729983600; /* 2024-10-26 23:00 UTC = 01:00 CEST */
        CHECK_EQ(reboot_window_wait(&w, autumn_0100), 3 * 3600);
        CHECK_EQ(reboot_window_wait(&w, autumn_0100 + 2 * 3600), 3600); /* 02:00 CET */
        CHECK_EQ(reboot_window_wait(&w, autumn_0100 + 3 * 3600), 0);    /* 03:00 CET */
        setenv("TZ", "UTC", 1);
        tzset();
}

/* The daemon asks again when it wakes: a clock stepped past the window since it went to
 * sleep means the next window, not a reboot now. */
TEST(reboot_waits) {
        setenv("TZ", "UTC", 1);
        tzset();
        struct config c;
        config_init(&c);
        c.reboot_strategy = REBOOT_STRATEGY_WINDOW;
        CHECK_EQ(parse_reboot_window("Sun 03:00 2h", &c.window), 0);
        const struct reboot_strategy_ops *s = reboot_strategy_get(c.reboot_strategy);
        time_t sunday_0100 = 1704589200; /* 2024-01-07 01:00 UTC, a Sunday */
        CHECK_EQ(reboot_wait(s, &c, sunday_0100, 0), 2 * 3600);
        /* Asleep until 03:00, but the clock was stepped to 06:00 meanwhile. */
        CHECK_EQ(reboot_wait(s, &c, sunday_0100 + 5 * 3600, 0), 7 * 86400 - 3 * 3600);
        CHECK_EQ(reboot_wait(s, &c, sunday_0100 + 2 * 3600, 0), 0);
        /* A retry after a busy lock waits for its time, also inside the window. */
        CHECK_EQ(reboot_wait(s, &c, sunday_0100 + 2 * 3600, 60), 60);
        /* A retry due before the window opens waits for the window. */
        CHECK_EQ(reboot_wait(s, &c, sunday_0100, 60), 2 * 3600);
        CHECK(reboot_wait(reboot_strategy_get(REBOOT_STRATEGY_OFF), &c, sunday_0100, 0) < 0);
        CHECK(reboot_wait(reboot_strategy_get(REBOOT_STRATEGY_OFF), &c, sunday_0100, 60) < 0);
        CHECK_EQ(reboot_wait(reboot_strategy_get(REBOOT_STRATEGY_REBOOT), &c, sunday_0100, 60), 60);
        CHECK_EQ(reboot_wait(reboot_strategy_get(REBOOT_STRATEGY_REBOOT), &c, sunday_0100, 0), 0);
        config_done(&c);
}

TEST(reboot_strategies) {
        struct config c;
        config_init(&c);
        CHECK_EQ(reboot_strategy_get(REBOOT_STRATEGY_REBOOT)->delay(&c, time(NULL)), 0);
        CHECK(reboot_strategy_get(REBOOT_STRATEGY_OFF)->delay(&c, time(NULL)) < 0);
        CHECK(reboot_strategy_get(REBOOT_STRATEGY_WINDOW)->delay(&c, time(NULL)) >= 0);
        CHECK_STREQ(reboot_strategy_get(REBOOT_STRATEGY_WINDOW)->name, "window");
        CHECK_EQ(reboot_lock_get(&c)->acquire(&c), 0);
        config_done(&c);
}

TEST(state_files) {
        char dir[] = "/tmp/test-updater-state.XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        char path[256];
        snprintf(path, sizeof(path), "%s/sub/dir/state", dir);
        char sub[256];
        snprintf(sub, sizeof(sub), "%s/sub/dir", dir);
        CHECK_EQ(mkdir_p(sub, true), 0);
        struct stat st;
        CHECK(stat(sub, &st) == 0 && (st.st_mode & 0777) == 0700);

        struct kv kv;
        CHECK_EQ(kv_load(&kv, path), 0); /* missing: empty */
        CHECK_EQ(kv.n, 0);
        CHECK_EQ(kv_set(&kv, "pending_slot", "B"), 0);
        CHECK_EQ(kv_set(&kv, "pending_version", "1.2.3"), 0);
        CHECK_EQ(kv_set(&kv, "pending_slot", "A"), 0);
        CHECK_EQ(kv_set(&kv, "bad\nkey", "x"), -EINVAL);
        CHECK_EQ(kv_save(&kv, path), 0);
        kv_done(&kv);
        CHECK_EQ(kv_load(&kv, path), 0);
        CHECK_STREQ(kv_get(&kv, "pending_slot"), "A");
        CHECK_STREQ(kv_get(&kv, "pending_version"), "1.2.3");
        CHECK_EQ(kv_set(&kv, "pending_slot", NULL), 0);
        CHECK(kv_get(&kv, "pending_slot") == NULL);
        CHECK_STREQ(kv_get(&kv, "pending_version"), "1.2.3");
        /* A newline in a value, new or replacing one, would make a line of its own. */
        CHECK_EQ(kv_set(&kv, "last_result", "x\npid=1"), -EINVAL);
        CHECK_EQ(kv_set(&kv, "pending_version", "x\npid=1"), -EINVAL);
        CHECK_STREQ(kv_get(&kv, "pending_version"), "1.2.3");
        kv_done(&kv);

        /* A file with more keys than are kept is an error, not a state missing some (saved
         * again, it would lose them). */
        {
                _cleanup_fclose_ FILE *f = fopen(path, "we");
                for (int i = 0; f && i <= STATE_MAX_KEYS; i++)
                        fprintf(f, "key%d=%d\n", i, i);
        }
        CHECK_EQ(kv_load(&kv, path), -E2BIG);
        CHECK_EQ(kv.n, 0);

        /* kv_lock: another process cannot take the lock while it is held, and can after. */
        int fd = kv_lock(path);
        CHECK(fd >= 0);
        char lock[300];
        snprintf(lock, sizeof(lock), "%s.lock", path);
        int other = open(lock, O_RDWR | O_CLOEXEC);
        CHECK(other >= 0);
        CHECK(flock(other, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK);
        close(fd);
        CHECK_EQ(flock(other, LOCK_EX | LOCK_NB), 0);
        close(other);

        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        CHECK_EQ(system(cmd), 0);
}

TEST(cmdline_values) {
        _cleanup_free_ char *a = cmdline_value("ro pivot.version=1.2.3 quiet", "pivot.version");
        _cleanup_free_ char *b = cmdline_value("pivot.version=9 pivot.slot=B\n", "pivot.slot");
        _cleanup_free_ char *c = cmdline_value("xpivot.slot=A", "pivot.slot");
        _cleanup_free_ char *d = cmdline_value("pivot.root=PARTUUID=abc", "pivot.root");
        CHECK_STREQ(a, "1.2.3");
        CHECK_STREQ(b, "B");
        CHECK(c == NULL);
        CHECK_STREQ(d, "PARTUUID=abc");
        /* The last one counts, as in the initramfs: the selector appends the real values after
         * the slot's own command line, which may carry others. */
        _cleanup_free_ char *e = cmdline_value("ro pivot.slot=A quiet pivot.slot=B pivot.root=x",
                                               "pivot.slot");
        CHECK_STREQ(e, "B");
}

struct slow_reader {
        size_t taken, letters;
        long pause_ms;
};

static int slow_reader(void *userdata, const void *p, size_t n) {
        struct slow_reader *s = userdata;
        s->taken += n;
        for (size_t i = 0; i < n; i++)
                s->letters += ((const char *)p)[i] == 'a';
        struct timespec ts = {.tv_nsec = s->pause_ms * 1000000L};
        nanosleep(&ts, NULL);
        return 0;
}

TEST(child_processes) {
        char *out = NULL, *err = NULL;
        size_t len = 0;
        char *echo[] = {"sh", "-c", "printf hello; printf oops >&2; exit 3", NULL};
        CHECK_EQ(run_program(echo, 100, &out, &len, &err, 10), 3);
        CHECK_STREQ(out, "hello");
        CHECK_EQ(len, 5);
        CHECK_STREQ(err, "oops");
        free(out), free(err);
        char *big[] = {"sh", "-c", "head -c 100000 /dev/zero", NULL};
        CHECK_EQ(run_program(big, 10, &out, &len, NULL, 10), 0);
        CHECK_EQ(len, 10); /* kept at most max_out */
        free(out);
        char *missing[] = {"/nonexistent/program", NULL};
        CHECK_EQ(run_program(missing, 0, NULL, NULL, NULL, 10), -ENOENT);
        CHECK_EQ(run_shell("sleep 5", NULL, 1), -ETIMEDOUT);
        /* The limit holds when the child closes its output and goes on, and it ends what the
         * child started. */
        long t0 = (long)time(NULL);
        CHECK_EQ(run_shell("exec >/dev/null 2>&1; sleep 5", NULL, 1), -ETIMEDOUT);
        CHECK_EQ(run_shell("sleep 5 >/dev/null 2>&1 & wait", NULL, 1), -ETIMEDOUT);
        CHECK((long)time(NULL) - t0 <= 4);
        CHECK_EQ(run_shell("exit 0", NULL, 0), 0);
        /* A child that leaves something in the background holding its output (a daemon it
         * started) has still finished: its exit status counts, not a time-out. */
        char *bg[] = {"sh", "-c", "printf started; sleep 4 & exit 0", NULL};
        CHECK_EQ(run_program(bg, 100, &out, &len, NULL, 2), 0);
        CHECK_STREQ(out, "started");
        free(out);
        CHECK_EQ(run_shell("sleep 4 & exit 5", NULL, 2), 5);
        /* ... and so has one whose background process keeps writing faster than the output
         * is taken: it is read for a moment, not for as long as it writes. */
        t0 = (long)time(NULL);
        char *chatty[] = {"sh", "-c", "cat /dev/zero & sleep 0.2; exit 7", NULL};
        struct slow_reader sr = {.pause_ms = 2};
        CHECK_EQ(run_program_stream(chatty, slow_reader, &sr, NULL, 0), 7);
        CHECK(sr.taken > 0);
        CHECK((long)time(NULL) - t0 <= 3);
        /* Yet all of the child's own output is read, however slowly it is taken: what the pipe
         * held when the child exited (here up to 64 KiB of its 100,000 letters, read at 100 ms
         * a piece), not what a time allows. */
        char *last_words[] = {"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a; "
                              "cat /dev/zero & exit 0", NULL};
        sr = (struct slow_reader){.pause_ms = 100};
        CHECK_EQ(run_program_stream(last_words, slow_reader, &sr, NULL, 0), 0);
        CHECK_EQ(sr.letters, 100000);
        /* Children get SIGPIPE's default back (the agent ignores it for itself). */
        char *pipe_state[] = {"sed", "-n", "s/^SigIgn:\t//p", "/proc/self/status", NULL};
        signal(SIGPIPE, SIG_IGN);
        CHECK_EQ(run_program(pipe_state, 100, &out, &len, NULL, 10), 0);
        unsigned long long ignored = out ? strtoull(out, NULL, 16) : ~0ull;
        CHECK(!(ignored & (1ull << (SIGPIPE - 1))));
        free(out);
        signal(SIGPIPE, SIG_DFL);
}

TEST(chunk_ring_basics) {
        struct chunk_ring r;
        chunk_ring_init(&r, 100);
        CHECK_EQ(chunk_ring_reserve(&r, 0), -1);
        CHECK_EQ(chunk_ring_reserve(&r, 101), -1);
        int a = chunk_ring_reserve(&r, 60);
        CHECK(a >= 0);
        CHECK_EQ(chunk_ring_offset(&r, a), 0);
        int b = chunk_ring_reserve(&r, 30);
        CHECK(b >= 0);
        CHECK_EQ(chunk_ring_offset(&r, b), 60);
        CHECK_EQ(chunk_ring_reserve(&r, 20), -1); /* 10 left at the end, 0 at the start */
        chunk_ring_release(&r, b);                /* not the oldest: no room back yet */
        CHECK_EQ(chunk_ring_reserve(&r, 20), -1);
        chunk_ring_release(&r, a); /* both gone: the ring starts over */
        int c = chunk_ring_reserve(&r, 100);
        CHECK(c >= 0);
        CHECK_EQ(chunk_ring_offset(&r, c), 0);
        chunk_ring_unreserve(&r);
        int d = chunk_ring_reserve(&r, 70);
        CHECK_EQ(chunk_ring_offset(&r, d), 0);
        int e = chunk_ring_reserve(&r, 25); /* 70..95 */
        chunk_ring_release(&r, d);
        int f = chunk_ring_reserve(&r, 50); /* does not fit before the end: wraps to 0 */
        CHECK(f >= 0);
        CHECK_EQ(chunk_ring_offset(&r, f), 0);
        CHECK_EQ(chunk_ring_reserve(&r, 21), -1); /* 50..70 is free, but not 21 bytes */
        int g = chunk_ring_reserve(&r, 19);
        CHECK_EQ(chunk_ring_offset(&r, g), 50);
        (void)e;
}

/* Random arrivals, out-of-order releases and broken-off transfers against a model: the room of
 * every entry not yet given back (in order of arrival) lies inside the ring and overlaps no
 * other, an empty ring always has room, and at most CHUNK_RING_MAX entries are out. */
TEST(chunk_ring_random) {
        enum { SIZE = 1000, STEPS = 200000 };
        struct chunk_ring r;
        struct {
                int idx;
                size_t off, len;
                bool released;
        } model[CHUNK_RING_MAX];
        unsigned n = 0; /* entries holding room, oldest first */
        unsigned seed = 12345, failures = 0, wraps = 0;
        chunk_ring_init(&r, SIZE);
        for (unsigned step = 0; step < STEPS && failures < 10; step++) {
                seed = seed * 1103515245u + 12345u;
                unsigned op = (seed >> 16) % 10;
                if (op < 5) { /* a chunk arrives */
                        size_t len = 1 + (seed >> 4) % (SIZE / 2);
                        int idx = chunk_ring_reserve(&r, len);
                        if (n == 0 && idx < 0) {
                                test_fail(__FILE__, __LINE__, "an empty ring had no room");
                                failures++;
                        }
                        if (idx < 0)
                                continue;
                        if (n == CHUNK_RING_MAX) {
                                test_fail(__FILE__, __LINE__, "more than CHUNK_RING_MAX entries");
                                failures++;
                                continue;
                        }
                        size_t off = chunk_ring_offset(&r, idx);
                        if (n > 0 && off < model[n - 1].off)
                                wraps++;
                        model[n].idx = idx, model[n].off = off, model[n].len = len;
                        model[n].released = false;
                        n++;
                } else if (op < 9) { /* a worker is done with one of them */
                        unsigned live = 0, pick;
                        for (unsigned i = 0; i < n; i++)
                                live += !model[i].released;
                        if (live == 0)
                                continue;
                        pick = (seed >> 8) % live;
                        for (unsigned i = 0; i < n; i++)
                                if (!model[i].released && pick-- == 0) {
                                        chunk_ring_release(&r, model[i].idx);
                                        model[i].released = true;
                                        break;
                                }
                        while (n > 0 && model[0].released) { /* room comes back in order */
                                memmove(&model[0], &model[1], (n - 1) * sizeof(model[0]));
                                n--;
                        }
                } else if (n > 0 && !model[n - 1].released) { /* a transfer breaks off */
                        chunk_ring_unreserve(&r);
                        n--;
                }
                for (unsigned i = 0; i < n; i++) {
                        if (model[i].off + model[i].len > SIZE) {
                                test_fail(__FILE__, __LINE__, "step %u: entry past the end", step);
                                failures++;
                        }
                        for (unsigned j = i + 1; j < n; j++)
                                if (model[i].off < model[j].off + model[j].len &&
                                    model[j].off < model[i].off + model[i].len) {
                                        test_fail(__FILE__, __LINE__, "step %u: entries overlap",
                                                  step);
                                        failures++;
                                }
                }
        }
        CHECK(wraps > 1000); /* the test did go round */
}

/* The slot bits are written by partition number, read earlier. If the table was rewritten in
 * between (here: partition 2 is now another partition), nothing is written. */
TEST(disk_table_changed_meanwhile) {
        char path[] = "/tmp/test-updater-disk.XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0 && ftruncate(fd, 8 << 20) == 0);
        close(fd);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "sfdisk -q %s >/dev/null 2>&1 <<'EOF'\n"
                 "label: gpt\n"
                 "size=4096, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=ROOT-A, attrs=\"GUID:49,56\"\n"
                 "size=4096, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=ROOT-B, attrs=\"GUID:48,56\"\n"
                 "EOF\n", path);
        CHECK_EQ(system(cmd), 0);

        _cleanup_(disk_freep) struct disk *d = NULL;
        CHECK_EQ(disk_open(path, &d), 0);
        if (!d) {
                unlink(path);
                return;
        }
        CHECK_EQ(d->n_slots, 2);
        struct disk_slot_update u = {.slot = 1, .priority = 3, .tries = 1, .successful = false};
        CHECK_EQ(disk_update_slots(d, &u, 1), 0);
        CHECK_EQ(d->slots[1].priority, 3);

        snprintf(cmd, sizeof(cmd), "sfdisk -q --part-uuid %s 2 "
                 "0b5c4e1a-6a43-4d54-9c55-7d3b8a1e2f00 >/dev/null 2>&1", path);
        CHECK_EQ(system(cmd), 0);
        u.priority = 0;
        CHECK_EQ(disk_update_slots(d, &u, 1), -ESTALE);
        _cleanup_(disk_freep) struct disk *now = NULL;
        CHECK_EQ(disk_open(path, &now), 0);
        CHECK(now && now->slots[1].priority == 3); /* untouched */
        /* Read again, the same write goes through. */
        CHECK_EQ(disk_reload(d), 0);
        CHECK_EQ(disk_update_slots(d, &u, 1), 0);
        CHECK_EQ(d->slots[1].priority, 0);

        /* A table refused halfway through (slots whose names differ only in case) leaves the
         * copy as it was, not emptied. */
        snprintf(cmd, sizeof(cmd), "sfdisk -q --part-label %s 2 ROOT-a >/dev/null 2>&1", path);
        CHECK_EQ(system(cmd), 0);
        CHECK_EQ(disk_reload(d), -ENOTUNIQ);
        CHECK_EQ(d->n_slots, 2);
        CHECK_STREQ(d->slots[1].name, "B");
        unlink(path);
}

static char *json_of(const char *s) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                abort();
        json_string(f, s);
        fclose(f);
        return buf;
}

/* status --json prints versions and paths read from a disk image: whatever bytes they hold,
 * the output is JSON (valid UTF-8, escaped). */
TEST(json_strings) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                {"1.2.3", "\"1.2.3\""},
                {"a\"b\\c\n\x7f", "\"a\\\"b\\\\c\\u000a\\u007f\""},
                {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},
                {"\xff", "\"\\ufffd\""},                  /* never UTF-8 */
                {"x\xc3", "\"x\\ufffd\""},                /* cut short by the end */
                {"\xc3(", "\"\\ufffd(\""},                /* cut short by ASCII */
                {"\xc0\xaf", "\"\\ufffd\\ufffd\""},        /* overlong '/' */
                {"\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\""}, /* overlong, three bytes */
                {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""}, /* a surrogate */
                {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* above U+10FFFF */
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                _cleanup_free_ char *got = json_of(cases[i].in);
                CHECK_STREQ(got, cases[i].out);
        }
        _cleanup_free_ char *null = json_of(NULL);
        CHECK_STREQ(null, "null");
}

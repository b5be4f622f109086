/* pivot-agent: the update daemon. Started by init as root; logs to stderr.
 *
 * After boot: works out whether an update just came up (or rolled back), runs the health
 * checks and marks the running slot good. Then checks the Omaha server a few minutes after
 * start and every poll interval after that (with random jitter, and exponential back-off after
 * errors); installs what is offered into the passive slot and reboots as the reboot strategy
 * says. `--once` does one check-and-install cycle and exits. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "log.h"
#include "slot-policy.h"
#include "reboot.h"
#include "state.h"
#include "update.h"
#include "util.h"

/* Exit codes. */
#define EXIT_INSTALLED 0  /* --once: an update was installed (and the slots switched) */
#define EXIT_ERROR 1      /* anything failed: see the message */
#define EXIT_USAGE 2
#define EXIT_NO_UPDATE 3  /* --once: the server has nothing newer */
#define EXIT_DEFERRED 4   /* --once: an update is offered but not installed now (see the log) */

static volatile sig_atomic_t stop;
static volatile int cancel;

static void on_signal(int sig) {
        stop = 1;
        cancel = 1;
}

static void usage(FILE *f) {
        fputs("usage: pivot-agent [OPTIONS]\n"
              "\n"
              "The Pivot update agent: Omaha checks, signed payloads into the passive slot, GPT\n"
              "flip, reboot, and marking the new slot good once it is healthy.\n"
              "\n"
              "  --once               one check-and-install cycle, then exit (see exit status)\n"
              "  --config FILE        configuration (default /etc/pivot/update.conf)\n"
              "  --server URL         update server (overrides server =)\n"
              "  --channel NAME       channel (overrides channel =)\n"
              "  --disk FILE          work on a disk image file instead of this machine\n"
              "  --booted-slot NAME   with --disk: the slot to treat as running\n"
              "  --boot-id ID         with --disk: an id for this boot (reboot stories in tests)\n"
              "  --key FILE           trusted public key (default public_key =)\n"
              "  --state-dir DIR      state directory (default /var/lib/pivot)\n"
              "  --allow-downgrade    accept versions older than the running one\n"
              "  --no-mark-good       do not mark the running slot good at start\n"
              "  -q, --quiet          no download progress lines\n"
              "  -v, --verbose        debug messages\n"
              "  -h, --help           this text\n"
              "\n"
              "Exit status (--once): 0 an update was installed; 3 no update; 4 an update waits for\n"
              "a later check (the log says why); 1 error (the message says which); 2 usage. The\n"
              "daemon exits 0 on SIGTERM, 1 if it cannot start.\n",
              f);
}

/* At exit, with --verbose: the peak memory, own (anonymous) and shared-library pages. */
static void log_memory(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
        char line[128], out[256] = "";
        while (f && fgets(line, sizeof(line), f))
                if (!strncmp(line, "VmHWM:", 6) || !strncmp(line, "RssAnon:", 8) ||
                    !strncmp(line, "RssFile:", 8)) {
                        line[strcspn(line, "\n")] = 0;
                        strncat(out, line, sizeof(out) - strlen(out) - 2);
                        strcat(out, " ");
                }
        log_debug("memory: %s", out);
}

static unsigned random_below(unsigned n) {
        unsigned v = 0;
        if (n == 0)
                return 0;
        if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
                v = (unsigned)rand();
        return v % n;
}

/* base ± jitter seconds, the jitter at most half of base: a jitter as large as the interval
 * (poll_interval = 60 built into an image, poll_jitter left at 5m) would make some waits
 * nothing at all. Never below 1. */
static long jittered(unsigned base, unsigned jitter) {
        long d = (long)base;
        if (jitter > base / 2)
                jitter = base / 2;
        if (jitter)
                d += (long)random_below(2 * jitter + 1) - (long)jitter;
        return d < 1 ? 1 : d;
}

/* Sleeps up to `secs`, waking early on SIGTERM. */
static void sleep_for(long secs) {
        for (long i = 0; i < secs * 10 && !stop; i++) {
                struct timespec ts = {.tv_nsec = 100 * 1000000L};
                nanosleep(&ts, NULL);
        }
}

static unsigned long monotonic_seconds(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (unsigned long)ts.tv_sec;
}

/* Seconds until a time taken from monotonic_seconds() (0 for none, or past). */
static long retry_in(unsigned long at) {
        unsigned long now = monotonic_seconds();
        return at > now ? (long)(at - now) : 0;
}

/* Takes the reboot lock and reboots (updater_reboot()'s result). A lock busy is -EAGAIN. A
 * reboot that failed gives the lock back: the rest of the fleet is not held up while this
 * machine tries again. */
static int reboot_with_lock(struct updater *u, const struct reboot_lock_ops *lock,
                            const char *reason) {
        int r = lock->acquire(&u->cfg);
        if (r < 0)
                return r;
        r = updater_reboot(u, reason);
        if (r != 0) /* failed, or not this machine's reboot */
                (void)lock->release(&u->cfg);
        return r;
}

/* Once the running slot is known to be good (marked by the agent or by pivotctl), a reboot
 * lock this machine took before its reboot goes back, so that the next machine may go. Once
 * per run, as a coordinated lock's client does at each start. */
static void release_reboot_lock_when_good(struct updater *u, const struct reboot_lock_ops *lock,
                                          bool *released) {
        const struct target *t = u->target;
        if (*released || !t->booted_runs || !target_running_slot(t)->successful ||
            updater_reboot_pending(u))
                return;
        int r = lock->release(&u->cfg);
        if (r < 0)
                log_warning("Cannot release the reboot lock (%s): %s", lock->name, strerror(-r));
        else
                *released = true;
}

/* An update that never got healthy: reboot, which spends its tries and falls back to the old
 * slot. The daemon tries again every retry_interval until it is stopped (a reboot command
 * that failed, or one that returned and the machine did not go down): left running, the
 * broken update would stay. --once tries once, and fails either way: the system is not
 * healthy, and nothing else is done. */
static int fall_back(struct updater *u, bool once) {
        struct target *t = u->target;
        updater_set_status(u, "unhealthy", NULL);
        for (;;) {
                int r = updater_reboot(u, "unhealthy after an update: fall back");
                /* r > 0: offline, and this machine is not the one to reboot. */
                if (once || r > 0)
                        return r < 0 ? r : -EHOSTDOWN;
                sleep_for(u->cfg.retry_interval);
                if (stop)
                        return -ECANCELED;
                /* Marked good meanwhile (pivotctl mark-good --force): nothing to fall back
                 * from. */
                if (target_reload(t) == 0 && target_running_slot(t)->successful) {
                        log_info("Slot %s was marked successful; not rebooting",
                                 target_slot_name(t, t->booted));
                        return 0;
                }
                log_warning(r < 0 ? "Trying the reboot again"
                                  : "Still running after the reboot was asked for; asking again");
        }
}

/* After boot: report an update that came up or rolled back, and mark the running slot good
 * once healthy. A system that never gets healthy is rebooted (fall_back()). */
static int boot_checks(struct updater *u, bool mark_good, bool once) {
        enum boot_outcome out = updater_boot_outcome(u);
        struct target *t = u->target;

        if (out == BOOT_WAITING_REBOOT) {
                /* Not booted yet: nothing to mark (offline, the "running" slot may even be the
                 * new one). */
                log_info("An installed update waits for a reboot");
                return 0;
        }
        if (!mark_good)
                return 0;
        /* Offline without --booted-slot, the "running" slot is only the one that boots next:
         * it never booted, and marking it good would take away its fallback (a kernel that
         * panics would then be chosen at every boot). */
        if (!t->booted_runs)
                return 0;
        if (target_running_slot(t)->successful && out != BOOT_NEW_VERSION)
                return 0;
        updater_set_status(u, "health-check", NULL);
        /* The time the checks themselves take counts: a check that hangs until its own time
         * limit must not stretch the whole wait to many times health_timeout. */
        unsigned long start = monotonic_seconds(), waited;
        unsigned step = 5;
        for (;;) {
                int r = updater_health_check(u);
                /* A rollback chosen by hand while the checks ran stands: marked good, the
                 * update would be reported a success. */
                if (r == 0 && target_rolled_back_by_hand(t)) {
                        log_warning("Another slot was chosen to boot next during the health checks "
                                    "(pivotctl rollback): slot %s is not marked good",
                                    target_running_slot(t)->name);
                        return 0;
                }
                if (r == 0)
                        return updater_mark_good(u, false);
                if (stop)
                        return -ECANCELED;
                waited = monotonic_seconds() - start;
                if (waited >= u->cfg.health_timeout) {
                        log_error("The system is not healthy after %lus: slot %s is not marked good",
                                  waited, target_running_slot(t)->name);
                        /* A slot already successful has nothing to fall back from. */
                        return target_running_slot(t)->successful ? r : fall_back(u, once);
                }
                sleep_for(u->cfg.health_timeout - waited < step ? u->cfg.health_timeout - waited : step);
        }
}

int main(int argc, char **argv) {
        enum { O_ONCE = 0x100, O_CONFIG, O_SERVER, O_CHANNEL, O_DISK, O_BOOTED, O_BOOT_ID, O_KEY,
               O_STATE, O_DOWNGRADE, O_NO_MARK };
        static const struct option opts[] = {
                {"once", no_argument, NULL, O_ONCE},
                {"config", required_argument, NULL, O_CONFIG},
                {"server", required_argument, NULL, O_SERVER},
                {"channel", required_argument, NULL, O_CHANNEL},
                {"disk", required_argument, NULL, O_DISK},
                {"booted-slot", required_argument, NULL, O_BOOTED},
                {"boot-id", required_argument, NULL, O_BOOT_ID},
                {"key", required_argument, NULL, O_KEY},
                {"state-dir", required_argument, NULL, O_STATE},
                {"allow-downgrade", no_argument, NULL, O_DOWNGRADE},
                {"no-mark-good", no_argument, NULL, O_NO_MARK},
                {"quiet", no_argument, NULL, 'q'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        struct updater_options o = {0};
        bool once = false, mark_good = true;
        int c, r;

        log_set_program("pivot-agent");
        while ((c = getopt_long(argc, argv, "qvh", opts, NULL)) >= 0) {
                switch (c) {
                case O_ONCE: once = true; break;
                case O_CONFIG: o.config_path = optarg; break;
                case O_SERVER: o.server = optarg; break;
                case O_CHANNEL: o.channel = optarg; break;
                case O_DISK: o.disk = optarg; break;
                case O_BOOTED: o.booted_slot = optarg; break;
                case O_BOOT_ID: o.boot_id = optarg; break;
                case O_KEY: o.key_path = optarg; break;
                case O_STATE: o.state_dir = optarg; break;
                case O_DOWNGRADE: o.allow_downgrade = true; break;
                case O_NO_MARK: mark_good = false; break;
                case 'q': o.quiet = true; break;
                case 'v': log_set_level(LOG_LEVEL_DEBUG); break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind != argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        struct sigaction sa = {.sa_handler = on_signal};
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        atexit(log_memory);

        _cleanup_(updater_freep) struct updater *u = NULL;
        r = updater_open(&o, &u);
        if (r < 0)
                return EXIT_ERROR;
        u->is_agent = true;
        /* The daemon's stderr is a log (the console, a journal): progress goes as whole lines,
         * never redrawn in place with carriage returns. */
        u->progress_tty = false;
        u->cancel = &cancel;
        if (!u->offline)
                mkdir_p(u->cfg.run_dir, false);
        updater_set_status(u, "starting", NULL);
        log_info("running %s in slot %s of %s; server %s, channel %s, reboot strategy %s",
                 u->target->running_version, target_slot_name(u->target, u->target->booted),
                 u->target->disk->path, u->cfg.server ? u->cfg.server : "(none)", u->cfg.channel,
                 reboot_strategy_name(u->cfg.reboot_strategy));

        const struct reboot_strategy_ops *strategy = reboot_strategy_get(u->cfg.reboot_strategy);
        const struct reboot_lock_ops *lock = reboot_lock_get(&u->cfg);

        bool lock_released = false;
        r = boot_checks(u, mark_good, once);
        if (r < 0 && once)
                return EXIT_ERROR;
        release_reboot_lock_when_good(u, lock, &lock_released);

        if (once) {
                struct check_result res;
                r = updater_check(u, true, false, &res);
                if (r < 0) {
                        updater_set_status(u, "error", NULL);
                        return EXIT_ERROR;
                }
                if (r == 0) {
                        updater_set_status(u, "idle", NULL);
                        return res.deferred ? EXIT_DEFERRED : EXIT_NO_UPDATE;
                }
                if (strategy->delay(&u->cfg, time(NULL)) == 0)
                        (void)reboot_with_lock(u, lock, "update installed (reboot_strategy = reboot)");
                return EXIT_INSTALLED;
        }

        long delay = jittered(u->cfg.first_check_delay, u->cfg.poll_jitter);
        unsigned backoff = 0;
        /* After a busy reboot lock or a failed reboot command: when to try again, on the
         * monotonic clock (0: no retry due). */
        unsigned long reboot_retry_at = 0;
        while (!stop) { /* a SIGTERM during the boot checks: a shutdown, not a reboot */
                char next[32];
                snprintf(next, sizeof(next), "%lld", (long long)(time(NULL) + delay));
                {
                        struct kv kv;
                        if (kv_load(&kv, u->status_path) == 0) {
                                kv_set(&kv, "next_check", next);
                                kv_save(&kv, u->status_path);
                                kv_done(&kv);
                        }
                }
                /* pivotctl may have installed an update, or sent a report, meanwhile. */
                updater_reload_state(u);
                bool reboot_waits = false;
                if (updater_reboot_pending(u)) {
                        long until = reboot_wait(strategy, &u->cfg, time(NULL),
                                                 retry_in(reboot_retry_at));
                        if (until == 0) {
                                (void)reboot_with_lock(u, lock, "update installed");
                                /* Still here: the lock is busy, or the reboot failed. */
                                reboot_retry_at = monotonic_seconds() + u->cfg.retry_interval;
                                until = (long)u->cfg.retry_interval;
                        }
                        if (until < 0)
                                updater_set_status(u, "reboot-needed", "waiting for pivotctl reboot");
                        else {
                                reboot_waits = true;
                                if (until < delay)
                                        delay = until;
                        }
                }
                sleep_for(delay);
                if (stop)
                        break;
                if (reboot_waits &&
                    reboot_wait(strategy, &u->cfg, time(NULL), retry_in(reboot_retry_at)) == 0)
                        continue;

                struct check_result res;
                r = updater_check(u, true, false, &res);
                if (stop)
                        break;
                /* A refusal of ours (an older version offered) is no error of the server's or
                 * the network's: trying again sooner would only get the same offer. */
                if (r < 0 && !res.refused) {
                        if (!backoff)
                                backoff = u->cfg.retry_interval;
                        else /* doubled; a huge retry_max must not make it wrap */
                                backoff = backoff > u->cfg.retry_max / 2 ? u->cfg.retry_max : backoff * 2;
                        if (backoff > u->cfg.retry_max)
                                backoff = u->cfg.retry_max;
                        delay = jittered(backoff, backoff / 4);
                        log_info("Next check in %lds (backing off after an error)", delay);
                        updater_set_status(u, "error", NULL);
                        continue;
                }
                backoff = 0;
                release_reboot_lock_when_good(u, lock, &lock_released);
                delay = jittered(u->cfg.poll_interval, u->cfg.poll_jitter);
                if (r == 1 && !updater_reboot_pending(u))
                        continue;
                if (r == 0 && !updater_reboot_pending(u))
                        updater_set_status(u, "idle", NULL);
        }
        updater_set_status(u, "stopped", NULL);
        log_info("stopped");
        return 0;
}

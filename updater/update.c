/* The operations pivot-agent and pivotctl share. */
#include "update.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "omaha-module.h"
#include "omaha.h"
#include "run.h"
#include "state.h"
#include "util.h"

#define AGENT_VERSION "pivot-0.1"
/* State keys (update-state). */
#define K_PENDING_SLOT "pending_slot"
#define K_PENDING_VERSION "pending_version"
#define K_REFUSED_VERSION "refused_version" /* an older version offered, refused and reported */
#define K_PREVIOUS_VERSION "previous_version"
#define K_PENDING_BOOT_ID "pending_boot_id"
#define K_REPORT "report" /* "TYPE RESULT ERRORCODE PREVIOUS-VERSION NEXT-VERSION", "-" for none */
#define K_FAILED_VERSION "failed_version"
#define K_ALEPH "aleph_version"
#define K_MACHINE_ID "machine_id"

/* update-state is shared between processes: pivotctl changes it while the daemon runs. So a
 * change is a transaction (state_begin: lock, read the file again; state_set; state_commit:
 * save if anything changed, unlock), and a process that keeps running reads the file again
 * before it acts on it (updater_reload_state). Otherwise a copy read earlier would send a report
 * that another process has sent already, or save over the install record another one wrote.
 * Transactions nest; only the outermost reads, saves and locks. Pointers from kv_get() do not
 * survive a state_begin(). */
int updater_reload_state(struct updater *u) {
        struct kv fresh;
        int r = kv_load(&fresh, u->state_path);
        if (r < 0)
                return log_warning_errno(r, "Cannot read %s again: %m", u->state_path);
        kv_done(&u->state);
        u->state = fresh;
        return 0;
}

static void state_begin(struct updater *u) {
        if (u->state_depth++ > 0)
                return;
        u->state_dirty = false;
        int fd = kv_lock(u->state_path);
        if (fd < 0)
                log_warning_errno(fd, "Cannot lock %s: %m", u->state_path);
        u->state_lock_fd = fd;
        /* Changes made to a copy that could not be read again would be saved over what
         * another process wrote: without a fresh reading, nothing is saved. */
        u->state_stale = updater_reload_state(u) < 0;
}

static void state_set(struct updater *u, const char *key, const char *value) {
        const char *old = kv_get(&u->state, key);
        if (old == value || (old && value && !strcmp(old, value)))
                return;
        int r = kv_set(&u->state, key, value);
        if (r < 0)
                log_warning_errno(r, "Cannot note %s in the update state: %m", key);
        else
                u->state_dirty = true;
}

/* 0, or a negative errno when there were changes and they could not be saved. */
static int state_commit(struct updater *u) {
        if (--u->state_depth > 0)
                return 0;
        int r = 0;
        if (u->state_dirty && u->state_stale)
                r = log_warning_errno(-ESTALE, "Not saving %s: it could not be read again",
                                      u->state_path);
        else if (u->state_dirty && (r = kv_save(&u->state, u->state_path)) < 0)
                log_warning_errno(r, "Cannot save %s: %m", u->state_path);
        if (r < 0)
                updater_reload_state(u); /* what is on the disk is what holds */
        closep(&u->state_lock_fd);
        u->state_lock_fd = -1;
        u->state_dirty = false;
        return r;
}

void updater_set_status(struct updater *u, const char *state, const char *detail) {
        if (!u->is_agent || !u->status_path)
                return;
        struct kv kv;
        if (kv_load(&kv, u->status_path) < 0)
                return;
        char now[32], pid[32];
        snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        kv_set(&kv, "state", state);
        kv_set(&kv, "detail", detail ? detail : "");
        kv_set(&kv, "updated", now);
        kv_set(&kv, "pid", pid);
        kv_save(&kv, u->status_path);
        kv_done(&kv);
}

static void status_set(struct updater *u, const char *key, const char *value) {
        if (!u->is_agent || !u->status_path)
                return;
        struct kv kv;
        if (kv_load(&kv, u->status_path) < 0)
                return;
        kv_set(&kv, key, value);
        kv_save(&kv, u->status_path);
        kv_done(&kv);
}

static char *path_join(const char *a, const char *b) {
        char *s;
        return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

int updater_open(const struct updater_options *o, struct updater **ret) {
        _cleanup_(updater_freep) struct updater *u = calloc(1, sizeof(*u));
        int r;

        if (!u)
                return log_error_errno(-ENOMEM, "Out of memory");
        u->lock_fd = -1;
        u->state_lock_fd = -1;
        u->offline = o->disk != NULL;
        u->quiet = o->quiet;
        u->progress_tty = isatty(STDERR_FILENO);
        config_init(&u->cfg);
        const char *cfg_path = o->config_path ? o->config_path : CONFIG_DEFAULT_PATH;
        r = config_load(&u->cfg, cfg_path, o->config_path != NULL);
        if (r < 0)
                return r;
        if ((o->server && (r = config_set(&u->cfg, "server", o->server)) < 0) ||
            (o->channel && (r = config_set(&u->cfg, "channel", o->channel)) < 0) ||
            (o->key_path && (r = config_set(&u->cfg, "public_key", o->key_path)) < 0) ||
            (o->state_dir && (r = config_set(&u->cfg, "state_dir", o->state_dir)) < 0))
                return log_error_errno(r == -ENOMEM ? r : -EINVAL, "Bad option value");
        if (o->allow_downgrade)
                u->cfg.allow_downgrade = true;
        u->over_rollback = o->over_rollback;

        if (u->offline && !o->state_dir) {
                /* An image file on a build machine: nothing of the host's /var/lib/pivot. */
                const char *tmpdir = getenv("TMPDIR");
                _cleanup_free_ char *t = NULL;
                if (asprintf(&t, "%s/pivotctl.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp") < 0)
                        return log_error_errno(-ENOMEM, "Out of memory");
                if (!mkdtemp(t))
                        return log_error_errno(negative_errno(), "Cannot make a temporary "
                                               "directory: %m");
                r = config_set(&u->cfg, "state_dir", t);
                if (r < 0) {
                        (void)rmdir(t);
                        return log_error_errno(r, "Out of memory");
                }
                /* Removed at the end: state_dir must be this directory by now. */
                u->temp_state = true;
        }
        r = mkdir_p(u->cfg.state_dir, true);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", u->cfg.state_dir);
        u->state_path = path_join(u->cfg.state_dir, "update-state");
        u->work_dir = path_join(u->cfg.state_dir, "download");
        u->status_path = u->offline ? path_join(u->cfg.state_dir, "agent-status")
                                    : path_join(u->cfg.run_dir, "agent-status");
        if (!u->state_path || !u->work_dir || !u->status_path)
                return -ENOMEM;
        r = kv_load(&u->state, u->state_path);
        if (r < 0)
                return log_error_errno(r, "Cannot read %s: %m", u->state_path);

        struct target_options to = {.disk_path = o->disk, .booted_slot = o->booted_slot};
        r = target_open(&to, &u->target);
        if (r < 0)
                return r;
        if (o->boot_id)
                u->boot_id = strdup(o->boot_id);
        else if (u->target->boot_id)
                u->boot_id = strdup(u->target->boot_id);
        else
                u->boot_id = strdup("");
        if (!u->boot_id)
                return -ENOMEM;

        /* The version first installed on this machine (Omaha's alephversion). */
        if (!kv_get(&u->state, K_ALEPH)) {
                state_begin(u);
                if (!kv_get(&u->state, K_ALEPH))
                        state_set(u, K_ALEPH, u->target->running_version);
                state_commit(u);
        }
        *ret = TAKE_PTR(u);
        return 0;
}

void updater_free(struct updater *u) {
        if (!u)
                return;
        if (u->temp_state && u->cfg.state_dir) {
                char *argv[] = {"rm", "-rf", "--", u->cfg.state_dir, NULL};
                run_program(argv, 0, NULL, NULL, NULL, 60);
        }
        closep(&u->lock_fd);
        target_free(u->target);
        payload_key_free(u->key);
        kv_done(&u->state);
        free(u->state_path);
        free(u->work_dir);
        free(u->status_path);
        free(u->boot_id);
        config_done(&u->cfg);
        free(u);
}

void updater_freep(struct updater **u) {
        updater_free(*u);
        *u = NULL;
}

/* --- Keys ---------------------------------------------------------------------------------- */

/* Offline: the key pinned in the running slot's root file system (squashfs, read with
 * unsquashfs at the slot's offset). */
static int key_from_slot(struct updater *u) {
        const struct disk_partition *p = disk_slot_partition(u->target->disk, (size_t)u->target->booted);
        char offset[32], tmpl[] = "/tmp/pivot-key.XXXXXX";
        snprintf(offset, sizeof(offset), "%" PRIu64, p->offset);
        char *argv[] = {"unsquashfs", "-o", offset, "-cat", u->target->disk->path,
                        "/usr/share/pivot/update-signing.pub", NULL};
        _cleanup_free_ char *out = NULL;
        size_t len = 0;
        int r = run_program(argv, 65536, &out, &len, NULL, 60);
        if (r != 0 || len == 0 || !strstr(out, "BEGIN PUBLIC KEY"))
                return -ENOKEY;
        _cleanup_close_ int fd = mkstemp(tmpl);
        if (fd < 0)
                return negative_errno();
        r = write(fd, out, len) == (ssize_t)len ? payload_key_load_public(tmpl, &u->key) : -EIO;
        unlink(tmpl);
        return r;
}

int updater_load_key(struct updater *u) {
        if (u->key)
                return 0;
        const char *path = u->cfg.public_key;
        int r = payload_key_load_public(path, &u->key);
        if (r == 0)
                return 0;
        if (r == -ENOENT && u->offline) {
                r = key_from_slot(u);
                if (r == 0) {
                        log_info("Using the update key built into slot %s of %s",
                                 target_slot_name(u->target, u->target->booted),
                                 u->target->disk->path);
                        return 0;
                }
                return log_error_errno(-ENOKEY, "No public key: %s does not exist and none was "
                                       "found in the disk's running slot; give --key FILE", path);
        }
        if (r == -ENOKEY)
                return log_error_errno(r, "%s holds no Ed25519 public key", path);
        return log_error_errno(r, "Cannot read the update key %s: %m", path);
}

/* --- Locking ------------------------------------------------------------------------------- */

/* The partition table read again, for a decision another process may have changed the
 * grounds of since it was last read. */
static int reload_table(struct updater *u) {
        int r = target_reload(u->target);
        if (r < 0)
                return log_error_errno(r, "Cannot read the partition table of %s again: %m",
                                       u->target->disk->path);
        return 0;
}

static int take_lock(struct updater *u) {
        if (u->lock_fd >= 0)
                return 0;
        _cleanup_free_ char *path = path_join(u->cfg.state_dir, "lock");
        if (!path)
                return -ENOMEM;
        int fd = lock_file(path, false);
        if (fd == -EBUSY)
                return log_error_errno(fd, "Another update is in progress (%s is locked); see "
                                       "pivotctl status", path);
        if (fd < 0)
                return log_error_errno(fd, "Cannot lock %s: %m", path);
        u->lock_fd = fd;
        return 0;
}

/* The queued boot report goes out with one check at a time: a daemon and pivotctl checking
 * together would otherwise both read it before either had cleared it, and the server would
 * count one rollback twice (two of them can halt a rollout). A check that finds the lock held,
 * or cannot take it, goes without the report; if the other's request fails, the report stays
 * for the next. The descriptor that holds the lock, -EBUSY, or another negative errno. */
static int take_report_lock(struct updater *u) {
        _cleanup_free_ char *path = path_join(u->cfg.state_dir, "report.lock");
        if (!path)
                return -ENOMEM;
        int fd = lock_file(path, false);
        if (fd < 0 && fd != -EBUSY)
                log_warning_errno(fd, "Cannot lock %s: %m; the boot report waits", path);
        return fd;
}

static void drop_lock(struct updater *u) {
        closep(&u->lock_fd);
        u->lock_fd = -1;
}

static void drop_lockp(struct updater **u) {
        if (*u)
                drop_lock(*u);
}

/* --- Progress ------------------------------------------------------------------------------ */

struct progress_state {
        struct updater *u;
        bool recorded; /* before_flip wrote the install record */
        uint64_t start_ms;
        int last_pct;
        enum install_phase last_phase;
};

static uint64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The debug_pause test hook: the first time an install reaches the configured point, the agent
 * says so on the console and stops for good; a test then pulls the plug. The marker on STATE
 * makes it a one-off, so the boot after the power cut goes on with the update. */
static void debug_pause_point(struct updater *u, const char *point) {
        if (!u->cfg.debug_pause || strcmp(u->cfg.debug_pause, point) != 0 || !u->is_agent)
                return;
        _cleanup_free_ char *marker = NULL;
        if (asprintf(&marker, "%s/debug-pause-%s.done", u->cfg.state_dir, point) < 0)
                return;
        _cleanup_close_ int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return; /* taken before, or cannot be recorded: no pause */
        (void)fsync(fd);
        log_warning("debug_pause: stopped before %s; cut the power now", point);
        for (;;)
                pause();
}

static void on_progress(void *userdata, enum install_phase phase, uint64_t done, uint64_t total) {
        struct progress_state *ps = userdata;
        struct updater *u = ps->u;
        if (phase == INSTALL_PHASE_BOOT_FILES && done == 0)
                debug_pause_point(u, "boot-files");
        if (phase == INSTALL_PHASE_FLIP && done == 0)
                debug_pause_point(u, "flip");
        if (phase == INSTALL_PHASE_FLIP && done == total)
                debug_pause_point(u, "events");
        int pct = total ? (int)(done * 100 / total) : 100;
        char detail[128];
        if (phase == INSTALL_PHASE_DOWNLOAD) {
                double secs = (double)(mono_ms() - ps->start_ms) / 1000.0;
                snprintf(detail, sizeof(detail), "%d%% (%" PRIu64 "/%" PRIu64 " MiB, %.0f MiB/s)",
                         pct, done >> 20, total >> 20, secs > 0 ? (double)done / 1048576.0 / secs : 0.0);
        } else
                snprintf(detail, sizeof(detail), "%d%%", pct);
        bool changed = phase != ps->last_phase || pct / 10 != ps->last_pct / 10;
        if (u->is_agent && changed)
                updater_set_status(u, install_phase_name(phase), detail);
        if (!u->quiet) {
                if (u->progress_tty)
                        fprintf(stderr, "\r%-22s %-40s", install_phase_name(phase), detail);
                else if (changed)
                        fprintf(stderr, "%s %s\n", install_phase_name(phase), detail);
                if (u->progress_tty && phase == INSTALL_PHASE_FLIP && pct == 100)
                        fputc('\n', stderr);
        }
        ps->last_pct = pct;
        ps->last_phase = phase;
}

/* --- After an install ---------------------------------------------------------------------- */

static int record_pending(struct updater *u, int slot, const char *version) {
        state_begin(u);
        state_set(u, K_PENDING_SLOT, target_slot_name(u->target, slot));
        state_set(u, K_PENDING_VERSION, version);
        state_set(u, K_PREVIOUS_VERSION, u->target->running_version);
        state_set(u, K_PENDING_BOOT_ID, u->boot_id);
        return state_commit(u);
}

static void clear_pending(struct updater *u) {
        state_begin(u);
        state_set(u, K_PENDING_SLOT, NULL);
        state_set(u, K_PENDING_VERSION, NULL);
        state_set(u, K_PENDING_BOOT_ID, NULL);
        state_set(u, K_PREVIOUS_VERSION, NULL);
        state_commit(u);
}

static int before_flip(void *userdata, int slot, const char *version) {
        struct progress_state *ps = userdata;
        int r = record_pending(ps->u, slot, version);
        if (r < 0)
                return r;
        ps->recorded = true;
        return 0;
}

/* The slot no longer holds the update its record names: the record goes. Only here, once the
 * slot is switched off: an install that refuses its slot (the running one, the only one known
 * to boot) or stops before it must leave the record of an update on trial, whose success or
 * rollback is still to be reported. */
static void slot_disabled(void *userdata, int slot) {
        struct progress_state *ps = userdata;
        struct updater *u = ps->u;
        state_begin(u);
        const char *pending = kv_get(&u->state, K_PENDING_SLOT);
        if (pending && !strcmp(pending, target_slot_name(u->target, slot)))
                clear_pending(u);
        state_commit(u);
}

bool updater_reboot_pending(struct updater *u) {
        const char *b = kv_get(&u->state, K_PENDING_BOOT_ID);
        return kv_get(&u->state, K_PENDING_SLOT) && b && !strcmp(b, u->boot_id);
}

static int run_install(struct updater *u, struct install_source *src, const struct install_options *o,
                       const char *expect_version, const struct omaha_package *pkg,
                       struct install_result *res) {
        struct progress_state ps = {.u = u, .start_ms = mono_ms(), .last_pct = -1,
                                    .last_phase = (enum install_phase)-1};
        int slot = -1, r;
        if (o && o->slot) {
                slot = disk_slot_index(u->target->disk, o->slot);
                if (slot < 0)
                        return log_error_errno(-ENOENT, "No slot %s on %s", o->slot,
                                               u->target->disk->path);
        }
        struct install_params p = {
                .target = u->target,
                .slot = slot,
                .key = u->key,
                .running_version = u->target->running_version,
                .expect_version = expect_version,
                .allow_downgrade = u->cfg.allow_downgrade,
                .ignore_min_version = o && o->ignore_min_version,
                .tries = u->cfg.tries,
                .no_flip = o && o->no_flip,
                .work_dir = u->work_dir,
                .retries = u->cfg.download_retries,
                .retry_delay_ms = 1000,
                .source = src,
                .cancel = u->cancel,
                .progress = on_progress,
                .before_flip = before_flip,
                .slot_disabled = slot_disabled,
                .userdata = &ps,
        };
        if (pkg) {
                p.expect_size = pkg->size;
                p.has_expect_sha256 = pkg->has_sha256;
                memcpy(p.expect_sha256, pkg->sha256, 32);
        }
        r = install_run(&p, res);
        if (!u->quiet && u->progress_tty && ps.last_pct >= 0 &&
            !(ps.last_phase == INSTALL_PHASE_FLIP && ps.last_pct == 100))
                fputc('\n', stderr);
        if (r < 0) {
                /* The flip failed after the record was written. It may have failed after the
                 * table was written (syncing, re-reading it): the GPT says whether the slot
                 * boots next, and the record stays exactly when it does. */
                if (ps.recorded) {
                        /* Unreadable, the table may boot the slot: the record stays, and the
                         * next boot finds out (a slot still at priority 0 means no flip). */
                        if (target_reload(u->target) == 0 &&
                            u->target->disk->slots[res->slot].priority == 0)
                                clear_pending(u);
                        else
                                log_warning("Slot %s boots next all the same; it waits for a "
                                            "reboot", target_slot_name(u->target, res->slot));
                }
                return r;
        }
        uint64_t secs = (mono_ms() - ps.start_ms) / 1000;
        char resumed[96] = "";
        if (res->resumed)
                snprintf(resumed, sizeof(resumed), " (resumed: %" PRIu64 " of %" PRIu64 " bytes "
                         "downloaded in this run)", res->bytes_fetched, res->payload_size);
        if (p.no_flip)
                log_info("Version %s written to slot %s and verified in %" PRIu64 "s%s (not "
                         "switched: --no-flip)", res->version, target_slot_name(u->target, res->slot),
                         secs, resumed);
        else {
                log_info("Version %s installed in slot %s in %" PRIu64 "s%s; it boots next "
                         "(%u %s)", res->version, target_slot_name(u->target, res->slot), secs,
                         resumed, u->cfg.tries, u->cfg.tries == 1 ? "try" : "tries");
                updater_set_status(u, "reboot-needed", res->version);
        }
        return 0;
}

static struct http_options http_opts(struct updater *u, unsigned total);

int updater_install_file(struct updater *u, const char *path, const struct install_options *o) {
        struct install_file_source src;
        struct http_source hsrc;
        struct install_result res;
        bool url = !strncmp(path, "http://", 7) || !strncmp(path, "https://", 8);
        int r;

        r = updater_load_key(u);
        if (r < 0)
                return r;
        if (url) {
                struct http_options ho = http_opts(u, 0);
                r = http_source_init(&hsrc, path, &ho);
        } else
                r = install_file_source_open(path, &src);
        if (r < 0)
                return log_error_errno(r, "Cannot open %s: %m", path);
        r = take_lock(u);
        if (r == 0)
                r = run_install(u, url ? &hsrc.source : &src.source, o, NULL, NULL, &res);
        drop_lock(u);
        if (url)
                http_source_done(&hsrc);
        else
                install_file_source_close(&src);
        return r;
}

/* --- Status -------------------------------------------------------------------------------- */

static const char *state_age(long long t, char *buf, size_t size) {
        if (t <= 0)
                return "never";
        time_t tt = (time_t)t;
        struct tm tm;
        localtime_r(&tt, &tm);
        strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
        return buf;
}

int updater_status(struct updater *u, bool json, FILE *out) {
        struct target *t = u->target;
        struct slot_choice choice;
        bool has_next = disk_next_boot(t->disk, &choice) == 0;
        struct kv agent = {0};
        bool agent_known = false;
        if (!u->offline || access(u->status_path, R_OK) == 0)
                agent_known = kv_load(&agent, u->status_path) == 0 && agent.n > 0;
        /* Is that agent still alive? */
        bool agent_running = false;
        if (agent_known && kv_get(&agent, "pid")) {
                pid_t pid = (pid_t)atoi(kv_get(&agent, "pid"));
                agent_running = pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
        }
        const char *pending_slot = kv_get(&u->state, K_PENDING_SLOT);
        const char *pending_version = kv_get(&u->state, K_PENDING_VERSION);
        bool reboot_needed = updater_reboot_pending(u);

        if (!json) {
                fprintf(out, "disk:      %s%s\n", t->disk->path, t->offline ? " (offline)" : "");
                fprintf(out, "running:   slot %s, version %s%s\n", target_slot_name(t, t->booted),
                        t->running_version, t->offline ? " (offline: the slot that boots now)" : "");
                for (size_t i = 0; i < t->disk->n_slots; i++) {
                        const struct slot *s = &t->disk->slots[i];
                        fprintf(out, "slot %-4s  partition %u  priority %2u  tries %2u  %-12s version %-12s%s\n",
                                s->name, s->partno, s->priority, s->tries,
                                s->successful ? "successful" : "unproven",
                                t->slot_versions[i] ? t->slot_versions[i] : "?",
                                (int)i == t->booted ? "  (running)" : "");
                }
                if (has_next) {
                        const struct slot *s = &t->disk->slots[choice.index];
                        fprintf(out, "next boot: %s: %s%s%s\n", s->name, slot_reason_string(choice.reason),
                                choice.spend_try ? " (spends a try)" : "",
                                choice.fallback ? "  WARNING: no slot qualifies" : "");
                } else
                        fprintf(out, "next boot: none: no bootable slot\n");
                if (pending_slot)
                        fprintf(out, "update:    %s in slot %s, %s\n", pending_version ? pending_version : "?",
                                pending_slot, reboot_needed ? "installed, waiting for a reboot"
                                                            : "installed before the last reboot");
                if (agent_known) {
                        char b1[64], b2[64];
                        const char *d = kv_get(&agent, "detail");
                        fprintf(out, "agent:     %s%s%s%s, last check %s (%s), next check %s\n",
                                agent_running ? "" : "not running, was ", kv_get(&agent, "state") ?: "?",
                                d && *d ? " " : "", d ? d : "",
                                state_age(atoll(kv_get(&agent, "last_check") ?: "0"), b1, sizeof(b1)),
                                kv_get(&agent, "last_result") ?: "-",
                                state_age(atoll(kv_get(&agent, "next_check") ?: "0"), b2, sizeof(b2)));
                } else if (!t->offline)
                        fprintf(out, "agent:     no status (not started?)\n");
                kv_done(&agent);
                return 0;
        }

        fprintf(out, "{\"disk\":");
        json_string(out, t->disk->path);
        fprintf(out, ",\"offline\":%s,\"running\":{\"slot\":", t->offline ? "true" : "false");
        json_string(out, target_slot_name(t, t->booted));
        fprintf(out, ",\"version\":");
        json_string(out, t->running_version);
        fprintf(out, "},\"slots\":[");
        for (size_t i = 0; i < t->disk->n_slots; i++) {
                const struct slot *s = &t->disk->slots[i];
                const struct disk_partition *p = disk_slot_partition(t->disk, i);
                fprintf(out, "%s{\"name\":", i ? "," : "");
                json_string(out, s->name);
                fprintf(out, ",\"partition\":%u,\"partuuid\":", s->partno);
                json_string(out, p->uuid);
                fprintf(out, ",\"priority\":%u,\"tries\":%u,\"successful\":%s,\"version\":", s->priority,
                        s->tries, s->successful ? "true" : "false");
                json_string(out, t->slot_versions[i]);
                fprintf(out, ",\"running\":%s,\"size\":%" PRIu64 "}", (int)i == t->booted ? "true" : "false",
                        p->size);
        }
        fprintf(out, "],\"next_boot\":");
        if (has_next) {
                fprintf(out, "{\"slot\":");
                json_string(out, t->disk->slots[choice.index].name);
                fprintf(out, ",\"reason\":");
                json_string(out, slot_reason_string(choice.reason));
                fprintf(out, ",\"spends_try\":%s,\"fallback\":%s}", choice.spend_try ? "true" : "false",
                        choice.fallback ? "true" : "false");
        } else
                fprintf(out, "null");
        fprintf(out, ",\"update\":");
        if (pending_slot) {
                fprintf(out, "{\"slot\":");
                json_string(out, pending_slot);
                fprintf(out, ",\"version\":");
                json_string(out, pending_version);
                fprintf(out, ",\"reboot_needed\":%s}", reboot_needed ? "true" : "false");
        } else
                fprintf(out, "null");
        fprintf(out, ",\"agent\":");
        if (agent_known) {
                fprintf(out, "{\"running\":%s", agent_running ? "true" : "false");
                for (size_t i = 0; i < agent.n; i++) {
                        fprintf(out, ",");
                        json_string(out, agent.keys[i]);
                        fprintf(out, ":");
                        json_string(out, agent.values[i]);
                }
                fprintf(out, "}");
        } else
                fprintf(out, "null");
        fprintf(out, "}\n");
        kv_done(&agent);
        return 0;
}

/* --- Boot outcome, health, mark good, rollback, reboot ----------------------------------- */

static const char *version_or_null(const char *v) {
        return *v && strcmp(v, "-") != 0 ? v : NULL;
}

#define REPORT_MAX (3 * 12 + 2 * (PAYLOAD_MAX_VERSION_LEN + 1) + 1)

static void queue_report(struct updater *u, int type, int result, int code, const char *previous,
                         const char *next) {
        char buf[REPORT_MAX];
        snprintf(buf, sizeof(buf), "%d %d %d %s %s", type, result, code, previous ?: "-", next ?: "-");
        state_set(u, K_REPORT, buf);
}

/* Called within a state transaction. */
static enum boot_outcome boot_outcome(struct updater *u) {
        const char *slot = kv_get(&u->state, K_PENDING_SLOT);
        if (!slot)
                return BOOT_NORMAL;
        if (updater_reboot_pending(u))
                return BOOT_WAITING_REBOOT;
        struct target *t = u->target;
        if (!strcmp(slot, target_slot_name(t, t->booted)))
                return BOOT_NEW_VERSION;
        const char *version = kv_get(&u->state, K_PENDING_VERSION);
        int index = disk_slot_index(t->disk, slot);
        if (index >= 0 && t->disk->slots[index].priority == 0) {
                /* The record is written right before the flip, and the flip gives the slot a
                 * priority that nothing takes away after (a failed boot spends tries only):
                 * the power went before the flip. The update never became bootable, so
                 * nothing rolled back; the next check installs it again. */
                log_warning("Version %s in slot %s was installed but the switch to it did not "
                            "happen (interrupted); it is installed again", version ? version : "?",
                            slot);
                clear_pending(u);
                return BOOT_NORMAL;
        }
        /* Rebooted, and the old slot runs: the new one did not come up (or was rolled back
         * by hand). Report it once, and do not take that version again. */
        log_warning("Version %s in slot %s did not come up; running %s from slot %s (rolled back)",
                    version ? version : "?", slot, t->running_version, target_slot_name(t, t->booted));
        queue_report(u, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_ERROR, UPDATE_ERROR_ROLLED_BACK,
                     t->running_version, version);
        if (version)
                state_set(u, K_FAILED_VERSION, version);
        clear_pending(u);
        return BOOT_ROLLED_BACK;
}

enum boot_outcome updater_boot_outcome(struct updater *u) {
        state_begin(u);
        enum boot_outcome out = boot_outcome(u);
        state_commit(u);
        return out;
}

int updater_health_check(struct updater *u) {
        if (u->cfg.n_health_checks == 0) {
                if (u->offline)
                        return 0;
                if (!u->target->root_is_verity)
                        return log_error_errno(-ENODEV, "Health check failed: / is not the "
                                               "dm-verity device \"root\"");
                return 0;
        }
        for (unsigned i = 0; i < u->cfg.n_health_checks; i++) {
                _cleanup_free_ char *err = NULL;
                int r = run_shell(u->cfg.health_checks[i], &err, u->cfg.health_timeout);
                if (r != 0) {
                        if (err) {
                                size_t n = strlen(err);
                                while (n && err[n - 1] == '\n')
                                        err[--n] = 0;
                        }
                        return log_error_errno(r < 0 ? r : -EIO, "Health check failed: %s: %s%s%s",
                                               u->cfg.health_checks[i],
                                               r == -ETIMEDOUT ? "timed out" :
                                               r < 0 ? "could not run" : "non-zero exit",
                                               err && *err ? ": " : "", err ? err : "");
                }
        }
        return 0;
}

int updater_mark_good(struct updater *u, bool check_health) {
        struct target *t = u->target;
        const struct slot *s = target_running_slot(t);
        int r;
        /* Offline without --booted-slot, the "running" slot is only the one that boots next:
         * marked good before it ever booted, a kernel that panics would be chosen at every
         * boot, with no fallback. */
        if (!t->booted_runs)
                return log_error_errno(-EPERM, "Slot %s of %s only boots next, it does not run: "
                                       "not marked good (--booted-slot %s if it does)", s->name,
                                       t->disk->path, s->name);
        if (check_health && (r = updater_health_check(u)) < 0)
                return r;
        /* From the test for a rollback by hand to the record's end, no other process changes
         * the slots: a rollback made in between would be undone, or both would stand, the
         * update reported a success and its version noted as rolled back. */
        r = disk_lock(t->disk);
        if (r < 0)
                return log_error_errno(r, "Cannot lock %s: %m", t->disk->path);
        _cleanup_(disk_unlockp) struct disk *locked = t->disk;
        bool rolled_back = target_rolled_back_by_hand(t);
        s = target_running_slot(t); /* the table was read again */
        if (rolled_back)
                return log_error_errno(-EBUSY, "Another slot was chosen to boot next (pivotctl "
                                       "rollback): slot %s is not marked good; pivotctl rollback "
                                       "--cancel undoes the rollback", s->name);
        if (!s->successful || s->tries != 0) {
                r = target_slot_mark_good(t, t->booted);
                if (r < 0)
                        return log_error_errno(r, "Cannot mark slot %s successful: %m", s->name);
                log_info("Slot %s (version %s) marked successful", s->name, t->running_version);
        }
        state_begin(u);
        const char *pending = kv_get(&u->state, K_PENDING_SLOT);
        if (pending && !strcmp(pending, s->name) && !updater_reboot_pending(u)) {
                queue_report(u, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_SUCCESS_REBOOT, 0,
                             kv_get(&u->state, K_PREVIOUS_VERSION), t->running_version);
                clear_pending(u);
        }
        state_commit(u);
        return 0;
}

/* The GPT changes of rollback and rollback --cancel wait for no install: taken during one,
 * they would decide from a table the install is changing (a slot it has just disabled made
 * the one to boot). Under the install lock and the disk's (mark-good takes that one), the
 * table and the state are read again. *ret_locked is the disk, for the caller's
 * _cleanup_(disk_unlockp), once its lock is held. */
static int lock_and_reload(struct updater *u, struct disk **ret_locked) {
        int r = take_lock(u);
        if (r < 0)
                return r;
        updater_reload_state(u); /* an install may have ended just before: its record counts */
        r = disk_lock(u->target->disk);
        if (r < 0)
                return log_error_errno(r, "Cannot lock %s: %m", u->target->disk->path);
        *ret_locked = u->target->disk;
        return reload_table(u);
}

int updater_rollback(struct updater *u, bool force) {
        struct target *t = u->target;
        _cleanup_(disk_unlockp) struct disk *locked = NULL;
        int r = lock_and_reload(u, &locked);
        if (r < 0)
                return r;
        /* Nothing ran since the install to roll back from; and with a third slot, the install
         * record would stay and be reported at the next boot as an update that did not come
         * up (error 44), though it never had its try. */
        if (updater_reboot_pending(u))
                return log_error_errno(-EBUSY, "Version %s waits in slot %s for a reboot: there is "
                                       "nothing to roll back from yet",
                                       kv_get(&u->state, K_PENDING_VERSION) ?: "?",
                                       kv_get(&u->state, K_PENDING_SLOT) ?: "?");
        int other = target_fallback(t);
        if (other < 0)
                return log_error_errno(other, "No other slot");
        const struct slot *s = &t->disk->slots[other];
        if (!t->slot_versions[other] && !force)
                return log_error_errno(-ENOENT, "Slot %s has no boot files on the ESP; --force to "
                                       "make it boot next anyway", s->name);
        if (!s->successful && !force)
                return log_error_errno(-EPERM, "Slot %s never booted successfully (priority %u, "
                                       "tries %u); --force to give it one try", s->name, s->priority,
                                       s->tries);
        r = target_slot_prefer(t, other, 1);
        if (r < 0)
                return log_error_errno(r, "Cannot switch to slot %s: %m", s->name);
        log_info("Slot %s (version %s) boots next", s->name,
                 t->slot_versions[other] ? t->slot_versions[other] : "?");
        /* An update on trial (running, not yet marked good) that is rolled back by hand counts
         * as one that did not come up: its record stays, so that the next boot reports the
         * rollback (error 44) and that version is not installed again. A version already
         * marked good has no record: noting it here keeps the agent from installing it again
         * at its next check, which would undo the rollback. */
        state_begin(u);
        const char *pending = kv_get(&u->state, K_PENDING_SLOT);
        bool on_trial = pending && !strcmp(pending, target_slot_name(t, t->booted));
        if (t->booted_runs && !on_trial && t->running_version) {
                state_set(u, K_FAILED_VERSION, t->running_version);
                log_info("Version %s is not installed again by the agent (pivotctl update does)",
                         t->running_version);
        }
        state_commit(u);
        return 0;
}

int updater_rollback_cancel(struct updater *u) {
        struct target *t = u->target;
        if (!t->booted_runs)
                return log_error_errno(-EINVAL, "Offline, name the running slot (--booted-slot) to "
                                       "keep it");
        _cleanup_(disk_unlockp) struct disk *locked = NULL;
        int r = lock_and_reload(u, &locked);
        if (r < 0)
                return r;
        const char *name = target_slot_name(t, t->booted); /* after the reading: it can move */
        if (updater_reboot_pending(u))
                return log_error_errno(-EBUSY, "An installed update waits for a reboot: that is "
                                       "not a rollback to cancel");
        if (!target_outranked(t)) {
                log_info("Slot %s boots next already: no rollback to cancel", name);
                return 0;
        }
        /* On trial (rolled back before it was marked good), it gets its try back: the next
         * boot is its trial again, and its boot report follows from that. */
        r = target_slot_prefer(t, t->booted, 1);
        if (r < 0)
                return log_error_errno(r, "Cannot make slot %s boot next: %m", name);
        log_info("Slot %s (version %s) boots next again", name, t->running_version);
        state_begin(u);
        const char *failed = kv_get(&u->state, K_FAILED_VERSION);
        if (failed && !strcmp(failed, t->running_version))
                state_set(u, K_FAILED_VERSION, NULL); /* noted by the rollback */
        state_commit(u);
        return 0;
}

int updater_reboot(struct updater *u, const char *reason) {
        /* Offline, the machine running this is not the one updated: only a reboot command
         * configured on purpose (tests) runs. */
        if (u->offline && !strcmp(u->cfg.reboot_command, "/sbin/reboot")) {
                log_info("Offline (--disk): not rebooting this machine (%s)", reason);
                return 1;
        }
        debug_pause_point(u, "reboot");
        /* Not in the middle of an install (pivotctl beside the daemon): its record is written
         * just before its flip, and a reboot in between would waste the install. */
        bool held = u->lock_fd >= 0;
        int r = take_lock(u);
        if (r < 0)
                return r;
        if (!held)
                drop_lock(u);
        log_info("Rebooting: %s", reason);
        updater_set_status(u, "rebooting", reason);
        _cleanup_free_ char *err = NULL;
        r = run_shell(u->cfg.reboot_command, &err, 120);
        if (r != 0)
                return log_error_errno(r < 0 ? r : -EIO, "%s failed%s%s", u->cfg.reboot_command,
                                       err && *err ? ": " : "", err ? err : "");
        return 0;
}

/* --- Omaha --------------------------------------------------------------------------------- */

static const char *machine_id(struct updater *u, char buf[33]) {
        _cleanup_fclose_ FILE *f = u->offline ? NULL : fopen("/etc/machine-id", "re");
        if (f && fgets(buf, 33, f) && strlen(buf) == 32)
                return buf;
        state_begin(u);
        const char *saved = kv_get(&u->state, K_MACHINE_ID);
        if (saved && strlen(saved) == 32)
                strcpy(buf, saved);
        else {
                uint8_t raw[16];
                if (RAND_bytes(raw, sizeof(raw)) != 1)
                        memset(raw, 0, sizeof(raw));
                hex_encode(raw, sizeof(raw), buf);
                state_set(u, K_MACHINE_ID, buf);
        }
        state_commit(u);
        return buf;
}

struct omaha_call {
        struct omaha_request req;
        struct omaha_app_request app;
        struct omaha_event events[3];
        char machine[33];
        char bootid[64];
        char sp[96];
};

static void omaha_call_init(struct updater *u, struct omaha_call *c, bool interactive) {
        memset(c, 0, sizeof(*c));
        /* Before the pointers into the state below: it may read the state again. */
        const char *machine = machine_id(u, c->machine);
        snprintf(c->bootid, sizeof(c->bootid), "{%s}", *u->boot_id ? u->boot_id
                                                                    : "00000000-0000-0000-0000-000000000000");
        snprintf(c->sp, sizeof(c->sp), "%s_x86_64", u->target->running_version);
        c->app = (struct omaha_app_request){
                .appid = u->cfg.app_id,
                .version = u->target->running_version,
                .track = u->cfg.channel,
                .bootid = c->bootid,
                .machineid = (char *)machine,
                .oem = (char *)"",
                .alephversion = (char *)(kv_get(&u->state, K_ALEPH) ?: u->target->running_version),
                .lang = (char *)"en-US",
                .board = u->cfg.board,
                .events = c->events,
        };
        c->req = (struct omaha_request){
                .version = (char *)AGENT_VERSION,
                .updaterversion = (char *)AGENT_VERSION,
                .installsource = (char *)(interactive ? "ondemandupdate" : "scheduler"),
                .ismachine = true,
                .os_version = (char *)"Linux",
                .os_platform = (char *)"Pivot",
                .os_sp = c->sp,
                .os_arch = (char *)"x64",
                .apps = &c->app,
                .n_apps = 1,
        };
}

/* next: the version the update goes to, when the event is about one (see struct omaha_event). */
static void omaha_call_event(struct omaha_call *c, int type, int result, int code, const char *prev,
                             const char *next) {
        if (c->app.n_events >= ELEMENTSOF(c->events))
                return;
        c->events[c->app.n_events++] = (struct omaha_event){
                .type = type, .result = result, .error_code = code, .previous_version = (char *)prev,
                .next_version = (char *)next};
}

static struct http_options http_opts(struct updater *u, unsigned total) {
        return (struct http_options){
                .ca_file = u->cfg.ca_file,
                .connect_timeout = u->cfg.connect_timeout,
                .stall_timeout = u->cfg.stall_timeout,
                .total_timeout = total,
                .user_agent = AGENT_VERSION,
                .cancel = u->cancel,
        };
}

/* POSTs the request; parses the answer into *resp. Returns 0 or a negative errno with
 * *ret_code set to what to report. */
static int omaha_send(struct updater *u, struct omaha_call *c, struct omaha_response *resp,
                      int *ret_code) {
        _cleanup_free_ char *xml = NULL, *answer = NULL;
        size_t len = 0, alen = 0;
        int status = 0, r;

        *ret_code = 0;
        if (!u->cfg.server || !*u->cfg.server)
                return log_error_errno(-EDESTADDRREQ, "No update server configured (server = in %s, "
                                       "or --server URL)", CONFIG_DEFAULT_PATH);
        r = omaha_request_build(&c->req, &xml, &len);
        if (r < 0)
                return log_error_errno(r, "Cannot build the Omaha request: %m");
        struct http_options ho = http_opts(u, 120);
        r = http_post(&ho, u->cfg.server, xml, len, OMAHA_MAX_DOCUMENT, &answer, &alen, &status);
        if (r == -EMSGSIZE) {
                *ret_code = UPDATE_ERROR_OMAHA_INVALID;
                return log_error_errno(r, "%s: response larger than %u bytes, refused", u->cfg.server,
                                       OMAHA_MAX_DOCUMENT);
        }
        if (r == -EREMOTEIO || (r == 0 && status != 200)) {
                *ret_code = UPDATE_ERROR_HTTP_BASE + status;
                return log_error_errno(-EREMOTEIO, "%s: HTTP status %d", u->cfg.server, status);
        }
        if (r == -ETIMEDOUT)
                return log_error_errno(r, "%s: no answer in time", u->cfg.server);
        if (r < 0)
                return log_error_errno(r, "%s: %m", u->cfg.server);
        if (!resp)
                return 0;
        r = omaha_module_parse_response(answer, alen, resp);
        if (r == -ELIBACC || r == -ELIBBAD) {
                *ret_code = UPDATE_ERROR_GENERIC;
                return r; /* a broken installation, logged where it was found */
        }
        if (r < 0) {
                *ret_code = r == -EBADMSG ? UPDATE_ERROR_OMAHA_XML : UPDATE_ERROR_OMAHA_INVALID;
                return log_error_errno(r, "%s: invalid Omaha response (%s)", u->cfg.server,
                                       r == -EBADMSG ? "malformed XML, a DOCTYPE or entities, or a "
                                                       "bad value" :
                                       r == -EMSGSIZE ? "too large or too deep" :
                                       r == -EPROTO ? "not protocol 3.0" : strerror(-r));
        }
        return 0;
}

/* Best effort: one event, in its own request, not kept when it cannot be sent. An event the
 * server did not hear is most often one it caused (down, or dying mid-download): queued and
 * sent once it is back, every machine's failure would arrive at once and could halt a good
 * rollout. What the server must hear of every update, how its boot went, is queued instead
 * (queue_report()) and goes with the next check until one is answered. */
static void send_event(struct updater *u, bool interactive, int type, int result, int code,
                       const char *next) {
        struct omaha_call c;
        int ignored;
        omaha_call_init(u, &c, interactive);
        omaha_call_event(&c, type, result, code, NULL, next);
        struct omaha_response resp = {0};
        if (omaha_send(u, &c, &resp, &ignored) == 0)
                log_debug("Reported event %d/%d/%d", type, result, code);
        else
                log_warning("Could not report event type %d result %d error %d to the server", type,
                            result, code);
        omaha_response_done(&resp);
}

static const struct omaha_app_response *find_app(const struct omaha_response *resp, const char *appid) {
        for (size_t i = 0; i < resp->n_apps; i++)
                if (resp->apps[i].appid && !strcasecmp(resp->apps[i].appid, appid))
                        return &resp->apps[i];
        return resp->n_apps == 1 && !resp->apps[0].appid ? &resp->apps[0] : NULL;
}

int updater_check(struct updater *u, bool install, bool interactive, struct check_result *ret) {
        _cleanup_(omaha_response_done) struct omaha_response resp = {0};
        struct omaha_call c;
        int code = 0, r;
        char report_prev[PAYLOAD_MAX_VERSION_LEN + 1] = "", report_next[PAYLOAD_MAX_VERSION_LEN + 1] = "";
        bool have_report = false;

        memset(ret, 0, sizeof(*ret));
        updater_reload_state(u);
        /* The daemon's copy of the table is as old as its last check: pivotctl may have made
         * another slot boot next (a rollback by hand), or installed, since. Deciding from that
         * copy, it would overwrite the slot the operator chose. */
        r = reload_table(u);
        if (r < 0) {
                ret->error_code = UPDATE_ERROR_GENERIC;
                return r;
        }
        /* A boot result still to report goes with the check, as Flatcar does. Read here, before
         * omaha_call_init() takes pointers into the state. */
        char report[REPORT_MAX] = "";
        _cleanup_close_ int report_lock = -1;
        if (kv_get(&u->state, K_REPORT)) {
                report_lock = take_report_lock(u);
                if (report_lock == -EBUSY)
                        log_info("Another check is sending the boot report; this one goes without it");
                /* Sent meanwhile by the lock's last holder? Without the lock or a fresh reading
                 * the report waits for a later check rather than risk going out twice. */
                else if (report_lock >= 0 && updater_reload_state(u) == 0)
                        snprintf(report, sizeof(report), "%s", kv_get(&u->state, K_REPORT) ?: "");
        }
        updater_set_status(u, "checking", u->cfg.server);
        omaha_call_init(u, &c, interactive);
        c.app.ping = true;
        c.app.ping_active = 1;
        c.app.updatecheck = true;
        int rt = 0, rr = 0, rc = 0;
        _Static_assert(PAYLOAD_MAX_VERSION_LEN == 64, "the widths below");
        /* A report queued before versions were named has the previous version only, or none. */
        if (sscanf(report, "%d %d %d %64s %64s", &rt, &rr, &rc, report_prev, report_next) >= 3) {
                omaha_call_event(&c, rt, rr, rc, version_or_null(report_prev), version_or_null(report_next));
                have_report = true;
        }
        char now[32];
        snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
        status_set(u, "last_check", now);

        r = omaha_send(u, &c, &resp, &code);
        if (r < 0) {
                ret->error_code = code;
                status_set(u, "last_result", "error");
                /* The server answered, but nonsense: tell it, once, if it listens at all. */
                if (code == UPDATE_ERROR_OMAHA_XML || code == UPDATE_ERROR_OMAHA_INVALID)
                        send_event(u, interactive, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_ERROR,
                                   code, NULL);
                return r;
        }
        if (have_report) {
                /* Sent: gone, unless another process queued a new one meanwhile. Only an answer
                 * in Omaha counts as delivered: a proxy or captive portal also answers 200. A
                 * report that does go out twice moves nothing on the server (an attempt ends
                 * once). */
                state_begin(u);
                if (!strcmp(kv_get(&u->state, K_REPORT) ?: "", report))
                        state_set(u, K_REPORT, NULL);
                state_commit(u);
        }
        closep(&report_lock);
        report_lock = -1;
        const struct omaha_app_response *app = find_app(&resp, u->cfg.app_id);
        if (!app) {
                ret->error_code = UPDATE_ERROR_OMAHA_INVALID;
                status_set(u, "last_result", "error");
                send_event(u, interactive, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_ERROR,
                           UPDATE_ERROR_OMAHA_INVALID, NULL);
                return log_error_errno(-EBADMSG, "%s: the response has no app %s", u->cfg.server,
                                       u->cfg.app_id);
        }
        if (app->status && strcmp(app->status, "ok") != 0) {
                /* The server's word goes to the log and to agent-status: printable, one line,
                 * short ("error-unknownApplication", "restricted"). */
                char word[65];
                size_t n = 0;
                for (const char *p = app->status; *p && n + 1 < sizeof(word); p++, n++)
                        word[n] = (*p >= 0x21 && *p <= 0x7e) ? *p : '?';
                word[n] = 0;
                log_warning("The server refused the check: %s", word);
                status_set(u, "last_result", word);
                return 0;
        }
        if (!app->updatecheck) {
                ret->error_code = UPDATE_ERROR_OMAHA_INVALID;
                status_set(u, "last_result", "error");
                send_event(u, interactive, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_ERROR,
                           UPDATE_ERROR_OMAHA_INVALID, NULL);
                return log_error_errno(-EBADMSG, "%s: no <updatecheck> in the response", u->cfg.server);
        }
        if (strcmp(app->updatecheck, "ok") != 0) {
                if (strcmp(app->updatecheck, "noupdate") != 0)
                        log_warning("The server answered the update check with \"%s\"",
                                    app->updatecheck);
                else
                        log_info("No update (running %s, channel %s)", u->target->running_version,
                                 u->cfg.channel);
                status_set(u, "last_result", "noupdate");
                updater_set_status(u, "idle", NULL);
                return 0;
        }

        /* An update is offered. */
        if (app->n_urls == 0 || app->n_packages == 0 || !app->manifest_version ||
            !version_valid(app->manifest_version) || !app->packages[0].name ||
            app->packages[0].size == 0) {
                ret->error_code = UPDATE_ERROR_OMAHA_INVALID;
                status_set(u, "last_result", "error");
                send_event(u, interactive, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_ERROR,
                           UPDATE_ERROR_OMAHA_INVALID, NULL);
                return log_error_errno(-EBADMSG, "%s: the offered update lacks a URL, a package or "
                                       "a valid version", u->cfg.server);
        }
        /* What follows decides from the table and the state. An install decides with the
         * install lock held, on a fresh reading of both: a pivotctl rollback or install made
         * during the exchange with the server must not be overwritten by a decision taken
         * before it. */
        _cleanup_(drop_lockp) struct updater *held = NULL;
        if (install) {
                bool had = u->lock_fd >= 0;
                r = take_lock(u);
                if (r < 0)
                        return r;
                if (!had)
                        held = u;
                updater_reload_state(u);
                r = reload_table(u);
                if (r < 0) {
                        ret->error_code = UPDATE_ERROR_GENERIC;
                        return r;
                }
        }
        const struct omaha_package *pkg = &app->packages[0];
        ret->update_available = true;
        ret->size = pkg->size;
        snprintf(ret->version, sizeof(ret->version), "%s", app->manifest_version);
        const char *running = u->target->running_version;
        int cmp = version_compare(app->manifest_version, running);
        if (cmp == 0) {
                log_info("The server offers %s, which runs already", app->manifest_version);
                ret->update_available = false;
                status_set(u, "last_result", "noupdate");
                updater_set_status(u, "idle", NULL);
                return 0;
        }
        const char *failed = kv_get(&u->state, K_FAILED_VERSION);
        if (failed && !strcmp(failed, app->manifest_version) && !interactive) {
                log_warning("Version %s rolled back here before; not installing it again "
                            "(pivotctl update does)", failed);
                status_set(u, "last_result", "skipped");
                updater_set_status(u, "idle", NULL);
                return 0;
        }
        if (updater_reboot_pending(u)) {
                const char *pv = kv_get(&u->state, K_PENDING_VERSION);
                if (pv && !strcmp(pv, app->manifest_version)) {
                        log_info("Version %s is installed already and waits for a reboot", pv);
                        ret->update_available = false;
                        return 0;
                }
        }
        if (cmp < 0 && !u->cfg.allow_downgrade) {
                status_set(u, "last_result", "refused");
                updater_set_status(u, "idle", NULL);
                if (!install) { /* asked only what there is: nothing newer */
                        ret->update_available = false;
                        log_warning("The server offers %s, older than the running %s: not an "
                                    "update (allow_downgrade = yes to accept)",
                                    app->manifest_version, running);
                        return 0;
                }
                ret->error_code = UPDATE_ERROR_POLICY;
                ret->refused = true;
                /* Reported once per version: the server keeps offering it at every check, and
                 * one machine's refusal counted again and again would weigh like many. */
                state_begin(u);
                bool told = !strcmp(kv_get(&u->state, K_REFUSED_VERSION) ?: "",
                                    app->manifest_version);
                state_set(u, K_REFUSED_VERSION, app->manifest_version);
                state_commit(u);
                drop_lock(u); /* nothing to install: not held over a request to the server */
                if (!told)
                        send_event(u, interactive, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_ERROR,
                                   UPDATE_ERROR_POLICY, app->manifest_version);
                return log_error_errno(-EPERM, "The server offers %s, older than the running %s: "
                                       "refused (allow_downgrade = yes to accept)",
                                       app->manifest_version, running);
        }
        log_info("Update available: %s (running %s), %" PRIu64 " bytes", app->manifest_version,
                 running, pkg->size);
        if (!install) {
                status_set(u, "last_result", "available");
                updater_set_status(u, "idle", NULL);
                return 0;
        }

        /* Neither is a failure: the next check after the slot is marked good, or after the
         * reboot, installs. */
        int passive = target_passive(u->target);
        if (passive >= 0 && target_slot_is_last_good(u->target, passive)) {
                log_warning("Not installing %s yet: the running slot %s is still on trial, and slot "
                            "%s is the only one known to boot", app->manifest_version,
                            target_slot_name(u->target, u->target->booted),
                            target_slot_name(u->target, passive));
                ret->deferred = true;
        } else if (!u->over_rollback && u->target->booted_runs && !updater_reboot_pending(u) &&
                   target_outranked(u->target)) {
                /* Chosen by hand (pivotctl rollback): an install would overwrite the slot the
                 * operator wants, or switch the machine away from it. pivotctl update, too,
                 * asks before it undoes a rollback. */
                log_warning("Not installing %s yet: another slot was chosen to boot next "
                            "(pivotctl rollback); %s", app->manifest_version,
                            interactive ? "pivotctl update --force installs it now and undoes the "
                                          "rollback"
                                        : "it is installed after the reboot");
                ret->deferred = true;
        }
        if (ret->deferred) {
                status_set(u, "last_result", "deferred");
                updater_set_status(u, "idle", NULL);
                return 0;
        }
        r = updater_load_key(u);
        if (r < 0) {
                /* This machine's key is missing or unreadable: nothing is known yet of the
                 * payload's signature, and error 18 would blame the release. */
                ret->error_code = UPDATE_ERROR_GENERIC;
                drop_lock(u);
                send_event(u, interactive, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_ERROR,
                           UPDATE_ERROR_GENERIC, app->manifest_version);
                return r;
        }
        send_event(u, interactive, OMAHA_EVENT_DOWNLOAD_STARTED, OMAHA_RESULT_SUCCESS, 0,
                   app->manifest_version);
        struct install_result res = {0};
        /* Each codebase in turn while the failure is one of transport (a mirror down); the
         * checkpoint carries over, so the next one resumes where this one stopped. */
        for (size_t i = 0; i < app->n_urls; i++) {
                _cleanup_free_ char *url = NULL;
                const char *base = app->urls[i];
                size_t bl = strlen(base);
                if (asprintf(&url, "%s%s%s", base, bl && base[bl - 1] == '/' ? "" : "/",
                             pkg->name) < 0) {
                        res.error_code = UPDATE_ERROR_GENERIC;
                        r = log_error_errno(-ENOMEM, "Out of memory");
                        break;
                }
                struct http_source src;
                struct http_options ho = http_opts(u, 0);
                r = http_source_init(&src, url, &ho);
                if (r < 0) {
                        res.error_code = UPDATE_ERROR_GENERIC;
                        r = log_error_errno(r, "Out of memory");
                        break;
                }
                r = run_install(u, &src.source, NULL, app->manifest_version, pkg, &res);
                http_source_done(&src);
                bool transport = res.error_code == UPDATE_ERROR_DOWNLOAD_TRANSFER ||
                                 res.error_code >= UPDATE_ERROR_HTTP_BASE;
                if (r >= 0 || !transport || (u->cancel && *u->cancel) || i + 1 == app->n_urls)
                        break;
                log_info("Trying the next download location (%zu of %zu)", i + 2, app->n_urls);
        }
        drop_lock(u);
        if (r < 0 && u->cancel && *u->cancel) {
                /* Not a failed update: the agent was told to stop (a shutdown, a restart), and
                 * the download resumes at its next start. Reported, it would count against the
                 * rollout on the server. */
                ret->error_code = res.error_code;
                status_set(u, "last_result", "stopped");
                updater_set_status(u, "stopped", "the download resumes at the next start");
                return r;
        }
        if (r < 0) {
                ret->error_code = res.error_code;
                status_set(u, "last_result", "error");
                char e[32];
                snprintf(e, sizeof(e), "error %d", res.error_code);
                updater_set_status(u, "error", e);
                send_event(u, interactive, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_ERROR,
                           res.error_code, app->manifest_version);
                return r;
        }
        /* Downloaded, and installed: one request with both events. */
        struct omaha_call done;
        int ignored;
        omaha_call_init(u, &done, interactive);
        omaha_call_event(&done, OMAHA_EVENT_DOWNLOAD_FINISHED, OMAHA_RESULT_SUCCESS, 0, NULL,
                         app->manifest_version);
        omaha_call_event(&done, OMAHA_EVENT_UPDATE_COMPLETE, OMAHA_RESULT_SUCCESS, 0, NULL,
                         app->manifest_version);
        struct omaha_response dresp = {0};
        if (omaha_send(u, &done, &dresp, &ignored) < 0)
                log_warning("Could not report the finished install to the server");
        omaha_response_done(&dresp);
        status_set(u, "last_result", "installed");
        return 1;
}

/* What pivot-agent and pivotctl do, as one set of functions both programs call: status, an
 * Omaha check, an install (from the server or from a file), mark good, rollback, reboot.
 *
 * State kept between runs (state_dir, /var/lib/pivot on a device):
 *   update-state   key=value: the installed-but-not-yet-booted update (slot, version, the
 *                  version it replaces, the boot it was installed in), the boot result still
 *                  to report, versions that rolled back, the first version installed
 *   download/      staged kernel and initrd, resume checkpoint
 *   lock           held while an install runs
 *   update-state.lock  held while a process changes update-state (read, change, save)
 * and, for pivotctl status, the agent's runtime status in run_dir/agent-status. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "install.h"
#include "payload.h"
#include "state.h"
#include "target.h"

struct updater_options {
        const char *config_path;  /* NULL: /etc/pivot/update.conf (missing is fine offline) */
        const char *disk;         /* offline: a disk image file */
        const char *booted_slot;  /* offline: the slot to treat as running */
        const char *boot_id;      /* offline: an id for "this boot" (tests of reboot stories) */
        const char *server;       /* overrides */
        const char *channel;
        const char *key_path;
        const char *state_dir;
        bool allow_downgrade;
        bool over_rollback;       /* update even while a rollback by hand waits for its reboot
                                   * (pivotctl update --force): the rollback is undone */
        bool quiet;               /* no progress output */
};

struct updater {
        struct config cfg;
        struct target *target;
        struct payload_key *key;
        bool offline;
        bool temp_state;          /* state_dir is a temporary directory of this run */
        char *state_path;         /* state_dir/update-state */
        char *work_dir;           /* state_dir/download */
        char *status_path;        /* run_dir/agent-status */
        char *boot_id;
        struct kv state;          /* update-state as last read; see state_begin() */
        int state_lock_fd;        /* update-state.lock while a change is under way */
        unsigned state_depth;     /* nested state_begin() calls */
        bool state_dirty;         /* changed since state_begin() */
        bool state_stale;         /* state_begin() could not read the file again */
        int lock_fd;
        bool quiet;
        bool over_rollback;
        bool progress_tty;
        bool is_agent;            /* writes agent-status */
        volatile int *cancel;     /* set by a signal handler: stop a download (resumable) */
};

int updater_open(const struct updater_options *o, struct updater **ret);
void updater_free(struct updater *u);
void updater_freep(struct updater **u);

/* pivotctl status. */
int updater_status(struct updater *u, bool json, FILE *out);

/* Installs a payload file (or an http:// or https:// URL) into the passive slot and flips
 * (pivotctl install). */
struct install_options {
        bool no_flip;
        bool ignore_min_version;
        const char *slot; /* NULL: the passive one */
};
int updater_install_file(struct updater *u, const char *path, const struct install_options *o);

/* One Omaha round: the boot result if one is due, ping, update check; with install, download
 * and install what is offered, reporting events 13, 14 and 3. Returns 1 when an update was
 * installed, 0 when there was none (or install was false and *ret says what is offered),
 * negative on error (logged, and reported to the server when possible). */
struct check_result {
        bool update_available;
        /* Offered, and installed by a later check, not now: the running slot is still on
         * trial, or a rollback by hand waits for a reboot (the agent's checks only). */
        bool deferred;
        /* Offered and refused by this machine's policy (older than the running version): the
         * same offer would be refused again, so it is no reason to check again sooner. */
        bool refused;
        char version[PAYLOAD_MAX_VERSION_LEN + 1];
        uint64_t size;
        int error_code; /* UPDATE_ERROR_* on failure */
};
int updater_check(struct updater *u, bool install, bool interactive, struct check_result *ret);

/* After a boot: works out whether an update just came up or rolled back, and records the event
 * the next check reports. Returns the state: */
enum boot_outcome {
        BOOT_NORMAL,           /* nothing pending */
        BOOT_WAITING_REBOOT,   /* installed, not rebooted yet */
        BOOT_NEW_VERSION,      /* the installed slot is running (mark it good once healthy) */
        BOOT_ROLLED_BACK,      /* the installed slot did not come up; the old one runs */
};
enum boot_outcome updater_boot_outcome(struct updater *u);

/* Health checks (configured commands; by default: the root is the dm-verity device). */
int updater_health_check(struct updater *u);
/* Marks the running slot successful (and queues the success report of a new version). */
int updater_mark_good(struct updater *u, bool check_health);
/* Makes the other slot boot next. */
int updater_rollback(struct updater *u, bool force);
/* Undoes a rollback by hand before the reboot: the running slot boots next again, and its
 * version may be installed again. */
int updater_rollback_cancel(struct updater *u);
/* Reboots through the configured command: 0 when it ran, 1 when it did not run because the
 * disk is an image file and the command the default one (not this machine's reboot).
 * `reason` for the log. */
int updater_reboot(struct updater *u, const char *reason);
/* Whether an installed update waits for a reboot (as of the last reading of update-state). */
bool updater_reboot_pending(struct updater *u);
/* Reads update-state again: a long-running process (the daemon) calls it before it acts on
 * the state, which pivotctl may have changed meanwhile. */
int updater_reload_state(struct updater *u);

/* Runtime status for pivotctl status (agent only; a no-op otherwise). */
void updater_set_status(struct updater *u, const char *state, const char *detail);

/* Loads the trusted public key: --key, else the configured public_key, else (offline) the key
 * built into the running slot's root file system. */
int updater_load_key(struct updater *u);

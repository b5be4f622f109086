/* The machine being updated: its disk, its slots, which one runs, and what each holds.
 *
 * Two ways in, one set of operations afterwards:
 *   - on a device: the kernel command line names the running slot (pivot.slot=) and its
 *     partition (pivot.root=PARTUUID=...), libblkid finds the disk, /etc/os-release has the
 *     running version;
 *   - offline (--disk FILE): a disk image file; the "running" slot is the one given with
 *     --booted-slot, or else the one the boot selector would start now (lib/slot-policy), and
 *     versions come from the slots' command lines on the ESP (pivot.version=). */
#pragma once

#include <stdbool.h>

#include "disk.h"
#include "esp.h"

struct target_options {
        const char *disk_path;   /* NULL: this device */
        const char *booted_slot; /* offline only: the slot to treat as running */
        const char *proc_cmdline;/* NULL: /proc/cmdline (tests may point elsewhere) */
        const char *os_release;  /* NULL: /etc/os-release */
};

struct target {
        bool offline;
        struct disk *disk;
        struct esp esp;
        int booted;                        /* slot index of the running slot */
        bool booted_runs;                  /* it runs (a device, or --booted-slot says so), as
                                            * opposed to the slot an image file boots next */
        char *running_version;             /* "0.0.0" when nothing says */
        char *boot_id;                     /* this boot (device) or NULL (offline) */
        char *slot_versions[SLOT_MAX];     /* from each slot's ESP command line, or NULL */
        bool root_is_verity;               /* device: / is the dm-verity device "root" */
};

int target_open(const struct target_options *o, struct target **ret);
void target_free(struct target *t);
void target_freep(struct target **t);

/* Reads slots and versions again after a change. */
int target_reload(struct target *t);

/* The slot an update goes to: with two slots, the one that is not running; with more, a
 * non-running slot not known to boot before a successful one (a fallback), then the lowest
 * priority. -ENOENT when there is none. */
int target_passive(const struct target *t);

/* The slot a rollback goes to: the one that ran before, as far as the table tells. Among the
 * non-running slots, one known to boot (successful) before one that is not, then the highest
 * ranked. -ENOENT when there is none. */
int target_fallback(const struct target *t);

/* A slot the selector would start ranks above the running one: an update installed and not
 * booted yet, or a rollback by hand. Not a slot whose update failed (no tries left), nor an
 * older slot the running one merely spent its try over. */
bool target_outranked(const struct target *t);

/* A rollback by hand while the running slot is on trial (pivotctl rollback): in the table,
 * read again, another slot ranks above the running one, which is not yet successful. Marking
 * the running slot good would undo the rollback. False when the table cannot be read. */
bool target_rolled_back_by_hand(struct target *t);

const char *target_slot_name(const struct target *t, int slot);

/* The running slot as last read. Looked up again after each reading of the table, never
 * kept: a table rewritten meanwhile can move it to another index (target_reload()). */
static inline const struct slot *target_running_slot(const struct target *t) {
        return &t->disk->slots[t->booted];
}

/* Writing `slot` would take the last slot known to boot (successful), while the running one is
 * still on trial: if the new one failed too, no slot would be left to fall back on. On an
 * image file with no running slot named, false. */
bool target_slot_is_last_good(const struct target *t, int slot);

/* GPT changes, each one a single table write. */
/* Before anything is written to a slot: priority 0, tries 0, not successful. */
int target_slot_disable(struct target *t, int slot);
/* After a verified install: the slot boots next (priority above every other slot), with
 * `tries` attempts, not yet successful. */
int target_slot_flip(struct target *t, int slot, unsigned tries);
/* The running system is healthy: successful, tries 0, priority kept. */
int target_slot_mark_good(struct target *t, int slot);
/* Make `slot` boot next without spending tries if it is successful (pivotctl rollback). */
int target_slot_prefer(struct target *t, int slot, unsigned tries_if_unproven);

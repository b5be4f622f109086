/* The machine being updated: device or disk image file. */
#include "target.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static int read_small_file(const char *path, size_t max, char **ret) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return negative_errno();
        char *buf = calloc(1, max + 1);
        if (!buf)
                return -ENOMEM;
        size_t n = fread(buf, 1, max, f);
        buf[n] = 0;
        *ret = buf;
        return 0;
}

/* VERSION_ID= from an os-release file, unquoted. */
static char *os_release_version(const char *path) {
        _cleanup_free_ char *text = NULL;
        if (read_small_file(path, 65536, &text) < 0)
                return NULL;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                if (strncmp(line, "VERSION_ID=", 11) != 0)
                        continue;
                char *v = line + 11;
                size_t n = strlen(v);
                if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
                        v[n - 1] = 0;
                        v++;
                }
                return strdup(v);
        }
        return NULL;
}

/* Whether / is the dm-verity device the initramfs set up (device-mapper name "root"). */
static bool root_is_verity_device(void) {
        struct stat st;
        char path[128];
        _cleanup_free_ char *name = NULL;
        if (stat("/", &st) < 0)
                return false;
        snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm/name", major(st.st_dev),
                 minor(st.st_dev));
        if (read_small_file(path, 128, &name) < 0)
                return false;
        name[strcspn(name, "\n")] = 0;
        return strcmp(name, "root") == 0;
}

static void free_versions(struct target *t) {
        for (size_t i = 0; i < SLOT_MAX; i++) {
                free(t->slot_versions[i]);
                t->slot_versions[i] = NULL;
        }
}

static void load_slot_versions(struct target *t) {
        free_versions(t);
        for (size_t i = 0; i < t->disk->n_slots; i++) {
                char path[64];
                _cleanup_free_ char *cmdline = NULL;
                snprintf(path, sizeof(path), "/pivot/%s/cmdline", t->disk->slots[i].name);
                if (t->esp.image && esp_read_file(&t->esp, path, 8192, &cmdline, NULL) == 0)
                        t->slot_versions[i] = cmdline_value(cmdline, "pivot.version");
        }
}

static int pick_offline_booted(struct target *t, const char *name) {
        if (name) {
                int i = disk_slot_index(t->disk, name);
                if (i < 0)
                        return log_error_errno(-ENOENT, "%s has no slot %s", t->disk->path, name);
                return i;
        }
        struct slot_choice choice;
        if (disk_next_boot(t->disk, &choice) < 0)
                return t->disk->n_slots > 0 ? 0 : -ENOENT;
        return (int)choice.index;
}

int target_open(const struct target_options *o, struct target **ret) {
        _cleanup_(target_freep) struct target *t = calloc(1, sizeof(*t));
        _cleanup_free_ char *cmdline = NULL, *disk_path = NULL;
        unsigned root_partno = 0; /* the partition "/" is read from; 0: not known */
        int r;

        if (!t)
                return -ENOMEM;
        t->booted = -1;
        t->offline = o->disk_path != NULL;
        if (t->offline) {
                disk_path = strdup(o->disk_path);
                if (!disk_path)
                        return -ENOMEM;
        } else {
                const char *cl = o->proc_cmdline ? o->proc_cmdline : "/proc/cmdline";
                r = read_small_file(cl, 8192, &cmdline);
                if (r < 0)
                        return log_error_errno(r, "Cannot read %s: %m", cl);
                _cleanup_free_ char *root = cmdline_value(cmdline, "pivot.root");
                if (!root || strncmp(root, "PARTUUID=", 9) != 0)
                        return log_error_errno(-ENODEV, "The kernel command line has no "
                                               "pivot.root=PARTUUID=...: not booted by the Pivot "
                                               "boot selector (use --disk FILE for an image file)");
                /* The disk the root file system is read from, not the first disk that holds a
                 * partition with that GUID: every disk written from one image has the same
                 * GUIDs, and a copy on another disk (an installer stick) must never be
                 * updated in the running one's place. */
                r = disk_find_running_root("/", &disk_path, &root_partno);
                if (r < 0) {
                        log_full_errno(LOG_LEVEL_DEBUG, r, "/ is not read from a disk partition "
                                       "(%m); finding partition %s by its GUID", root + 9);
                        r = disk_find_by_partuuid(root + 9, &disk_path);
                }
                if (r < 0)
                        return log_error_errno(r, "Cannot find the disk holding partition %s",
                                               root + 9);
        }
        r = disk_open(disk_path, &t->disk);
        if (r == -ENOMEDIUM)
                return log_error_errno(r, "%s has no GPT", disk_path);
        if (r == -ENOTUNIQ)
                return r; /* said where it was found */
        if (r < 0)
                return log_error_errno(r, "Cannot read the partition table of %s: %m", disk_path);
        if (t->disk->n_slots < 2)
                return log_error_errno(-ENOENT, "%s has %zu root slots (ROOT-A, ROOT-B); an update "
                                       "needs two", disk_path, t->disk->n_slots);
        r = esp_open(t->disk, &t->esp);
        if (r == -ENOENT)
                log_warning("%s has no EFI system partition", disk_path);
        else if (r < 0)
                return r;
        load_slot_versions(t);

        if (t->offline) {
                r = pick_offline_booted(t, o->booted_slot);
                if (r < 0)
                        return r;
                t->booted = r;
                t->booted_runs = o->booted_slot != NULL;
                const char *v = t->slot_versions[t->booted];
                t->running_version = strdup(v ? v : "0.0.0");
        } else {
                /* The running slot is the one whose partition the initramfs opened as root:
                 * pivot.root. A pivot.slot that names another one means something is off,
                 * and guessing could overwrite the running root. */
                _cleanup_free_ char *slot = cmdline_value(cmdline, "pivot.slot");
                _cleanup_free_ char *root = cmdline_value(cmdline, "pivot.root");
                for (size_t i = 0; t->booted < 0 && i < t->disk->n_slots; i++)
                        if (!strcasecmp(disk_slot_partition(t->disk, i)->uuid, root + 9))
                                t->booted = (int)i;
                if (t->booted < 0)
                        return log_error_errno(-ENOENT, "The running root (%s) is not a slot of %s",
                                               root, disk_path);
                unsigned booted_partno = t->disk->slots[t->booted].partno;
                if (root_partno && root_partno != booted_partno)
                        return log_error_errno(-EINVAL, "/ is read from partition %u of %s, but %s is "
                                               "partition %u: refusing to guess which slot runs",
                                               root_partno, disk_path, root, booted_partno);
                t->booted_runs = true;
                if (slot && strcmp(slot, t->disk->slots[t->booted].name) != 0)
                        return log_error_errno(-EINVAL, "pivot.slot=%s, but the running root %s is "
                                               "slot %s: refusing to guess which slot runs", slot,
                                               root, t->disk->slots[t->booted].name);
                const char *osr = o->os_release ? o->os_release : "/etc/os-release";
                t->running_version = os_release_version(osr);
                if (!t->running_version) {
                        const char *v = t->slot_versions[t->booted];
                        log_warning("No VERSION_ID in %s; using %s", osr, v ? v : "0.0.0");
                        t->running_version = strdup(v ? v : "0.0.0");
                }
                if (read_small_file("/proc/sys/kernel/random/boot_id", 64, &t->boot_id) == 0)
                        t->boot_id[strcspn(t->boot_id, "\n")] = 0;
                t->root_is_verity = root_is_verity_device();
        }
        if (!t->running_version)
                return -ENOMEM;
        *ret = TAKE_PTR(t);
        return 0;
}

void target_free(struct target *t) {
        if (!t)
                return;
        disk_free(t->disk);
        esp_done(&t->esp);
        free_versions(t);
        free(t->running_version);
        free(t->boot_id);
        free(t);
}

void target_freep(struct target **t) {
        target_free(*t);
        *t = NULL;
}

int target_reload(struct target *t) {
        /* The slots are found again by partition GUID: in a table rewritten meanwhile, the
         * running slot's index may be another slot's. */
        char booted_uuid[sizeof(t->disk->parts[0].uuid)] = "";
        const struct disk_partition *booted = t->booted >= 0 ?
                disk_slot_partition(t->disk, (size_t)t->booted) : NULL;
        if (booted)
                snprintf(booted_uuid, sizeof(booted_uuid), "%s", booted->uuid);
        _cleanup_free_ struct disk *before = malloc(sizeof(*before));
        if (!before)
                return -ENOMEM;
        *before = *t->disk;
        int r = disk_reload(t->disk);
        if (r < 0)
                return r;
        if (booted) {
                int found = -1;
                for (size_t i = 0; i < t->disk->n_slots; i++)
                        if (!strcmp(disk_slot_partition(t->disk, i)->uuid, booted_uuid))
                                found = (int)i;
                if (found < 0) {
                        *t->disk = *before;
                        return log_error_errno(-ESTALE, "%s: the running slot (partition %s) is "
                                               "no longer in the table", t->disk->path,
                                               booted_uuid);
                }
                t->booted = found;
        }
        load_slot_versions(t);
        return 0;
}

const char *target_slot_name(const struct target *t, int slot) {
        return slot >= 0 && (size_t)slot < t->disk->n_slots ? t->disk->slots[slot].name : "?";
}

bool target_slot_is_last_good(const struct target *t, int slot) {
        if (!t->booted_runs || !t->disk->slots[slot].successful)
                return false;
        for (size_t i = 0; i < t->disk->n_slots; i++)
                if ((int)i != slot && t->disk->slots[i].successful)
                        return false;
        return true;
}

/* Which of two slots to write rather than the other: one not known to boot (failed, or never
 * finished) before one that is, a fallback; then the lower priority. */
static bool rather_write(const struct slot *a, const struct slot *b) {
        if (a->successful != b->successful)
                return !a->successful;
        return a->priority < b->priority;
}

/* The non-running slot that `rather` prefers to every other. */
static int pick_other(const struct target *t, bool (*rather)(const struct slot *a, const struct slot *b)) {
        int best = -1;
        for (size_t i = 0; i < t->disk->n_slots; i++) {
                if ((int)i == t->booted)
                        continue;
                if (best < 0 || rather(&t->disk->slots[i], &t->disk->slots[best]))
                        best = (int)i;
        }
        return best < 0 ? -ENOENT : best;
}

int target_passive(const struct target *t) {
        return pick_other(t, rather_write);
}

static bool rather_fall_back(const struct slot *a, const struct slot *b) {
        if (a->successful != b->successful)
                return a->successful;
        return slot_ranks_above(a, b);
}

int target_fallback(const struct target *t) {
        return pick_other(t, rather_fall_back);
}

bool target_outranked(const struct target *t) {
        const struct slot *run = &t->disk->slots[t->booted];
        for (size_t i = 0; i < t->disk->n_slots; i++)
                if ((int)i != t->booted && slot_qualifies(&t->disk->slots[i]) &&
                    slot_ranks_above(&t->disk->slots[i], run))
                        return true;
        return false;
}

bool target_rolled_back_by_hand(struct target *t) {
        return target_reload(t) >= 0 && !t->disk->slots[t->booted].successful && target_outranked(t);
}

int target_slot_disable(struct target *t, int slot) {
        struct disk_slot_update u = {.slot = (size_t)slot};
        return disk_update_slots(t->disk, &u, 1);
}

/* Makes `slot` the highest priority; others keep their order below it. */
static int raise_slot(struct target *t, int slot, unsigned tries, bool successful) {
        const struct slot *slots = t->disk->slots;
        struct disk_slot_update u[SLOT_MAX];
        size_t n = 0;
        unsigned top = 0;
        for (size_t i = 0; i < t->disk->n_slots; i++)
                if ((int)i != slot && slots[i].priority > top)
                        top = slots[i].priority;
        unsigned prio = top + 1;
        if (prio > 15) {
                /* No room above: the others with a priority step down to 14, 13, ... in the
                 * order the selector tries them. Moving only those at 15 down to 14 could tie
                 * them with one already at 14, and a tie goes to the lower partition number,
                 * which may be the older slot. */
                prio = 15;
                size_t order[SLOT_MAX], m = 0;
                for (size_t i = 0; i < t->disk->n_slots; i++) {
                        if ((int)i == slot || slots[i].priority == 0)
                                continue;
                        size_t k = m++;
                        for (; k > 0 && slot_ranks_above(&slots[i], &slots[order[k - 1]]); k--)
                                order[k] = order[k - 1];
                        order[k] = i;
                }
                for (size_t k = 0; k < m; k++) {
                        const struct slot *s = &slots[order[k]];
                        unsigned p = k < 13 ? 14 - (unsigned)k : 1; /* more than 14 others share 1 */
                        if (p != s->priority)
                                u[n++] = (struct disk_slot_update){.slot = order[k], .priority = p,
                                                                   .tries = s->tries,
                                                                   .successful = s->successful};
                }
        }
        u[n++] = (struct disk_slot_update){.slot = (size_t)slot, .priority = prio,
                                           .tries = tries, .successful = successful};
        return disk_update_slots(t->disk, u, n);
}

int target_slot_flip(struct target *t, int slot, unsigned tries) {
        return raise_slot(t, slot, tries, false);
}

int target_slot_prefer(struct target *t, int slot, unsigned tries_if_unproven) {
        const struct slot *s = &t->disk->slots[slot];
        if (s->successful)
                return raise_slot(t, slot, 0, true);
        return raise_slot(t, slot, tries_if_unproven, false);
}

int target_slot_mark_good(struct target *t, int slot) {
        const struct slot *s = &t->disk->slots[slot];
        struct disk_slot_update u = {.slot = (size_t)slot, .priority = s->priority ? s->priority : 1,
                                     .tries = 0, .successful = true};
        return disk_update_slots(t->disk, &u, 1);
}

/* GPT access through libfdisk, device lookup through libblkid. */
#include "disk.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <blkid.h>
#include <libfdisk.h>

#include "fdisk-util.h"
#include "gpt-fd.h"
#include "gpt.h"
#include "log.h"
#include "util.h"


static void lower_copy(char *dst, size_t size, const char *src) {
        size_t i = 0;
        for (; src && src[i] && i + 1 < size; i++)
                dst[i] = (char)tolower((unsigned char)src[i]);
        dst[i] = 0;
}

/* Whether a GPT name is "ROOT-<slot>" with a slot name lib/slot-policy accepts. */
static bool slot_name_from_partition(const char *name, char *ret, size_t size) {
        size_t prefix = strlen(SLOT_PARTITION_PREFIX);
        if (strncmp(name, SLOT_PARTITION_PREFIX, prefix) != 0)
                return false;
        const char *s = name + prefix;
        size_t n = strlen(s);
        if (n == 0 || n >= SLOT_NAME_MAX || n >= size)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
                        return false;
        memcpy(ret, s, n + 1);
        return true;
}

static int open_context(const char *path, bool readonly, struct fdisk_context **ret) {
        _cleanup_(fdisk_unref_contextp) struct fdisk_context *cxt = fdisk_new_context();
        if (!cxt)
                return -ENOMEM;
        fdisk_disable_dialogs(cxt, 1);
        int r = fdisk_assign_device(cxt, path, readonly);
        if (r < 0)
                return r;
        if (!fdisk_is_label(cxt, GPT))
                return -ENOMEDIUM;
        *ret = TAKE_PTR(cxt);
        return 0;
}

static int read_table(struct disk *d) {
        _cleanup_(fdisk_unref_contextp) struct fdisk_context *cxt = NULL;
        struct stat st;
        int r;

        if (stat(d->path, &st) < 0)
                return negative_errno();
        d->block_device = S_ISBLK(st.st_mode);
        r = open_context(d->path, true, &cxt);
        if (r < 0)
                return r;
        d->sector_size = (unsigned)fdisk_get_sector_size(cxt);
        d->n_parts = 0;
        d->n_slots = 0;
        d->esp = -1;

        size_t max = fdisk_get_npartitions(cxt);
        for (size_t i = 0; i < max; i++) {
                _cleanup_(fdisk_unref_partitionp) struct fdisk_partition *pa = NULL;
                if (!fdisk_is_partition_used(cxt, i))
                        continue;
                if (fdisk_get_partition(cxt, i, &pa) < 0)
                        continue;
                if (d->n_parts >= DISK_MAX_PARTITIONS)
                        return -E2BIG;
                struct disk_partition *p = &d->parts[d->n_parts];
                memset(p, 0, sizeof(*p));
                p->partno = (unsigned)i + 1;
                const char *name = fdisk_partition_get_name(pa);
                snprintf(p->name, sizeof(p->name), "%s", name ? name : "");
                lower_copy(p->uuid, sizeof(p->uuid), fdisk_partition_get_uuid(pa));
                struct fdisk_parttype *t = fdisk_partition_get_type(pa);
                lower_copy(p->type, sizeof(p->type), t ? fdisk_parttype_get_string(t) : NULL);
                p->offset = (uint64_t)fdisk_partition_get_start(pa) * d->sector_size;
                p->size = (uint64_t)fdisk_partition_get_size(pa) * d->sector_size;
                if (fdisk_gpt_get_partition_attrs(cxt, i, &p->attrs) < 0)
                        p->attrs = 0;

                if (d->esp < 0 && !strcmp(p->type, FDISK_TYPE_ESP))
                        d->esp = (int)d->n_parts;
                char slot[SLOT_NAME_MAX];
                if (!strcmp(p->type, FDISK_TYPE_ROOT_X86_64) &&
                    slot_name_from_partition(p->name, slot, sizeof(slot)) &&
                    d->n_slots < SLOT_MAX) {
                        /* Each slot's boot files live in \pivot\<name> on the ESP, and FAT
                         * does not tell case: ROOT-a beside ROOT-A would write the running
                         * slot's kernel. */
                        for (size_t j = 0; j < d->n_slots; j++)
                                if (!strcasecmp(d->slots[j].name, slot))
                                        return log_error_errno(-ENOTUNIQ, "%s: slots %s and %s "
                                                               "differ only in case (their ESP "
                                                               "folders would be one)", d->path,
                                                               d->slots[j].name, slot);
                        struct slot *s = &d->slots[d->n_slots];
                        memset(s, 0, sizeof(*s));
                        s->partno = p->partno;
                        memcpy(s->name, slot, sizeof(slot));
                        s->priority = (uint8_t)gpt_attr_priority(p->attrs);
                        s->tries = (uint8_t)gpt_attr_tries(p->attrs);
                        s->successful = gpt_attr_successful(p->attrs);
                        s->bootable = true;
                        d->slot_part[d->n_slots] = (int)d->n_parts;
                        d->n_slots++;
                }
                d->n_parts++;
        }
        return 0;
}

int disk_open(const char *path, struct disk **ret) {
        struct disk *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->lock_fd = -1;
        d->path = strdup(path);
        if (!d->path) {
                free(d);
                return -ENOMEM;
        }
        int r = read_table(d);
        if (r < 0) {
                disk_free(d);
                return r;
        }
        *ret = d;
        return 0;
}

int disk_reload(struct disk *d) {
        /* Into a copy first: a table that cannot be read (or only half) leaves ours as it was,
         * not emptied. */
        _cleanup_free_ struct disk *fresh = malloc(sizeof(*fresh));
        if (!fresh)
                return -ENOMEM;
        *fresh = *d;
        int r = read_table(fresh);
        if (r < 0)
                return r;
        *d = *fresh;
        return 0;
}

void disk_free(struct disk *d) {
        if (!d)
                return;
        closep(&d->lock_fd);
        free(d->path);
        free(d);
}

void disk_freep(struct disk **d) {
        disk_free(*d);
        *d = NULL;
}

int disk_slot_index(const struct disk *d, const char *name) {
        for (size_t i = 0; i < d->n_slots; i++)
                if (!strcmp(d->slots[i].name, name))
                        return (int)i;
        return -ENOENT;
}

const struct disk_partition *disk_slot_partition(const struct disk *d, size_t slot) {
        return slot < d->n_slots ? &d->parts[d->slot_part[slot]] : NULL;
}

/* libfdisk, finding the primary table damaged, works from the backup but still writes the
 * backup first: a power cut right then would leave no good copy. lib/gpt repairs the primary
 * from the backup first (the copy it read from is written last), so that libfdisk starts from
 * two good copies. A damaged backup needs nothing: libfdisk overwrites it first. A table
 * lib/gpt cannot read at all is left to libfdisk, as before (it refuses what it cannot read). */
static int repair_primary_table(const struct disk *d) {
        _cleanup_close_ int fd = open(d->path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        struct gpt_fd f;
        struct gpt_io io;
        int r = gpt_fd_io(&f, fd, &io);
        if (r < 0)
                return r;
        _cleanup_free_ struct gpt *table = calloc(1, sizeof(*table));
        if (!table)
                return -ENOMEM;
        r = gpt_read(table, &io);
        if (r < 0 || table->primary_valid) {
                if (r < 0)
                        log_debug("lib/gpt cannot read the GPT of %s (%d); libfdisk decides",
                                  d->path, r);
                return 0;
        }
        log_warning("The primary GPT of %s is damaged; repairing it from the backup first",
                    d->path);
        return gpt_write(table, &io);
}

/* Our copy of the table was read earlier. Its partition numbers are still right only if the
 * entry at that number is the same partition: a table rewritten meanwhile (slots renumbered)
 * would otherwise take another partition's bits. */
static int check_same_partition(struct fdisk_context *cxt, const struct disk *d,
                                const struct disk_partition *p) {
        _cleanup_(fdisk_unref_partitionp) struct fdisk_partition *pa = NULL;
        char uuid[sizeof(p->uuid)];
        if (!fdisk_is_partition_used(cxt, p->partno - 1) ||
            fdisk_get_partition(cxt, p->partno - 1, &pa) < 0)
                return log_error_errno(-ESTALE, "%s: partition %u (%s) is gone; the table "
                                       "changed since it was read", d->path, p->partno, p->name);
        lower_copy(uuid, sizeof(uuid), fdisk_partition_get_uuid(pa));
        if (strcmp(uuid, p->uuid) != 0)
                return log_error_errno(-ESTALE, "%s: partition %u is no longer %s (%s); the "
                                       "table changed since it was read", d->path, p->partno,
                                       p->name, p->uuid);
        return 0;
}

#define DISK_LOCK_WAIT_MS 60000

int disk_lock(struct disk *d) {
        if (d->lock_depth > 0) {
                d->lock_depth++;
                return 0;
        }
        int fd = open(d->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        /* Others hold it for moments (udev probing, another of our writes); one that keeps it
         * (a hung partitioner) must not keep a shutdown waiting: -EBUSY after a while. */
        for (unsigned waited_ms = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; waited_ms += 100) {
                int r = negative_errno();
                if (r != -EWOULDBLOCK && r != -EINTR) {
                        close(fd);
                        return r;
                }
                if (waited_ms >= DISK_LOCK_WAIT_MS) {
                        close(fd);
                        return -EBUSY;
                }
                struct timespec ts = {.tv_nsec = 100 * 1000000L};
                nanosleep(&ts, NULL);
        }
        d->lock_fd = fd;
        d->lock_depth = 1;
        return 0;
}

void disk_unlock(struct disk *d) {
        if (d->lock_depth == 0 || --d->lock_depth > 0)
                return;
        closep(&d->lock_fd);
        d->lock_fd = -1;
}

void disk_unlockp(struct disk **d) {
        if (*d)
                disk_unlock(*d);
}

int disk_update_slots(struct disk *d, const struct disk_slot_update *u, size_t n) {
        _cleanup_(fdisk_unref_contextp) struct fdisk_context *cxt = NULL;
        int r = disk_lock(d);
        if (r < 0)
                return r;
        _cleanup_(disk_unlockp) struct disk *locked = d;
        r = repair_primary_table(d);
        if (r < 0)
                return r;
        r = open_context(d->path, false, &cxt);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                if (u[i].slot >= d->n_slots)
                        return -EINVAL;
                size_t partno = d->slots[u[i].slot].partno;
                r = check_same_partition(cxt, d, &d->parts[d->slot_part[u[i].slot]]);
                if (r < 0)
                        return r;
                uint64_t attrs;
                /* Start from what is on disk now, not from our possibly older copy. */
                r = fdisk_gpt_get_partition_attrs(cxt, partno - 1, &attrs);
                if (r < 0)
                        return r;
                attrs = gpt_attr_set_slot(attrs, u[i].priority, u[i].tries, u[i].successful);
                r = fdisk_gpt_set_partition_attrs(cxt, partno - 1, attrs);
                if (r < 0)
                        return r;
        }
        r = fdisk_write_disklabel(cxt);
        if (r < 0)
                return r;
        /* nosync=1: no partition table re-read (the kernel does not care about attribute bits,
         * and the root partition is busy); we fsync ourselves. */
        r = fdisk_deassign_device(cxt, 1);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(d->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return negative_errno();
        return disk_reload(d);
}

int disk_next_boot(const struct disk *d, struct slot_choice *ret) {
        int r = slot_policy_choose(d->slots, d->n_slots, ret);
        return r < 0 ? -ENOENT : 0;
}

int disk_find_by_partuuid(const char *partuuid, char **ret) {
        char *dev = blkid_evaluate_tag("PARTUUID", partuuid, NULL);
        if (!dev)
                return -ENODEV;
        struct stat st;
        if (stat(dev, &st) < 0 || !S_ISBLK(st.st_mode)) {
                int r = negative_errno();
                free(dev);
                return r < 0 ? r : -ENOTBLK;
        }
        free(dev);
        char name[256];
        dev_t whole;
        if (blkid_devno_to_wholedisk(st.st_rdev, name, sizeof(name), &whole) < 0)
                return -ENODEV;
        if (asprintf(ret, "/dev/%s", name) < 0)
                return -ENOMEM;
        return 0;
}

/* Reads one line of a sysfs attribute with scanf's format; returns how many fields matched. */
static int sysfs_scan(const char *dir, const char *attr, const char *format, void *a, void *b) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, attr);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        int n = fscanf(f, format, a, b);
        return n < 0 ? 0 : n;
}

/* A block device's whole disk and partition number, from its sysfs directory. */
static int partition_of(const char *sysdir, char **ret_disk, unsigned *ret_partno) {
        unsigned maj, min, partno;
        if (sysfs_scan(sysdir, "partition", "%u", &partno, NULL) != 1)
                return -ENOENT; /* a whole disk, or not a disk at all */
        if (sysfs_scan(sysdir, "dev", "%u:%u", &maj, &min) != 2)
                return -ENODEV;
        char name[256];
        dev_t whole;
        if (blkid_devno_to_wholedisk(makedev(maj, min), name, sizeof(name), &whole) < 0)
                return -ENODEV;
        if (asprintf(ret_disk, "/dev/%s", name) < 0)
                return -ENOMEM;
        *ret_partno = partno;
        return 0;
}

int disk_find_running_root(const char *root, char **ret_disk, unsigned *ret_partno) {
        struct stat st;
        char sysdir[128], slaves[160];
        if (stat(root, &st) < 0)
                return negative_errno();
        snprintf(sysdir, sizeof(sysdir), "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
        /* dm-verity reads its data (and here its hash tree) from one partition. */
        snprintf(slaves, sizeof(slaves), "%s/slaves", sysdir);
        _cleanup_(closedirp) DIR *d = opendir(slaves);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char under[PATH_MAX];
                snprintf(under, sizeof(under), "/sys/class/block/%s", de->d_name);
                return partition_of(under, ret_disk, ret_partno);
        }
        return partition_of(sysdir, ret_disk, ret_partno);
}

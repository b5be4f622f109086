/* Disks for the initramfs: finds the root slot by its PARTUUID and grows STATE, with the
 * same GPT code the boot selector runs (lib/gpt.c). */
#include "disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/blkpg.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "gpt-fd.h"
#include "gpt.h"
#include "log.h"
#include "pci-path.h"
#include "util.h"

/* One GPT, read once: static, it is 36 KiB. */
static struct gpt table;

/* Opens dev and reads its GPT into table; *fd and *f back *io. */
static int read_table(const char *dev, int *fd, struct gpt_fd *f, struct gpt_io *io) {
        *fd = open(dev, O_RDWR | O_CLOEXEC);
        if (*fd < 0)
                return negative_errno();
        int r = gpt_fd_io(f, *fd, io);
        return r < 0 ? r : gpt_read(&table, io);
}

/* /dev/<child of disk> whose partition number is partno. */
static int partition_node(const char *disk_name, unsigned partno, char *out, size_t size) {
        char path[600], buf[16];
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;

        snprintf(path, sizeof(path), "/sys/block/%s", disk_name);
        d = opendir(path);
        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                if (strncmp(de->d_name, disk_name, strlen(disk_name)) != 0)
                        continue;
                snprintf(path, sizeof(path), "/sys/block/%s/%s/partition", disk_name, de->d_name);
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
                if (n <= 0)
                        continue;
                buf[n] = '\0';
                if ((unsigned)strtoul(buf, NULL, 10) == partno) {
                        snprintf(out, size, "/dev/%s", de->d_name);
                        return 0;
                }
        }
        return -ENOENT;
}

/* The number in file `name` of the sysfs directory that is the first dir_len characters of
 * `dir`; 0 when there is none. */
static unsigned sysfs_number(const char *dir, size_t dir_len, const char *name) {
        char path[PATH_MAX];
        unsigned v = 0;
        if (snprintf(path, sizeof(path), "%.*s/%s", (int)dir_len, dir, name) >= (int)sizeof(path))
                return 0;
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f || fscanf(f, "%u", &v) != 1)
                return 0;
        return v;
}

/* Whether the n characters at p are all from `set`. */
static bool all_of(const char *p, size_t n, const char *set) {
        return n > 0 && strspn(p, set) >= n;
}

void disk_pci_path(const char *sysfs_path, char *out, size_t size) {
        bool virtio = false;   /* below a virtio device: a SCSI address there is virtio-scsi's */
        bool superspeed = false; /* below a USB 3 root hub */
        const char *usb = ""; /* the deepest USB device's port chain so far ("1.3" of "2-1.3") */
        size_t usb_len = 0;
        int below = 1;         /* 0: a node below the controller was added; < 0: it failed */

        if (size)
                out[0] = '\0';
        for (const char *p = sysfs_path; *p; p += strspn(p, "/")) {
                size_t n = strcspn(p, "/");
                const char *c = p, *dash;
                unsigned dom, bus, dev, fn, host, channel, target, lun;
                char end;
                p += n;
                /* A PCI function: "0000:00:1c.0", domain:bus:device.function. */
                if (n == 12 && sscanf(c, "%4x:%2x:%2x.%1x%c", &dom, &bus, &dev, &fn, &end) >= 4 &&
                    (c[12] == '/' || c[12] == '\0')) {
                        if (pci_path_add(out, size, dev, fn) < 0) {
                                out[0] = '\0'; /* too deep to compare: no path rather than half */
                                return;
                        }
                        continue;
                }
                if (!out[0] || below <= 0)
                        continue;
                if (n > 3 && n < 8 && !strncmp(c, "ata", 3) && all_of(c + 3, n - 3, "0123456789")) {
                        /* A SATA link ("ata3", numbered across all controllers): its port on
                         * its controller, from 1. */
                        char name[32];
                        snprintf(name, sizeof(name), "ata_port/%.*s/port_no", (int)n, c);
                        unsigned port = sysfs_number(sysfs_path, (size_t)(p - sysfs_path), name);
                        below = port ? pci_path_add_ata(out, size, port) : -1;
                } else if (n > 6 && !strncmp(c, "nvme", 4) && all_of(c + 4, n - 4, "0123456789cn") &&
                           memchr(c + 4, 'n', n - 4)) {
                        /* An NVMe namespace ("nvme0n2"; "nvme0c0n2" as one path of a multipath
                         * one): its namespace ID, which the name does not tell. */
                        unsigned nsid = sysfs_number(sysfs_path, (size_t)(p - sysfs_path), "nsid");
                        below = nsid ? pci_path_add_nvme(out, size, nsid) : -1;
                } else if (n > 6 && !strncmp(c, "virtio", 6) && all_of(c + 6, n - 6, "0123456789")) {
                        virtio = true;
                } else if (virtio && all_of(c, n, "0123456789:") &&
                           sscanf(c, "%u:%u:%u:%u", &host, &channel, &target, &lun) == 4) {
                        /* A SCSI device "host:channel:target:lun" on virtio-scsi. */
                        below = channel == 0 ? pci_path_add_scsi(out, size, target, lun) : -1;
                } else if (n > 3 && !strncmp(c, "usb", 3) && all_of(c + 3, n - 3, "0123456789")) {
                        /* A USB root hub: xHCI's USB 3 one is told apart by its speed. */
                        superspeed = sysfs_number(sysfs_path, (size_t)(p - sysfs_path), "speed") >= 5000;
                } else if (n > 2 && all_of(c, n, "0123456789-.") && (dash = memchr(c, '-', n)) &&
                           all_of(c, (size_t)(dash - c), "0123456789")) {
                        /* A USB device "bus-port.port...": the deepest one is the disk's. */
                        usb = dash + 1;
                        usb_len = n - (size_t)(usb - c);
                }
        }
        for (size_t i = 0; below > 0 && i < usb_len; i += strcspn(usb + i, ".") + 1) {
                unsigned port = 0;
                if (sscanf(usb + i, "%u", &port) != 1 ||
                    pci_path_add_usb_port(out, size, port, superspeed) < 0)
                        below = -1;
        }
        if (below < 0)
                out[pci_path_pci_len(out)] = '\0'; /* the controller alone */
}

bool disk_pci_present(const char *devices_dir, const char *path) {
        _cleanup_(closedirp) DIR *d = opendir(devices_dir);
        struct dirent *de;
        size_t pci_len = pci_path_pci_len(path);

        while (d && (de = readdir(d))) {
                char link[PATH_MAX], real[PATH_MAX], pci[64];
                if (de->d_name[0] == '.' ||
                    snprintf(link, sizeof(link), "%s/%s", devices_dir, de->d_name) >= (int)sizeof(link) ||
                    !realpath(link, real))
                        continue;
                disk_pci_path(real, pci, sizeof(pci));
                if (strlen(pci) == pci_len && !strncmp(pci, path, pci_len))
                        return true;
        }
        return false;
}

bool disk_pci_matches(const char *path, const char *hint) {
        if (!strcmp(path, hint))
                return true;
        size_t a = pci_path_pci_len(path), b = pci_path_pci_len(hint);
        if (a != b || strncmp(path, hint, a))
                return false;
        if (!path[a] || !hint[b])
                return true;
        /* Both name a node below the controller: another node of the same kind is another disk;
         * nodes of two kinds mean the firmware sees the controller otherwise than Linux does. */
        size_t kind = strspn(path + a + 1, "abcdefghijklmnopqrstuvwxyz");
        return kind != strspn(hint + b + 1, "abcdefghijklmnopqrstuvwxyz") ||
               strncmp(path + a + 1, hint + b + 1, kind) != 0;
}

struct match {
        char disk[300], part[300], pci[64];
};
#define MAX_MATCHES 4

/* The path (disk_pci_path) of block device `name`. An NVMe namespace reached through several
 * controllers (native multipath) lives under /sys/devices/virtual: it takes the path of the
 * controller that `hint` names, if one is among its paths, else the first one's. */
static void block_device_path(const char *name, const char *hint, char *out, size_t size) {
        char sys[300], real[PATH_MAX], path[64];
        snprintf(sys, sizeof(sys), "/sys/block/%s", name);
        out[0] = '\0';
        if (!realpath(sys, real))
                return;
        disk_pci_path(real, out, size);
        if (out[0])
                return;
        snprintf(sys, sizeof(sys), "/sys/block/%s/multipath", name);
        _cleanup_(closedirp) DIR *d = opendir(sys);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.' ||
                    snprintf(sys, sizeof(sys), "/sys/block/%s/multipath/%s", name, de->d_name) >=
                            (int)sizeof(sys) || !realpath(sys, real))
                        continue;
                disk_pci_path(real, path, sizeof(path));
                if (!out[0] || (hint && disk_pci_matches(path, hint)))
                        snprintf(out, size, "%s", path);
        }
}

/* Every disk that holds the partition now; returns how many (at most MAX_MATCHES). */
static size_t scan_once(const struct gpt_guid *want, const char *hint, struct match *m) {
        _cleanup_(closedirp) DIR *d = opendir("/sys/block");
        struct dirent *de;
        size_t n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)) && n < MAX_MATCHES) {
                char dev[300];
                struct gpt_fd f;
                struct gpt_io io;
                _cleanup_close_ int fd = -1;

                if (de->d_name[0] == '.' || !strncmp(de->d_name, "loop", 4) ||
                    !strncmp(de->d_name, "ram", 3) || !strncmp(de->d_name, "dm-", 3))
                        continue;
                snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
                if (read_table(dev, &fd, &f, &io) < 0)
                        continue;
                int idx = gpt_find_by_uuid(&table, want);
                if (idx < 0)
                        continue;
                if (partition_node(de->d_name, (unsigned)idx + 1, m[n].part, sizeof(m[n].part)) < 0)
                        continue; /* the kernel has not announced the partitions yet */
                snprintf(m[n].disk, sizeof(m[n].disk), "%s", dev);
                block_device_path(de->d_name, hint, m[n].pci, sizeof(m[n].pci));
                n++;
        }
        return n;
}

/* How long a partition found on a disk other than the selector's waits for that one to show
 * up: disks appear in any order, and the PCI function may hold no disk with the partition at
 * all (a firmware that numbers bridges otherwise, say), which must not hold up the boot for
 * long. A path that names no PCI function at all is not waited for: the kernel lists the PCI
 * functions before /init runs, only their disks come later. */
#define HINT_WAIT_TICKS 50 /* of 100 ms */
#define PCI_DEVICES_DIR "/sys/bus/pci/devices"

int disk_find_partuuid(const char *partuuid, const char *disk_pci, unsigned timeout_sec, char *disk,
                       size_t disk_size, char *part, size_t part_size) {
        struct gpt_guid want;
        struct match m[MAX_MATCHES];

        if (gpt_guid_from_string(partuuid, &want) < 0)
                return log_error_errno(-EINVAL, "'%s' is not a GUID", partuuid);
        bool hint = disk_pci && *disk_pci;
        if (hint && !disk_pci_present(PCI_DEVICES_DIR, disk_pci)) {
                log_warning("pivot.disk=pci:%s names no PCI device Linux sees: the boot disk is "
                            "found by its partition alone", disk_pci);
                hint = false;
        }
        /* Disks appear asynchronously after their driver loads. */
        for (unsigned tick = 0; tick < timeout_sec * 10; tick++) {
                size_t n = scan_once(&want, hint ? disk_pci : NULL, m), pick = n, at_hint = 0;
                for (size_t i = 0; hint && i < n; i++)
                        if (disk_pci_matches(m[i].pci, disk_pci) && at_hint++ == 0)
                                pick = i;
                if (pick == n && n > 0 && (!hint || tick >= HINT_WAIT_TICKS))
                        pick = 0;
                if (pick < n) {
                        const char *pci = m[pick].pci[0] ? m[pick].pci : "none";
                        if (hint && !at_hint)
                                log_warning("no disk at the boot disk's PCI path %s holds partition %s: "
                                            "using %s (PCI %s)", disk_pci, partuuid, m[pick].disk, pci);
                        else if (at_hint > 1)
                                log_warning("partition %s is on %zu disks behind the boot disk's PCI "
                                            "device %s: using %s", partuuid, at_hint, disk_pci,
                                            m[pick].disk);
                        else if (n > 1 && !hint)
                                log_warning("partition %s is on %zu disks and pivot.disk does not say "
                                            "which one booted: using %s", partuuid, n, m[pick].disk);
                        else if (n > 1)
                                log_info("partition %s is on %zu disks: using %s, the boot disk (PCI %s)",
                                         partuuid, n, m[pick].disk, pci);
                        snprintf(disk, disk_size, "%s", m[pick].disk);
                        snprintf(part, part_size, "%s", m[pick].part);
                        return 0;
                }
                usleep(100 * 1000);
        }
        return log_error_errno(-ENOENT, "No partition with PARTUUID %s after %u s", partuuid,
                               timeout_sec);
}

int disk_find_and_grow(const char *disk, const char *label, bool grow, char *part,
                       size_t part_size, bool *grown) {
        _cleanup_close_ int fd = -1;
        struct gpt_fd f;
        struct gpt_io io;
        int r, idx;

        *grown = false;
        if ((r = read_table(disk, &fd, &f, &io)) < 0)
                return log_error_errno(r, "Cannot read the GPT of %s: %m", disk);
        idx = gpt_find_by_name(&table, label);
        if (idx < 0)
                return log_error_errno(idx, "No partition labelled %s on %s", label, disk);

        if (grow) {
                r = gpt_grow_to_disk_end(&table, &io, idx);
                if (r < 0)
                        log_warning_errno(r, "Cannot grow %s on %s: %m", label, disk);
                else if (r > 0) {
                        if ((r = gpt_write(&table, &io)) < 0)
                                return log_error_errno(r, "Cannot write the GPT of %s: %m", disk);
                        uint64_t ss = io.sector_size;
                        struct blkpg_partition bp = {
                                .start = (long long)(gpt_entry_first_lba(&table, (uint32_t)idx) * ss),
                                .length = (long long)((gpt_entry_last_lba(&table, (uint32_t)idx) -
                                                       gpt_entry_first_lba(&table, (uint32_t)idx) + 1) * ss),
                                .pno = idx + 1,
                        };
                        struct blkpg_ioctl_arg arg = {.op = BLKPG_RESIZE_PARTITION,
                                                      .datalen = sizeof(bp), .data = &bp};
                        if (ioctl(fd, BLKPG, &arg) < 0)
                                log_warning_errno(negative_errno(),
                                                  "The kernel did not take the new size of %s: %m",
                                                  label);
                        else {
                                *grown = true;
                                log_info("%s grown to %llu MiB", label,
                                         (unsigned long long)(bp.length >> 20));
                        }
                }
        }
        const char *name = strrchr(disk, '/');
        return partition_node(name ? name + 1 : disk, (unsigned)idx + 1, part, part_size);
}
